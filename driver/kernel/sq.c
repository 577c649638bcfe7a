// SPDX-License-Identifier: GPL-2.0-only
/*
 * The mapped send queue of a user RC or UC QP (tbrdma-abi.h), as rxe's provider posts: the
 * process writes WRs into slots of a ring shared with the module and rings a doorbell (a
 * POST_SEND command without WRs); the module takes the slots in order, checks each as
 * uverbs' POST_SEND would, and queues it like any post. The ring also carries what that
 * command cannot express: ATOMIC_WRITE, FLUSH, BIND_MW and LOCAL_INV.
 *
 * The process may rewrite a slot while the module reads it: every field is read once, into
 * a copy on the stack, before it is checked or used; inline data is copied straight into
 * the WQE (it is data, never interpreted).
 */
#include <rdma/uverbs_ioctl.h>

#include "tbrdma.h"
#include "tbp.h"

static bool wants_ring(enum ib_qp_type type, struct ib_udata *udata)
{
	return udata && udata->outlen >= sizeof(struct tbrdma_qp_resp) &&
	       (type == IB_QPT_RC || type == IB_QPT_UC);
}

int tbrdma_sq_ring_create(struct tbrdma_qp *qp, enum ib_qp_type type, struct ib_udata *udata)
{
	BUILD_BUG_ON(sizeof(struct tbrdma_sq_slot) != 512);
	BUILD_BUG_ON(TBRDMA_SQ_MAX_SGE < TBRDMA_MAX_SGE || TBRDMA_SQ_MAX_INLINE < TBRDMA_MAX_INLINE);
	/* A UD QP answers with an empty map: it posts by command. */
	if (!wants_ring(type, udata))
		return 0;
	return tbrdma_uqueue_create(&qp->sq_ring, udata, qp->max_send_wr,
				    sizeof(struct tbrdma_sq_slot));
}

void tbrdma_sq_ring_destroy(struct tbrdma_qp *qp)
{
	tbrdma_uqueue_destroy(&qp->sq_ring);
}

static u32 flush_flags(u8 type, u8 level)
{
	u32 flags = 0;

	if (type & TBRDMA_SQ_FLUSH_GLOBAL)
		flags |= TBP_WR_FLUSH_GLOBAL;
	if (type & TBRDMA_SQ_FLUSH_PERSISTENT)
		flags |= TBP_WR_FLUSH_PERSISTENT;
	if (level == TBRDMA_SQ_FLUSH_MR)
		flags |= TBP_WR_FLUSH_MR;
	return flags;
}

/* A WQE for a slot opcode the kernel's ib_send_wr cannot carry: no SGEs, no inline data. */
static struct tbrdma_send_wqe *slot_wqe(struct tbrdma_qp *qp, const struct tbrdma_sq_slot *s,
					enum ib_wr_opcode opcode)
{
	struct tbrdma_send_wqe *wqe = tbrdma_alloc_send_wqe(qp->tdev, sizeof(*wqe), GFP_KERNEL);

	if (!wqe)
		return NULL;
	wqe->qp = qp;
	wqe->wr_id = s->wr_id;
	wqe->opcode = opcode;
	wqe->signaled = qp->sq_sig_all || (s->send_flags & IB_SEND_SIGNALED);
	wqe->fence = !!(s->send_flags & IB_SEND_FENCE);
	return wqe;
}

/* ATOMIC_WRITE and FLUSH: no local data, a response from the peer; RC only, as in rxe. */
static int build_placement_op(struct tbrdma_qp *qp, const struct tbrdma_sq_slot *s,
			      struct tbrdma_send_wqe **out)
{
	struct tbrdma_send_wqe *wqe;
	bool flush = s->opcode == TBRDMA_SQ_WR_FLUSH;

	if (qp->ibqp.qp_type != IB_QPT_RC || (s->send_flags & IB_SEND_INLINE))
		return -EINVAL;
	if (flush && (!s->flush_type ||
		      (s->flush_type & ~(TBRDMA_SQ_FLUSH_GLOBAL | TBRDMA_SQ_FLUSH_PERSISTENT)) ||
		      s->flush_level > TBRDMA_SQ_FLUSH_MR || s->length > U32_MAX))
		return -EINVAL;
	wqe = slot_wqe(qp, s, flush ? TBRDMA_WR_FLUSH : TBRDMA_WR_ATOMIC_WRITE);
	if (!wqe)
		return -ENOMEM;
	wqe->rkey = s->rkey;
	wqe->raddr = s->remote_addr;
	if (flush) {
		wqe->core_flags = flush_flags(s->flush_type, s->flush_level);
		wqe->total_len = s->length;
	} else {
		/* the slot holds the 8 bytes themselves; the core carries them as a le64 */
		wqe->compare_add = le64_to_cpu((__force __le64)s->compare_add);
		wqe->total_len = 8;
	}
	*out = wqe;
	return 0;
}

/* BIND_MW: runs in send queue order like the other local operations (mw.c). */
static int build_bind(struct tbrdma_qp *qp, const struct tbrdma_sq_slot *s,
		      struct tbrdma_send_wqe **out)
{
	struct tbrdma_send_wqe *wqe;

