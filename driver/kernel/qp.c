// SPDX-License-Identifier: GPL-2.0-only
/*
 * RC/UC/UD queue pairs (QP1's datagram side is in gsi.c, UD datagrams in ud.c): creation, the IBA state machine with
 * flush, RESET and destroy, query, and the IRQ-safe post paths that queue work for the
 * device's send backlog (glue.c).
 */
#include <linux/vmalloc.h>
#include <rdma/ib_mad.h>
#include <rdma/uverbs_ioctl.h>

#include "tbrdma.h"

static void tbrdma_qp_event_work(struct work_struct *work)
{
	struct tbrdma_qp *qp = container_of(work, struct tbrdma_qp, event_work);
	struct ib_event ev = {
		.device = qp->ibqp.device,
		.element.qp = &qp->ibqp,
	};

	/* Outside every driver lock: a ULP may call ib_modify_qp() from its handler. */
	if (test_and_clear_bit(TBRDMA_QP_EV_FATAL, &qp->pending_events) &&
	    qp->ibqp.event_handler) {
		ev.event = IB_EVENT_QP_FATAL;
		qp->ibqp.event_handler(&ev, qp->ibqp.qp_context);
	}
	if (test_and_clear_bit(TBRDMA_QP_EV_LAST_WQE, &qp->pending_events) &&
	    qp->ibqp.event_handler) {
		ev.event = IB_EVENT_QP_LAST_WQE_REACHED;
		qp->ibqp.event_handler(&ev, qp->ibqp.qp_context);
	}
}

struct tbrdma_send_wqe *tbrdma_alloc_send_wqe(struct tbrdma_dev *tdev, size_t size, gfp_t gfp)
{
	struct tbrdma_send_wqe *wqe = kzalloc(size, gfp | __GFP_ACCOUNT);

	if (wqe)
		atomic_inc(&tdev->n_wqe);
	return wqe;
}

void tbrdma_free_send_wqe(struct tbrdma_dev *tdev, struct tbrdma_send_wqe *wqe)
{
	atomic_dec(&tdev->n_wqe);
	kfree(wqe);
}

/* Where the mapped queues are (an empty map: that queue posts by command). */
static int answer_maps(struct tbrdma_qp *qp, struct ib_udata *udata)
{
	struct tbrdma_qp_resp resp = {
		.sq = qp->sq_ring.map,
		.rq = qp->rq_ring.map,
	};

	if (!udata || udata->outlen < sizeof(resp))
		return 0;
	return ib_copy_to_udata(udata, &resp, sizeof(resp));
}

int tbrdma_create_qp(struct ib_qp *ibqp, struct ib_qp_init_attr *init,
		     struct ib_udata *udata)
{
	struct tbrdma_dev *tdev = to_tdev(ibqp->device);
	struct tbrdma_qp *qp = to_tqp(ibqp);
	u32 qpn;
	int err;

	switch (init->qp_type) {
	case IB_QPT_RC:
	case IB_QPT_UC:
	case IB_QPT_UD:
	case IB_QPT_GSI:
		break;
	default:
		return -EOPNOTSUPP;
	}
	if (init->create_flags || (init->srq && init->qp_type == IB_QPT_GSI))
		return -EOPNOTSUPP;
	if (init->cap.max_send_wr > TBRDMA_MAX_QP_WR || init->cap.max_recv_wr > TBRDMA_MAX_QP_WR ||
	    init->cap.max_send_sge > TBRDMA_MAX_SGE || init->cap.max_recv_sge > TBRDMA_MAX_SGE)
		return -EINVAL;
	if (udata && udata->inlen)
		return -EINVAL;
	/* QP1 belongs to ib_mad; its queues are never user-mapped. */
	if (udata && init->qp_type == IB_QPT_GSI)
		return -EOPNOTSUPP;
	if (atomic_inc_return(&tdev->n_qp) > TBRDMA_MAX_QP) {
		atomic_dec(&tdev->n_qp);
		return -EINVAL;
	}

