// SPDX-License-Identifier: GPL-2.0-only
/*
 * The mapped receive queue of a user QP without an SRQ (tbrdma-abi.h), as rxe's provider
 * posts receives: the process writes WRs into slots of a ring shared with the module and
 * never enters the kernel for it. The module takes slots into the QP's own receive ring when
 * a message needs a receive (tbrdma_rq_refill) and gives them back by advancing consumer as
 * receives complete or are flushed. Mapped slot i is the QP's receive WQE i (both rings
 * have the same power-of-two size), so "full" means the same thing on both sides.
 *
 * The process may rewrite a slot while the module reads it: each field is read once into
 * the kernel's WQE; SGE keys are checked when data lands in them (glue.c), as for receives
 * posted by command.
 */
#include <rdma/uverbs_ioctl.h>

#include "tbrdma.h"

bool tbrdma_rq_ring_wanted(const struct tbrdma_qp *qp, enum ib_qp_type type,
			   struct ib_udata *udata)
{
	return udata && udata->outlen >= sizeof(struct tbrdma_qp_resp) && !qp->srq &&
	       (type == IB_QPT_RC || type == IB_QPT_UC || type == IB_QPT_UD);
}

/*
 * Before the QP's receive ring is allocated: it takes the mapped ring's size, and the QP
 * reports that size as max_recv_wr (as rxe reports its rounded-up queue), so a consumer
 * that fills the queue to max_recv_wr gets ENOMEM at the next post, not later.
 */
int tbrdma_rq_ring_create(struct tbrdma_qp *qp, struct ib_udata *udata)
{
	int err = tbrdma_uqueue_create(&qp->rq_ring, udata, qp->max_recv_wr,
				       sizeof(struct tbrdma_rq_slot));

	if (!err) {
		qp->rq_capacity = qp->rq_ring.mask + 1;
		qp->max_recv_wr = qp->rq_capacity;
	}
	return err;
}

void tbrdma_rq_ring_destroy(struct tbrdma_qp *qp)
{
	tbrdma_uqueue_destroy(&qp->rq_ring);
}

/*
 * Mapped slot `index` into receive WQE `index`. A slot no post could carry (more SGEs than
 * the QP has, lengths beyond 4 GiB) becomes a receive of no bytes: a message that needs it
 * fails with a length error on that WR, and the rings stay in step. Only the process that
 * wrote it is affected.
 */
static void take_slot(struct tbrdma_qp *qp, u32 index)
{
	const struct tbrdma_rq_slot *slot =
		(const struct tbrdma_rq_slot *)qp->rq_ring.slots + (index & qp->rq_ring.mask);
	struct tbrdma_recv_wqe *wqe = &qp->rq[index & qp->rq_ring.mask];
	struct ib_sge sge[TBRDMA_MAX_SGE];
	u32 i, num_sge = READ_ONCE(slot->num_sge);

	wqe->wr_id = READ_ONCE(slot->wr_id);
	wqe->done = false;
	wqe->num_sge = 0;
	wqe->total_len = 0;
	if (num_sge > qp->max_recv_sge)
		return;
	for (i = 0; i < num_sge; i++) {
		sge[i].addr = READ_ONCE(slot->sge[i].addr);
		sge[i].length = READ_ONCE(slot->sge[i].length);
		sge[i].lkey = READ_ONCE(slot->sge[i].lkey);
	}
	if (tbrdma_take_sges(qp->tdev, NULL, sge, num_sge, wqe->sge, &wqe->total_len, true))
		wqe->total_len = 0;
	else
		wqe->num_sge = num_sge;
}

/*
 * rq_lock held: takes every slot the process has produced, up to a full ring (a producer
 * index claiming more is the process's bug: the excess waits until receives complete).
 */
void tbrdma_rq_ring_pull(struct tbrdma_qp *qp)
{
	u32 producer = smp_load_acquire(&qp->rq_ring.hdr->producer);

	lockdep_assert_held(&qp->rq_lock);
	while (qp->rq_tail != producer && qp->rq_tail - qp->rq_head < qp->rq_capacity) {
		take_slot(qp, qp->rq_tail);
		qp->rq_tail++;
	}
}

/* rq_lock held: the slots below rq_head are the process's again. */
void tbrdma_rq_ring_retired(struct tbrdma_qp *qp)
{
	if (qp->rq_ring.entry)
		smp_store_release(&qp->rq_ring.hdr->consumer, qp->rq_head);
}

/*
 * Entering (or leaving, at RESET) the error state. Set before the flush that pulls the ring:
 * a post the flush did not see finds the flag and rings the doorbell (the full barrier
 * pairs with the provider's between publishing producer and reading flags).
 */
void tbrdma_rq_ring_set_error(struct tbrdma_qp *qp, bool error)
{
	if (!qp->rq_ring.entry)
		return;
	WRITE_ONCE(qp->rq_ring.hdr->flags, error ? TBRDMA_QUEUE_ERROR : 0);
	smp_mb();
}

/* rq_lock held: whether a posted receive is ready to claim, taking more if there is none. */
bool tbrdma_rq_refill(struct tbrdma_qp *qp)
{
	if (qp->rq_claim == qp->rq_tail) {
		if (qp->srq)
			tbrdma_srq_refill(qp);
		else if (qp->rq_ring.entry)
			tbrdma_rq_ring_pull(qp);
	}
	return qp->rq_claim != qp->rq_tail;
}
