// SPDX-License-Identifier: GPL-2.0-only
/*
 * Atomics (IB_WR_ATOMIC_CMP_AND_SWP / FETCH_AND_ADD) and MR re-registration.
 *
 * The protocol core decides when an incoming atomic runs (once, in the QP's message order)
 * and this file runs it on the MR's page: rxe (rxe_mr.c) does the same under a spinlock;
 * the kernel's atomic64 operations give IB_ATOMIC_HCA semantics and more (they are atomic
 * against the CPUs too), on every architecture.
 */
#include <linux/atomic.h>
#include <linux/highmem.h>

#include "tbrdma.h"
#include "tbp.h"

static void tbrdma_atomic_op(atomic64_t *va, u32 opcode, u64 compare_add, u64 swap, u64 *orig)
{
	if (opcode == TBP_OP_ATOMIC_FETCH_ADD)
		*orig = atomic64_fetch_add(compare_add, va);
	else if (opcode == TBP_OP_ATOMIC_WRITE)
		/* the 8 bytes as posted, in one aligned store no reader can see half of */
		atomic64_set(va, (__force s64)cpu_to_le64(compare_add));
	else
		*orig = atomic64_cmpxchg(va, compare_add, swap);
}

/* Core callback, link lock held: mr_check has approved 8 aligned bytes of the MR. */
int tbrdma_env_atomic(void *ctx, const struct tbp_buf *buf, uint32_t opcode, uint64_t compare_add,
		      uint64_t swap, uint64_t *orig)
{
	struct tbrdma_dev *tdev = ctx;
	struct tbrdma_mr *mr = tbrdma_lookup_mr(tdev, buf->rkey, true);
	unsigned long page_index;
	atomic64_t *va;
	u64 offset;
	void *kaddr;

	/* Checked again: the MR may have been deregistered since the request arrived. */
	if (!mr || mr->is_dma || (!mr->pages && !mr->fast) ||
	    !tbrdma_mr_range_ok(mr, buf->addr, 8))
		return TBP_ERR_REMOTE_ACCESS;
	if (buf->addr & 7)
		return TBP_ERR_REMOTE_INVALID;
	if (mr->fast) {
		/* A fast MR's pages are kernel addresses (mr.c); 8 aligned bytes fit in one. */
		u32 avail;

		va = tbrdma_fr_kaddr(mr, buf->addr, &avail);
		if (!va || avail < 8)
			return TBP_ERR_REMOTE_ACCESS;
		if ((uintptr_t)va & 7)
			return TBP_ERR_REMOTE_INVALID;
		tbrdma_atomic_op(va, opcode, compare_add, swap, orig);
		return 0;
	}
	offset = buf->addr - mr->iova + mr->first_page_offset;
	page_index = offset >> PAGE_SHIFT;
	if (page_index >= mr->npages)
		return TBP_ERR_REMOTE_ACCESS;
	/* iova and the page offset differ only by whole pages and first_page_offset, which
	 * keep 8-byte alignment only if the buffer itself is aligned: check the real address. */
	if ((offset & ~PAGE_MASK) & 7)
		return TBP_ERR_REMOTE_INVALID;
	kaddr = kmap_local_page(mr->pages[page_index]);
	va = kaddr + (offset & ~PAGE_MASK);
	tbrdma_atomic_op(va, opcode, compare_add, swap, orig);
	kunmap_local(kaddr);
	return 0;
}

/*
 * IBA 10.7.2.2: a requester has at most max_rd_atomic READs and atomics outstanding (the
 * responder resources the peer granted). rxe counts them the same way (rxe_req.c); a QP
 * that never set it (0) gets one, so it is never stuck.
 */
bool tbrdma_rd_atomic_full(const struct tbrdma_qp *qp)
{
	return qp->reads_in_core >= max_t(u32, qp->attr.max_rd_atomic, 1);
}

/*
 * ibv_rereg_mr: what rxe supports (rxe_verbs.c rxe_rereg_user_mr), a new PD and new access
 * rights in place; new translation (IB_MR_REREG_TRANS) is refused with EOPNOTSUPP and the
 * caller registers a new MR. Returning NULL tells ib_core the MR was changed in place
 * (it moves ibmr->pd itself).
 */
struct ib_mr *tbrdma_rereg_user_mr(struct ib_mr *ibmr, int flags, u64 start, u64 length,
				   u64 iova, int access, struct ib_pd *ibpd,
				   struct ib_udata *udata)
{
	struct tbrdma_dev *tdev = to_tdev(ibmr->device);
	struct tbrdma_mr *mr = to_tmr(ibmr);

	if (flags & ~(IB_MR_REREG_PD | IB_MR_REREG_ACCESS))
		return ERR_PTR(-EOPNOTSUPP);
	if (!mr->umem || atomic_read(&mr->num_mw))
		return ERR_PTR(-EINVAL);
	/* Pages pinned read-only cannot become writable without pinning them again. */
	if ((flags & IB_MR_REREG_ACCESS) && ib_access_writable(access) && !mr->umem->writable)
		return ERR_PTR(-EOPNOTSUPP);
	/* The core's callbacks read pd and access under the link lock. */
	spin_lock_bh(&tdev->lock);
	if (flags & IB_MR_REREG_PD)
		WRITE_ONCE(mr->pd, to_tpd(ibpd));
	if (flags & IB_MR_REREG_ACCESS)
		WRITE_ONCE(mr->access, access);
	spin_unlock_bh(&tdev->lock);
	return NULL;
}
