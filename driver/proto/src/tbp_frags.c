// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * tbp_frags.c - a received frame in the pieces it arrived in (tbp_rx_frags).
 *
 * A NIC hands over a jumbo frame as a short linear part and a few pages. Copying it into one
 * buffer first would be a second pass over every payload byte on top of the placement into
 * the memory region, so the core reads the pieces where they are: the checksum and the MAC
 * run over them piece by piece and the data payload is written out of them by one buf_write
 * per piece. Only small things are gathered: the header when it straddles pieces, the MAC
 * trailer, and control payloads (handshake, SACK ranges, atomic operands) that the code
 * after decode reads as one buffer.
 */
#include "tbp_internal.h"

void tbp_rxf_init(struct tbp_rxf *f, const struct tbp_rx_frag *frag, uint32_t nfrag)
{
	uint32_t i;

	f->frag = frag;
	f->nfrag = nfrag;
	f->len = 0;
	f->hdr = NULL;
	f->payload = NULL;
	/* Saturates just past the largest frame: decode refuses it before anything is read. */
	for (i = 0; i < nfrag; i++) {
		if (frag[i].len > TBP_MAX_FRAME + 1 - f->len) {
			f->len = TBP_MAX_FRAME + 1;
			break;
		}
		f->len += (uint32_t)frag[i].len;
	}
	if (f->len < TBP_HDR_LEN)
		return;
	f->hdr = tbp_rxf_span(f, 0, TBP_HDR_LEN);
	if (!f->hdr) {
		tbp_rxf_copy(f, 0, f->hbuf, TBP_HDR_LEN);
		f->hdr = f->hbuf;
	}
}

void tbp_rxf_seek(const struct tbp_rxf *f, uint32_t off, uint32_t len, struct tbp_rxf_pos *pos)
{
	pos->i = 0;
	while (pos->i < f->nfrag && off >= f->frag[pos->i].len)
		off -= (uint32_t)f->frag[pos->i++].len;
	pos->skip = off;
	pos->left = len;
}

const uint8_t *tbp_rxf_next(const struct tbp_rxf *f, struct tbp_rxf_pos *pos, uint32_t *n)
{
	const uint8_t *p;
	size_t room;

	if (!pos->left)
		return NULL;
	while (pos->i < f->nfrag && pos->skip == f->frag[pos->i].len) {
		pos->i++;
		pos->skip = 0;
	}
	if (pos->i >= f->nfrag)
		return NULL; /* callers stay inside f->len: not reached */
	p = (const uint8_t *)f->frag[pos->i].data + pos->skip;
	room = f->frag[pos->i].len - pos->skip;
	*n = room < pos->left ? (uint32_t)room : pos->left;
	pos->skip += *n;
	pos->left -= *n;
	return p;
}

const uint8_t *tbp_rxf_span(const struct tbp_rxf *f, uint32_t off, uint32_t len)
{
	struct tbp_rxf_pos pos;
	const uint8_t *p;
	uint32_t n;

	if (!len)
		return f->pbuf; /* never read */
	/* Every frame of tbp_rx, and most headers: in the first piece. */
	if (f->nfrag && off + len <= f->frag[0].len)
		return (const uint8_t *)f->frag[0].data + off;
	tbp_rxf_seek(f, off, len, &pos);
	p = tbp_rxf_next(f, &pos, &n);
	return p && n == len ? p : NULL;
}

void tbp_rxf_copy(const struct tbp_rxf *f, uint32_t off, void *dst, uint32_t len)
{
	struct tbp_rxf_pos pos;
	uint8_t *d = dst;
	const uint8_t *p;
	uint32_t n;

	tbp_rxf_seek(f, off, len, &pos);
	while ((p = tbp_rxf_next(f, &pos, &n))) {
		memcpy(d, p, n);
		d += n;
	}
}

uint32_t tbp_rxf_crc32c(uint32_t crc, const struct tbp_rxf *f, uint32_t off, uint32_t len)
{
	struct tbp_rxf_pos pos;
	const uint8_t *p;
	uint32_t n;

	tbp_rxf_seek(f, off, len, &pos);
	while ((p = tbp_rxf_next(f, &pos, &n)))
		crc = tbp_crc32c(crc, p, n);
	return crc;
}

int tbp_rxf_write_payload(struct tbp_link *l, const struct tbp_buf *buf, uint64_t off,
			  const struct tbp_rxf *f, uint32_t len)
{
	struct tbp_rxf_pos pos;
	const uint8_t *p;
	uint32_t n;
	int rc;

	if (f->payload)
		return l->env.buf_write(l->env.ctx, buf, off, f->payload, len);
	tbp_rxf_seek(f, TBP_HDR_LEN, len, &pos);
	while ((p = tbp_rxf_next(f, &pos, &n))) {
		rc = l->env.buf_write(l->env.ctx, buf, off, p, n);
		if (rc)
			return rc;
		off += n;
	}
	return 0;
}
