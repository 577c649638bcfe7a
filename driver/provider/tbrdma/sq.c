// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * The mapped send queue of an RC or UC QP (tbrdma-abi.h). A post writes each WR into the
 * next slot of a ring shared with the kernel module, publishes the producer index and rings
 * the doorbell: a POST_SEND command without WRs, one system call per post however many WRs
 * it carries, as with rxe. The module takes the slots in order and stops at the first one it
 * refuses; its consumer index then names that WR, which becomes bad_wr, and the slots from
 * it on are taken back. The ring also carries what the POST_SEND command cannot express:
 * ATOMIC_WRITE, FLUSH, BIND_MW and LOCAL_INV.
 */
#include <config.h>

#include <errno.h>
#include <string.h>

#include "tbrdma.h"

/* The fields every WR has. */
static void put_common(struct tbrdma_sq_slot *s, const struct ibv_send_wr *wr)
{
	memset(s, 0, offsetof(struct tbrdma_sq_slot, sge));
	s->wr_id = wr->wr_id;
	s->opcode = wr->opcode;
	s->send_flags = wr->send_flags;
	s->ex = wr->opcode == IBV_WR_SEND_WITH_INV || wr->opcode == IBV_WR_LOCAL_INV ?
		wr->invalidate_rkey : (uint32_t)wr->imm_data;
	switch (wr->opcode) {
	case IBV_WR_BIND_MW:
		s->ex = wr->bind_mw.mw ? wr->bind_mw.mw->rkey : 0;
		s->rkey = wr->bind_mw.rkey;
		s->remote_addr = wr->bind_mw.bind_info.addr;
		s->length = wr->bind_mw.bind_info.length;
		s->bind_mr_lkey = wr->bind_mw.bind_info.mr ? wr->bind_mw.bind_info.mr->lkey : 0;
		s->bind_access = wr->bind_mw.bind_info.mw_access_flags;
		break;
	case IBV_WR_ATOMIC_CMP_AND_SWP:
	case IBV_WR_ATOMIC_FETCH_AND_ADD:
	case IBV_WR_ATOMIC_WRITE:
		s->remote_addr = wr->wr.atomic.remote_addr;
		s->rkey = wr->wr.atomic.rkey;
		s->compare_add = wr->wr.atomic.compare_add;
		s->swap = wr->wr.atomic.swap;
		break;
	default:
		s->remote_addr = wr->wr.rdma.remote_addr;
		s->rkey = wr->wr.rdma.rkey;
		break;
	}
}

/* Gathers an inline WR's data into the slot now: its buffers are free once the post returns. */
static int put_inline(struct tbrdma_qp *qp, struct tbrdma_sq_slot *s,
		      const struct ibv_sge *sge, int num_sge)
{
	uint32_t len = 0;
	int i;

	for (i = 0; i < num_sge; i++) {
		if (sge[i].length > qp->max_inline - len)
			return EINVAL;
		memcpy(s->inline_data + len, (void *)(uintptr_t)sge[i].addr, sge[i].length);
		len += sge[i].length;
	}
	s->inline_len = len;
	return 0;
}

static int put_sges(struct tbrdma_qp *qp, struct tbrdma_sq_slot *s, const struct ibv_sge *sge,
		    int num_sge)
{
	int i;

	if (num_sge < 0 || (uint32_t)num_sge > qp->max_send_sge)
		return EINVAL;
	for (i = 0; i < num_sge; i++) {
		s->sge[i].addr = sge[i].addr;
		s->sge[i].length = sge[i].length;
		s->sge[i].lkey = sge[i].lkey;
	}
	s->num_sge = num_sge;
	return 0;
}

/* One WR of an ibv_post_send list. ATOMIC_WRITE and FLUSH exist only in the ibv_wr_* API. */
static int put_list_wr(struct tbrdma_qp *qp, struct tbrdma_sq_slot *s,
		       const struct ibv_send_wr *wr)
{
	if (wr->opcode == IBV_WR_ATOMIC_WRITE || wr->opcode == IBV_WR_FLUSH)
		return EINVAL;
	put_common(s, wr);
	if (wr->opcode == IBV_WR_BIND_MW || wr->opcode == IBV_WR_LOCAL_INV)
		return 0;
	if (wr->send_flags & IBV_SEND_INLINE)
		return put_inline(qp, s, wr->sg_list, wr->num_sge);
	return put_sges(qp, s, wr->sg_list, wr->num_sge);
}

/* One WR of an ibv_wr_* region: its SGEs and inline data sit in the QP's region buffers. */
static void put_region_wr(struct tbrdma_qp *qp, struct tbrdma_sq_slot *s,
			  const struct tbrdma_wr *w)
{
	put_common(s, &w->wr);
	if (w->is_inline) {
		memcpy(s->inline_data, &qp->wr_inline[w->inline_off], w->inline_len);
		s->inline_len = w->inline_len;
		s->send_flags |= IBV_SEND_INLINE;
	} else if (w->wr.num_sge) {
		/* checked by the region's setters */
		put_sges(qp, s, &qp->wr_sge[w->sge_off], w->wr.num_sge);
	}
	if (w->wr.opcode == IBV_WR_FLUSH) {
		s->length = w->flush_len;
		s->flush_type = w->flush_type;
		s->flush_level = w->flush_level;
	}
}

int tbrdma_sq_post(struct tbrdma_qp *qp, struct ibv_send_wr *list, bool region, size_t n,
		   size_t *bad)
{
	struct tbrdma_wq *sq = &qp->sq;
	struct ibv_send_wr *wr = list, *unused;
	uint32_t start, taken;
	size_t i;
	int ret = 0, err;

	pthread_mutex_lock(&sq->lock);
	start = sq->producer;
	for (i = 0; region ? i < n : wr != NULL; i++) {
		struct tbrdma_sq_slot *s = (struct tbrdma_sq_slot *)sq->slots +
					   (sq->producer & sq->mask);

		if (sq->producer - tbrdma_wq_consumed(sq) > sq->mask) {
			ret = ENOMEM;
			break;
		}
		if (region) {
			put_region_wr(qp, s, &qp->wr[i]);
		} else {
			ret = put_list_wr(qp, s, wr);
			if (ret)
				break;
			wr = wr->next;
		}
		sq->producer++;
	}
	/* WRs 0..i-1 are in the ring; WR i, if any, was refused here (ret). */
	*bad = i;
	if (sq->producer != start) {
		tbrdma_wq_publish(sq);
		err = ibv_cmd_post_send(&qp->vqp.qp, NULL, &unused);
		taken = tbrdma_wq_consumed(sq) - start;
		if (taken != sq->producer - start) {
			/* The module refused WR `taken`: it and the ones after it are not posted. */
			sq->producer = start + taken;
			tbrdma_wq_publish(sq);
			*bad = taken;
			ret = err ? err : EIO;
		}
	}
	pthread_mutex_unlock(&sq->lock);
	return ret;
}
