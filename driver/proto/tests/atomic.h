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
	CHECK(decode_mutated(m_atomic_req_len) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_atomic_req_msg_len) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_atomic_req_unseq) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_atomic_resp) == 0);
	CHECK(decode_mutated(m_atomic_resp_imm) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_atomic_resp_len) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_atomic_resp_frag) == TBP_DEC_FIELD);
}

#define ATOMIC_TESTS                                                                       \
	{ "atomic_both_ways", test_atomic_both_ways },                                     \
	{ "atomic_resend_executes_once", test_atomic_resend_executes_once },               \
	{ "atomic_duplicate_frames", test_atomic_duplicate_frames },                       \
	{ "atomic_errors", test_atomic_errors },                                           \
	{ "codec_atomic_rules", test_codec_atomic_rules },
