/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * atomic.h - atomics between two links (pair.h): both directions, exactly-once execution
 * when requests are resent, the responder's verbs checks and the frame rules.
 * Included by unit.c after pair.h.
 */

static uint64_t mr_u64(int side, uint64_t off)
{
	uint64_t v;

	memcpy(&v, P[side].mr + off, 8);
	return v;
}

static uint64_t local_u64(int side, uint64_t off)
{
	uint64_t v;

	memcpy(&v, P[side].local + off, 8);
	return v;
}

static void set_mr_u64(int side, uint64_t off, uint64_t v)
{
	memcpy(P[side].mr + off, &v, 8);
}

static int post_atomic(int side, uint32_t op, uint64_t id, uint64_t local, uint32_t len,
		       uint32_t rkey, uint64_t raddr, uint64_t cmp_add, uint64_t swap)
{
	struct tbp_wr wr = { .opcode = op, .qpn = 10 + (uint32_t)side, .wr_id = id,
			     .local_buf = local, .len = len, .rkey = rkey, .raddr = raddr,
			     .compare_add = cmp_add, .swap = swap };

	return tbp_post(P[side].link, &wr);
}

static void test_atomic_both_ways(void)
{
	pair_up(2);
	set_mr_u64(1, 64, 100);
	set_mr_u64(0, 128, 0x1111222233334444ull);
	CHECK(post_atomic(0, TBP_OP_ATOMIC_FETCH_ADD, 1, 0, 8, 0x77, 64, 5, 0) == 0);
	CHECK(post_atomic(0, TBP_OP_ATOMIC_CMP_SWP, 2, 8, 8, 0x77, 64, 105, 7) == 0);
	CHECK(post_atomic(0, TBP_OP_ATOMIC_CMP_SWP, 3, 16, 8, 0x77, 64, 105, 9) == 0); /* no match */
	CHECK(post_atomic(1, TBP_OP_ATOMIC_FETCH_ADD, 4, 0, 8, 0x77, 128, ~0ull, 0) == 0);
	CHECK(post_atomic(1, TBP_OP_ATOMIC_CMP_SWP, 5, 8, 8, 0x77, 128,
			  0x1111222233334443ull, 42) == 0);
	pair_run(NULL, 1000, 100);
	CHECK(P[0].ndone == 3 && P[1].ndone == 2);
	CHECK(P[0].done_status[0] == TBP_OK && P[0].done_status[1] == TBP_OK &&
	      P[0].done_status[2] == TBP_OK);
	CHECK(P[1].done_status[0] == TBP_OK && P[1].done_status[1] == TBP_OK);
	CHECK(local_u64(0, 0) == 100 && local_u64(0, 8) == 105 && local_u64(0, 16) == 7);
	CHECK(mr_u64(1, 64) == 7);
	CHECK(local_u64(1, 0) == 0x1111222233334444ull &&
	      local_u64(1, 8) == 0x1111222233334443ull);
	CHECK(mr_u64(0, 128) == 42);
	/* Atomics do not consume receives and leave nothing behind. */
	CHECK(P[0].nrc == 0 && P[1].nrc == 0);
	CHECK(tbp_link_idle(P[0].link) && tbp_link_idle(P[1].link));
}

/* Drop the responder's atomic responses until the requester's ACK timer has resent its
 * requests a few times. */
static uint64_t drop_resp_until;

static int drop_atomic_resp(const struct pframe *f)
{
	struct tbp_hdr h;

	if (pnow < drop_resp_until &&
	    tbp_frame_decode(f->data, f->len, TBP_MAX_FRAME, &h) == 0 &&
	    h.opcode == TBP_W_ATOMIC_RESP)
		return DROP;
	return KEEP;
}

