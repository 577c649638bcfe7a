// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * libFuzzer target: the frame parser. Any input either fails validation or decodes
 * to a header that re-encodes to the same bytes (so validation and encoding agree).
 */
#include <stdlib.h>
#include <string.h>

#include "../src/tbp_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
	memcpy(copy, data, size);
	tbp_hdr_encode(copy, &h);
	if (memcmp(copy, data, size) != 0)
		abort();
	if (tbp_frame_decode(copy, (uint32_t)size, TBP_MAX_FRAME, &again) != 0 ||
	    memcmp(&h, &again, sizeof(h)) != 0)
		abort();
	return 0;
}
