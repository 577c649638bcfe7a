// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * libFuzzer target: the frame parser. Any input either fails validation or decodes
 * to a header that re-encodes to the same bytes (so validation and encoding agree). The
 * SACK ranges of an accepted ACK frame are sorted, separate runs inside the largest window
 * and re-encode to the same payload. Any input decodes in two pieces (tbp_rx_frags' decode),
 * cut where its first byte says, exactly as it does whole.
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

/* The verdict and header of data decoded in two separately allocated pieces. */
static int decode_in_pieces(const uint8_t *data, size_t size, struct tbp_hdr *h)
{
	size_t cut = size ? (data[0] * 37u) % (size + 1) : 0;
	uint8_t *a = malloc(cut + 1), *b = malloc(size - cut + 1);
	struct tbp_rx_frag p[2];
	struct tbp_rxf f;
	int rc;

	if (!a || !b)
		abort();
	memcpy(a, data, cut);
	memcpy(b, data + cut, size - cut);
	p[0].data = a;
	p[0].len = cut;
	p[1].data = b;
	p[1].len = size - cut;
	tbp_rxf_init(&f, p, 2);
	rc = tbp_rxf_decode(&f, TBP_MAX_FRAME, h);
	if (rc == 0 && f.payload && memcmp(f.payload, data + TBP_HDR_LEN, h->payload_len) != 0)
		abort();
	free(a);
	free(b);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t copy[TBP_MAX_FRAME];
	struct tbp_hdr h, again, split;
	int rc;

	memset(&h, 0, sizeof(h));
	memset(&split, 0, sizeof(split));
	rc = tbp_frame_decode(data, (uint32_t)(size > 0xffffffffu ? 0xffffffffu : size),
			      TBP_MAX_FRAME, &h);
	if (size <= 0xffffffffu &&
	    (decode_in_pieces(data, size, &split) != rc || (!rc && memcmp(&h, &split, sizeof(h)))))
		abort();
	if (rc != 0)
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
