// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * tbp_msg.c - message layer: posting, segmentation, placement by offset,
 * per-QP in-order completion, READ, immediates, MSG_ACK and receiver-not-ready
 * (atomics are in tbp_atomic.c).
 */
#include "tbp_internal.h"

static bool consumes_recv(uint8_t op)
{
	return op == TBP_W_SEND || op == TBP_W_SEND_IMM || op == TBP_W_WRITE_IMM ||
	       op == TBP_W_SEND_INV;
}

static bool has_imm(uint8_t op)
{
	return op == TBP_W_SEND_IMM || op == TBP_W_WRITE_IMM;
}

static bool is_write(uint8_t op)
{
	return op == TBP_W_WRITE || op == TBP_W_WRITE_IMM;
}

/* Frames a responder answers: they start or continue a message of the peer's QP. */
static bool is_request(uint8_t op)
{
	return consumes_recv(op) || op == TBP_W_WRITE || op == TBP_W_READ_REQ ||
	       op == TBP_W_ATOMIC_REQ;
}

void tbp_msg_init(struct tbp_link *l)
{
	uint32_t i;

	for (i = 0; i < l->cfg.max_msgs; i++)
		l->smsgs[i].next = (uint16_t)(i + 1 < l->cfg.max_msgs ? i + 1 : TBP_NONE);
	l->smsg_free = 0;
	l->rmsg_slots = l->cfg.max_rx_msgs + l->cfg.max_qps;
	for (i = 0; i < l->rmsg_slots; i++)
		l->rmsgs[i].hnext = (uint16_t)(i + 1 < l->rmsg_slots ? i + 1 : TBP_NONE);
	l->rmsg_free = 0;
	for (i = 0; i <= l->rbucket_mask; i++)
		l->rbuckets[i] = TBP_NONE;
	for (i = 0; i <= l->qbucket_mask; i++)
		l->qbuckets[i] = TBP_NONE;
}

/* ---- send message slots ---- */

struct tbp_smsg *tbp_smsg_alloc(struct tbp_link *l)
{
	struct tbp_smsg *m;

	if (l->smsg_free == TBP_NONE)
		return NULL;
	m = &l->smsgs[l->smsg_free];
	l->smsg_free = m->next;
	memset(m, 0, sizeof(*m));
	m->state = SM_ACTIVE;
	m->next = TBP_NONE;
	m->sendq_next = TBP_NONE;
	l->smsgs_used++;
	return m;
}

void tbp_smsg_free(struct tbp_link *l, struct tbp_smsg *m)
{
	m->state = SM_FREE;
	m->next = l->smsg_free;
	l->smsg_free = (uint16_t)(m - l->smsgs);
	l->smsgs_used--;
	tbp_msg_retry_stalled(l);
}

void tbp_sendq_append(struct tbp_link *l, struct tbp_smsg *m)
{
	uint16_t idx = (uint16_t)(m - l->smsgs);

	m->sendq_next = TBP_NONE;
	if (l->sendq_tail == TBP_NONE)
		l->sendq_head = idx;
	else
		l->smsgs[l->sendq_tail].sendq_next = idx;
	l->sendq_tail = idx;
}

void tbp_sendq_drop(struct tbp_link *l, bool (*drop)(const struct tbp_smsg *m, uint16_t qi),
		    uint16_t qi)
{
	uint16_t prev = TBP_NONE, j = l->sendq_head;

	while (j != TBP_NONE) {
		uint16_t next = l->smsgs[j].sendq_next;

		if (drop(&l->smsgs[j], qi)) {
			if (prev == TBP_NONE)
				l->sendq_head = next;
			else
				l->smsgs[prev].sendq_next = next;
			if (l->sendq_tail == j)
				l->sendq_tail = prev;
		} else {
			prev = j;
		}
		j = next;
	}
}

static const uint8_t wire_op_of[] = {
	[TBP_OP_SEND] = TBP_W_SEND,
	[TBP_OP_SEND_WITH_IMM] = TBP_W_SEND_IMM,
	[TBP_OP_RDMA_WRITE] = TBP_W_WRITE,
	[TBP_OP_RDMA_WRITE_WITH_IMM] = TBP_W_WRITE_IMM,
	[TBP_OP_RDMA_READ] = TBP_W_READ_REQ,
	[TBP_OP_ATOMIC_CMP_SWP] = TBP_W_ATOMIC_REQ,
	[TBP_OP_ATOMIC_FETCH_ADD] = TBP_W_ATOMIC_REQ,
	[TBP_OP_SEND_WITH_INV] = TBP_W_SEND_INV,
	[TBP_OP_ATOMIC_WRITE] = TBP_W_ATOMIC_REQ,
	[TBP_OP_FLUSH] = TBP_W_ATOMIC_REQ,
};

static uint32_t read_resp_reserve(const struct tbp_link *l)
{
	return l->cfg.max_msgs / 4 ? l->cfg.max_msgs / 4 : 1;
}

