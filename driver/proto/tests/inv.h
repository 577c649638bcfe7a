/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * inv.h - SEND_WITH_INV (protocol version 4) between two links (pair.h): the key reaches the
 * receiver's env.invalidate exactly once, in message order, before the receive is reported;
 * a refused key fails the receive and the sender's WR; the frame rules. Included by unit.c
 * after pair.h.
 */

static int post_inv(int side, uint64_t id, uint64_t local, uint32_t len, uint32_t rkey,
		    uint32_t flags)
{
	/* imm and raddr are set on purpose: a SEND_WITH_INV frame must not carry them. */
	struct tbp_wr wr = { .opcode = TBP_OP_SEND_WITH_INV, .qpn = 10 + (uint32_t)side,
			     .wr_id = id, .local_buf = local, .len = len, .rkey = rkey,
			     .imm = 0x55, .raddr = 0x1000, .flags = flags };

	return tbp_post(P[side].link, &wr);
}

static void test_send_inv(void)
{
	pair_up(2);
	fill(P[0].local, 20000, 7);
	P[1].recvs_posted = 3;
	CHECK(post_inv(0, 1, 0, 20000, 0x1a5, TBP_WR_SOLICITED) == 0);
	CHECK(post_inv(0, 2, 0, 0, 0x100, 0) == 0);            /* empty message, still invalidates */
	post(0, TBP_OP_SEND, 3, 0, 100, 0x1ff, 0, 0);          /* a plain SEND invalidates nothing */
	pair_run(NULL, 1000, 50);
	CHECK(P[0].ndone == 3);
	CHECK(P[0].done_status[0] == TBP_OK && P[0].done_status[1] == TBP_OK &&
	      P[0].done_status[2] == TBP_OK);
	CHECK(P[1].invalidations == 2 && P[1].inv_rkeys[0] == 0x1a5 && P[1].inv_rkeys[1] == 0x100);
	CHECK(P[1].nrc == 3);
	CHECK(P[1].rc[0].opcode == TBP_OP_SEND_WITH_INV && P[1].rc[0].invalidate_rkey == 0x1a5 &&
	      P[1].rc[0].status == TBP_OK && P[1].rc[0].len == 20000 && !P[1].rc[0].has_imm &&
	      P[1].rc[0].solicited);
	CHECK(P[1].rc[1].opcode == TBP_OP_SEND_WITH_INV && P[1].rc[1].invalidate_rkey == 0x100 &&
	      P[1].rc[1].len == 0 && !P[1].rc[1].solicited);
	CHECK(P[1].rc[2].opcode == TBP_OP_SEND && P[1].rc[2].invalidate_rkey == 0);
	CHECK(memcmp(P[1].recvbuf[0], P[0].local, 20000) == 0);
	CHECK(P[0].invalidations == 0);
	CHECK(tbp_link_idle(P[0].link) && tbp_link_idle(P[1].link));
}

/* A key the receiver cannot invalidate: both sides see the invalid-request error (rxe's
 * REM_INV_REQ_ERR). As for every remote error, taking the QPs to the error state is the
 * glue's part; the core reports each message on its own. */
static void test_send_inv_refused(void)
{
	pair_up(1);
	P[1].recvs_posted = 2;
	CHECK(post_inv(0, 1, 0, 64, 0x77, 0) == 0);
	post(0, TBP_OP_SEND, 2, 0, 64, 0, 0, 0);
	pair_run(NULL, 1000, 100);
	CHECK(P[1].invalidations == 1 && P[1].inv_rkeys[0] == 0x77);
	CHECK(P[1].nrc == 2 && P[1].rc[0].opcode == TBP_OP_SEND_WITH_INV &&
	      P[1].rc[0].status == TBP_ERR_REMOTE_INVALID && P[1].rc[0].invalidate_rkey == 0x77);
	CHECK(P[1].rc[1].opcode == TBP_OP_SEND && P[1].rc[1].status == TBP_OK);
	CHECK(P[0].ndone == 2 && P[0].done_status[0] == TBP_ERR_REMOTE_INVALID &&
	      P[0].done_status[1] == TBP_OK);
}