	qp->tdev = tdev;
	mutex_init(&qp->state_mutex);
	spin_lock_init(&qp->sq_lock);
	mutex_init(&qp->sq_ring_mutex);
	spin_lock_init(&qp->rq_lock);
	INIT_LIST_HEAD(&qp->send_outstanding);
	INIT_LIST_HEAD(&qp->send_waiting);
	INIT_LIST_HEAD(&qp->backlog_node);
	INIT_LIST_HEAD(&qp->pending_error_node);
	INIT_WORK(&qp->event_work, tbrdma_qp_event_work);
	qp->state = IB_QPS_RESET;
	qp->sq_sig_all = init->sq_sig_type == IB_SIGNAL_ALL_WR;
	qp->is_user = !!udata;
	qp->max_send_wr = max(init->cap.max_send_wr, 1U);
	qp->max_recv_wr = max(init->cap.max_recv_wr, 1U);
	qp->max_send_sge = max(init->cap.max_send_sge, 1U);
	qp->max_recv_sge = max(init->cap.max_recv_sge, 1U);
	qp->attr.port_num = 1;
	qp->attr.path_mtu = IB_MTU_4096;
	qp->attr.path_mig_state = IB_MIG_MIGRATED;
	qp->rq_capacity = qp->max_recv_wr;
	if (init->srq) {
		/* It posts nothing itself: its ring only holds what it takes from the SRQ. */
		qp->srq = to_tsrq(init->srq);
		qp->rq_capacity = TBRDMA_SRQ_QP_WQES;
		qp->max_recv_wr = 0;
		qp->max_recv_sge = 0;
	}
	if (tbrdma_rq_ring_wanted(qp, init->qp_type, udata)) {
		err = tbrdma_rq_ring_create(qp, udata);
		if (err)
			goto err_count;
	}
	qp->rq = kvcalloc(qp->rq_capacity, sizeof(*qp->rq), GFP_KERNEL_ACCOUNT);
	if (!qp->rq) {
		err = -ENOMEM;
		goto err_rq;
	}
	err = tbrdma_sq_ring_create(qp, init->qp_type, udata);
	if (!err)
		err = answer_maps(qp, udata);
	if (err)
		goto err_rq;

	if (init->qp_type == IB_QPT_GSI) {
		/* GSI datagrams go to the peer's QP1, carried on the core QP pair 1 <-> 1. */
		qp->dest_qpn = TBRDMA_GSI_QPN;
		err = tbrdma_gsi_create(qp);
		if (err)
			goto err_rq;
		qpn = TBRDMA_GSI_QPN;
		err = xa_insert_bh(&tdev->qps, qpn, qp, GFP_KERNEL);
	} else {
		err = xa_alloc_cyclic_bh(&tdev->qps, &qpn, qp,
					 XA_LIMIT(TBRDMA_FIRST_QPN, TBRDMA_MAX_QPN),
					 &tdev->next_qpn, GFP_KERNEL);
		if (err > 0)
			err = 0;
	}
	if (err) {
		if (qp->gsi)
			tbrdma_gsi_destroy(qp);
		goto err_rq;
	}
	ibqp->qp_num = qpn;
	init->cap.max_send_wr = qp->max_send_wr;
	init->cap.max_recv_wr = qp->max_recv_wr;
	init->cap.max_send_sge = qp->max_send_sge;
	init->cap.max_recv_sge = qp->max_recv_sge;
	/* every QP takes TBRDMA_MAX_INLINE bytes; a larger request is clamped to it */
	init->cap.max_inline_data = TBRDMA_MAX_INLINE;
	return 0;

err_rq:
	tbrdma_sq_ring_destroy(qp);
	tbrdma_rq_ring_destroy(qp);
	kvfree(qp->rq);
err_count:
	atomic_dec(&tdev->n_qp);
	return err;
}

/* Completes every receive WQE not yet completed with a flush error. rq_lock held. */
static void flush_recvs_locked(struct tbrdma_qp *qp)
{
	struct ib_wc wc = {
		.status = IB_WC_WR_FLUSH_ERR,
		.opcode = IB_WC_RECV,
		.qp = &qp->ibqp,
	};

	/* What the process posted into a mapped ring is flushed too. */
	if (qp->rq_ring.entry)
		tbrdma_rq_ring_pull(qp);
	while (qp->rq_head != qp->rq_tail) {
		struct tbrdma_recv_wqe *wqe = &qp->rq[qp->rq_head % qp->rq_capacity];

		if (!wqe->done) {
			wc.wr_id = wqe->wr_id;
			tbrdma_qp_complete(qp, false, &wc);
			qp->stat_flushed++;
		}
		wqe->done = false;
		wqe->generation++;
		qp->rq_head++;
	}
	qp->rq_claim = qp->rq_head;
	tbrdma_rq_ring_retired(qp);
}

static void tbrdma_flush_recvs(struct tbrdma_qp *qp)
{
	unsigned long flags;

	if (qp->gsi) {
		spin_lock_irqsave(&qp->gsi->lock, flags);
		tbrdma_gsi_flush_recvs(qp);
		spin_unlock_irqrestore(&qp->gsi->lock, flags);
		return;
	}
	spin_lock_irqsave(&qp->rq_lock, flags);
	flush_recvs_locked(qp);
	spin_unlock_irqrestore(&qp->rq_lock, flags);
}

