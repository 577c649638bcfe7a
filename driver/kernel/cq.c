// SPDX-License-Identifier: GPL-2.0-only
/*
 * Completion queues: a ring of ib_wc per CQ under an IRQ-safe lock, filled by the core's
 * callbacks and the flush paths, drained by poll_cq. Overrun, resize, notification and the
 * purge of a destroyed or reset QP's entries follow IBA as rxe implements it.
 */
#include <linux/vmalloc.h>
#include <rdma/uverbs_ioctl.h>

#include "tbrdma.h"

static void tbrdma_cq_notify_work(struct work_struct *work);
static void tbrdma_cq_err_work(struct work_struct *work);

int tbrdma_create_cq(struct ib_cq *ibcq, const struct ib_cq_init_attr *attr,
		     TBRDMA_CREATE_CQ_LAST_ARG)
{
	struct tbrdma_dev *tdev = to_tdev(ibcq->device);
	struct tbrdma_cq *cq = to_tcq(ibcq);

	if (attr->flags || attr->cqe < 1 || attr->cqe > TBRDMA_MAX_CQE ||
	    attr->comp_vector >= ibcq->device->num_comp_vectors)
		return -EINVAL;
	if (atomic_inc_return(&tdev->n_cq) > TBRDMA_MAX_CQ) {
		atomic_dec(&tdev->n_cq);
		return -EINVAL;
	}
	spin_lock_init(&cq->lock);
	cq->capacity = attr->cqe;
	cq->queue = kvcalloc(cq->capacity, sizeof(*cq->queue), GFP_KERNEL_ACCOUNT);
	if (!cq->queue) {
		atomic_dec(&tdev->n_cq);
		return -ENOMEM;
	}
	INIT_WORK(&cq->notify_work, tbrdma_cq_notify_work);
	INIT_WORK(&cq->err_work, tbrdma_cq_err_work);
	ibcq->cqe = attr->cqe;
	return 0;
}

int tbrdma_destroy_cq(struct ib_cq *ibcq, struct ib_udata *udata)
{
	struct tbrdma_cq *cq = to_tcq(ibcq);

	cancel_work_sync(&cq->notify_work);
	cancel_work_sync(&cq->err_work);
	kvfree(cq->queue);
	atomic_dec(&to_tdev(ibcq->device)->n_cq);
	return 0;
}

/* Keeps every queued completion, in order; fewer entries than queued is -EINVAL like rxe. */
int tbrdma_resize_cq(struct ib_cq *ibcq, tbrdma_cqe_t cqe, struct ib_udata *udata)
{
	struct tbrdma_cq *cq = to_tcq(ibcq);
	struct ib_wc *queue, *old;
	unsigned long flags;
	u32 i;

	if (udata && (udata->inlen || udata->outlen))
		return -EINVAL;
	if ((long)cqe < 1 || cqe > TBRDMA_MAX_CQE)
		return -EINVAL;
	queue = kvcalloc(cqe, sizeof(*queue), GFP_KERNEL_ACCOUNT);
	if (!queue)
		return -ENOMEM;
	spin_lock_irqsave(&cq->lock, flags);
	if (cq->count > (u32)cqe) {
		spin_unlock_irqrestore(&cq->lock, flags);
		kvfree(queue);
		return -EINVAL;
	}
	for (i = 0; i < cq->count; i++)
		queue[i] = cq->queue[(cq->head + i) % cq->capacity];
	old = cq->queue;
	cq->queue = queue;
	cq->head = 0;
	cq->capacity = cqe;
	cq->overflowed = false;
	ibcq->cqe = cqe;
	spin_unlock_irqrestore(&cq->lock, flags);
	kvfree(old);
	return 0;
}

static void tbrdma_cq_notify_work(struct work_struct *work)
{
	struct tbrdma_cq *cq = container_of(work, struct tbrdma_cq, notify_work);

	if (cq->ibcq.comp_handler)
		cq->ibcq.comp_handler(&cq->ibcq, cq->ibcq.cq_context);
}

static void tbrdma_cq_err_work(struct work_struct *work)
{
	struct tbrdma_cq *cq = container_of(work, struct tbrdma_cq, err_work);
	struct ib_event ev = {
		.device = cq->ibcq.device,
		.element.cq = &cq->ibcq,
		.event = IB_EVENT_CQ_ERR,
	};

	if (cq->ibcq.event_handler)
		cq->ibcq.event_handler(&ev, cq->ibcq.cq_context);
}

