// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * libFuzzer target: the whole receive path. Two links complete a real handshake,
 * then the input is a script of frames injected into the responder (optionally with
 * the live session tag and a valid checksum patched in so the fuzzer gets past
 * validation), interleaved with clock advances, posts and normal traffic between
 * the two links. The environment aborts if the core ever touches memory outside
 * what it validated, and ASan/UBSan catch everything else.
 *
 * Input records:  u8 ctl | u8 rail | u16 len (LE) | len bytes
 *   ctl bit 0: patch session tag    bit 1: patch checksum (bit 2: over payload too) and,
 *              on a non-handshake frame, the frame MAC trailer with a fresh counter
 *   ctl bit 3: pump traffic between the links afterwards
 *   ctl bits 4-7: advance the clock by (bits << 16) ns before the frame
 *   rail bits 2-7: nonzero: the frame arrives in three pieces (tbp_rx_frags), cut where
 *              these bits say, each piece an allocation of its own
 *
 * The initiator also has QPs the responder never opened (0x20: "not ready" NAKs) and
 * one it closed (0x30: "QP error" NAKs), so the per-QP NAK, retry and rewind paths run.
 *
 * The window (256) is wide enough for SACK ranges: frames injected past the responder's
 * bitmap make it send them, and injected ACK frames carry them to it.
 *
 * Built with -DTBP_FUZZ_SEEDGEN it is instead a program writing seed inputs made of
 * real frames into the directory given as argument (including NAK frames, out-of-order
 * WRITEs past the bitmap and ACK frames with SACK ranges).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/tbp_internal.h"
#include "../userspace/hmac_sha256.h"

#define MR_SIZE (64u << 10)
#define MAXQ 64

struct fep {
	struct tbp_link *link;
	uint64_t mem[(1u << 20) / 8];
	uint8_t mr[MR_SIZE];
	uint8_t local[MR_SIZE];
	uint8_t recvbuf[8][8192];
	uint32_t claims;
	uint8_t q[MAXQ][TBP_MAX_FRAME];
	uint32_t qlen[MAXQ], qrail[MAXQ], nq;
};

static struct fep F[2];
static uint64_t fnow;
static FILE *seed_out; /* seed generator: frames sent by the initiator */

static uint64_t f_now(void *ctx)
{
	(void)ctx;
	return fnow;
}

static int f_xmit(void *ctx, uint32_t rail, const void *frame, uint32_t len)
{
	struct fep *e = ctx;

	if (rail >= TBP_MAX_RAILS || len > TBP_MAX_FRAME || len < TBP_HDR_LEN)
		abort();
	if (e->nq == MAXQ)
		return -EAGAIN;
	memcpy(e->q[e->nq], frame, len);
	e->qlen[e->nq] = len;
	e->qrail[e->nq] = rail;
	e->nq++;
	if (seed_out && e == &F[0]) {
		/* Pump, and re-MAC the frame when it is played (its recorded counter is used). */
		uint8_t rec[4] = { 0x0a, (uint8_t)rail, (uint8_t)len, (uint8_t)(len >> 8) };

		fwrite(rec, 1, 4, seed_out);
		fwrite(frame, 1, len, seed_out);
	}
	return 0;
}

static void f_hmac(void *ctx, const uint8_t *key, uint32_t key_len, const uint8_t *msg,
		   uint32_t msg_len, uint8_t out[32])
{
	(void)ctx;
	hmac_sha256(key, key_len, msg, msg_len, out);
}

static void f_random(void *ctx, void *buf, uint32_t len)
{
	memset(buf, ctx == &F[0] ? 0x11 : 0x22, len);
}

static int f_mr_check(void *ctx, uint32_t qpn, uint32_t rkey, uint64_t addr, uint64_t len,
			uint32_t access)
{
	(void)ctx;
	(void)qpn;
	(void)access;
	if (rkey != 0x55)
		return TBP_ERR_REMOTE_ACCESS;
	return addr <= MR_SIZE && len <= MR_SIZE - addr ? 0 : TBP_ERR_REMOTE_ACCESS;
}