/* Flushes what the core no longer owns (and what it never got), in post order. */
static void tbrdma_flush_sends(struct tbrdma_qp *qp)
{
	struct tbrdma_send_wqe *wqe, *next;
	unsigned long flags;
	LIST_HEAD(flushed);

	spin_lock_irqsave(&qp->sq_lock, flags);
	list_splice_init(&qp->send_outstanding, &flushed);
	list_splice_tail_init(&qp->send_waiting, &flushed);
	qp->send_count = 0;
	qp->reads_in_core = 0;
	spin_unlock_irqrestore(&qp->sq_lock, flags);
	tbrdma_backlog_del(qp);
	list_for_each_entry_safe(wqe, next, &flushed, node) {
		struct ib_wc wc = {
			.wr_id = wqe->wr_id,
			.status = IB_WC_WR_FLUSH_ERR,
			.qp = &qp->ibqp,
		};

		list_del(&wqe->node);
		tbrdma_qp_complete(qp, true, &wc);
		qp->stat_flushed++;
		tbrdma_free_send_wqe(qp->tdev, wqe);
	}
	if (qp->gsi)
		tbrdma_gsi_flush_pending(qp);
}

/* Link lock held. fatal: a transport error, reported to the consumer as an async event. */
void tbrdma_qp_to_error(struct tbrdma_qp *qp, bool fatal)
{
	if (qp->state == IB_QPS_ERR || qp->state == IB_QPS_RESET)
		return;
	/* Set before flushing: a post that sees ERR flushes its own WR (sq/rq lock order). */
	WRITE_ONCE(qp->state, IB_QPS_ERR);
	qp->attr.qp_state = IB_QPS_ERR;
	tbrdma_rq_ring_set_error(qp, true);
	tbrdma_link_cancel_qp(qp);
	tbrdma_flush_sends(qp);
	tbrdma_flush_recvs(qp);
	if (fatal && !qp->discard)
		set_bit(TBRDMA_QP_EV_FATAL, &qp->pending_events);
	/* IBA 11.6.3: an SRQ's QP in error will take no more WQEs (consumers drain on it). */
	if (qp->srq && !qp->discard)
		set_bit(TBRDMA_QP_EV_LAST_WQE, &qp->pending_events);
	if (qp->pending_events)
		queue_work(system_wq, &qp->event_work);
}

/*
 * Drops the QP's work without completions and purges its CQ entries. Link lock held. The QP
 * stays in discard mode (a QP1 work item may still flush): RESET clears it afterwards.
 */
static void tbrdma_qp_discard(struct tbrdma_qp *qp)
{
	qp->discard = true;
	list_del_init(&qp->pending_error_node);
	tbrdma_qp_to_error(qp, false);
	tbrdma_flush_sends(qp);
	tbrdma_flush_recvs(qp);
	tbrdma_cq_purge(to_tcq(qp->ibqp.send_cq), qp);
	if (qp->ibqp.recv_cq != qp->ibqp.send_cq)
		tbrdma_cq_purge(to_tcq(qp->ibqp.recv_cq), qp);
}

/* Copies the attributes modify_qp set, for query_qp (rxe keeps them the same way). */
static void tbrdma_save_attr(struct tbrdma_qp *qp, const struct ib_qp_attr *attr, int mask)
{
	struct ib_qp_attr *a = &qp->attr;

	if (mask & IB_QP_ACCESS_FLAGS)
		a->qp_access_flags = attr->qp_access_flags;
	if (mask & IB_QP_PKEY_INDEX)
		a->pkey_index = attr->pkey_index;
	if (mask & IB_QP_PORT)
		a->port_num = attr->port_num;
	if (mask & IB_QP_QKEY)
		a->qkey = attr->qkey;
	if (mask & IB_QP_AV) {
		a->ah_attr = attr->ah_attr;
		/* a reference ib_core drops after modify_qp; only the index is kept */
		a->ah_attr.grh.sgid_attr = NULL;
	}
	if (mask & IB_QP_PATH_MTU)
		a->path_mtu = attr->path_mtu;
	if (mask & IB_QP_TIMEOUT)
		a->timeout = attr->timeout;
	if (mask & IB_QP_RETRY_CNT)
		a->retry_cnt = attr->retry_cnt;
	if (mask & IB_QP_RNR_RETRY)
		a->rnr_retry = attr->rnr_retry;
	if (mask & IB_QP_RQ_PSN)
		a->rq_psn = attr->rq_psn & 0xffffff;
	if (mask & IB_QP_MAX_QP_RD_ATOMIC)
		a->max_rd_atomic = attr->max_rd_atomic;
	if (mask & IB_QP_MIN_RNR_TIMER)
		a->min_rnr_timer = attr->min_rnr_timer;
	if (mask & IB_QP_SQ_PSN)
		a->sq_psn = attr->sq_psn & 0xffffff;
	if (mask & IB_QP_MAX_DEST_RD_ATOMIC)
		a->max_dest_rd_atomic = attr->max_dest_rd_atomic;
	if (mask & IB_QP_PATH_MIG_STATE)
		a->path_mig_state = attr->path_mig_state;
	if (mask & IB_QP_DEST_QPN)
		a->dest_qp_num = attr->dest_qp_num;
	if (mask & IB_QP_EN_SQD_ASYNC_NOTIFY)
		a->en_sqd_async_notify = attr->en_sqd_async_notify;
}