int tbp_post(struct tbp_link *l, const struct tbp_wr *wr)
{
	struct tbp_qp *qp;
	struct tbp_smsg *m;
	uint16_t idx;

	if (l->state == TBP_LINK_FAILED)
		return -ENOTCONN;
	if (wr->opcode < TBP_OP_SEND || wr->opcode > TBP_OP_FLUSH)
		return -EINVAL;
	/* Atomics, ATOMIC_WRITE and FLUSH: one 16-byte request whatever wr->len says. */
	if (wire_op_of[wr->opcode] == TBP_W_ATOMIC_REQ ? !tbp_atomic_wr_valid(wr) :
	    wr->len > l->cfg.max_msg_len || (wr->flags & ~TBP_WR_SOLICITED))
		return -EINVAL;
	qp = tbp_qp_find(l, wr->qpn);
	if (!qp)
		return -ENOENT;
	if (qp->state != QP_OPEN)
		return -EPIPE;
	/* Keep slots for READ responses, or two sides full of READs would wait on each other. */
	if (l->smsgs_used + read_resp_reserve(l) >= l->cfg.max_msgs)
		return -ENOBUFS;
	m = tbp_smsg_alloc(l);
	if (!m)
		return -ENOBUFS;
	idx = (uint16_t)(m - l->smsgs);
	m->op = wire_op_of[wr->opcode];
	m->qp = tbp_qp_index(l, qp);
	m->msn = qp->send_msn++;
	if (consumes_recv(m->op))
		m->ssn = qp->send_ssn++;
	m->len = wr->len;
	m->imm = wr->imm;
	if (m->op == TBP_W_ATOMIC_REQ)
		tbp_atomic_prepare(m, wr);
	/* IBA: the solicited event is a property of the messages that consume a receive. */
	m->solicited = (wr->flags & TBP_WR_SOLICITED) && consumes_recv(m->op);
	m->rkey = wr->rkey;
	m->raddr = wr->raddr;
	if (m->op == TBP_W_SEND_INV) {
		/* The frame rules admit only the key (tbp_wire.c). */
		m->imm = 0;
		m->raddr = 0;
	}
	m->wr_id = wr->wr_id;
	m->local_buf = wr->local_buf;
	l->now = l->env.now_ns(l->env.ctx);
	if (qp->tail == TBP_NONE) {
		qp->head = idx;
		/* The ACK timer starts with the QP's first outstanding WR. */
		qp->progress_ns = l->now > qp->hold_until ? l->now : qp->hold_until;
		tbp_qp_arm_timer(l, qp);
	} else {
		l->smsgs[qp->tail].next = idx;
	}
	qp->tail = idx;
	tbp_sendq_append(l, m);
	l->st.msgs_posted++;
	tbp_push(l);
	return 0;
}

void tbp_sender_complete(struct tbp_link *l, struct tbp_qp *qp)
{
	while (qp->head != TBP_NONE) {
		struct tbp_smsg *m = &l->smsgs[qp->head];

		if (!m->done || !m->all_queued || m->frags_unacked)
			break;
		qp->head = m->next;
		if (qp->head == TBP_NONE)
			qp->tail = TBP_NONE;
		l->st.msgs_completed++;
		l->env.send_done(l->env.ctx, qp->qpn, m->wr_id, m->status);
		tbp_smsg_free(l, m);
	}
}

static void smsg_progress(struct tbp_link *l, struct tbp_smsg *m)
{
	if (!m->all_queued || m->frags_unacked)
		return;
	if (m->orphan || tbp_is_resp(m->op))
		tbp_smsg_free(l, m);
	else
		tbp_sender_complete(l, &l->qps[m->qp]);
}

void tbp_msg_frame_acked(struct tbp_link *l, struct tbp_txslot *s)
{
	struct tbp_smsg *m;

	if (s->msg == TBP_NONE)
		return;
	m = &l->smsgs[s->msg];
	s->msg = TBP_NONE;
	if (m->frags_unacked)
		m->frags_unacked--;
	/* The link delivered the QP's frame: its ACK timer measures from here, and the
	 * timeouts of the stall before it were not the peer failing to answer. */
	if (!m->orphan && !tbp_is_resp(m->op)) {
		struct tbp_qp *qp = &l->qps[m->qp];

		if (qp->progress_ns < l->now)
			qp->progress_ns = l->now;
		qp->retries_left += qp->timer_retries;
		qp->timer_retries = 0;
	}
	smsg_progress(l, m);
}

