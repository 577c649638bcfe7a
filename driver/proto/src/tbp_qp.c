// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * tbp_qp.c - the QP table and the per-QP transport: IBA timeout / retry_cnt / rnr_retry /
 * min_rnr_timer, NAKs (RNR, not ready, QP error), retry attempts and rewinds, the QPs' ACK
 * timers, and re-cutting frames that no rail carries any more (docs/protocol.md,
 * "Per-QP transport").
 */
#include "tbp_internal.h"

static uint64_t min64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

struct tbp_qp *tbp_qp_lookup(struct tbp_link *l, uint32_t qpn)
{
	uint16_t i = l->qbuckets[tbp_qhash(l, qpn)];

	while (i != TBP_NONE) {
		if (l->qps[i].qpn == qpn)
			return &l->qps[i];
		i = l->qps[i].hnext;
	}
	return NULL;
}

struct tbp_qp *tbp_qp_find(struct tbp_link *l, uint32_t qpn)
{
	struct tbp_qp *qp = tbp_qp_lookup(l, qpn);

	return qp && qp->used ? qp : NULL;
}

static void qp_unhash(struct tbp_link *l, struct tbp_qp *qp)
{
	uint16_t *link = &l->qbuckets[tbp_qhash(l, qp->qpn)], idx = tbp_qp_index(l, qp);

	while (*link != idx)
		link = &l->qps[*link].hnext;
	*link = qp->hnext;
}

/* IBA "local ACK timeout": 4.096 us * 2^timeout; 0 means infinite. */
uint64_t tbp_ack_timeout_ns(uint32_t timeout)
{
	return timeout && timeout < 32 ? 4096ull << timeout : 0;
}

/* IBA RNR NAK timer field (table 45 of the IBA spec), in units of 10 us. */
uint64_t tbp_rnr_timer_ns(uint32_t code)
{
	static const uint16_t ten_us[32] = {
		65535, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192,
		256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192, 12288, 16384,
		24576, 32768, 49152,
	};

	if (code >= 32)
		return 0;
	/* Code 0 is 655.36 ms, one more than fits the table's 16 bits. */
	return code == 0 ? 655360000ull : (uint64_t)ten_us[code] * 10000ull;
}

/*
 * Interval of the QP's ACK timer; an infinite timeout still resends now and then (a lost
 * NAK must not hang the QP) but never gives up. It is never shorter than two of the link's
 * retransmission timeouts: below that it would fire before the link could repair a single
 * lost frame (a loaded host or a TCG guest measures RTOs of tens of ms, longer than the
 * 67 ms of the usual timeout 14 allows for a retry); on hardware the RTO is far below it.
 */
static uint64_t qp_timer_interval(const struct tbp_link *l, const struct tbp_qp *qp)
{
	if (!qp->timeout_ns)
		return 4 * l->cfg.rto_max_ns;
	if (!l->srtt)	/* no round trip measured yet: the RTO is a guess being backed off */
		return qp->timeout_ns;
	return qp->timeout_ns > 2 * l->rto ? qp->timeout_ns : 2 * l->rto;
}

void tbp_qp_arm_timer(struct tbp_link *l, const struct tbp_qp *qp)
{
	l->qp_timer_next = min64(l->qp_timer_next, qp->progress_ns + qp_timer_interval(l, qp));
}

void tbp_qlist_add(struct tbp_link *l, enum tbp_qp_list q, struct tbp_qp *qp)
{
	struct tbp_qp_fifo *f = &l->qlist[q];
	uint16_t qi = tbp_qp_index(l, qp);

	if (qp->on_list & (1u << q))
		return;
	qp->on_list |= (uint8_t)(1u << q);
	qp->qnext[q] = TBP_NONE;
	if (f->tail == TBP_NONE)
		f->head = qi;
	else
		l->qps[f->tail].qnext[q] = qi;
	f->tail = qi;
	f->len++;
}