static void test_atomic_resend_executes_once(void)
{
	struct tbp_stats st0, st1;
	bool seen[32] = { false };
	uint32_t i, n = 20;

	pair_up(1);
	set_attr(0, 10, 8, 7, 7, 0); /* ~1 ms ACK timer: it fires while responses are lost */
	set_mr_u64(1, 0, 0);
	for (i = 0; i < n; i++)
		CHECK(post_atomic(0, TBP_OP_ATOMIC_FETCH_ADD, i, i * 8, 8, 0x77, 0, 1, 0) == 0);
	drop_resp_until = pnow + 20000000; /* 20 ms */
	pair_run(drop_atomic_resp, 100000, 2000);
	tbp_get_stats(P[0].link, &st0);
	tbp_get_stats(P[1].link, &st1);
	CHECK(st0.qp_rewinds >= 1);        /* the requests were sent again... */
	CHECK(st1.rx_stale >= 1);          /* ...and the responder saw them again */
	CHECK(P[1].atomics_run == n);      /* but ran each once */
	CHECK(mr_u64(1, 0) == n);
	CHECK(P[0].ndone == n);
	for (i = 0; i < n && i < P[0].ndone; i++) {
		uint64_t orig = local_u64(0, i * 8);

		CHECK(P[0].done_status[i] == TBP_OK && P[0].done_ids[i] == i);
		/* In order on one QP: the i-th add saw i. */
		CHECK(orig == i);
		if (orig < 32) {
			CHECK(!seen[orig]);
			seen[orig] = true;
		}
	}
	CHECK(tbp_link_idle(P[0].link) && tbp_link_idle(P[1].link));
}

/* Duplicated and reordered frames never run an atomic twice either (pair.h's dup_all). */
static void test_atomic_duplicate_frames(void)
{
	uint32_t i;

	pair_up(2);
	set_mr_u64(1, 8, 1000);
	for (i = 0; i < 10; i++)
		CHECK(post_atomic(0, TBP_OP_ATOMIC_FETCH_ADD, i, i * 8, 8, 0x77, 8, 3, 0) == 0);
	pair_deliver_from(0, NULL, true);
	pair_run(dup_all, 1000, 200);
	CHECK(P[1].atomics_run == 10 && mr_u64(1, 8) == 1030);
	CHECK(P[0].ndone == 10);
	for (i = 0; i < 10; i++)
		CHECK(local_u64(0, i * 8) == 1000 + 3 * i);
}

static void test_atomic_errors(void)
{
	struct tbp_wr bad_len = { .opcode = TBP_OP_ATOMIC_FETCH_ADD, .qpn = 10, .len = 16,
				  .rkey = 0x77 };

	pair_up(1);
	CHECK(tbp_post(P[0].link, &bad_len) == -EINVAL);
	bad_len.len = 4;
	CHECK(tbp_post(P[0].link, &bad_len) == -EINVAL);
	set_mr_u64(1, 16, 5);
	memcpy(P[0].local + 200, &(uint64_t){ 0xeeee }, 8);
	CHECK(post_atomic(0, TBP_OP_ATOMIC_FETCH_ADD, 1, 200, 8, 0x77, 12, 1, 0) == 0); /* misaligned */
	CHECK(post_atomic(0, TBP_OP_ATOMIC_FETCH_ADD, 2, 0, 8, 0x99, 16, 1, 0) == 0);   /* bad rkey */
	CHECK(post_atomic(0, TBP_OP_ATOMIC_CMP_SWP, 3, 0, 8, 0x77, P_MEM - 4, 0, 1) == 0); /* bounds */
	CHECK(post_atomic(0, TBP_OP_ATOMIC_FETCH_ADD, 4, 8, 8, 0x77, 16, 1, 0) == 0);  /* fine */
	pair_run(NULL, 1000, 100);
	CHECK(P[0].ndone == 4);
	CHECK(P[0].done_status[0] == TBP_ERR_REMOTE_INVALID);
	CHECK(P[0].done_status[1] == TBP_ERR_REMOTE_ACCESS);
	CHECK(P[0].done_status[2] == TBP_ERR_REMOTE_ACCESS);
	CHECK(P[0].done_status[3] == TBP_OK);
	CHECK(local_u64(0, 200) == 0xeeee); /* a failed atomic writes nothing locally */
	CHECK(local_u64(0, 8) == 5 && mr_u64(1, 16) == 6 && P[1].atomics_run == 1);
	/* An MR without remote atomic access: a remote access error, memory untouched. */
	P[1].deny_access = TBP_ACCESS_REMOTE_ATOMIC;
	CHECK(post_atomic(0, TBP_OP_ATOMIC_FETCH_ADD, 5, 0, 8, 0x77, 16, 1, 0) == 0);
	pair_run(NULL, 1000, 100);
	CHECK(P[0].ndone == 5 && P[0].done_status[4] == TBP_ERR_REMOTE_ACCESS);
	CHECK(mr_u64(1, 16) == 6 && P[1].atomics_run == 1);
}