uint32_t tbp_build_seq_frame(struct tbp_link *l, struct tbp_txslot *s, struct tbp_hdr *h,
			     uint8_t *payload)
{
	struct tbp_smsg *m;
	struct tbp_qp *qp;
	struct tbp_buf buf;

	h->opcode = s->op;
	if (s->op == TBP_W_MSG_ACK) {
		h->dst_qpn = s->ack_dst_qpn;
		h->src_qpn = s->ack_src_qpn;
		h->msn = s->ack_msn;
		h->status = s->ack_status;
		h->imm = s->ack_errs;
		return 1;
	}
	if (s->op == TBP_W_NOP || s->msg == TBP_NONE)
		return 0;
	m = &l->smsgs[s->msg];
	if (m->orphan)
		return 0;
	qp = &l->qps[m->qp];
	/* A frame of an abandoned attempt: its sequence number still has to reach the peer. */
	if (s->attempt != (tbp_is_resp(m->op) ? m->attempt : qp->send_attempt))
		return 0;
	h->status = s->attempt;
	h->dst_qpn = qp->rqpn;
	h->src_qpn = qp->qpn;
	h->msn = m->msn;
	h->ssn = m->ssn;
	h->rkey = m->rkey;
	h->raddr = m->raddr;
	h->msg_len = m->len;
	h->frag_off = s->frag_off;
	h->imm = m->imm;
	h->payload_len = (uint16_t)s->payload_len;
	if (s->frag_off + s->payload_len == m->len)
		h->flags |= TBP_F_LAST;
	if (m->solicited)
		h->flags |= TBP_F_SOLICITED;
	if (!s->payload_len)
		return 1;
	if (m->op == TBP_W_ATOMIC_REQ || m->op == TBP_W_ATOMIC_RESP) {
		/* One frame (the codec admits no other): the operands or the original value. */
		tbp_atomic_put(payload, m->atomic, s->payload_len / 8);
		return 1;
	}
	if (m->op == TBP_W_READ_RESP) {
		buf.kind = TBP_BUF_MR;
		buf.rkey = m->rkey;
		buf.addr = m->raddr;
	} else {
		buf.kind = TBP_BUF_LOCAL;
		buf.rkey = 0;
		buf.addr = m->local_buf;
	}
	if (l->env.buf_read(l->env.ctx, &buf, s->frag_off, payload, s->payload_len) == 0)
		return 1;
	/* The message cannot be sent; the peer is left with a partial message on this QP. */
	m->status = tbp_is_resp(m->op) ? TBP_ERR_REMOTE_OP : TBP_ERR_LOCAL_PROTECTION;
	m->done = 1;
	return 0;
}

/* ---- reassembly slots ---- */

static uint32_t rhash(const struct tbp_link *l, uint16_t qp, uint32_t num, bool by_ssn)
{
	uint32_t x = num * 0x9e3779b1u ^ (uint32_t)qp * 0x85ebca6bu ^ (by_ssn ? 0x5bd1e995u : 0);

	return (x ^ (x >> 15)) & l->rbucket_mask;
}

static struct tbp_rmsg *rmsg_lookup(struct tbp_link *l, uint16_t qp, uint32_t num, bool by_ssn)
{
	uint16_t i = l->rbuckets[rhash(l, qp, num, by_ssn)];

	while (i != TBP_NONE) {
		struct tbp_rmsg *r = &l->rmsgs[i];
		bool placeholder = r->state == RM_PLACEHOLDER;

		if (r->qp == qp && placeholder == by_ssn && (by_ssn ? r->ssn : r->msn) == num)
			return r;
		i = r->hnext;
	}
	return NULL;
}

static void rmsg_hash_insert(struct tbp_link *l, struct tbp_rmsg *r)
{
	bool by_ssn = r->state == RM_PLACEHOLDER;
	uint32_t b = rhash(l, r->qp, by_ssn ? r->ssn : r->msn, by_ssn);

	r->hnext = l->rbuckets[b];
	l->rbuckets[b] = (uint16_t)(r - l->rmsgs);
}

static void rmsg_hash_remove(struct tbp_link *l, struct tbp_rmsg *r)
{
	bool by_ssn = r->state == RM_PLACEHOLDER;
	uint16_t *link = &l->rbuckets[rhash(l, r->qp, by_ssn ? r->ssn : r->msn, by_ssn)];
	uint16_t idx = (uint16_t)(r - l->rmsgs);

	while (*link != TBP_NONE) {
		if (*link == idx) {
			*link = r->hnext;
			return;
		}
		link = &l->rmsgs[*link].hnext;
	}
}

/*
 * Slots are freed in per-QP MSN order, so if later messages could take every slot the
 * next in-order message would find none and the link would deadlock. Messages that are
 * not next in order therefore leave one slot per open QP.
 */