/* The core link an RC/UC QP entering RTR is carried by (loop.c). */
static u8 tbrdma_qp_loop_side(const struct tbrdma_qp *qp)
{
	u32 qpn = qp->ibqp.qp_num;

	if (!qp->av_is_own || qp->gsi || qp->ibqp.qp_type == IB_QPT_UD)
		return TBRDMA_LOOP_NONE;
	if (qpn == qp->dest_qpn)
		return TBRDMA_LOOP_SELF;
	return qpn < qp->dest_qpn ? TBRDMA_LOOP_LOW : TBRDMA_LOOP_HIGH;
}

int tbrdma_modify_qp(struct ib_qp *ibqp, struct ib_qp_attr *attr, int mask,
		     struct ib_udata *udata)
{
	struct tbrdma_qp *qp = to_tqp(ibqp);
	struct tbrdma_dev *tdev = qp->tdev;
	enum ib_qp_state cur, next;
	bool av_is_own = false;
	int err = 0;

	if (udata && (udata->inlen || udata->outlen))
		return -EOPNOTSUPP;
	if ((mask & IB_QP_AV) && (rdma_ah_get_ah_flags(&attr->ah_attr) & IB_AH_GRH))
		av_is_own = tbrdma_gid_is_own(tdev, rdma_ah_read_grh(&attr->ah_attr)->dgid.raw);
	mutex_lock(&qp->state_mutex);
	cur = (mask & IB_QP_CUR_STATE) ? attr->cur_qp_state : qp->state;
	next = (mask & IB_QP_STATE) ? attr->qp_state : cur;
	if (!ib_modify_qp_is_ok(cur, next, ibqp->qp_type, mask)) {
		err = -EINVAL;
		goto out;
	}
	if (((mask & IB_QP_PORT) && attr->port_num != 1) ||
	    ((mask & IB_QP_PKEY_INDEX) && attr->pkey_index != 0) ||
	    ((mask & IB_QP_PATH_MTU) && attr->path_mtu > IB_MTU_4096) ||
	    ((mask & IB_QP_MAX_QP_RD_ATOMIC) && attr->max_rd_atomic > 16) ||
	    ((mask & IB_QP_MAX_DEST_RD_ATOMIC) && attr->max_dest_rd_atomic > 16) ||
	    ((mask & IB_QP_DEST_QPN) && attr->dest_qp_num > TBRDMA_MAX_QPN)) {
		err = -EINVAL;
		goto out;
	}
	/* IBA field widths: 5-bit timeout and RNR timer, 3-bit retry counts. */
	if (((mask & IB_QP_TIMEOUT) && attr->timeout > 31) ||
	    ((mask & IB_QP_RETRY_CNT) && attr->retry_cnt > 7) ||
	    ((mask & IB_QP_RNR_RETRY) && attr->rnr_retry > 7) ||
	    ((mask & IB_QP_MIN_RNR_TIMER) && attr->min_rnr_timer > 31)) {
		err = -EINVAL;
		goto out;
	}

	spin_lock_bh(&tdev->lock);
	tbrdma_save_attr(qp, attr, mask);
	if ((mask & IB_QP_DEST_QPN) && ibqp->qp_type != IB_QPT_GSI)
		qp->dest_qpn = attr->dest_qp_num;
	if (mask & IB_QP_QKEY)
		qp->qkey = attr->qkey;
	if (mask & IB_QP_AV)
		qp->av_is_own = av_is_own;