/*
 * Queues one completion. A full CQ is an overrun (IBA 11.4.2.1): nothing is overwritten or
 * dropped quietly, the consumer gets IB_EVENT_CQ_ERR and the caller moves the QP whose
 * completion did not fit to the error state. Handlers run from work items, never under the
 * device lock. Any context.
 */
bool tbrdma_cq_push(struct tbrdma_cq *cq, const struct ib_wc *wc, bool solicited)
{
	unsigned long flags;
	bool notify = false;

	spin_lock_irqsave(&cq->lock, flags);
	if (cq->count == cq->capacity) {
		cq->overflowed = true;
		spin_unlock_irqrestore(&cq->lock, flags);
		queue_work(system_highpri_wq, &cq->err_work);
		return false;
	}
	cq->queue[(cq->head + cq->count) % cq->capacity] = *wc;
	cq->count++;
	/* IB_CQ_SOLICITED (IBA 11.4.2.2): the next solicited or unsuccessful completion. */
	if (cq->notify_flags == IB_CQ_NEXT_COMP ||
	    (cq->notify_flags == IB_CQ_SOLICITED &&
	     (wc->status != IB_WC_SUCCESS || solicited))) {
		cq->notify_flags = 0;
		notify = true;
	}
	spin_unlock_irqrestore(&cq->lock, flags);
	/* Deferred: a consumer's handler may post again, which takes the link lock we hold. */
	if (notify)
		queue_work(system_highpri_wq, &cq->notify_work);
	return true;
}

/* Removes every queued completion of qp (destroy, RESET): none may outlive the QP. */
void tbrdma_cq_purge(struct tbrdma_cq *cq, struct tbrdma_qp *qp)
{
	unsigned long flags;
	u32 i, kept = 0;

	spin_lock_irqsave(&cq->lock, flags);
	for (i = 0; i < cq->count; i++) {
		struct ib_wc *wc = &cq->queue[(cq->head + i) % cq->capacity];

		if (wc->qp == &qp->ibqp)
			continue;
		if (kept != i)
			cq->queue[(cq->head + kept) % cq->capacity] = *wc;
		kept++;
	}
	cq->count = kept;
	spin_unlock_irqrestore(&cq->lock, flags);
}

/*
 * A completion of qp on its send or receive CQ. Work of a QP being destroyed or reset is
 * dropped (IBA: no completions for it); an overrun moves the QP to error. Any context; the
 * error transition itself is deferred to the end of the current core call (link lock).
 */
static void qp_complete(struct tbrdma_qp *qp, bool send, const struct ib_wc *wc, bool solicited)
{
	if (qp->discard)
		return;
	if (!tbrdma_cq_push(to_tcq(send ? qp->ibqp.send_cq : qp->ibqp.recv_cq), wc, solicited) &&
	    !qp->gsi && READ_ONCE(qp->state) != IB_QPS_ERR)
		tbrdma_defer_qp_error(qp);
}

void tbrdma_qp_complete(struct tbrdma_qp *qp, bool send, const struct ib_wc *wc)
{
	qp_complete(qp, send, wc, false);
}

/* A receive completion of a message the sender posted with IB_SEND_SOLICITED. */
void tbrdma_qp_complete_solicited(struct tbrdma_qp *qp, const struct ib_wc *wc)
{
	qp_complete(qp, false, wc, true);
}

int tbrdma_poll_cq(struct ib_cq *ibcq, int num_entries, struct ib_wc *wc)
{
	struct tbrdma_cq *cq = to_tcq(ibcq);
	unsigned long flags;
	int n = 0;

	spin_lock_irqsave(&cq->lock, flags);
	while (n < num_entries && cq->count) {
		wc[n++] = cq->queue[cq->head];
		cq->head = (cq->head + 1) % cq->capacity;
		cq->count--;
	}
	spin_unlock_irqrestore(&cq->lock, flags);
	return n;
}

int tbrdma_req_notify_cq(struct ib_cq *ibcq, enum ib_cq_notify_flags flags)
{
	struct tbrdma_cq *cq = to_tcq(ibcq);
	unsigned long irqflags;
	int ret = 0;

	spin_lock_irqsave(&cq->lock, irqflags);
	if (cq->notify_flags != IB_CQ_NEXT_COMP)
		cq->notify_flags = flags & IB_CQ_SOLICITED_MASK;
	if ((flags & IB_CQ_REPORT_MISSED_EVENTS) && cq->count)
		ret = 1;
	spin_unlock_irqrestore(&cq->lock, irqflags);
	return ret;
}