static struct tbp_rmsg *rmsg_alloc(struct tbp_link *l, uint16_t qp, uint8_t state,
				   uint32_t msn, uint32_t ssn)
{
	struct tbp_rmsg *r;
	bool in_order = state != RM_PLACEHOLDER && msn == l->qps[qp].rx_msn;

	if (l->rmsg_free == TBP_NONE)
		return NULL;
	if (!in_order && l->rmsg_slots - l->rmsgs_used <= l->open_qps)
		return NULL;
	r = &l->rmsgs[l->rmsg_free];
	l->rmsg_free = r->hnext;
	memset(r, 0, sizeof(*r));
	r->state = state;
	r->qp = qp;
	r->msn = msn;
	r->ssn = ssn;
	rmsg_hash_insert(l, r);
	l->rmsgs_used++;
	return r;
}

void tbp_rmsg_free(struct tbp_link *l, struct tbp_rmsg *r)
{
	rmsg_hash_remove(l, r);
	r->state = RM_FREE;
	r->hnext = l->rmsg_free;
	l->rmsg_free = (uint16_t)(r - l->rmsgs);
	l->rmsgs_used--;
}

/* The peer sees our receive-side failures as remote errors. */
static uint16_t sender_status(uint16_t rx_status)
{
	switch (rx_status) {
	case TBP_ERR_REMOTE_ACCESS:
		return TBP_ERR_REMOTE_ACCESS;
	case TBP_ERR_LOCAL_LENGTH:
	case TBP_ERR_REMOTE_INVALID:
		return TBP_ERR_REMOTE_INVALID;
	default:
		return TBP_ERR_REMOTE_OP;
	}
}

static void owe_msg_ack(struct tbp_link *l, struct tbp_qp *qp)
{
	tbp_qlist_add(l, TBP_QL_ACK, qp);
}

/* SEND_WITH_INV: the glue invalidates the key once, before the receive is reported. */
static uint16_t rx_invalidate(struct tbp_link *l, struct tbp_qp *qp, uint32_t rkey)
{
	int rc;

	if (!l->env.invalidate)
		return TBP_ERR_REMOTE_INVALID;
	rc = l->env.invalidate(l->env.ctx, qp->qpn, rkey);
	if (rc == 0)
		return TBP_OK;
	return rc > 0 && rc <= (int)TBP_STATUS_MAX ? (uint16_t)rc : TBP_ERR_REMOTE_INVALID;
}

/* Act on messages of a QP that are complete, strictly in MSN order. */
static void complete_in_order(struct tbp_link *l, struct tbp_qp *qp)
{
	uint16_t qi = tbp_qp_index(l, qp);

	while (!qp->err_pending) {
		struct tbp_rmsg *r = rmsg_lookup(l, qi, qp->rx_msn, false);
		struct tbp_recv_completion c;

		if (!r || r->state != RM_COMPLETE)
			return;
		if (r->op == TBP_W_READ_REQ && r->status == TBP_OK) {
			struct tbp_smsg *m = tbp_smsg_alloc(l);

			if (!m) {
				tbp_qlist_add(l, TBP_QL_STALLED, qp);
				return;
			}
			m->op = TBP_W_READ_RESP;
			m->qp = qi;
			m->msn = r->msn;
			m->len = r->len;
			m->rkey = r->rkey;
			m->raddr = r->raddr;
			m->done = 1;
			tbp_sendq_append(l, m);
		} else if (r->op == TBP_W_ATOMIC_REQ && r->status == TBP_OK) {
			if (!tbp_atomic_respond(l, qp, r)) {
				tbp_qlist_add(l, TBP_QL_STALLED, qp);
				return;
			}
		} else if (consumes_recv(r->op)) {
			memset(&c, 0, sizeof(c));
			c.qpn = qp->qpn;
			c.src_qpn = qp->rqpn;
			c.recv_handle = r->recv_handle;
			c.len = r->len;
			c.imm = r->imm;
			c.has_imm = has_imm(r->op);
			c.opcode = r->op == TBP_W_SEND ? TBP_OP_SEND :
				   r->op == TBP_W_SEND_IMM ? TBP_OP_SEND_WITH_IMM :
				   r->op == TBP_W_SEND_INV ? TBP_OP_SEND_WITH_INV :
				   TBP_OP_RDMA_WRITE_WITH_IMM;
			if (r->op == TBP_W_SEND_INV) {
				c.invalidate_rkey = r->rkey;
				if (r->status == TBP_OK)
					r->status = rx_invalidate(l, qp, r->rkey);
			}
			c.status = r->status;
			c.solicited = r->solicited;
			l->st.msgs_received++;
			l->env.recv_done(l->env.ctx, &c);
		}
		if (r->status != TBP_OK) {
			qp->err_pending = 1;
			qp->err_msn = r->msn;
			qp->err_status = sender_status(r->status);
			qp->errs_sent++;
		}
		tbp_rmsg_free(l, r);
		qp->rx_msn++;
		qp->ack_msn = qp->rx_msn;
		qp->ack_pending = 1;
		owe_msg_ack(l, qp);
	}
}