static void m_atomic_req(struct tbp_hdr *h)
{
	h->opcode = TBP_W_ATOMIC_REQ;
	h->msg_len = TBP_ATOMIC_REQ_LEN;
	h->payload_len = TBP_ATOMIC_REQ_LEN;
	h->frag_off = 0;
	h->imm = TBP_OP_ATOMIC_CMP_SWP;
}
static void m_atomic_req_kind(struct tbp_hdr *h) { m_atomic_req(h); h->imm = TBP_OP_RDMA_READ; }
static void m_atomic_req_write(struct tbp_hdr *h) { m_atomic_req(h); h->imm = TBP_OP_ATOMIC_WRITE; }
static void m_atomic_req_flush(struct tbp_hdr *h) { m_atomic_req(h); h->imm = TBP_OP_FLUSH; }
static void m_atomic_req_kind11(struct tbp_hdr *h) { m_atomic_req(h); h->imm = TBP_OP_FLUSH + 1; }
static void m_atomic_req_kind_inv(struct tbp_hdr *h) { m_atomic_req(h); h->imm = TBP_OP_SEND_WITH_INV; }
static void m_atomic_req_len(struct tbp_hdr *h) { m_atomic_req(h); h->payload_len = 8; }
static void m_atomic_req_msg_len(struct tbp_hdr *h) { m_atomic_req(h); h->msg_len = 32; }
static void m_atomic_req_unseq(struct tbp_hdr *h) { m_atomic_req(h); h->flags = 0; }
static void m_atomic_resp(struct tbp_hdr *h)
{
	h->opcode = TBP_W_ATOMIC_RESP;
	h->msg_len = TBP_ATOMIC_LEN;
	h->payload_len = TBP_ATOMIC_LEN;
	h->frag_off = 0;
	h->imm = 0;
	h->rkey = 0;
	h->raddr = 0;
}
static void m_atomic_resp_imm(struct tbp_hdr *h) { m_atomic_resp(h); h->imm = 1; }
static void m_atomic_resp_len(struct tbp_hdr *h) { m_atomic_resp(h); h->payload_len = 16; }
static void m_atomic_resp_frag(struct tbp_hdr *h) { m_atomic_resp(h); h->frag_off = 8; }

static void test_codec_atomic_rules(void)
{
	CHECK(decode_mutated(m_atomic_req) == 0);
	CHECK(decode_mutated(m_atomic_req_kind) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_atomic_req_write) == 0);
	CHECK(decode_mutated(m_atomic_req_flush) == 0);
	CHECK(decode_mutated(m_atomic_req_kind11) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_atomic_req_kind_inv) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_atomic_req_len) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_atomic_req_msg_len) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_atomic_req_unseq) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_atomic_resp) == 0);
	CHECK(decode_mutated(m_atomic_resp_imm) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_atomic_resp_len) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_atomic_resp_frag) == TBP_DEC_FIELD);
}

/* ---- ATOMIC_WRITE and FLUSH (same request/response frames as the atomics) ---- */

static int post_flush(int side, uint64_t id, uint32_t rkey, uint64_t raddr, uint32_t len,
		      uint32_t flags)
{
	struct tbp_wr wr = { .opcode = TBP_OP_FLUSH, .qpn = 10 + (uint32_t)side, .wr_id = id,
			     .local_buf = 0, .len = len, .rkey = rkey, .raddr = raddr,
			     .flags = flags };

	return tbp_post(P[side].link, &wr);
}

/* Interleaved with FETCH_ADDs on the same word: each add must see exactly the value the
 * write before it stored, so a write run twice (a resent request executed again) or out of
 * order shows up, as does one that read its value from the local buffer. */