static uint8_t *f_ptr(struct fep *e, const struct tbp_buf *b, uint64_t off, uint32_t len)
{
	if (b->kind == TBP_BUF_MR) {
		/* The core may only touch what mr_check approved for this rkey. */
		if (b->rkey != 0x55 || b->addr > MR_SIZE || off > MR_SIZE ||
		    b->addr + off + len > MR_SIZE)
			abort();
		return e->mr + b->addr + off;
	}
	if (b->kind == TBP_BUF_RECV) {
		if (b->addr >= 8 || off + len > sizeof(e->recvbuf[0]))
			abort();
		return e->recvbuf[b->addr] + off;
	}
	if (b->kind == TBP_BUF_LOCAL) {
		if (off + len > MR_SIZE)
			abort();
		return e->local + off;
	}
	abort();
}

static int f_read(void *ctx, const struct tbp_buf *b, uint64_t off, void *dst, uint32_t len)
{
	memcpy(dst, f_ptr(ctx, b, off, len), len);
	return 0;
}

static int f_write(void *ctx, const struct tbp_buf *b, uint64_t off, const void *src, uint32_t len)
{
	memcpy(f_ptr(ctx, b, off, len), src, len);
	return 0;
}

/* The core runs an atomic only after mr_check approved 8 aligned bytes of the MR. */
static int f_atomic(void *ctx, const struct tbp_buf *b, uint32_t op, uint64_t cmp_add,
		    uint64_t swap, uint64_t *orig)
{
	uint8_t *p;
	uint64_t v;

	if (b->kind != TBP_BUF_MR || (b->addr & 7) ||
	    (op != TBP_OP_ATOMIC_CMP_SWP && op != TBP_OP_ATOMIC_FETCH_ADD &&
	     op != TBP_OP_ATOMIC_WRITE))
		abort();
	/* ATOMIC_WRITE stores its operand and returns nothing (the core passes swap 0). */
	if (op == TBP_OP_ATOMIC_WRITE && swap != 0)
		abort();
	p = f_ptr(ctx, b, 0, 8);
	memcpy(&v, p, 8);
	*orig = v;
	v = op == TBP_OP_ATOMIC_WRITE ? cmp_add :
	    op == TBP_OP_ATOMIC_FETCH_ADD ? v + cmp_add : v == cmp_add ? swap : v;
	memcpy(p, &v, 8);
	return 0;
}

/* Even keys are invalidatable; odd ones are refused (the receive and the WR then fail). */
static int f_invalidate(void *ctx, uint32_t qpn, uint32_t rkey)
{
	(void)ctx;
	(void)qpn;
	return rkey & 1 ? TBP_ERR_REMOTE_INVALID : 0;
}

static int f_claim(void *ctx, uint32_t qpn, uint64_t *handle, uint32_t *cap)
{
	struct fep *e = ctx;

	(void)qpn;
	if (e->claims % 5 == 4) { /* sometimes not ready */
		e->claims++;
		return -EAGAIN;
	}
	*handle = e->claims++ % 8;
	*cap = sizeof(e->recvbuf[0]);
	return 0;
}

static void f_send_done(void *ctx, uint32_t qpn, uint64_t wr_id, uint32_t status)
{
	(void)ctx;
	(void)qpn;
	(void)wr_id;
	if (status > TBP_ERR_RNR_RETRY_EXC)
		abort();
}

static void f_recv_done(void *ctx, const struct tbp_recv_completion *c)
{
	(void)ctx;
	if (c->status > TBP_STATUS_MAX || (c->status == TBP_OK && c->opcode != TBP_OP_RDMA_WRITE_WITH_IMM &&
					   c->len > 8192))
		abort();
	/* Only a SEND_WITH_INV names a key, and it never carries an immediate. */
	if (c->opcode == TBP_OP_SEND_WITH_INV ? c->has_imm : c->invalidate_rkey != 0)
		abort();
}

static void f_event(void *ctx, uint32_t ev, uint32_t rail)
{
	(void)ctx;
	(void)ev;
	(void)rail;
}

static void pump(int rounds)
{
	while (rounds-- > 0) {
		int i;

		for (i = 0; i < 2; i++) {
			struct fep *e = &F[i];
			uint32_t n = e->nq, k;

			e->nq = 0;
			for (k = 0; k < n; k++)
				tbp_rx(F[1 - i].link, e->qrail[k], e->q[k], e->qlen[k]);
		}
		fnow += 10000;
		tbp_tick(F[0].link, fnow);
		tbp_tick(F[1].link, fnow);
	}
}