void tbp_msg_retry_stalled(struct tbp_link *l)
{
	uint32_t n = l->qlist[TBP_QL_STALLED].len;
	struct tbp_qp *qp;

	while (n-- && (qp = tbp_qlist_first(l, TBP_QL_STALLED))) {
		tbp_qlist_remove(l, TBP_QL_STALLED, qp);
		complete_in_order(l, qp);
		if (qp->on_list & (1u << TBP_QL_STALLED))
			return; /* the resource is still short: the others wait too */
	}
}

/*
 * Forget every message of qp from rx_msn on: the peer resends them in a new attempt. Claimed
 * receive WQEs go back to placeholders so they are claimed again in the same order.
 */
static void rx_rewind(struct tbp_link *l, struct tbp_qp *qp)
{
	uint16_t qi = tbp_qp_index(l, qp);
	uint32_t i;

	for (i = 0; i < l->rmsg_slots; i++) {
		struct tbp_rmsg *r = &l->rmsgs[i];

		if (r->state == RM_FREE || r->state == RM_PLACEHOLDER || r->qp != qi)
			continue;
		l->st.rx_rewound_bytes += r->placed;
		if (!r->claimed) {
			tbp_rmsg_free(l, r);
			continue;
		}
		rmsg_hash_remove(l, r);
		r->state = RM_PLACEHOLDER;
		r->op = 0;
		r->solicited = 0;
		r->msn = 0;
		r->len = r->got = r->placed = r->imm = r->rkey = 0;
		r->raddr = 0;
		r->status = TBP_OK;
		rmsg_hash_insert(l, r);
	}
}

/*
 * No receive WQE: the frame is accepted (so the link's window moves on and other QPs keep
 * flowing), the QP's unfinished messages are dropped and the peer is told to resend them,
 * in a new attempt, after our RNR timer. Frames of the old attempt are stale from now on.
 */
static void send_rnr_nak(struct tbp_link *l, struct tbp_qp *qp)
{
	uint64_t us = qp->rnr_delay_ns / 1000;

	l->st.drop_rnr++;
	l->st.rnr_naks_sent++;
	qp->rx_attempt++;
	rx_rewind(l, qp);
	tbp_send_nak(l, qp->rqpn, qp->qpn, qp->rx_msn, TBP_NAK_RNR, qp->rx_attempt,
		     (uint32_t)(us > TBP_NAK_MAX_DELAY_US ? TBP_NAK_MAX_DELAY_US : us));
}

/*
 * Claim receive WQEs in SSN order up to and including ssn. Earlier SSNs whose
 * first fragment has not arrived get a placeholder holding their WQE. Returns the
 * slot for ssn, or NULL: with *refuse set when the frame must be retransmitted later
 * (no slot free, or receiver not ready), otherwise the frame is bogus.
 */
static struct tbp_rmsg *claim_through(struct tbp_link *l, struct tbp_qp *qp, uint32_t msn,
				      uint32_t ssn, bool *refuse)
{
	uint16_t qi = tbp_qp_index(l, qp);

	while (seq_diff(qp->rx_ssn_claimed, ssn) <= 0) {
		bool mine = qp->rx_ssn_claimed == ssn;
		struct tbp_rmsg *r = rmsg_alloc(l, qi, mine ? RM_ACTIVE : RM_PLACEHOLDER,
						mine ? msn : 0, qp->rx_ssn_claimed);

		if (!r) {
			l->st.drop_no_slot++;
			*refuse = true;
			return NULL;
		}
		if (l->env.recv_claim(l->env.ctx, qp->qpn, &r->recv_handle, &r->capacity) != 0) {
			tbp_rmsg_free(l, r);
			send_rnr_nak(l, qp);
			return NULL;
		}
		r->claimed = 1;
		qp->rx_ssn_claimed++;
		if (mine)
			return r;
	}
	/* Already claimed: the placeholder becomes the message. */
	{
		struct tbp_rmsg *r = rmsg_lookup(l, qi, ssn, true);

		if (!r) {
			l->st.drop_bad_msg++;
			return NULL;
		}
		rmsg_hash_remove(l, r);
		r->state = RM_ACTIVE;
		r->msn = msn;
		rmsg_hash_insert(l, r);
		return r;
	}
}


