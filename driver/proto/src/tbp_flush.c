// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * tbp_flush.c - closing a QP and failing or tearing down a link: every posted WR and
 * every claimed receive WQE is reported exactly once, in order, with a flush status.
 */
#include "tbp_internal.h"

static void flush_rx(struct tbp_link *l, uint16_t qi, uint32_t status)
{
	struct tbp_qp *qp = &l->qps[qi];

	/* Claimed receive WQEs are reported in SSN order so the verbs queue stays consistent. */
	for (;;) {
		struct tbp_rmsg *first = NULL;
		struct tbp_recv_completion c;
		uint32_t i;

		for (i = 0; i < l->rmsg_slots; i++) {
			struct tbp_rmsg *r = &l->rmsgs[i];

			if (r->state != RM_FREE && r->qp == qi &&
			    (!first || (r->claimed && (!first->claimed ||
						       seq_diff(r->ssn, first->ssn) < 0))))
				first = r;
		}
		if (!first)
			return;
		if (first->claimed) {
			memset(&c, 0, sizeof(c));
			c.qpn = qp->qpn;
			c.src_qpn = qp->rqpn;
			c.recv_handle = first->recv_handle;
			c.opcode = TBP_OP_SEND;
			c.status = (uint16_t)status;
			l->env.recv_done(l->env.ctx, &c);
		}
		tbp_rmsg_free(l, first);
	}
}

/*
 * Report every posted WR of qp now, in post order. With a transport error (first != status)
 * WRs whose outcome is already known keep it, the first unfinished one gets `first` and
 * the rest are flushed, as an IBA requester moving to the error state does.
 */
/* Any orphan leaves the send queue (qi unused: orphans of every QP go). */
static bool orphaned(const struct tbp_smsg *m, uint16_t qi)
{
	(void)qi;
	return m->orphan;
}

static void flush_tx(struct tbp_link *l, struct tbp_qp *qp, uint32_t status, uint32_t first)
{
	uint16_t qi = tbp_qp_index(l, qp);
	bool failed = first == status;
	uint32_t i;

	while (qp->head != TBP_NONE) {
		struct tbp_smsg *m = &l->smsgs[qp->head];
		uint32_t st = status;

		if (!failed && m->done) {
			st = m->status;
		} else if (!failed) {
			st = first;
			failed = true;
		}
		qp->head = m->next;
		l->env.send_done(l->env.ctx, qp->qpn, m->wr_id, st);
		m->orphan = 1;
		m->all_queued = 1;
	}
	qp->tail = TBP_NONE;
	for (i = 0; i < l->cfg.max_msgs; i++) {
		struct tbp_smsg *m = &l->smsgs[i];

		if (m->state == SM_ACTIVE && m->qp == qi) {
			m->orphan = 1;
			m->all_queued = 1;
		}
	}
	/* Orphans leave the send queue; those with frames in flight wait for their acks. */
	tbp_sendq_drop(l, orphaned, qi);
	for (i = 0; i < l->cfg.max_msgs; i++) {
		struct tbp_smsg *m = &l->smsgs[i];

		if (m->state == SM_ACTIVE && m->orphan && !m->frags_unacked)
			tbp_smsg_free(l, m);
	}
}

int tbp_qp_close(struct tbp_link *l, uint32_t qpn)
{
	struct tbp_qp *qp = tbp_qp_find(l, qpn);

	if (!qp)
		return -ENOENT;
	flush_tx(l, qp, TBP_ERR_FLUSHED, TBP_ERR_FLUSHED);
	flush_rx(l, tbp_qp_index(l, qp), TBP_ERR_FLUSHED);
	tbp_qlist_remove(l, TBP_QL_ACK, qp);
	tbp_qlist_remove(l, TBP_QL_STALLED, qp);
	/* The slot stays hashed as a tombstone until it is needed: the peer's messages to a
	 * closed QP get an error NAK instead of "not ready" retries. */
	qp->used = 0;
	qp->state = QP_CLOSED;
	qp->tseq = l->tomb_seq++;
	qp->err_pending = 0;
	qp->ack_pending = 0;
	l->open_qps--;
	return 0;
}

void tbp_qp_fail(struct tbp_link *l, struct tbp_qp *qp, uint32_t status)
{
	if (status == TBP_ERR_RETRY_EXC)
		l->st.retry_exc++;
	else if (status == TBP_ERR_RNR_RETRY_EXC)
		l->st.rnr_retry_exc++;
	/* The QP stays in the table in error (posts fail, the peer's messages are NAKed) until
	 * its owner closes it; receive WQEs are flushed then. */
	qp->state = QP_ERROR;
	flush_tx(l, qp, TBP_ERR_FLUSHED, status);
}

void tbp_msg_fail_all(struct tbp_link *l, uint32_t status)
{
	uint32_t i;

	tbp_qlist_clear(l, TBP_QL_STALLED);
	for (i = 0; i < l->cfg.max_qps; i++) {
		struct tbp_qp *qp = &l->qps[i];

		if (!qp->used)
			continue;
		flush_tx(l, qp, status, status);
		flush_rx(l, (uint16_t)i, status);
	}
	tbp_qlist_clear(l, TBP_QL_ACK);
	/* Nothing is sent any more: drop the window and every remaining slot. */
	for (i = 0; i < l->cfg.window; i++)
		l->tx[i].state = TX_FREE;
	l->snd_una = l->snd_nxt;
	l->queued = 0;
	for (i = 0; i < l->cfg.max_msgs; i++)
		if (l->smsgs[i].state == SM_ACTIVE)
			tbp_smsg_free(l, &l->smsgs[i]);
	l->sendq_head = TBP_NONE;
	l->sendq_tail = TBP_NONE;
}
