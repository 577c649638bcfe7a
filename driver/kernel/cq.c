// SPDX-License-Identifier: GPL-2.0-only
/*
 * Completion queues: a ring per CQ under an IRQ-safe lock, filled by the core's callbacks and
 * the flush paths. A user CQ is a ring of ib_uverbs_wc mapped into the process, which polls
 * it without system calls (as rxe's provider does); a kernel CQ is a ring of ib_wc drained by
 * poll_cq. Overrun, resize and notification follow IBA as rxe implements them; a destroyed or
 * reset QP's entries are purged here from kernel rings and by the provider from mapped ones.
 */
#include <linux/vmalloc.h>
#include <rdma/uverbs_ioctl.h>

#include "tbrdma.h"

static void tbrdma_cq_notify_work(struct work_struct *work);
static void tbrdma_cq_err_work(struct work_struct *work);

static bool cq_mapped(const struct tbrdma_cq *cq)
{
	return cq->uq.entry;
}

/* The provider asks for a mapped CQ by leaving room for the answer. */
static bool wants_map(struct ib_udata *udata)
{
	return udata && udata->outlen >= sizeof(struct tbrdma_cq_resp);
}

static int map_ring(struct tbrdma_uqueue *uq, struct ib_udata *udata, u32 cqe)
{
	struct tbrdma_cq_resp resp = {};
	int err = tbrdma_uqueue_create(uq, udata, cqe, sizeof(struct ib_uverbs_wc));

	if (err)
		return err;
	resp.cq = uq->map;
	err = ib_copy_to_udata(udata, &resp, sizeof(resp));
	if (err)
		tbrdma_uqueue_destroy(uq);
	return err;
}