/* First fragment of a new inbound message: set up its slot and access checks. */
static struct tbp_rmsg *rx_new_message(struct tbp_link *l, struct tbp_qp *qp,
				       const struct tbp_hdr *h, bool *refuse)
{
	struct tbp_rmsg *r;

	if (h->msg_len > l->cfg.max_msg_len) {
		l->st.drop_bad_msg++;
		return NULL;
	}
	if (consumes_recv(h->opcode)) {
		if (seq_diff(h->ssn, qp->rx_ssn_claimed) >= (int32_t)TBP_MSN_HORIZON) {
			l->st.drop_bad_msg++;
			return NULL;
		}
		r = claim_through(l, qp, h->msn, h->ssn, refuse);
		if (!r)
			return NULL;
	} else {
		r = rmsg_alloc(l, tbp_qp_index(l, qp), RM_ACTIVE, h->msn, 0);
		if (!r) {
			l->st.drop_no_slot++;
			*refuse = true;
			return NULL;
		}
	}
	r->op = h->opcode;
	r->solicited = (h->flags & TBP_F_SOLICITED) != 0;
	r->len = h->msg_len;
	r->imm = h->imm;
	r->rkey = h->rkey;
	r->raddr = h->raddr;
	r->ssn = h->ssn;
	if (is_write(h->opcode) && h->msg_len)
		r->status = (uint16_t)l->env.mr_check(l->env.ctx, qp->qpn, h->rkey, h->raddr,
						      h->msg_len, TBP_ACCESS_REMOTE_WRITE);
	else if (h->opcode == TBP_W_READ_REQ && h->msg_len)
		r->status = (uint16_t)l->env.mr_check(l->env.ctx, qp->qpn, h->rkey, h->raddr,
						      h->msg_len, TBP_ACCESS_REMOTE_READ);
	else if (consumes_recv(h->opcode) && h->msg_len > r->capacity)
		r->status = TBP_ERR_LOCAL_LENGTH;
	if (r->status > TBP_STATUS_MAX)
		r->status = TBP_ERR_REMOTE_INVALID;
	return r;
}

static bool rx_data(struct tbp_link *l, struct tbp_qp *qp, const struct tbp_hdr *h,
		    const struct tbp_rxf *f)
{
	struct tbp_rmsg *r = rmsg_lookup(l, tbp_qp_index(l, qp), h->msn, false);
	bool refuse = false;

	if (!r) {
		r = rx_new_message(l, qp, h, &refuse);
		if (!r)
			return !refuse;
	} else if (r->state != RM_ACTIVE || r->op != h->opcode || r->len != h->msg_len ||
		   r->imm != h->imm || r->ssn != h->ssn ||
		   r->solicited != ((h->flags & TBP_F_SOLICITED) != 0) ||
		   ((is_write(h->opcode) || h->opcode == TBP_W_SEND_INV) &&
		    (r->rkey != h->rkey || r->raddr != h->raddr))) {
		l->st.drop_bad_msg++;
		return true;
	}
	if (h->opcode == TBP_W_READ_REQ) {
		r->state = RM_COMPLETE;
		complete_in_order(l, qp);
		return true;
	}
	if (h->opcode == TBP_W_ATOMIC_REQ) {
		/* Checked now, executed (once) when it is next in MSN order: complete_in_order. */
		tbp_atomic_rx_req(l, qp, r, f->payload);
		complete_in_order(l, qp);
		return true;
	}
	if ((uint64_t)r->got + h->payload_len > r->len) {
		l->st.drop_bad_msg++;
		return true;
	}
	if (h->payload_len && r->status == TBP_OK) {
		struct tbp_buf buf;
		int rc;

		if (is_write(h->opcode)) {
			buf.kind = TBP_BUF_MR;
			buf.rkey = r->rkey;
			buf.addr = r->raddr;
		} else {
			buf.kind = TBP_BUF_RECV;
			buf.rkey = 0;
			buf.addr = r->recv_handle;
		}
		rc = tbp_rxf_write_payload(l, &buf, h->frag_off, f, h->payload_len);
		if (rc)
			r->status = is_write(h->opcode) && rc <= (int)TBP_STATUS_MAX ?
				    (uint16_t)rc : TBP_ERR_LOCAL_PROTECTION;
		else
			r->placed += h->payload_len;
	}
	r->got += h->payload_len;
	if (r->got == r->len) {
		r->state = RM_COMPLETE;
		complete_in_order(l, qp);
	}
	return true;
}

struct tbp_smsg *tbp_find_posted(struct tbp_link *l, struct tbp_qp *qp, uint32_t msn)
{
	uint16_t i;

	for (i = qp->head; i != TBP_NONE; i = l->smsgs[i].next)
		if (l->smsgs[i].msn == msn)
			return &l->smsgs[i];
	return NULL;
}

static void rx_read_resp(struct tbp_link *l, struct tbp_qp *qp, const struct tbp_hdr *h,
			 const struct tbp_rxf *f)
{
	struct tbp_smsg *m = tbp_find_posted(l, qp, h->msn);

	if (!m || m->op != TBP_W_READ_REQ || m->done || m->len != h->msg_len) {
		l->st.drop_bad_msg++;
		return;
	}
	/* The responder restarted its response (re-cut for smaller rails): start over. */
	if (m->read_seen && attempt_diff(h->status, m->attempt) < 0) {
		l->st.rx_stale++;
		return;
	}
	if (m->read_seen && attempt_diff(h->status, m->attempt) > 0) {
		l->st.rx_rewound_bytes += m->read_got;
		m->read_got = 0;
	}
	m->attempt = h->status;
	if ((uint64_t)m->read_got + h->payload_len > m->len) {
		l->st.drop_bad_msg++;
		return;
	}
	qp->progress_ns = l->now;
	qp->retries_left = qp->retry_cnt;
	qp->timer_retries = 0;
	qp->rnr_left = qp->rnr_retry;
	if (h->payload_len) {
		struct tbp_buf buf = { .kind = TBP_BUF_LOCAL, .rkey = 0, .addr = m->local_buf };

		if (tbp_rxf_write_payload(l, &buf, h->frag_off, f, h->payload_len)) {
			if (m->status == TBP_OK)
				m->status = TBP_ERR_LOCAL_PROTECTION;
		}
	}
	m->read_got += h->payload_len;
	m->read_seen = 1;
	if (m->read_got == m->len) {
		m->done = 1;
		tbp_sender_complete(l, qp);
	}
}