	if (next != cur) {
		switch (next) {
		case IB_QPS_RESET:
			/* IBA: the work queues are emptied, without completions. */
			tbrdma_qp_discard(qp);
			qp->discard = false;
			WRITE_ONCE(qp->state, IB_QPS_RESET);
			tbrdma_rq_ring_set_error(qp, false);
			break;
		case IB_QPS_ERR:
			tbrdma_qp_to_error(qp, false);
			break;
		case IB_QPS_RTR:
			qp->loop_side = tbrdma_qp_loop_side(qp);
			err = tbrdma_link_open_qp(qp);
			if (!err)
				WRITE_ONCE(qp->state, next);
			break;
		default:
			WRITE_ONCE(qp->state, next);
			break;
		}
	}
	qp->attr.qp_state = qp->state;
	/* The core's per-QP retry timers follow the attributes (they were set at RTR). */
	if (!err && (mask & (IB_QP_TIMEOUT | IB_QP_RETRY_CNT | IB_QP_RNR_RETRY |
			     IB_QP_MIN_RNR_TIMER)) &&
	    (qp->state == IB_QPS_RTR || qp->state == IB_QPS_RTS))
		tbrdma_link_qp_attr(qp);
	tbrdma_after_core_call(tdev);
	spin_unlock_bh(&tdev->lock);
out:
	mutex_unlock(&qp->state_mutex);
	return err;
}

int tbrdma_query_qp(struct ib_qp *ibqp, struct ib_qp_attr *attr, int mask,
		    struct ib_qp_init_attr *init)
{
	struct tbrdma_qp *qp = to_tqp(ibqp);

	memset(init, 0, sizeof(*init));
	mutex_lock(&qp->state_mutex);
	spin_lock_bh(&qp->tdev->lock);
	*attr = qp->attr;
	attr->qp_state = qp->state;
	spin_unlock_bh(&qp->tdev->lock);
	mutex_unlock(&qp->state_mutex);
	attr->cur_qp_state = attr->qp_state;
	attr->sq_draining = 0;
	attr->cap.max_send_wr = qp->max_send_wr;
	attr->cap.max_recv_wr = qp->max_recv_wr;
	attr->cap.max_send_sge = qp->max_send_sge;
	attr->cap.max_recv_sge = qp->max_recv_sge;
	attr->cap.max_inline_data = TBRDMA_MAX_INLINE;
	init->cap = attr->cap;
	init->qp_type = ibqp->qp_type;
	init->send_cq = ibqp->send_cq;
	init->recv_cq = ibqp->recv_cq;
	init->srq = ibqp->srq;
	init->sq_sig_type = qp->sq_sig_all ? IB_SIGNAL_ALL_WR : IB_SIGNAL_REQ_WR;
	return 0;
}

int tbrdma_destroy_qp(struct ib_qp *ibqp, struct ib_udata *udata)
{
	struct tbrdma_qp *qp = to_tqp(ibqp);
	struct tbrdma_dev *tdev = qp->tdev;

	mutex_lock(&qp->state_mutex);
	spin_lock_bh(&tdev->lock);
	/* Outstanding work vanishes with the QP and no CQ entry may still point at it. */
	tbrdma_qp_discard(qp);
	tbrdma_mcast_detach_qp(qp);
	xa_erase(&tdev->qps, ibqp->qp_num);
	tbrdma_after_core_call(tdev);
	spin_unlock_bh(&tdev->lock);
	mutex_unlock(&qp->state_mutex);
	/* Outside the state mutex: a pending handler may be in ib_modify_qp() on this QP. */
	cancel_work_sync(&qp->event_work);
	if (qp->gsi)
		tbrdma_gsi_destroy(qp);
	tbrdma_sq_ring_destroy(qp);
	tbrdma_rq_ring_destroy(qp);
	kvfree(qp->rq);
	mutex_destroy(&qp->state_mutex);
	atomic_dec(&tdev->n_qp);
	return 0;
}

/*
 * Resolves and checks an SGE list against the QP's PD. Any context: MRs are freed after an
 * RCU grace period, and only their immutable fields are read here.
 */
/*
 * Checks SGEs against the MRs of `pd` and copies them into a WQE (any context). pd NULL:
 * copies them unchecked; their keys are checked when data lands (receive WQEs, below).
 */