static void test_atomic_write_resend_once(void)
{
	struct tbp_stats st0, st1;
	uint32_t i, n = 10;

	pair_up(1);
	set_attr(0, 10, 8, 7, 7, 0); /* ~1 ms ACK timer: it fires while responses are lost */
	memset(P[0].local, 0xa5, 4096); /* the writes' local_buf: must stay untouched */
	for (i = 0; i < n; i++) {
		CHECK(post_atomic(0, TBP_OP_ATOMIC_WRITE, 2 * i, 0, 8, 0x77, 32,
				  0x0102030405060708ull * (i + 1), 0) == 0);
		CHECK(post_atomic(0, TBP_OP_ATOMIC_FETCH_ADD, 2 * i + 1, 4096 + i * 8, 8, 0x77, 32,
				  1, 0) == 0);
	}
	drop_resp_until = pnow + 20000000; /* 20 ms */
	pair_run(drop_atomic_resp, 100000, 2000);
	tbp_get_stats(P[0].link, &st0);
	tbp_get_stats(P[1].link, &st1);
	CHECK(st0.qp_rewinds >= 1 && st1.rx_stale >= 1); /* resent and seen again... */
	CHECK(P[1].atomic_writes == n && P[1].atomics_run == 2 * n); /* ...but run once */
	CHECK(P[0].ndone == 2 * n);
	for (i = 0; i < 2 * n && i < P[0].ndone; i++)
		CHECK(P[0].done_status[i] == TBP_OK && P[0].done_ids[i] == i);
	for (i = 0; i < n; i++)
		CHECK(local_u64(0, 4096 + i * 8) == 0x0102030405060708ull * (i + 1));
	CHECK(mr_u64(1, 32) == 0x0102030405060708ull * n + 1);
	/* Nothing was written to the requester's buffer (not even the glue's orig). */
	for (i = 0; i < 4096 && P[0].local[i] == 0xa5; i++)
		;
	CHECK(i == 4096);
	CHECK(P[1].last_access == TBP_ACCESS_REMOTE_ATOMIC); /* the last WR was the add */
	CHECK(tbp_link_idle(P[0].link) && tbp_link_idle(P[1].link));
}

/* The stored bytes are the operand's little-endian bytes, at raddr and nowhere else. */
static void test_atomic_write_bytes(void)
{
	static const uint8_t want[8] = { 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88 };

	pair_up(2);
	memset(P[1].mr, 0xcc, 64);
	memset(P[0].local, 0xa5, 16);
	CHECK(post_atomic(0, TBP_OP_ATOMIC_WRITE, 1, 0, 8, 0x77, 16, 0x8877665544332211ull,
			  0xdead) == 0); /* swap is not this operation's and must not travel */
	pair_run(NULL, 1000, 100);
	CHECK(P[0].ndone == 1 && P[0].done_status[0] == TBP_OK);
	CHECK(memcmp(P[1].mr + 16, want, 8) == 0);
	CHECK(P[1].mr[15] == 0xcc && P[1].mr[24] == 0xcc);
	CHECK(P[1].last_access == TBP_ACCESS_REMOTE_WRITE && P[1].last_len == 8);
	CHECK(local_u64(0, 0) == 0xa5a5a5a5a5a5a5a5ull && local_u64(0, 8) == 0xa5a5a5a5a5a5a5a5ull);
	CHECK(P[0].nrc == 0 && P[1].nrc == 0);
}

static void test_atomic_write_errors(void)
{
	struct tbp_wr bad = { .opcode = TBP_OP_ATOMIC_WRITE, .qpn = 10, .len = 16, .rkey = 0x77 };

	pair_up(1);
	CHECK(tbp_post(P[0].link, &bad) == -EINVAL);
	bad.len = 8;
	bad.flags = TBP_WR_FLUSH_GLOBAL; /* a FLUSH flag on another operation */
	CHECK(tbp_post(P[0].link, &bad) == -EINVAL);
	set_mr_u64(1, 40, 7);
	/* Atomic access is not what ATOMIC_WRITE needs: it succeeds without it... */
	P[1].deny_access = TBP_ACCESS_REMOTE_ATOMIC;
	CHECK(post_atomic(0, TBP_OP_ATOMIC_WRITE, 1, 0, 8, 0x77, 40, 9, 0) == 0);
	pair_run(NULL, 1000, 100);
	CHECK(P[0].ndone == 1 && P[0].done_status[0] == TBP_OK && mr_u64(1, 40) == 9);
	/* ...and fails without remote write access, memory untouched, nothing executed. */
	P[1].deny_access = TBP_ACCESS_REMOTE_WRITE;
	CHECK(post_atomic(0, TBP_OP_ATOMIC_WRITE, 2, 0, 8, 0x77, 40, 10, 0) == 0);
	pair_run(NULL, 1000, 100);
	CHECK(P[0].ndone == 2 && P[0].done_status[1] == TBP_ERR_REMOTE_ACCESS);
	CHECK(mr_u64(1, 40) == 9 && P[1].atomics_run == 1);
	/* A remote access error puts the requester's QP in error (IBA): a fresh pair. */
	pair_up(1);
	set_mr_u64(1, 40, 9);
	CHECK(post_atomic(0, TBP_OP_ATOMIC_WRITE, 3, 0, 8, 0x77, 44, 11, 0) == 0); /* misaligned */
	pair_run(NULL, 1000, 100);
	CHECK(P[0].ndone == 1 && P[0].done_status[0] == TBP_ERR_REMOTE_INVALID);
	CHECK(mr_u64(1, 40) == 9 && P[1].atomics_run == 0);
}