static void setup(void)
{
	int i;

	fnow = 1000000;
	for (i = 0; i < 2; i++) {
		struct fep *e = &F[i];
		struct tbp_config cfg;
		struct tbp_env env = {
			.ctx = e, .now_ns = f_now, .xmit = f_xmit, .hmac_sha256 = f_hmac,
			.random_bytes = f_random, .mr_check = f_mr_check, .buf_read = f_read,
			.buf_write = f_write, .recv_claim = f_claim, .send_done = f_send_done,
			.atomic = f_atomic, .invalidate = f_invalidate,
			.recv_done = f_recv_done, .event = f_event,
		};

		e->nq = 0;
		e->claims = 0;
		tbp_config_default(&cfg);
		cfg.role = i ? TBP_ROLE_RESPONDER : TBP_ROLE_INITIATOR;
		cfg.window = 256;
		cfg.max_msgs = 16;
		cfg.max_rx_msgs = 8;
		cfg.max_qps = 4;
		cfg.key_len = 16;
		memset(cfg.key, 7, 16);
		if (tbp_link_size(&cfg) > sizeof(e->mem) ||
		    tbp_link_init(&e->link, e->mem, sizeof(e->mem), &cfg, &env))
			abort();
		tbp_rail_add(e->link, 0, 1, 4096, 0);
		/* a DMA rail: frames without MAC or payload CRC are taken on it */
		tbp_rail_add(e->link, 1, 2, 9000, TBP_RAIL_DMA);
		tbp_qp_open(e->link, 0x10 + (uint32_t)i, 0x11 - (uint32_t)i);
		tbp_qp_open(e->link, 0x30 + (uint32_t)i, 0x31 - (uint32_t)i);
	}
	tbp_qp_open(F[0].link, 0x20, 0x21);
	tbp_qp_close(F[1].link, 0x31);
	tbp_tick(F[0].link, fnow);
	pump(4);
	if (tbp_link_state(F[1].link) != TBP_LINK_UP)
		abort();
}

static void post_some(uint32_t k)
{
	struct tbp_wr wr;

	memset(&wr, 0, sizeof(wr));
	wr.qpn = k % 7 == 5 ? 0x20 : k % 7 == 6 ? 0x30 : 0x10;
	wr.wr_id = k;
	wr.opcode = TBP_OP_SEND + k % 10;
	wr.len = wr.opcode == TBP_OP_ATOMIC_CMP_SWP || wr.opcode == TBP_OP_ATOMIC_FETCH_ADD ||
		 wr.opcode == TBP_OP_ATOMIC_WRITE ? 8 : (k * 977) % 9000;
	/* FLUSH: the types in turn, every third at MR level. */
	if (wr.opcode == TBP_OP_FLUSH)
		wr.flags = (k & 2 ? TBP_WR_FLUSH_GLOBAL : TBP_WR_FLUSH_PERSISTENT) |
			   (k % 3 ? 0 : TBP_WR_FLUSH_MR);
	wr.rkey = wr.opcode == TBP_OP_SEND_WITH_INV ? 0x54 + (k & 1) : 0x55;
	wr.raddr = (k * 131) % 1000;
	wr.compare_add = k;
	wr.swap = ~(uint64_t)k;
	wr.imm = k;
	tbp_post(F[0].link, &wr);
}

static uint32_t checksum_of(const uint8_t *f, uint32_t len, bool payload)
{
	static const uint8_t zero[4];
	uint32_t crc = tbp_crc32c(0, f, 72);

	crc = tbp_crc32c(crc, zero, 4);
	crc = tbp_crc32c(crc, f + 76, 4);
	if (payload)
		crc = tbp_crc32c(crc, f + TBP_HDR_LEN, len - TBP_HDR_LEN);
	return crc;
}

/* Give an injected frame a valid trailer, as the peer would: a counter the peer never uses
 * (taken from its own sequence) and the tag under the peer's direction key. */