int tbrdma_take_sges(struct tbrdma_dev *tdev, struct ib_pd *pd, const struct ib_sge *src,
		     int num_sge, struct tbrdma_sge *dst, u32 *total, bool for_write_into)
{
	u64 sum = 0;
	int i, err = 0;

	rcu_read_lock();
	for (i = 0; i < num_sge; i++) {
		struct tbrdma_mr *mr;

		dst[i].addr = src[i].addr;
		dst[i].length = src[i].length;
		dst[i].lkey = src[i].lkey;
		if (!src[i].length)
			continue;
		if (!pd) {
			sum += src[i].length;
			continue;
		}
		mr = tbrdma_lookup_mr_post(tdev, src[i].lkey);
		if (!mr || &mr->pd->ibpd != pd) {
			err = -EINVAL;
			break;
		}
		/* A fast MR may be registered by a REG_MR posted just before: its key, rights
		 * and range are checked when the data moves (tbrdma_copy_sges). */
		if (mr->fast) {
			sum += src[i].length;
			continue;
		}
		if (for_write_into && !(mr->access & IB_ACCESS_LOCAL_WRITE)) {
			err = -EACCES;
			break;
		}
		if (!tbrdma_mr_range_ok(mr, src[i].addr, src[i].length)) {
			err = -EINVAL;
			break;
		}
		sum += src[i].length;
	}
	rcu_read_unlock();
	if (err)
		return err;
	if (sum > TBRDMA_MAX_MSG_SIZE)
		return -EINVAL;
	*total = sum;
	return 0;
}

static void tbrdma_init_send_wqe(struct tbrdma_qp *qp, const struct ib_send_wr *wr,
				 struct tbrdma_send_wqe *wqe)
{
	wqe->qp = qp;
	wqe->wr_id = wr->wr_id;
	wqe->opcode = wr->opcode;
	wqe->signaled = qp->sq_sig_all || (wr->send_flags & IB_SEND_SIGNALED);
	wqe->fence = !!(wr->send_flags & IB_SEND_FENCE);
	wqe->solicited = !!(wr->send_flags & IB_SEND_SOLICITED);
	wqe->num_sge = wr->num_sge;
	if (wr->opcode == IB_WR_SEND_WITH_IMM || wr->opcode == IB_WR_RDMA_WRITE_WITH_IMM)
		wqe->imm = (__force u32)wr->ex.imm_data;
	/* SEND_WITH_INV and LOCAL_INV name the key to invalidate (mr.c). */
	if (wr->opcode == IB_WR_SEND_WITH_INV || wr->opcode == IB_WR_LOCAL_INV) {
		wqe->rkey = wr->ex.invalidate_rkey;
	} else if (wr->opcode == IB_WR_REG_MR) {
		wqe->reg_mr = to_tmr(reg_wr(wr)->mr);
		wqe->reg_key = reg_wr(wr)->key;
		wqe->reg_access = reg_wr(wr)->access;
	} else if (tbrdma_wr_is_atomic(wr->opcode)) {
		wqe->rkey = atomic_wr(wr)->rkey;
		wqe->raddr = atomic_wr(wr)->remote_addr;
		wqe->compare_add = atomic_wr(wr)->compare_add;
		wqe->swap = atomic_wr(wr)->swap;
	} else if (wr->opcode != IB_WR_SEND && wr->opcode != IB_WR_SEND_WITH_IMM) {
		wqe->rkey = rdma_wr(wr)->rkey;
		wqe->raddr = rdma_wr(wr)->remote_addr;
	}
}

/*
 * IB_SEND_INLINE: the data is copied into the WQE now, so the SGEs need no MR and their
 * buffers may be reused as soon as the post returns (IBA 10.8.3.2; rxe copies the same
 * way). user_addrs: the SGEs are addresses of the posting process (uverbs' POST_SEND runs
 * in it); else kernel addresses (a kernel consumer, or a slot of the mapped send queue).
 */
static int tbrdma_build_inline(struct tbrdma_qp *qp, const struct ib_send_wr *wr,
			       bool user_addrs, struct tbrdma_send_wqe **out)
{
	struct tbrdma_send_wqe *wqe;
	u32 total = 0, done = 0;
	int i;

	if (tbrdma_wr_is_rd_atomic(wr->opcode))
		return -EINVAL;
	for (i = 0; i < wr->num_sge; i++) {
		if (wr->sg_list[i].length > TBRDMA_MAX_INLINE - total)
			return -EINVAL;
		total += wr->sg_list[i].length;
	}
	wqe = tbrdma_alloc_send_wqe(qp->tdev, sizeof(*wqe) + total, GFP_ATOMIC);
	if (!wqe)
		return -ENOMEM;
	tbrdma_init_send_wqe(qp, wr, wqe);
	wqe->gathered = (u8 *)(wqe + 1);
	for (i = 0; i < wr->num_sge; i++) {
		const struct ib_sge *sge = &wr->sg_list[i];

		if (!user_addrs)
			memcpy(wqe->gathered + done, (void *)(uintptr_t)sge->addr, sge->length);
		else if (copy_from_user(wqe->gathered + done, u64_to_user_ptr(sge->addr),
					sge->length)) {
			tbrdma_free_send_wqe(qp->tdev, wqe);
			return -EFAULT;
		}
		done += sge->length;
	}
	wqe->num_sge = 0;
	wqe->total_len = total;
	*out = wqe;
	return 0;
}