static void test_flush_checks(void)
{
	struct tbp_wr w = { .opcode = TBP_OP_FLUSH, .qpn = 10, .len = 64, .rkey = 0x77 };

	pair_up(1);
	/* No placement type (or only the level) is refused; FLUSH flags elsewhere too. */
	CHECK(tbp_post(P[0].link, &w) == -EINVAL);
	w.flags = TBP_WR_FLUSH_MR;
	CHECK(tbp_post(P[0].link, &w) == -EINVAL);
	w.flags = TBP_WR_FLUSH_GLOBAL | 0x100;
	CHECK(tbp_post(P[0].link, &w) == -EINVAL);
	w.opcode = TBP_OP_RDMA_WRITE;
	w.flags = TBP_WR_FLUSH_PERSISTENT;
	CHECK(tbp_post(P[0].link, &w) == -EINVAL);
	w.opcode = TBP_OP_FLUSH + 1;
	w.flags = 0;
	CHECK(tbp_post(P[0].link, &w) == -EINVAL);
	memset(P[1].mr, 0x3c, 4096);
	memset(P[0].local, 0xa5, 64);
	CHECK(post_flush(0, 1, 0x77, 64, 64, TBP_WR_FLUSH_GLOBAL) == 0);
	pair_run(NULL, 1000, 100);
	CHECK(P[0].ndone == 1 && P[0].done_status[0] == TBP_OK);
	CHECK(P[1].last_access == TBP_ACCESS_FLUSH_GLOBAL && P[1].last_len == 64);
	CHECK(post_flush(0, 2, 0x77, 64, 0, TBP_WR_FLUSH_PERSISTENT) == 0); /* empty range */
	pair_run(NULL, 1000, 100);
	CHECK(P[0].ndone == 2 && P[0].done_status[1] == TBP_OK);
	CHECK(P[1].last_access == TBP_ACCESS_FLUSH_PERSISTENT && P[1].last_len == 0);
	/* MR level: the whole MR, whatever the range says (4 GB here, past max_msg_len). */
	CHECK(post_flush(0, 3, 0x77, 64, 0xffffffffu,
			 TBP_WR_FLUSH_GLOBAL | TBP_WR_FLUSH_PERSISTENT | TBP_WR_FLUSH_MR) == 0);
	pair_run(NULL, 1000, 100);
	CHECK(P[0].ndone == 3 && P[0].done_status[2] == TBP_OK);
	CHECK(P[1].last_access == (TBP_ACCESS_FLUSH_GLOBAL | TBP_ACCESS_FLUSH_PERSISTENT) &&
	      P[1].last_len == 0);
	/* A FLUSH runs no atomic, moves no data, claims no receive. */
	CHECK(P[1].atomics_run == 0 && P[0].nrc == 0 && P[1].nrc == 0);
	CHECK(local_u64(0, 0) == 0xa5a5a5a5a5a5a5a5ull && mr_u64(1, 64) == 0x3c3c3c3c3c3c3c3cull);
	CHECK(tbp_link_idle(P[0].link) && tbp_link_idle(P[1].link));
}

/* A range past the MR is refused, so the length really travels (12 MB > the 256 KB MR). */
static void test_flush_range_checked(void)
{
	pair_up(1);
	CHECK(post_flush(0, 1, 0x77, 0, 12u << 20, TBP_WR_FLUSH_GLOBAL) == 0);
	pair_run(NULL, 1000, 100);
	CHECK(P[0].ndone == 1 && P[0].done_status[0] == TBP_ERR_REMOTE_ACCESS);
	CHECK(P[1].last_len == 12u << 20);
	pair_up(1);
	CHECK(post_flush(0, 1, 0x99, 0, 8, TBP_WR_FLUSH_GLOBAL) == 0); /* unknown key */
	pair_run(NULL, 1000, 100);
	CHECK(P[0].ndone == 1 && P[0].done_status[0] == TBP_ERR_REMOTE_ACCESS);
}

