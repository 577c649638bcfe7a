// SPDX-License-Identifier: GPL-2.0-only
/*
 * Shared receive queues (IBA 10.2.9, 11.2.3; rxe_srq.c for the limit and resize rules).
 *
 * An SRQ is a ring of posted receive WQEs. A QP attached to it has no receive queue of its
 * own to post to: when the core needs a receive for that QP (a SEND's first fragment, a
 * WRITE_WITH_IMM), the oldest SRQ WQE is moved into the QP's private ring, where it is
 * claimed, completed and flushed exactly like a WQE posted to the QP. So a QP error flushes
 * only the WQEs that QP had taken; the SRQ keeps the rest for the other QPs.
 */
#include <linux/vmalloc.h>

#include "tbrdma.h"

static void tbrdma_srq_limit_work(struct work_struct *work)
{
	struct tbrdma_srq *srq = container_of(work, struct tbrdma_srq, limit_work);
	struct ib_event ev = {
		.device = srq->ibsrq.device,
		.element.srq = &srq->ibsrq,
		.event = IB_EVENT_SRQ_LIMIT_REACHED,
	};

	/* Outside every driver lock: the handler may re-arm the limit with ib_modify_srq(). */
	if (srq->ibsrq.event_handler)
		srq->ibsrq.event_handler(&ev, srq->ibsrq.srq_context);
}

int tbrdma_create_srq(struct ib_srq *ibsrq, struct ib_srq_init_attr *init,
		      struct ib_udata *udata)
{
	struct tbrdma_dev *tdev = to_tdev(ibsrq->device);
	struct tbrdma_srq *srq = to_tsrq(ibsrq);
	u32 max_wr = init->attr.max_wr;

	if (init->srq_type != IB_SRQT_BASIC)
		return -EOPNOTSUPP;
	if (!max_wr || max_wr > TBRDMA_MAX_SRQ_WR || init->attr.max_sge > TBRDMA_MAX_SGE ||
	    init->attr.srq_limit >= max_wr)
		return -EINVAL;
	if (udata && (udata->inlen || udata->outlen))
		return -EINVAL;
	if (atomic_inc_return(&tdev->n_srq) > TBRDMA_MAX_SRQ) {
		atomic_dec(&tdev->n_srq);
		return -EINVAL;
	}
	srq->tdev = tdev;
	spin_lock_init(&srq->lock);
	INIT_WORK(&srq->limit_work, tbrdma_srq_limit_work);
	srq->capacity = max_wr;
	srq->max_sge = max(init->attr.max_sge, 1U);
	srq->limit = init->attr.srq_limit;
	srq->ring = kvcalloc(srq->capacity, sizeof(*srq->ring), GFP_KERNEL_ACCOUNT);
	if (!srq->ring) {
		atomic_dec(&tdev->n_srq);
		return -ENOMEM;
	}
	init->attr.max_wr = srq->capacity;
	init->attr.max_sge = srq->max_sge;
	return 0;
}

int tbrdma_destroy_srq(struct ib_srq *ibsrq, struct ib_udata *udata)
{
	struct tbrdma_srq *srq = to_tsrq(ibsrq);

	/* ib_core refuses this while a QP is attached, so nothing takes WQEs any more. */
	cancel_work_sync(&srq->limit_work);
	kvfree(srq->ring);
	atomic_dec(&srq->tdev->n_srq);
	return 0;
}

/* Moves the posted WQEs into a ring of new_capacity entries (IB_SRQ_MAX_WR). */
static int tbrdma_srq_resize(struct tbrdma_srq *srq, u32 new_capacity)
{
	struct tbrdma_recv_wqe *ring, *old;
	unsigned long flags;
	u32 i, count;

	ring = kvcalloc(new_capacity, sizeof(*ring), GFP_KERNEL_ACCOUNT);
	if (!ring)
		return -ENOMEM;
	spin_lock_irqsave(&srq->lock, flags);
	count = srq->tail - srq->head;
	if (count > new_capacity || (srq->limit && srq->limit >= new_capacity)) {
		spin_unlock_irqrestore(&srq->lock, flags);
		kvfree(ring);
		return -EINVAL;
	}
	for (i = 0; i < count; i++)
		ring[i] = srq->ring[(srq->head + i) % srq->capacity];
	old = srq->ring;
	srq->ring = ring;
	srq->capacity = new_capacity;
	srq->head = 0;
	srq->tail = count;
	spin_unlock_irqrestore(&srq->lock, flags);
	kvfree(old);
	return 0;
}