/* Checks one WR and builds its WQE (any context). */
int tbrdma_build_send(struct tbrdma_qp *qp, const struct ib_send_wr *wr, bool user_addrs,
		      struct tbrdma_send_wqe **out)
{
	struct tbrdma_send_wqe *wqe;
	int err;

	if (wr->num_sge > qp->max_send_sge || wr->num_sge < 0)
		return -EINVAL;
	if (qp->ibqp.qp_type == IB_QPT_UD)
		return tbrdma_ud_build_send(qp, wr, out);
	switch (wr->opcode) {
	case IB_WR_SEND:
	case IB_WR_SEND_WITH_IMM:
	case IB_WR_SEND_WITH_INV:
	case IB_WR_RDMA_WRITE:
	case IB_WR_RDMA_WRITE_WITH_IMM:
		break;
	case IB_WR_RDMA_READ:
	case IB_WR_ATOMIC_CMP_AND_SWP:
	case IB_WR_ATOMIC_FETCH_AND_ADD:
		if (qp->ibqp.qp_type != IB_QPT_RC)
			return -EINVAL;
		break;
	case IB_WR_REG_MR:
	case IB_WR_LOCAL_INV:
		/*
		 * Local operations (mr.c): no data, run in send queue order. REG_MR comes from
		 * kernel ULPs only; LOCAL_INV also from a user QP's mapped send queue (sq.c),
		 * which never passes REG_MR.
		 */
		wqe = tbrdma_alloc_send_wqe(qp->tdev, sizeof(*wqe), GFP_ATOMIC);
		if (!wqe)
			return -ENOMEM;
		tbrdma_init_send_wqe(qp, wr, wqe);
		wqe->num_sge = 0;
		*out = wqe;
		return 0;
	default:
		return -EINVAL;
	}
	if (wr->send_flags & IB_SEND_INLINE)
		return tbrdma_build_inline(qp, wr, user_addrs, out);

	wqe = tbrdma_alloc_send_wqe(qp->tdev, sizeof(*wqe), GFP_ATOMIC);
	if (!wqe)
		return -ENOMEM;
	tbrdma_init_send_wqe(qp, wr, wqe);
	err = tbrdma_take_sges(qp->tdev, qp->ibqp.pd, wr->sg_list, wr->num_sge, wqe->sge,
			       &wqe->total_len, tbrdma_wr_is_rd_atomic(wr->opcode));
	/* The original value of an atomic is 8 bytes (rxe: "atomic length != 8"). */
	if (!err && tbrdma_wr_is_atomic(wr->opcode) && wqe->total_len != 8)
		err = -EINVAL;
	if (err) {
		tbrdma_free_send_wqe(qp->tdev, wqe);
		return err;
	}
	*out = wqe;
	return 0;
}

/* Whether the QP takes sends now: 0, or the error of a post in its state. */
int tbrdma_send_state_check(struct tbrdma_qp *qp)
{
	enum ib_qp_state state = READ_ONCE(qp->state);

	if (state != IB_QPS_RTS && state != IB_QPS_ERR)
		return -EINVAL;
	/* no link yet (no key): nothing could carry the WR */
	if (state == IB_QPS_RTS && !READ_ONCE(qp->tdev->link_ready))
		return -ENOTCONN;
	return 0;
}

/* Queues a built WQE behind the QP's earlier ones, or frees it when the queue is full. */
int tbrdma_queue_send(struct tbrdma_qp *qp, struct tbrdma_send_wqe *wqe)
{
	unsigned long flags;

	spin_lock_irqsave(&qp->sq_lock, flags);
	if (qp->send_count >= qp->max_send_wr) {
		spin_unlock_irqrestore(&qp->sq_lock, flags);
		tbrdma_free_send_wqe(qp->tdev, wqe);
		return -ENOMEM;
	}
	list_add_tail(&wqe->node, &qp->send_waiting);
	qp->send_count++;
	spin_unlock_irqrestore(&qp->sq_lock, flags);
	return 0;
}

