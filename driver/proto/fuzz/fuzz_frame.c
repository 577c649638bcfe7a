// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * libFuzzer target: the frame parser. Any input either fails validation or decodes
 * to a header that re-encodes to the same bytes (so validation and encoding agree). The
 * SACK ranges of an accepted ACK frame are sorted, separate runs inside the largest window
 * and re-encode to the same payload.
 */
#include <stdlib.h>
#include <string.h>

#include "../src/tbp_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_ranges(const uint8_t *payload, uint32_t len)
{
	struct tbp_sack_range r[TBP_SACK_MAX_RANGES];
	uint8_t again[TBP_SACK_MAX_RANGES * TBP_SACK_RANGE_LEN];
	int i, n = tbp_sack_decode(payload, len, r);
	uint32_t end = 0;

	if (n < 0 || (uint32_t)n * TBP_SACK_RANGE_LEN != len)
		abort();
	for (i = 0; i < n; i++) {
		if (r[i].len == 0 || r[i].off <= end || r[i].off + r[i].len > TBP_WINDOW_MAX)
			abort();
		end = r[i].off + r[i].len;
	}
	if (tbp_sack_encode(again, r, (uint32_t)n) != len || memcmp(again, payload, len) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t copy[TBP_MAX_FRAME];
	struct tbp_hdr h, again;

	if (tbp_frame_decode(data, (uint32_t)(size > 0xffffffffu ? 0xffffffffu : size),
			     TBP_MAX_FRAME, &h) != 0)
		return 0;
	/* Accepted frames respect every bound the core relies on. */
	if (size != TBP_HDR_LEN + h.payload_len + ((h.flags & TBP_F_MAC) ? TBP_MAC_TRAILER : 0) ||
	    size > TBP_MAX_FRAME)
		abort();
	if ((uint64_t)h.frag_off + h.payload_len > h.msg_len && h.opcode >= TBP_W_SEND &&
	    h.opcode != TBP_W_READ_REQ && h.opcode != TBP_W_MSG_ACK)
		abort();
	if (h.opcode == TBP_W_ACK)
		check_ranges(data + TBP_HDR_LEN, h.payload_len);
	else if (h.opcode == TBP_W_KEEPALIVE && h.payload_len)
		abort();
	memcpy(copy, data, size);
	tbp_hdr_encode(copy, &h);
	if (memcmp(copy, data, size) != 0)
		abort();
	if (tbp_frame_decode(copy, (uint32_t)size, TBP_MAX_FRAME, &again) != 0 ||
	    memcmp(&h, &again, sizeof(h)) != 0)
		abort();
	return 0;
}