/* The MR allows GLOBAL only: PERSISTENT (alone or with GLOBAL) is a remote access error. */
static void test_flush_type_denied(void)
{
	uint32_t i;

	for (i = 0; i < 2; i++) {
		pair_up(1);
		P[1].deny_access = TBP_ACCESS_FLUSH_PERSISTENT;
		CHECK(post_flush(0, 1, 0x77, 0, 64, TBP_WR_FLUSH_GLOBAL) == 0);
		CHECK(post_flush(0, 2, 0x77, 0, 64, TBP_WR_FLUSH_PERSISTENT |
				 (i ? TBP_WR_FLUSH_GLOBAL | TBP_WR_FLUSH_MR : 0)) == 0);
		pair_run(NULL, 1000, 100);
		CHECK(P[0].ndone == 2 && P[0].done_status[0] == TBP_OK);
		CHECK(P[0].done_status[1] == TBP_ERR_REMOTE_ACCESS);
	}
}

/* A FLUSH is answered only after the RDMA WRITE posted before it was placed in full, even
 * when the FLUSH request overtakes a lost fragment of the WRITE. */
static bool flush_req_early, flush_resp_early, flush_resp_seen, flush_dropped;

static bool flush_write_placed(void)
{
	return memcmp(P[1].mr + 1000, P[0].local, 40000) == 0;
}

static int flush_order_policy(const struct pframe *f)
{
	struct tbp_hdr h;

	if (tbp_frame_decode(f->data, f->len, TBP_MAX_FRAME, &h) != 0)
		return KEEP;
	/* Lose the WRITE's second fragment once: the link resends it later. */
	if (h.opcode == TBP_W_WRITE && h.frag_off && !flush_dropped) {
		flush_dropped = true;
		return DROP;
	}
	if (h.opcode == TBP_W_ATOMIC_REQ && h.imm == TBP_OP_FLUSH && !flush_write_placed())
		flush_req_early = true;
	if (h.opcode == TBP_W_ATOMIC_RESP) {
		flush_resp_seen = true;
		if (!flush_write_placed())
			flush_resp_early = true;
	}
	return KEEP;
}

static void test_flush_after_write(void)
{
	pair_up(1);
	flush_req_early = flush_resp_early = flush_resp_seen = flush_dropped = false;
	fill(P[0].local, 40000, 9);
	post(0, TBP_OP_RDMA_WRITE, 1, 0, 40000, 0x77, 1000, 0);
	CHECK(post_flush(0, 2, 0x77, 1000, 40000, TBP_WR_FLUSH_GLOBAL) == 0);
	pair_run(flush_order_policy, 100000, 2000);
	CHECK(flush_dropped && flush_req_early); /* the FLUSH did arrive before the data... */
	CHECK(flush_resp_seen && !flush_resp_early); /* ...and was answered after it */
	CHECK(P[0].ndone == 2 && P[0].done_status[0] == TBP_OK && P[0].done_status[1] == TBP_OK);
	CHECK(P[0].done_ids[0] == 1 && P[0].done_ids[1] == 2);
	CHECK(flush_write_placed());
}

#define ATOMIC_TESTS                                                                       \
	{ "atomic_both_ways", test_atomic_both_ways },                                     \
	{ "atomic_resend_executes_once", test_atomic_resend_executes_once },               \
	{ "atomic_duplicate_frames", test_atomic_duplicate_frames },                       \
	{ "atomic_errors", test_atomic_errors },                                           \
	{ "codec_atomic_rules", test_codec_atomic_rules },                                 \
	{ "atomic_write_resend_once", test_atomic_write_resend_once },                     \
	{ "atomic_write_bytes", test_atomic_write_bytes },                                 \
	{ "atomic_write_errors", test_atomic_write_errors },                               \
	{ "flush_checks", test_flush_checks },                                             \
	{ "flush_range_checked", test_flush_range_checked },                               \
	{ "flush_type_denied", test_flush_type_denied },                                   \
	{ "flush_after_write", test_flush_after_write },