int tbrdma_modify_srq(struct ib_srq *ibsrq, struct ib_srq_attr *attr,
		      enum ib_srq_attr_mask mask, struct ib_udata *udata)
{
	struct tbrdma_srq *srq = to_tsrq(ibsrq);
	unsigned long flags;
	int err;

	if (mask & ~(IB_SRQ_MAX_WR | IB_SRQ_LIMIT))
		return -EINVAL;
	if (udata && (udata->inlen || udata->outlen))
		return -EINVAL;
	if (mask & IB_SRQ_MAX_WR) {
		if (!attr->max_wr || attr->max_wr > TBRDMA_MAX_SRQ_WR)
			return -EINVAL;
		err = tbrdma_srq_resize(srq, attr->max_wr);
		if (err)
			return err;
	}
	if (mask & IB_SRQ_LIMIT) {
		spin_lock_irqsave(&srq->lock, flags);
		err = attr->srq_limit >= srq->capacity ? -EINVAL : 0;
		/* Arming with fewer WQEs posted than the limit fires at the next take (rxe). */
		if (!err)
			srq->limit = attr->srq_limit;
		spin_unlock_irqrestore(&srq->lock, flags);
		if (err)
			return err;
	}
	return 0;
}

int tbrdma_query_srq(struct ib_srq *ibsrq, struct ib_srq_attr *attr)
{
	struct tbrdma_srq *srq = to_tsrq(ibsrq);
	unsigned long flags;

	spin_lock_irqsave(&srq->lock, flags);
	attr->max_wr = srq->capacity;
	attr->max_sge = srq->max_sge;
	attr->srq_limit = srq->limit;
	spin_unlock_irqrestore(&srq->lock, flags);
	return 0;
}

int tbrdma_post_srq_recv(struct ib_srq *ibsrq, const struct ib_recv_wr *wr,
			 const struct ib_recv_wr **bad_wr)
{
	struct tbrdma_srq *srq = to_tsrq(ibsrq);
	unsigned long flags;
	int err = 0;

	spin_lock_irqsave(&srq->lock, flags);
	for (; wr; wr = wr->next) {
		struct tbrdma_recv_wqe *wqe;

		if (srq->tail - srq->head >= srq->capacity) {
			err = -ENOMEM;
		} else if (wr->num_sge > srq->max_sge || wr->num_sge < 0) {
			err = -EINVAL;
		} else {
			wqe = &srq->ring[srq->tail % srq->capacity];
			err = tbrdma_take_sges(srq->tdev, ibsrq->pd, wr->sg_list, wr->num_sge,
					       wqe->sge, &wqe->total_len, true);
			if (!err) {
				wqe->wr_id = wr->wr_id;
				wqe->num_sge = wr->num_sge;
				srq->tail++;
			}
		}
		if (err) {
			*bad_wr = wr;
			break;
		}
	}
	spin_unlock_irqrestore(&srq->lock, flags);
	return err;
}

/*
 * Gives a QP attached to an SRQ the SRQ's oldest WQE, at the tail of the QP's own ring.
 * Returns false when the SRQ is empty or the QP holds as many WQEs as its ring takes. The
 * QP's rq_lock is held (lock order: the QP's rq_lock, then the SRQ's lock).
 */
bool tbrdma_srq_refill(struct tbrdma_qp *qp)
{
	struct tbrdma_srq *srq = qp->srq;
	struct tbrdma_recv_wqe *dst, *src;
	bool fire = false;

	lockdep_assert_held(&qp->rq_lock);
	if (qp->rq_tail - qp->rq_head >= qp->rq_capacity)
		return false;
	spin_lock(&srq->lock);
	if (srq->head == srq->tail) {
		spin_unlock(&srq->lock);
		return false;
	}
	src = &srq->ring[srq->head % srq->capacity];
	dst = &qp->rq[qp->rq_tail % qp->rq_capacity];
	/* The slot keeps its generation: handles to its earlier use stay stale. */
	dst->wr_id = src->wr_id;
	dst->num_sge = src->num_sge;
	dst->total_len = src->total_len;
	memcpy(dst->sge, src->sge, src->num_sge * sizeof(src->sge[0]));
	dst->done = false;
	srq->head++;
	qp->rq_tail++;
	if (srq->limit && srq->tail - srq->head < srq->limit) {
		srq->limit = 0;		/* the event disarms the limit (IBA 10.2.9.2) */
		fire = true;
	}
	spin_unlock(&srq->lock);
	if (fire)
		queue_work(system_wq, &srq->limit_work);
	return true;
}
