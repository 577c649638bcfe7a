// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * tbp_atomic.c - 8-byte atomics (IBA 9.4.5): COMPARE_SWAP and FETCH_ADD.
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

uint16_t tbp_atomic_check(struct tbp_link *l, const struct tbp_qp *qp, const struct tbp_hdr *h)
{
	int rc;

	if (!l->env.atomic)
		return TBP_ERR_REMOTE_INVALID;
	/* rxe order: the rkey and its rights first (remote access error), then alignment
	 * (rxe_mr_do_atomic_op: misaligned is an invalid request). */
	rc = l->env.mr_check(l->env.ctx, qp->qpn, h->rkey, h->raddr, TBP_ATOMIC_LEN,
			     TBP_ACCESS_REMOTE_ATOMIC);
	if (rc)
		return rc > 0 && rc <= (int)TBP_STATUS_MAX ? (uint16_t)rc : TBP_ERR_REMOTE_INVALID;
	if (h->raddr & (TBP_ATOMIC_LEN - 1))
		return TBP_ERR_REMOTE_INVALID;
	return TBP_OK;
}

bool tbp_atomic_respond(struct tbp_link *l, struct tbp_qp *qp, struct tbp_rmsg *r)
{
	struct tbp_buf buf = { .kind = TBP_BUF_MR, .rkey = r->rkey, .addr = r->raddr };
	struct tbp_smsg *m = tbp_smsg_alloc(l);
	uint64_t orig = 0;
	int rc;

	/* The slot first: an atomic that ran must always have somewhere to put its result. */
	if (!m)
		return false;
	rc = l->env.atomic(l->env.ctx, &buf, r->imm, r->atomic[0], r->atomic[1], &orig);
	if (rc) {
		/* The memory went away between the check and now (deregistered): an error
		 * MSG_ACK instead of a response, as for any failed request. */
		tbp_smsg_free(l, m);
		r->status = rc > 0 && rc <= (int)TBP_STATUS_MAX ? (uint16_t)rc :
			    TBP_ERR_REMOTE_OP;
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
	/* The wire is little-endian; the consumer reads a host-order u64 (IBA 9.4.5). */
	if (l->env.buf_write(l->env.ctx, &buf, 0, &orig, TBP_ATOMIC_LEN) && m->status == TBP_OK)
		m->status = TBP_ERR_LOCAL_PROTECTION;
	m->read_seen = 1;
	m->done = 1;
	tbp_sender_complete(l, qp);
}