struct tbp_qp *tbp_qlist_first(struct tbp_link *l, enum tbp_qp_list q)
{
	return l->qlist[q].head == TBP_NONE ? NULL : &l->qps[l->qlist[q].head];
}

void tbp_qlist_remove(struct tbp_link *l, enum tbp_qp_list q, struct tbp_qp *qp)
{
	struct tbp_qp_fifo *f = &l->qlist[q];
	uint16_t qi = tbp_qp_index(l, qp), prev = TBP_NONE, i = f->head;

	if (!(qp->on_list & (1u << q)))
		return;
	while (i != qi) {
		prev = i;
		i = l->qps[i].qnext[q];
	}
	if (prev == TBP_NONE)
		f->head = qp->qnext[q];
	else
		l->qps[prev].qnext[q] = qp->qnext[q];
	if (f->tail == qi)
		f->tail = prev;
	f->len--;
	qp->on_list &= (uint8_t)~(1u << q);
}

void tbp_qlist_clear(struct tbp_link *l, enum tbp_qp_list q)
{
	struct tbp_qp_fifo *f = &l->qlist[q];
	uint16_t i;

	for (i = f->head; i != TBP_NONE; i = l->qps[i].qnext[q])
		l->qps[i].on_list &= (uint8_t)~(1u << q);
	f->head = f->tail = TBP_NONE;
	f->len = 0;
}

int tbp_qp_open(struct tbp_link *l, uint32_t qpn, uint32_t remote_qpn)
{
	struct tbp_qp *qp = NULL;
	uint32_t i;

	if (qpn > TBP_QPN_MASK || remote_qpn > TBP_QPN_MASK)
		return -EINVAL;
	qp = tbp_qp_lookup(l, qpn);
	if (qp && qp->used)
		return -EEXIST;
	/* A free slot, else the tombstone of this QPN, else the oldest tombstone. */
	for (i = 0; i < l->cfg.max_qps && !qp; i++)
		if (l->qps[i].state == QP_FREE)
			qp = &l->qps[i];
	for (i = 0; i < l->cfg.max_qps; i++)
		if (l->qps[i].state == QP_CLOSED && (!qp || (qp->state == QP_CLOSED &&
		    qp->qpn != qpn && seq_diff(l->qps[i].tseq, qp->tseq) < 0)))
			qp = &l->qps[i];
	if (!qp)
		return -ENOBUFS;
	if (qp->state == QP_CLOSED)
		qp_unhash(l, qp);
	i = tbp_qp_index(l, qp);
	memset(qp, 0, sizeof(*qp));
	qp->used = 1;
	qp->state = QP_OPEN;
	qp->qpn = qpn;
	qp->rqpn = remote_qpn;
	qp->head = TBP_NONE;
	qp->tail = TBP_NONE;
	qp->send_msn = qp->send_ssn = TBP_MSN_START;
	qp->rx_msn = qp->rx_ssn_claimed = qp->ack_msn = TBP_MSN_START;
	qp->timeout_ns = tbp_ack_timeout_ns(14);
	qp->retry_cnt = qp->retries_left = 7;
	qp->rnr_retry = qp->rnr_left = 7;
	qp->rnr_delay_ns = l->cfg.rnr_backoff_ns;
	qp->hnext = l->qbuckets[tbp_qhash(l, qpn)];
	l->qbuckets[tbp_qhash(l, qpn)] = (uint16_t)i;
	l->open_qps++;
	return 0;
}

