// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * tbp_atomic.c - 8-byte atomics (IBA 9.4.5): COMPARE_SWAP and FETCH_ADD, and the two
 * operations that share their request/response machinery: ATOMIC WRITE (8 bytes stored by
 * one aligned store, nothing returned) and FLUSH (a placement barrier, nothing returned).
 *
 * The requester sends one ATOMIC_REQ frame (operands in the payload, the kind in imm); the
 * responder checks it when it arrives and executes it when it is next in the QP's message
 * order, exactly like a READ, then sends one ATOMIC_RESP frame with the original value.
 *
 * Exactly once: the responder executes a message only when it moves rx_msn past it, and a
 * resent request (ACK timer, RNR or re-cut rewind of the requester) with an MSN below rx_msn
 * is dropped as stale. The original value is saved in the response message itself, which
 * the link retransmits until the requester's side acknowledges the frame, so the requester
 * always gets the value the single execution produced. That response slot is the
 * responder resource rxe keeps per QP (rxe_resp.c: its responses can be lost on the wire,
 * ours cannot while the link lives; if it dies every WR fails anyway).
 *
 * FLUSH needs no callback to execute: it is answered when it is next in the QP's message
 * order, i.e. once every earlier message of the QP was placed, and this transport has no
 * persistent memory domain beyond that (the host's memory is the global visibility point).
 */
#include "tbp_internal.h"

void tbp_atomic_put(uint8_t *p, const uint64_t *v, uint32_t n)
{
	uint32_t i, b;

	for (i = 0; i < n; i++)
		for (b = 0; b < 8; b++)
			p[i * 8 + b] = (uint8_t)(v[i] >> (8 * b));
}

void tbp_atomic_get(const uint8_t *p, uint64_t *v, uint32_t n)
{
	uint32_t i, b;

	for (i = 0; i < n; i++) {
		v[i] = 0;
		for (b = 0; b < 8; b++)
			v[i] |= (uint64_t)p[i * 8 + b] << (8 * b);
	}
}

/* A nonzero env callback result as a status the MSG_ACK can carry. */
static uint16_t env_status(int rc, uint16_t fallback)
{
	return rc > 0 && rc <= (int)TBP_STATUS_MAX ? (uint16_t)rc : fallback;
}

/* Kinds that return the original value into the requester's local buffer. */
static bool returns_value(uint32_t kind)
{
	return kind == TBP_OP_ATOMIC_CMP_SWP || kind == TBP_OP_ATOMIC_FETCH_ADD;
}

#define FLUSH_TYPES (TBP_WR_FLUSH_GLOBAL | TBP_WR_FLUSH_PERSISTENT)
#define FLUSH_FLAGS (FLUSH_TYPES | TBP_WR_FLUSH_MR)

bool tbp_atomic_wr_valid(const struct tbp_wr *wr)
{
	uint32_t allowed = TBP_WR_SOLICITED; /* accepted and ignored, as for every non-SEND */

	if (wr->opcode == TBP_OP_FLUSH) {
		/* No data travels, so the range is not bounded by max_msg_len; a FLUSH that asks
		 * for no placement type would place nothing anywhere: refused (glue contract). */
		return !(wr->flags & ~(allowed | FLUSH_FLAGS)) && (wr->flags & FLUSH_TYPES);
	}
	/* Every other kind moves exactly 8 bytes: the original value or the value stored. */
	return !(wr->flags & ~allowed) && wr->len == TBP_ATOMIC_LEN;
}

void tbp_atomic_prepare(struct tbp_smsg *m, const struct tbp_wr *wr)
{
	/* On the wire the request carries two operands; the kind travels in imm. */
	m->len = TBP_ATOMIC_REQ_LEN;
	m->imm = wr->opcode;
	switch (wr->opcode) {
	case TBP_OP_ATOMIC_WRITE:
		m->atomic[0] = wr->compare_add;
		m->atomic[1] = 0;
		break;
	case TBP_OP_FLUSH:
		m->atomic[0] = wr->len;
		m->atomic[1] = wr->flags & FLUSH_FLAGS;
		break;
	default:
		m->atomic[0] = wr->compare_add;
		m->atomic[1] = wr->swap;
		break;
	}
}

/* 8 bytes at raddr: rxe's order, the rkey and its rights first (remote access error), then
 * alignment (rxe_mr_do_atomic_op / rxe_mr_do_atomic_write: misaligned is an invalid
 * request). */
static uint16_t check_8_bytes(struct tbp_link *l, const struct tbp_qp *qp,
			      const struct tbp_rmsg *r, uint32_t access)
{
	int rc;

	/* The glue executes both kinds through env.atomic: without it none can run. */
	if (!l->env.atomic)
		return TBP_ERR_REMOTE_INVALID;
	rc = l->env.mr_check(l->env.ctx, qp->qpn, r->rkey, r->raddr, TBP_ATOMIC_LEN, access);
	if (rc)
		return env_status(rc, TBP_ERR_REMOTE_INVALID);
	if (r->raddr & (TBP_ATOMIC_LEN - 1))
		return TBP_ERR_REMOTE_INVALID;
	return TBP_OK;
}

/* FLUSH: operand 0 is the range length, operand 1 the TBP_WR_FLUSH_* flags. */
static uint16_t check_flush(struct tbp_link *l, const struct tbp_qp *qp, const struct tbp_rmsg *r)
{
	uint64_t flags = r->atomic[1];
	uint32_t access = 0;
	int rc;

	/* A peer's request our own tbp_post would have refused: an invalid request. */
	if ((flags & ~(uint64_t)FLUSH_FLAGS) || !(flags & FLUSH_TYPES))
		return TBP_ERR_REMOTE_INVALID;
	if (flags & TBP_WR_FLUSH_GLOBAL)
		access |= TBP_ACCESS_FLUSH_GLOBAL;
	if (flags & TBP_WR_FLUSH_PERSISTENT)
		access |= TBP_ACCESS_FLUSH_PERSISTENT;
	/* MR level (rxe: IB_FLUSH_MR skips the range check): only the key and its rights. */
	rc = l->env.mr_check(l->env.ctx, qp->qpn, r->rkey, r->raddr,
			     (flags & TBP_WR_FLUSH_MR) ? 0 : r->atomic[0], access);
	return rc ? env_status(rc, TBP_ERR_REMOTE_INVALID) : TBP_OK;
}

static uint16_t atomic_check(struct tbp_link *l, const struct tbp_qp *qp, const struct tbp_rmsg *r)
{
	switch (r->imm) {
	case TBP_OP_FLUSH:
		return check_flush(l, qp, r);
	case TBP_OP_ATOMIC_WRITE:
		/* An RDMA WRITE of 8 bytes as far as rights go (rxe checks IB_ACCESS_REMOTE_WRITE). */
		return check_8_bytes(l, qp, r, TBP_ACCESS_REMOTE_WRITE);
	default:
		return check_8_bytes(l, qp, r, TBP_ACCESS_REMOTE_ATOMIC);
	}
}

void tbp_atomic_rx_req(struct tbp_link *l, const struct tbp_qp *qp, struct tbp_rmsg *r,
		       const uint8_t *payload)
{
	/* The checks need the operands (FLUSH: its range and type), so they run here, on the
	 * request's only frame; execution waits for the QP's message order (complete_in_order). */
	tbp_atomic_get(payload, r->atomic, 2);
	r->status = atomic_check(l, qp, r);
	r->got = r->len;
	r->state = RM_COMPLETE;
}

/* Run r through the glue once; FLUSH has nothing to run (see the top of the file). */
static int atomic_execute(struct tbp_link *l, const struct tbp_rmsg *r, uint64_t *orig)
{
	struct tbp_buf buf = { .kind = TBP_BUF_MR, .rkey = r->rkey, .addr = r->raddr };

	*orig = 0;
	switch (r->imm) {
	case TBP_OP_FLUSH:
		return 0;
	case TBP_OP_ATOMIC_WRITE: {
		uint64_t ignored = 0;

		/* Nothing goes back: the response carries 0 whatever the glue left in orig. */
		return l->env.atomic(l->env.ctx, &buf, TBP_OP_ATOMIC_WRITE, r->atomic[0], 0,
				     &ignored);
	}
	default:
		return l->env.atomic(l->env.ctx, &buf, r->imm, r->atomic[0], r->atomic[1], orig);
	}
}

bool tbp_atomic_respond(struct tbp_link *l, struct tbp_qp *qp, struct tbp_rmsg *r)
{
	struct tbp_smsg *m = tbp_smsg_alloc(l);
	uint64_t orig = 0;
	int rc;

	/* The slot first: an atomic that ran must always have somewhere to put its result. */
	if (!m)
		return false;
	rc = atomic_execute(l, r, &orig);
	if (rc) {
		/* The memory went away between the check and now (deregistered): an error
		 * MSG_ACK instead of a response, as for any failed request. */
		tbp_smsg_free(l, m);
		r->status = env_status(rc, TBP_ERR_REMOTE_OP);
		return true;
	}
	m->op = TBP_W_ATOMIC_RESP;
	m->qp = tbp_qp_index(l, qp);
	m->msn = r->msn;
	m->len = TBP_ATOMIC_LEN;
	m->atomic[0] = orig;
	m->done = 1;
	tbp_sendq_append(l, m);
	return true;
}

void tbp_atomic_rx_resp(struct tbp_link *l, struct tbp_qp *qp, const struct tbp_hdr *h,
			const uint8_t *payload)
{
	struct tbp_smsg *m = tbp_find_posted(l, qp, h->msn);
	struct tbp_buf buf = { .kind = TBP_BUF_LOCAL, .rkey = 0, .addr = 0 };
	uint64_t orig;

	/* Only one response per atomic is ever executed; anything else is not ours. */
	if (!m || m->op != TBP_W_ATOMIC_REQ || m->done) {
		l->st.drop_bad_msg++;
		return;
	}
	qp->progress_ns = l->now;
	qp->retries_left = qp->retry_cnt;
	qp->timer_retries = 0;
	qp->rnr_left = qp->rnr_retry;
	tbp_atomic_get(payload, &orig, 1);
	buf.addr = m->local_buf;
	/* The wire is little-endian; the consumer reads a host-order u64 (IBA 9.4.5).
	 * ATOMIC_WRITE and FLUSH return nothing: their local buffer is not the WR's. */
	if (returns_value(m->imm) &&
	    l->env.buf_write(l->env.ctx, &buf, 0, &orig, TBP_ATOMIC_LEN) && m->status == TBP_OK)
		m->status = TBP_ERR_LOCAL_PROTECTION;
	m->read_seen = 1;
	m->done = 1;
	tbp_sender_complete(l, qp);
}