/* Hands queued sends to the device's backlog, now or from a work item. */
void tbrdma_kick_sends(struct tbrdma_qp *qp)
{
	struct tbrdma_dev *tdev = qp->tdev;

	tbrdma_backlog_add(qp);
	if (irqs_disabled() || in_hardirq()) {
		queue_work(system_highpri_wq, &tdev->kick_work);
		return;
	}
	tbrdma_link_push_backlog(tdev);
}

/*
 * Any context (rxe and siw accept posts with interrupts off, and so do we): WRs are checked
 * and queued under the QP's IRQ-safe send lock; the device's backlog hands them to the core
 * in post order, right here when the device lock may be taken, else from a work item.
 */
int tbrdma_post_send(struct ib_qp *ibqp, const struct ib_send_wr *wr,
		     const struct ib_send_wr **bad_wr)
{
	struct tbrdma_qp *qp = to_tqp(ibqp);
	bool queued = false;
	int err;

	if (qp->is_user)
		atomic64_inc(&qp->tdev->stat_user_post_send);
	if (qp->gsi)
		return tbrdma_gsi_post_send(qp, wr, bad_wr);
	/* A POST_SEND command without WRs is the doorbell of the mapped send queue (sq.c). */
	if (!wr && qp->sq_ring.entry)
		return tbrdma_sq_ring_drain(qp);
	err = tbrdma_send_state_check(qp);
	if (err) {
		*bad_wr = wr;
		return err;
	}
	for (; wr; wr = wr->next) {
		struct tbrdma_send_wqe *wqe;

		err = tbrdma_build_send(qp, wr, qp->is_user, &wqe);
		if (!err)
			err = tbrdma_queue_send(qp, wqe);
		if (err) {
			*bad_wr = wr;
			break;
		}
		queued = true;
	}
	if (queued)
		tbrdma_kick_sends(qp);
	return err;
}

/* Any context: the receive ring has its own IRQ-safe lock (the core's claims nest inside). */
int tbrdma_post_recv(struct ib_qp *ibqp, const struct ib_recv_wr *wr,
		     const struct ib_recv_wr **bad_wr)
{
	struct tbrdma_qp *qp = to_tqp(ibqp);
	unsigned long flags;
	int err = 0;

	if (qp->is_user)
		atomic64_inc(&qp->tdev->stat_user_post_recv);
	if (qp->gsi)
		return tbrdma_gsi_post_recv(qp, wr, bad_wr);
	/*
	 * Receives for a QP attached to an SRQ are posted to the SRQ (IBA 11.4.1.2, rxe); a QP
	 * with a mapped receive queue posts into it, and a command without WRs is its doorbell
	 * in the error state (rq.c): the new receives are flushed.
	 */
	if (qp->srq || (wr && qp->rq_ring.entry)) {
		*bad_wr = wr;
		return -EINVAL;
	}
	if (!wr) {
		spin_lock_irqsave(&qp->rq_lock, flags);
		if (qp->rq_ring.entry && READ_ONCE(qp->state) == IB_QPS_ERR)
			flush_recvs_locked(qp);
		spin_unlock_irqrestore(&qp->rq_lock, flags);
		return 0;
	}
	spin_lock_irqsave(&qp->rq_lock, flags);
	if (READ_ONCE(qp->state) == IB_QPS_RESET) {
		err = -EINVAL;
		*bad_wr = wr;
		goto out;
	}
	for (; wr; wr = wr->next) {
		struct tbrdma_recv_wqe *wqe;

		if (qp->rq_tail - qp->rq_head >= qp->rq_capacity) {
			err = -ENOMEM;
		} else if (wr->num_sge > qp->max_recv_sge || wr->num_sge < 0) {
			err = -EINVAL;
		} else {
			wqe = &qp->rq[qp->rq_tail % qp->rq_capacity];
			/*
			 * Keys unchecked: they are checked when data lands (glue.c, env_buf_copy),
			 * as rxe does, so a key that goes bad after the post (its MR moved to
			 * another PD, or deregistered) fails that receive with a protection error
			 * and the sender's WR with a remote operation error.
			 */
			err = tbrdma_take_sges(qp->tdev, NULL, wr->sg_list, wr->num_sge,
					       wqe->sge, &wqe->total_len, true);
			if (!err) {
				wqe->wr_id = wr->wr_id;
				wqe->num_sge = wr->num_sge;
				wqe->done = false;
				qp->rq_tail++;
			}
		}
		if (err) {
			*bad_wr = wr;
			break;
		}
	}
	/* The error transition sets the state before it flushes under this lock. */
	if (READ_ONCE(qp->state) == IB_QPS_ERR)
		flush_recvs_locked(qp);
out:
	spin_unlock_irqrestore(&qp->rq_lock, flags);
	return err;
}
