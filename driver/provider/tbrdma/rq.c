// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * The mapped receive queue of a QP without SRQ (tbrdma-abi.h), as rxe's provider posts
 * receives: a post writes each WR into the next slot of a ring shared with the kernel module
 * and publishes the producer index, without a system call. The module takes slots as
 * messages arrive and hands them back (consumer) as receives complete or are flushed. Only
 * a QP in the error state needs the kernel at post time: its new receives must complete as
 * flushed, so the post rings the doorbell (a POST_RECV command without WRs) when the module
 * has flagged the error.
 */
#include <config.h>

#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#include "tbrdma.h"

/*
 * Posts the chain; stops at the first WR it cannot take (too many SGEs: EINVAL, a full
 * ring: ENOMEM) and names it in *bad_wr, as the kernel's post_recv does; in RESET nothing
 * is posted (EINVAL).
 */
int tbrdma_rq_post(struct tbrdma_qp *qp, struct ibv_recv_wr *wr, struct ibv_recv_wr **bad_wr)
{
	struct tbrdma_wq *rq = &qp->rq;
	struct ibv_recv_wr *bad;
	uint32_t posted = 0;
	int i, ret = 0;

	/* IBA C10-97.2.1: no receive in RESET (libibverbs keeps the state ibv_modify_qp set). */
	if (qp->vqp.qp.state == IBV_QPS_RESET) {
		*bad_wr = wr;
		return EINVAL;
	}
	pthread_mutex_lock(&rq->lock);
	for (; wr; wr = wr->next, posted++) {
		struct tbrdma_rq_slot *s = (struct tbrdma_rq_slot *)rq->slots +
					   (rq->producer & rq->mask);

		if (wr->num_sge < 0 || (uint32_t)wr->num_sge > qp->max_recv_sge) {
			ret = EINVAL;
			break;
		}
		if (rq->producer - tbrdma_wq_consumed(rq) > rq->mask) {
			ret = ENOMEM;
			break;
		}
		s->wr_id = wr->wr_id;
		s->num_sge = wr->num_sge;
		s->reserved = 0;
		for (i = 0; i < wr->num_sge; i++) {
			s->sge[i].addr = wr->sg_list[i].addr;
			s->sge[i].length = wr->sg_list[i].length;
			s->sge[i].lkey = wr->sg_list[i].lkey;
		}
		rq->producer++;
	}
	if (ret)
		*bad_wr = wr;
	if (posted) {
		tbrdma_wq_publish(rq);
		/* Pairs with the module's barrier between flagging the error and flushing:
		 * either its flush sees this producer, or this sees the flag. */
		atomic_thread_fence(memory_order_seq_cst);
		if (atomic_load_explicit((_Atomic(uint32_t) *)&rq->hdr->flags,
					 memory_order_relaxed) & TBRDMA_QUEUE_ERROR)
			ibv_cmd_post_recv(&qp->vqp.qp, NULL, &bad);
	}
	pthread_mutex_unlock(&rq->lock);
	return ret;
}