/* Mark every posted message before msn as successfully delivered (READs finish on data). */
static void apply_ok(struct tbp_link *l, struct tbp_qp *qp, uint32_t msn)
{
	uint16_t i;

	for (i = qp->head; i != TBP_NONE; i = l->smsgs[i].next) {
		struct tbp_smsg *m = &l->smsgs[i];

		if (seq_diff(m->msn, msn) >= 0)
			break;
		/* A READ or atomic finishes when its response arrives. */
		if (m->op != TBP_W_READ_REQ && m->op != TBP_W_ATOMIC_REQ)
			m->done = 1;
	}
}

/*
 * MSG_ACKs may arrive in any order. A cumulative success must not overtake an error
 * report sent before it, so each error carries its index and a success carries the
 * number of errors sent before it; the success applies once errors 1..n have all arrived.
 */
static bool rx_msg_ack(struct tbp_link *l, struct tbp_qp *qp, const struct tbp_hdr *h)
{
	/* The peer QP answered: its timers and retry budgets start afresh (IBA). */
	qp->progress_ns = l->now;
	qp->retries_left = qp->retry_cnt;
	qp->timer_retries = 0;
	qp->rnr_left = qp->rnr_retry;
	if (h->status != TBP_OK) {
		int32_t d = seq_diff(h->imm, qp->peer_errs + 1);
		struct tbp_smsg *m;

		if (d < 0) {
			l->st.drop_bad_msg++;
			return true;
		}
		if (d >= 64)
			return false; /* too far ahead of the missing reports: resend later */
		m = tbp_find_posted(l, qp, h->msn);
		if (m && !m->done) {
			m->done = 1;
			m->status = h->status;
		}
		qp->err_bits |= 1ull << d;
		while (qp->err_bits & 1) {
			qp->err_bits >>= 1;
			qp->peer_errs++;
		}
	} else if (!qp->ok_valid || seq_diff(h->msn, qp->ok_msn) > 0) {
		qp->ok_valid = 1;
		qp->ok_msn = h->msn;
		qp->ok_errs = h->imm;
	}
	if (qp->ok_valid && seq_diff(qp->peer_errs, qp->ok_errs) >= 0)
		apply_ok(l, qp, qp->ok_msn);
	tbp_sender_complete(l, qp);
	return true;
}

bool tbp_msg_rx(struct tbp_link *l, const struct tbp_hdr *h, const struct tbp_rxf *f)
{
	struct tbp_qp *qp = tbp_qp_lookup(l, h->dst_qpn);
	bool peer = qp && qp->rqpn == h->src_qpn;

	/*
	 * Not open for this peer QP: the frame is consumed (acked) so it cannot block the link,
	 * and the first fragment of each message is answered. A QP that was closed or failed
	 * is final (IB_WC_REM_OP_ERR at the sender); an unknown one may still be opened, so the
	 * sender retries on its ACK timer and retry_cnt.
	 */
	if (!peer || qp->state != QP_OPEN) {
		l->st.drop_no_qp++;
		if (is_request(h->opcode) && h->frag_off == 0) {
			bool dead = peer && (qp->state == QP_ERROR || qp->state == QP_CLOSED);

			if (dead)
				l->st.naks_qp_error_sent++;
			else
				l->st.naks_not_ready_sent++;
			tbp_send_nak(l, h->src_qpn, h->dst_qpn, h->msn,
				     dead ? TBP_NAK_QP_ERROR : TBP_NAK_NOT_READY,
				     (uint16_t)(h->status + 1), 0);
		}
		return true;
	}
	switch (h->opcode) {
	case TBP_W_MSG_ACK:
		return rx_msg_ack(l, qp, h);
	case TBP_W_READ_RESP:
		rx_read_resp(l, qp, h, f);
		return true;
	case TBP_W_ATOMIC_RESP:
		tbp_atomic_rx_resp(l, qp, h, f->payload);
		return true;
	default:
		break;
	}
	if (attempt_diff(h->status, qp->rx_attempt) < 0) {
		l->st.rx_stale++;
		return true;
	}
	if (attempt_diff(h->status, qp->rx_attempt) > 0) {
		/* The sender gave up on its previous attempt (ACK timer, re-cut): so do we. */
		rx_rewind(l, qp);
		qp->rx_attempt = h->status;
	}
	if (seq_diff(h->msn, qp->rx_msn) < 0) {
		l->st.rx_stale++; /* resent after we completed it; its MSG_ACK is on the way */
		return true;
	}
	if (seq_diff(h->msn, qp->rx_msn) >= (int32_t)TBP_MSN_HORIZON) {
		l->st.drop_bad_msg++;
		return true;
	}
	return rx_data(l, qp, h, f);
}