int tbp_qp_set_attr(struct tbp_link *l, uint32_t qpn, const struct tbp_qp_attr *a)
{
	struct tbp_qp *qp = tbp_qp_find(l, qpn);

	if (!qp)
		return -ENOENT;
	if (a->timeout > 31 || a->retry_cnt > 7 || a->rnr_retry > 7 || a->min_rnr_timer > 31)
		return -EINVAL;
	qp->timeout_ns = tbp_ack_timeout_ns(a->timeout);
	qp->retry_cnt = qp->retries_left = a->retry_cnt;
	qp->timer_retries = 0;
	qp->rnr_retry = qp->rnr_left = a->rnr_retry;
	qp->rnr_delay_ns = tbp_rnr_timer_ns(a->min_rnr_timer);
	if (qp->head != TBP_NONE)
		tbp_qp_arm_timer(l, qp);
	return 0;
}

static void qp_hold(struct tbp_link *l, struct tbp_qp *qp, uint64_t until)
{
	if (until <= qp->hold_until)
		return;
	qp->hold_until = until;
	if (l->rnr_next <= l->now || until < l->rnr_next)
		l->rnr_next = until;
}

/* A message of QP slot qi that a rewind sends again (responses have their own attempts). */
static bool rewound(const struct tbp_smsg *m, uint16_t qi)
{
	return !tbp_is_resp(m->op) && m->qp == qi && !m->orphan;
}

void tbp_qp_rewind(struct tbp_link *l, struct tbp_qp *qp, bool from_msn, uint32_t msn,
		   uint64_t hold_ns)
{
	uint16_t qi = tbp_qp_index(l, qp), i;

	l->st.qp_rewinds++;
	qp->send_attempt++;
	/* Take the QP's WRs out of the send queue; they go back in post order below. */
	tbp_sendq_drop(l, rewound, qi);
	for (i = qp->head; i != TBP_NONE; i = l->smsgs[i].next) {
		struct tbp_smsg *m = &l->smsgs[i];

		/* Outcome known, or a READ the peer already executed: nothing to resend. Frames
		 * of the old attempt still in the window go out as NOPs. */
		if (!m->done && !(m->op == TBP_W_READ_REQ && m->read_seen) &&
		    (!from_msn || seq_diff(m->msn, msn) >= 0)) {
			m->next_off = 0;
			m->all_queued = 0;
		}
		if (!m->all_queued)
			tbp_sendq_append(l, m);
	}
	if (hold_ns > l->now)
		qp_hold(l, qp, hold_ns);
	qp->progress_ns = hold_ns > l->now ? hold_ns : l->now;
	tbp_qp_arm_timer(l, qp);
}

void tbp_msg_nak(struct tbp_link *l, const struct tbp_hdr *h)
{
	struct tbp_qp *qp = tbp_qp_find(l, h->dst_qpn);

	if (!qp || qp->rqpn != h->src_qpn || qp->state != QP_OPEN) {
		l->st.drop_no_qp++;
		return;
	}
	if (h->status == TBP_NAK_RNR)
		l->st.rnr_naks_received++;
	else if (h->status == TBP_NAK_NOT_READY)
		l->st.naks_not_ready_received++;
	else
		l->st.naks_qp_error_received++;
	/* One answer per attempt: NAKs for frames of an attempt already given up are stale. */
	if (attempt_diff((uint16_t)h->ssn, qp->send_attempt) <= 0) {
		l->st.rx_stale++;
		return;
	}
	qp->progress_ns = l->now;
	switch (h->status) {
	case TBP_NAK_RNR:
		if (qp->rnr_retry != 7) {
			if (!qp->rnr_left) {
				tbp_qp_fail(l, qp, TBP_ERR_RNR_RETRY_EXC);
				return;
			}
			qp->rnr_left--;
		}
		tbp_qp_rewind(l, qp, true, h->msn, l->now + (uint64_t)h->imm * 1000);
		break;
	case TBP_NAK_NOT_READY:
		if (qp->timeout_ns) {
			if (!qp->retries_left) {
				tbp_qp_fail(l, qp, TBP_ERR_RETRY_EXC);
				return;
			}
			qp->retries_left--;
		}
		tbp_qp_rewind(l, qp, false, 0, l->now + qp_timer_interval(l, qp));
		break;
	default:
		tbp_qp_fail(l, qp, TBP_ERR_REMOTE_OP);
		return;
	}
	qp->send_attempt = (uint16_t)h->ssn;
}