	if (s->send_flags & IB_SEND_INLINE)
		return -EINVAL;
	wqe = slot_wqe(qp, s, IB_WR_BIND_MW);
	if (!wqe)
		return -ENOMEM;
	wqe->bind.mw_rkey = s->ex;
	wqe->bind.new_rkey = s->rkey;
	wqe->bind.mr_lkey = s->bind_mr_lkey;
	wqe->bind.access = s->bind_access;
	wqe->bind.addr = s->remote_addr;
	wqe->bind.length = s->length;
	*out = wqe;
	return 0;
}

/* The opcodes uverbs' POST_SEND takes for an RC or UC QP, with their kernel WR shapes. */
static int build_from_slot(struct tbrdma_qp *qp, const struct tbrdma_sq_slot *slot,
			   struct tbrdma_send_wqe **out)
{
	struct tbrdma_sq_slot s;
	struct ib_sge sge[TBRDMA_MAX_SGE];
	union {
		struct ib_send_wr send;
		struct ib_rdma_wr rdma;
		struct ib_atomic_wr atomic;
	} w = {};
	struct ib_send_wr *wr = &w.send;
	u32 i;

	memcpy(&s, slot, offsetof(struct tbrdma_sq_slot, sge));
	switch (s.opcode) {
	case TBRDMA_SQ_WR_ATOMIC_WRITE:
	case TBRDMA_SQ_WR_FLUSH:
		return build_placement_op(qp, &s, out);
	case IB_UVERBS_WR_BIND_MW:
		return build_bind(qp, &s, out);
	case IB_UVERBS_WR_LOCAL_INV:	/* a memory window's key (mw.c) */
	case IB_UVERBS_WR_SEND:
	case IB_UVERBS_WR_SEND_WITH_IMM:
	case IB_UVERBS_WR_SEND_WITH_INV:
	case IB_UVERBS_WR_RDMA_WRITE:
	case IB_UVERBS_WR_RDMA_WRITE_WITH_IMM:
	case IB_UVERBS_WR_RDMA_READ:
	case IB_UVERBS_WR_ATOMIC_CMP_AND_SWP:
	case IB_UVERBS_WR_ATOMIC_FETCH_AND_ADD:
		break;
	default:
		return -EINVAL;
	}
	wr->wr_id = s.wr_id;
	wr->opcode = (enum ib_wr_opcode)s.opcode;
	wr->send_flags = s.send_flags & (IB_SEND_FENCE | IB_SEND_SIGNALED | IB_SEND_SOLICITED |
					 IB_SEND_INLINE);
	if (s.opcode == IB_UVERBS_WR_SEND_WITH_INV || s.opcode == IB_UVERBS_WR_LOCAL_INV)
		wr->ex.invalidate_rkey = s.ex;
	else
		wr->ex.imm_data = (__force __be32)s.ex;
	if (s.opcode == IB_UVERBS_WR_ATOMIC_CMP_AND_SWP ||
	    s.opcode == IB_UVERBS_WR_ATOMIC_FETCH_AND_ADD) {
		w.atomic.remote_addr = s.remote_addr;
		w.atomic.rkey = s.rkey;
		w.atomic.compare_add = s.compare_add;
		w.atomic.swap = s.swap;
	} else {
		w.rdma.remote_addr = s.remote_addr;
		w.rdma.rkey = s.rkey;
	}
	if (wr->send_flags & IB_SEND_INLINE) {
		if (s.inline_len > TBRDMA_MAX_INLINE)
			return -EINVAL;
		/* The data is read from the slot, a kernel address, into the WQE. */
		sge[0].addr = (uintptr_t)slot->inline_data;
		sge[0].length = s.inline_len;
		sge[0].lkey = 0;
		wr->num_sge = s.inline_len ? 1 : 0;
	} else {
		if (s.num_sge > qp->max_send_sge)
			return -EINVAL;
		for (i = 0; i < s.num_sge; i++) {
			sge[i].addr = READ_ONCE(slot->sge[i].addr);
			sge[i].length = READ_ONCE(slot->sge[i].length);
			sge[i].lkey = READ_ONCE(slot->sge[i].lkey);
		}
		wr->num_sge = s.num_sge;
	}
	wr->sg_list = sge;
	return tbrdma_build_send(qp, wr, false, out);
}

/*
 * The doorbell: takes every slot the process produced, in order, and stops at the first one
 * it refuses (the error is the command's; consumer then names that slot, which the provider
 * reports as bad_wr and takes back with the ones after it).
 */
int tbrdma_sq_ring_drain(struct tbrdma_qp *qp)
{
	struct tbrdma_uqueue *q = &qp->sq_ring;
	u32 producer, queued = 0;
	int err;

	err = tbrdma_send_state_check(qp);
	if (err)
		return err;
	mutex_lock(&qp->sq_ring_mutex);
	producer = smp_load_acquire(&q->hdr->producer);
	/* More than the ring holds: the process broke its own ring; nothing is taken. */
	if (producer - qp->sq_taken > q->mask + 1)
		err = -EINVAL;
	while (!err && qp->sq_taken != producer) {
		const struct tbrdma_sq_slot *slot =
			(const struct tbrdma_sq_slot *)q->slots + (qp->sq_taken & q->mask);
		struct tbrdma_send_wqe *wqe;

		err = build_from_slot(qp, slot, &wqe);
		if (!err)
			err = tbrdma_queue_send(qp, wqe);
		if (!err) {
			qp->sq_taken++;
			queued++;
		}
	}
	smp_store_release(&q->hdr->consumer, qp->sq_taken);
	mutex_unlock(&qp->sq_ring_mutex);
	if (queued)
		tbrdma_kick_sends(qp);
	return err;
}