/* ---- transmit side of the message layer ---- */

/* Each QP owing a MSG_ACK gets one turn per call, oldest first. */
static bool emit_msg_acks(struct tbp_link *l)
{
	uint32_t n = l->qlist[TBP_QL_ACK].len;
	struct tbp_qp *qp;

	while (n-- && (qp = tbp_qlist_first(l, TBP_QL_ACK))) {
		struct tbp_txslot *s;

		if (qp->err_pending) {
			if (tbp_seq_alloc(l, TBP_W_MSG_ACK, TBP_NONE, 0, 0, &s))
				return false;
			s->ack_dst_qpn = qp->rqpn;
			s->ack_src_qpn = qp->qpn;
			s->ack_msn = qp->err_msn;
			s->ack_status = qp->err_status;
			s->ack_errs = qp->errs_sent;
			qp->err_pending = 0;
			complete_in_order(l, qp);
		}
		if (qp->ack_pending) {
			if (tbp_seq_alloc(l, TBP_W_MSG_ACK, TBP_NONE, 0, 0, &s))
				return false;
			s->ack_dst_qpn = qp->rqpn;
			s->ack_src_qpn = qp->qpn;
			s->ack_msn = qp->ack_msn;
			s->ack_status = TBP_OK;
			s->ack_errs = qp->errs_sent;
			qp->ack_pending = 0;
		}
		tbp_qlist_remove(l, TBP_QL_ACK, qp);
		if (qp->err_pending || qp->ack_pending)
			tbp_qlist_add(l, TBP_QL_ACK, qp);
	}
	return true;
}

void tbp_msg_fill_window(struct tbp_link *l)
{
	uint16_t prev = TBP_NONE, i;

	if (l->qlist[TBP_QL_ACK].len && tbp_ack_due(l) && !emit_msg_acks(l))
		return;
	i = l->sendq_head;
	while (i != TBP_NONE) {
		struct tbp_smsg *m = &l->smsgs[i];
		uint16_t next = m->sendq_next;

		if (!m->orphan && !tbp_is_resp(m->op) && l->qps[m->qp].hold_until > l->now) {
			prev = i;
			i = next;
			continue;
		}
		while (!m->all_queued && !m->orphan) {
			struct tbp_txslot *s;
			uint32_t rail, frag, plen;

			if (l->snd_nxt - l->snd_una >= l->cfg.window)
				return;
			/* Cut for the rail that will carry it; none has room: wait for acks. */
			rail = tbp_plan_rail(l);
			if (rail == TBP_MAX_RAILS)
				return;
			frag = tbp_rail_payload(l, rail);
			plen = m->op == TBP_W_READ_REQ ? 0 :
			       m->len - m->next_off < frag ? m->len - m->next_off : frag;
			tbp_seq_alloc(l, m->op, i, m->next_off, plen, &s);
			s->plan = (uint8_t)(rail + 1);
			s->attempt = tbp_is_resp(m->op) ? m->attempt :
				     l->qps[m->qp].send_attempt;
			m->frags_unacked++;
			m->next_off += plen;
			if (m->next_off == m->len || m->op == TBP_W_READ_REQ)
				m->all_queued = 1;
		}
		m->all_queued = 1;
		/* Fully queued: leave the send queue. */
		if (prev == TBP_NONE)
			l->sendq_head = next;
		else
			l->smsgs[prev].sendq_next = next;
		if (l->sendq_tail == i)
			l->sendq_tail = prev;
		smsg_progress(l, m);
		i = next;
	}
}

uint64_t tbp_msg_next_deadline(struct tbp_link *l, uint64_t deadline)
{
	if (l->qlist[TBP_QL_ACK].len && l->snd_nxt - l->snd_una < l->cfg.window &&
	    l->last_ack_tx_ns + l->cfg.ack_delay_ns < deadline)
		deadline = l->last_ack_tx_ns + l->cfg.ack_delay_ns;
	if (l->qlist[TBP_QL_STALLED].len && l->now + l->cfg.rto_min_ns < deadline)
		deadline = l->now + l->cfg.rto_min_ns;
	if (l->rnr_next > l->now && l->rnr_next < deadline)
		deadline = l->rnr_next;
	return deadline;
}