/* A receiver without env.invalidate refuses every SEND_WITH_INV. */
static void test_send_inv_no_callback(void)
{
	p_no_invalidate = true;
	pair_up(1);
	p_no_invalidate = false;
	P[1].recvs_posted = 1;
	CHECK(post_inv(0, 1, 0, 64, 0x100, 0) == 0);
	pair_run(NULL, 1000, 100);
	CHECK(P[1].invalidations == 0);
	CHECK(P[1].nrc == 1 && P[1].rc[0].status == TBP_ERR_REMOTE_INVALID);
	CHECK(P[0].ndone == 1 && P[0].done_status[0] == TBP_ERR_REMOTE_INVALID);
}

static uint64_t drop_msg_ack_until;

static int drop_msg_acks(const struct pframe *f)
{
	struct tbp_hdr h;

	if (pnow < drop_msg_ack_until &&
	    tbp_frame_decode(f->data, f->len, TBP_MAX_FRAME, &h) == 0 &&
	    h.opcode == TBP_W_MSG_ACK)
		return DROP;
	return KEEP;
}

/* Resent messages (the sender's ACK timer fired) and duplicated frames never invalidate
 * twice: the key is handed over when the message is first complete in order. */
static void test_send_inv_exactly_once(void)
{
	struct tbp_stats st0;
	uint32_t i, n = 12;

	pair_up(1);
	set_attr(0, 10, 8, 7, 7, 0); /* ~1 ms ACK timer: it fires while MSG_ACKs are lost */
	P[1].recvs_posted = n;
	P[1].recv_cap = 64;
	for (i = 0; i < n; i++)
		CHECK(post_inv(0, i, 0, 64, 0x100 + i, 0) == 0);
	drop_msg_ack_until = pnow + 20000000; /* 20 ms */
	pair_run(drop_msg_acks, 100000, 2000);
	tbp_get_stats(P[0].link, &st0);
	CHECK(st0.qp_rewinds >= 1);
	CHECK(P[1].invalidations == n && P[1].nrc == n);
	for (i = 0; i < n && i < 16; i++)
		CHECK(P[1].inv_rkeys[i] == 0x100 + i && P[1].rc[i].invalidate_rkey == 0x100 + i);
	CHECK(P[0].ndone == n);
	for (i = 0; i < n && i < 64; i++)
		CHECK(P[0].done_status[i] == TBP_OK && P[0].done_ids[i] == i);

	/* The same with every frame duplicated. */
	pair_up(2);
	P[1].recvs_posted = 4;
	for (i = 0; i < 4; i++)
		CHECK(post_inv(0, i, 0, 9000, 0x1f0 + i, 0) == 0);
	pair_run(dup_all, 1000, 100);
	CHECK(P[1].invalidations == 4 && P[1].nrc == 4 && P[0].ndone == 4);
	CHECK(tbp_link_idle(P[0].link) && tbp_link_idle(P[1].link));
}

static void m_send_inv(struct tbp_hdr *h)
{
	h->opcode = TBP_W_SEND_INV;
	h->imm = 0;
	h->raddr = 0;
}
static void m_send_inv_imm(struct tbp_hdr *h)
{
	m_send_inv(h);
	h->imm = 1;
}
static void m_send_inv_raddr(struct tbp_hdr *h)
{
	m_send_inv(h);
	h->raddr = 8;
}
static void m_send_inv_solicited(struct tbp_hdr *h)
{
	m_send_inv(h);
	h->flags |= TBP_F_SOLICITED;
}
static void m_send_inv_unseq(struct tbp_hdr *h)
{
	m_send_inv(h);
	h->flags &= (uint8_t)~TBP_F_SEQ;
}
static void m_send_inv_v3(struct tbp_hdr *h)
{
	m_send_inv(h);
	h->version = 3;
}

static void test_codec_send_inv_rules(void)
{
	CHECK(decode_mutated(m_send_inv) == 0);
	CHECK(decode_mutated(m_send_inv_solicited) == 0);
	CHECK(decode_mutated(m_send_inv_imm) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_send_inv_raddr) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_send_inv_unseq) == TBP_DEC_FIELD);
	/* A version 3 peer's frames are not ours (the handshake refuses it first). */
	CHECK(decode_mutated(m_send_inv_v3) == TBP_DEC_MAGIC);
	CHECK(TBP_PROTO_VERSION >= 4);
}

#define INV_TESTS                                                                          \
	{ "send_inv", test_send_inv },                                                     \
	{ "send_inv_refused", test_send_inv_refused },                                     \
	{ "send_inv_no_callback", test_send_inv_no_callback },                             \
	{ "send_inv_exactly_once", test_send_inv_exactly_once },                           \
	{ "codec_send_inv_rules", test_codec_send_inv_rules },