int tbrdma_create_cq(struct ib_cq *ibcq, const struct ib_cq_init_attr *attr,
		     TBRDMA_CREATE_CQ_LAST_ARG)
{
	struct ib_udata *drv_udata = TBRDMA_CREATE_CQ_UDATA;
	struct tbrdma_dev *tdev = to_tdev(ibcq->device);
	struct tbrdma_cq *cq = to_tcq(ibcq);
	int err;

	if (attr->flags || attr->cqe < 1 || attr->cqe > TBRDMA_MAX_CQE ||
	    attr->comp_vector >= ibcq->device->num_comp_vectors)
		return -EINVAL;
	if (atomic_inc_return(&tdev->n_cq) > TBRDMA_MAX_CQ) {
		atomic_dec(&tdev->n_cq);
		return -EINVAL;
	}
	spin_lock_init(&cq->lock);
	cq->capacity = attr->cqe;
	if (wants_map(drv_udata)) {
		err = map_ring(&cq->uq, drv_udata, cq->capacity);
	} else {
		cq->queue = kvcalloc(cq->capacity, sizeof(*cq->queue), GFP_KERNEL_ACCOUNT);
		err = cq->queue ? 0 : -ENOMEM;
	}
	if (err) {
		atomic_dec(&tdev->n_cq);
		return err;
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
	tbrdma_uqueue_destroy(&cq->uq);
	kvfree(cq->queue);
	atomic_dec(&to_tdev(ibcq->device)->n_cq);
	return 0;
}

static struct ib_uverbs_wc *uq_slot(const struct tbrdma_cq *cq, u32 index)
{
	return (struct ib_uverbs_wc *)cq->uq.slots + (index & cq->uq.mask);
}

/*
 * Completions the process has not consumed yet. Its consumer index is only a hint: one that
 * claims more than the CQ holds (a buggy or hostile process) makes the CQ look full, which
 * overruns that process's own CQ and nothing else.
 */
static u32 uq_pending(const struct tbrdma_cq *cq)
{
	u32 pending = cq->uq_producer - READ_ONCE(cq->uq.hdr->consumer);

	return min(pending, cq->capacity);
}

/* A mapped CQ moves to a new mapped ring; the provider maps it and unmaps the old one. */
static int resize_mapped(struct tbrdma_cq *cq, u32 cqe, struct ib_udata *udata)
{
	struct tbrdma_uqueue uq = {}, old;
	unsigned long flags;
	u32 i, pending, start;
	int err;

	if (!wants_map(udata))
		return -EINVAL;
	err = map_ring(&uq, udata, cqe);
	if (err)
		return err;
	spin_lock_irqsave(&cq->lock, flags);
	pending = uq_pending(cq);
	if (pending > cqe) {
		spin_unlock_irqrestore(&cq->lock, flags);
		tbrdma_uqueue_destroy(&uq);
		return -EINVAL;
	}
	start = cq->uq_producer - pending;
	for (i = 0; i < pending; i++)
		((struct ib_uverbs_wc *)uq.slots)[i] = *uq_slot(cq, start + i);
	old = cq->uq;
	cq->uq = uq;
	cq->uq_producer = pending;
	smp_store_release(&cq->uq.hdr->producer, pending);
	cq->capacity = cqe;
	cq->overflowed = false;
	cq->ibcq.cqe = cqe;
	spin_unlock_irqrestore(&cq->lock, flags);
	tbrdma_uqueue_destroy(&old);
	return 0;
}

/* Keeps every queued completion, in order; fewer entries than queued is -EINVAL like rxe. */
int tbrdma_resize_cq(struct ib_cq *ibcq, tbrdma_cqe_t cqe, struct ib_udata *udata)
{
	struct tbrdma_cq *cq = to_tcq(ibcq);
	struct ib_wc *queue, *old;
	unsigned long flags;
	u32 i;

	if ((long)cqe < 1 || cqe > TBRDMA_MAX_CQE)
		return -EINVAL;
	if (cq_mapped(cq))
		return resize_mapped(cq, cqe, udata);
	if (udata && (udata->inlen || udata->outlen))
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
/* As ib_uverbs_poll_cq copies a completion out (copy_wc_to_user). */
static void uq_write(struct tbrdma_cq *cq, const struct ib_wc *wc)
{
	struct ib_uverbs_wc *u = uq_slot(cq, cq->uq_producer);

	u->wr_id = wc->wr_id;
	u->status = wc->status;
	u->opcode = wc->opcode;
	u->vendor_err = wc->vendor_err;
	u->byte_len = wc->byte_len;
	u->ex.imm_data = (__u32 __force)wc->ex.imm_data;
	u->qp_num = wc->qp->qp_num;
	u->src_qp = wc->src_qp;
	u->wc_flags = wc->wc_flags;
	u->pkey_index = wc->pkey_index;
	u->slid = ib_lid_cpu16(wc->slid);
	u->sl = wc->sl;
	u->dlid_path_bits = wc->dlid_path_bits;
	u->port_num = wc->port_num;
	u->reserved = 0;
	/* The slot is complete before the process can see the new producer index. */
	smp_store_release(&cq->uq.hdr->producer, ++cq->uq_producer);
}

bool tbrdma_cq_push(struct tbrdma_cq *cq, const struct ib_wc *wc, bool solicited)
{
	unsigned long flags;
	bool notify = false;

	spin_lock_irqsave(&cq->lock, flags);
	if ((cq_mapped(cq) ? uq_pending(cq) : cq->count) >= cq->capacity) {
		cq->overflowed = true;
		spin_unlock_irqrestore(&cq->lock, flags);
		queue_work(system_highpri_wq, &cq->err_work);
		return false;
	}
	if (cq_mapped(cq)) {
		uq_write(cq, wc);
	} else {
		cq->queue[(cq->head + cq->count) % cq->capacity] = *wc;
		cq->count++;
	}
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

/*
 * Removes every queued completion of qp (destroy, RESET): none may outlive the QP. A mapped
 * ring is the provider's to clean (it may be polling it right now): it does so when the
 * destroy or modify command returns.
 */
void tbrdma_cq_purge(struct tbrdma_cq *cq, struct tbrdma_qp *qp)
{
	unsigned long flags;
	u32 i, kept = 0;

	if (cq_mapped(cq))
		return;
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

	/* Only a process polls a mapped CQ, in its own memory. */
	if (cq_mapped(cq))
		return -EOPNOTSUPP;
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
	if ((flags & IB_CQ_REPORT_MISSED_EVENTS) &&
	    (cq_mapped(cq) ? uq_pending(cq) : cq->count))
		ret = 1;
	spin_unlock_irqrestore(&cq->lock, irqflags);
	return ret;
}