void tbp_msg_recut(struct tbp_link *l, struct tbp_txslot *s)
{
	l->st.recuts++;
	if (s->msg != TBP_NONE && s->op != TBP_W_NOP && s->op != TBP_W_MSG_ACK) {
		struct tbp_smsg *m = &l->smsgs[s->msg];
		struct tbp_qp *qp = &l->qps[m->qp];

		if (tbp_is_resp(m->op)) {
			if (s->attempt == m->attempt) {
				/* The requester starts over when it sees the new attempt. */
				m->attempt++;
				m->next_off = 0;
				if (m->all_queued) {
					m->all_queued = 0;
					tbp_sendq_append(l, m);
				}
			}
		} else if (!m->orphan && !m->done && s->attempt == qp->send_attempt) {
			tbp_qp_rewind(l, qp, false, 0, 0);
		}
	}
	s->op = TBP_W_NOP;
	s->payload_len = 0;
}

/* The link still has frames of the QP's messages to send or to get acked. */
static bool qp_link_owes_frames(const struct tbp_link *l, const struct tbp_qp *qp)
{
	uint16_t i;

	for (i = qp->head; i != TBP_NONE; i = l->smsgs[i].next) {
		const struct tbp_smsg *m = &l->smsgs[i];

		if (!m->done && (m->frags_unacked || !m->all_queued))
			return true;
	}
	return false;
}

/* A frame of the QP's own messages went out on a rail and has not been acked. */
static bool qp_frames_on_wire(const struct tbp_link *l, uint16_t qi)
{
	uint32_t seq;

	for (seq = l->snd_una; seq != l->snd_nxt; seq++) {
		const struct tbp_txslot *s = &l->tx[seq & l->win_mask];
		const struct tbp_smsg *m;

		if (s->state != TX_INFLIGHT || s->msg == TBP_NONE || s->op == TBP_W_MSG_ACK ||
		    s->op == TBP_W_NOP)
			continue;
		m = &l->smsgs[s->msg];
		if (m->qp == qi && !tbp_is_resp(m->op))
			return true;
	}
	return false;
}

uint64_t tbp_msg_qp_timers(struct tbp_link *l, uint64_t deadline)
{
	uint32_t i;

	for (i = 0; i < l->cfg.max_qps; i++) {
		struct tbp_qp *qp = &l->qps[i];
		uint64_t interval, due;
		bool on_wire;

		if (qp->state != QP_OPEN || qp->head == TBP_NONE)
			continue;
		interval = qp_timer_interval(l, qp);
		due = qp->progress_ns + interval;
		if (l->now < due) {
			deadline = min64(deadline, due);
			continue;
		}
		on_wire = qp_frames_on_wire(l, (uint16_t)i);
		/* Frames that never left (a full rail queue, a window full of other QPs' frames)
		 * are not the peer's silence: the timer starts again when they go out. */
		if (!on_wire && qp_link_owes_frames(l, qp)) {
			qp->progress_ns = l->now;
			deadline = min64(deadline, l->now + interval);
			continue;
		}
		l->st.qp_timeouts++;
		if (qp->timeout_ns) {
			if (!qp->retries_left) {
				tbp_qp_fail(l, qp, TBP_ERR_RETRY_EXC);
				continue;
			}
			qp->retries_left--;
			qp->timer_retries++;
		}
		/* Frames sent and unacked: the link is retransmitting them, so only count (the
		 * link delivering one gives the count back). Otherwise everything arrived and the
		 * peer's answer was lost: resend the unfinished messages. */
		if (on_wire) {
			qp->progress_ns = l->now;
		} else {
			tbp_qp_rewind(l, qp, false, 0, 0);
		}
		deadline = min64(deadline, l->now + interval);
	}
	return deadline;
}