static void patch_mac(uint8_t *f, uint32_t len)
{
	uint64_t c = ++F[0].link->auth.tx_ctr, tag;
	int i;

	for (i = 0; i < 8; i++)
		f[len - TBP_MAC_TRAILER + i] = (uint8_t)(c >> (8 * i));
	tag = tbp_frame_tag(F[1].link->auth.rx_key, F[1].link->auth.rx_nh, f, len - 8);
	for (i = 0; i < 8; i++)
		f[len - 8 + i] = (uint8_t)(tag >> (8 * i));
}

/* Deliver frame[0, len) in three separately allocated pieces, the first cut at sel. */
static void rx_in_pieces(uint32_t rail, const uint8_t *frame, uint32_t len, uint32_t sel)
{
	uint32_t cut[4] = { 0, (sel * 29u) % (len + 1), 0, len }, i;
	struct tbp_rx_frag p[3];

	cut[2] = cut[1] + (len - cut[1]) / 2;
	for (i = 0; i < 3; i++) {
		uint8_t *b = malloc(cut[i + 1] - cut[i] + 1);

		if (!b)
			abort();
		memcpy(b, frame + cut[i], cut[i + 1] - cut[i]);
		p[i].data = b;
		p[i].len = cut[i + 1] - cut[i];
	}
	tbp_rx_frags(F[1].link, rail, p, 3);
	for (i = 0; i < 3; i++)
		free((void *)p[i].data);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t frame[TBP_MAX_FRAME + 16];
	uint32_t k = 0;

	setup();
	while (size >= 4) {
		uint8_t ctl = data[0], rail = data[1];
		uint32_t len = (uint32_t)data[2] | (uint32_t)data[3] << 8;

		data += 4;
		size -= 4;
		if (len > size)
			len = (uint32_t)size;
		if (len > TBP_MAX_FRAME + 16)
			len = TBP_MAX_FRAME + 16;
		memcpy(frame, data, len);
		data += len;
		size -= len;
		fnow += (uint64_t)(ctl >> 4) << 16;
		if (len >= TBP_HDR_LEN) {
			if (ctl & 1) {
				uint32_t s = F[1].link->session;

				frame[8] = (uint8_t)s;
				frame[9] = (uint8_t)(s >> 8);
				frame[10] = (uint8_t)(s >> 16);
				frame[11] = (uint8_t)(s >> 24);
			}
			if (ctl & 2) {
				bool mac = frame[5] > TBP_W_HELLO_CONFIRM &&
					   len >= TBP_HDR_LEN + TBP_MAC_TRAILER;
				uint32_t c, body = mac ? len - TBP_MAC_TRAILER : len;

				if (ctl & 4)
					frame[6] |= TBP_F_PCSUM;
				if (mac)
					frame[6] |= TBP_F_MAC;
				c = checksum_of(frame, body, (frame[6] & TBP_F_PCSUM) != 0);
				frame[72] = (uint8_t)c;
				frame[73] = (uint8_t)(c >> 8);
				frame[74] = (uint8_t)(c >> 16);
				frame[75] = (uint8_t)(c >> 24);
				if (mac)
					patch_mac(frame, len);
			}
		}
		if (rail >> 2)
			rx_in_pieces(rail % 3, frame, len, rail >> 2);
		else
			tbp_rx(F[1].link, rail % 3, frame, len);
		if (ctl & 8) {
			post_some(k++);
			pump(2);
		}
	}
	pump(3);
	tbp_link_teardown(F[0].link);
	tbp_link_teardown(F[1].link);
	return 0;
}

#ifdef TBP_FUZZ_SEEDGEN
/* A frame of the initiator as the responder expects it, played with a fresh checksum and
 * frame MAC (ctl bit 1) and the clock advanced (bit 4). */
static void seed_frame(struct tbp_hdr *h, const uint8_t *payload)
{
	uint8_t f[TBP_HDR_LEN + 128 + TBP_MAC_TRAILER];
	uint32_t len = TBP_HDR_LEN + h->payload_len + TBP_MAC_TRAILER;
	uint8_t rec[4] = { 0x1a, 0, (uint8_t)len, (uint8_t)(len >> 8) };

	h->magic = TBP_MAGIC;
	h->version = TBP_PROTO_VERSION;
	h->flags |= TBP_F_MAC;
	h->session = F[1].link->session;
	memset(f, 0, sizeof(f));
	memcpy(f + TBP_HDR_LEN, payload, h->payload_len);
	tbp_hdr_encode(f, h);
	fwrite(rec, 1, 4, seed_out);
	fwrite(f, 1, len, seed_out);
}

/* WRITEs that arrive past the responder's bitmap (it owes SACK ranges), then ACKs with
 * ranges: valid ones, one past what the responder sent, and a malformed one. */
static void seed_sack(void)
{
	static const struct tbp_sack_range ok[3] = { { 2, 3 }, { 7, 1 }, { 70, 4 } };
	static const uint8_t overlap[8] = { 2, 0, 3, 0, 4, 0, 1, 0 };
	uint8_t data[100], p[128];
	struct tbp_hdr h;
	uint32_t k;

	memset(data, 0x3c, sizeof(data));
	for (k = 0; k < 4; k++) {
		memset(&h, 0, sizeof(h));
		h.opcode = TBP_W_WRITE;
		h.flags = TBP_F_SEQ | TBP_F_LAST;
		h.seq = F[1].link->rcv_nxt + 70 + 3 * k;
		h.ack = F[1].link->snd_nxt;
		h.dst_qpn = 0x11;
		h.src_qpn = 0x10;
		h.msn = F[1].link->qps[0].rx_msn + 1 + k;
		h.rkey = 0x55;
		h.raddr = 128 * k;
		h.msg_len = h.payload_len = sizeof(data);
		seed_frame(&h, data);
	}
	memset(&h, 0, sizeof(h));
	h.opcode = TBP_W_ACK;
	h.ack = F[1].link->snd_una;
	h.payload_len = (uint16_t)tbp_sack_encode(p, ok, 2);
	seed_frame(&h, p);
	h.payload_len = (uint16_t)tbp_sack_encode(p, ok, 3);
	seed_frame(&h, p);
	h.payload_len = sizeof(overlap);
	seed_frame(&h, overlap);
}

int main(int argc, char **argv)
{
	char path[512];
	uint32_t n, k;

	if (argc != 2)
		return 2;
	for (n = 0; n < 8; n++) {
		snprintf(path, sizeof(path), "%s/seed%u", argv[1], n);
		seed_out = fopen(path, "wb");
		if (!seed_out)
			return 1;
		setup();
		for (k = 0; k < 3 + n * 2; k++)
			post_some(n * 10 + k);
		pump(6);
		if (n == 7)
			seed_sack();
		if (n == 6) {
			/* NAKs as the initiator would send them: RNR, not ready, QP error. */
			static const uint16_t codes[3] = { TBP_NAK_RNR, TBP_NAK_NOT_READY,
							   TBP_NAK_QP_ERROR };
			uint8_t f[TBP_HDR_LEN + TBP_MAC_TRAILER];

			for (k = 0; k < 3; k++) {
				struct tbp_hdr h;
				/* Played with a fresh checksum and frame MAC (ctl bit 1), as the peer
				 * would send them. */
				uint8_t rec[4] = { 0x1a, 0, sizeof(f), 0 };

				memset(&h, 0, sizeof(h));
				h.magic = TBP_MAGIC;
				h.version = TBP_PROTO_VERSION;
				h.opcode = TBP_W_NAK;
				h.flags = TBP_F_MAC;
				h.session = F[1].link->session;
				h.ack = F[1].link->snd_nxt;
				h.dst_qpn = 0x11;
				h.src_qpn = 0x10;
				h.msn = F[1].link->qps[0].send_msn - 1;
				h.status = codes[k];
				h.ssn = 1;
				h.imm = k == 0 ? 300 : 0;
				memset(f, 0, sizeof(f));
				tbp_hdr_encode(f, &h);
				fwrite(rec, 1, 4, seed_out);
				fwrite(f, 1, sizeof(f), seed_out);
			}
		}
		fclose(seed_out);
		seed_out = NULL;
		tbp_link_teardown(F[0].link);
		tbp_link_teardown(F[1].link);
	}
	return 0;
}
#endif
