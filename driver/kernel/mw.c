// SPDX-License-Identifier: GPL-2.0-only
/*
 * Memory windows (IBA 10.6.7), as rxe_mw.c implements them. A window is a tbrdma_mr of its
 * own in the key table (the `window` MR below, found by its rkey like any MR, never by an
 * lkey): a BIND_MW work request, run in send queue order like the other local operations,
 * points it at a range of a user MR of the same PD with the window's own remote rights, and
 * the remote paths (glue.c, atomic.c) then use it exactly as an MR. The window borrows the
 * MR's pinned pages, so an MR with windows bound to it cannot be deregistered or
 * re-registered (rxe: -EINVAL). Type 1 windows are bound by ibv_bind_mw and unbound by a
 * zero-length bind; type 2 windows are bound to one QP and invalidated by LOCAL_INV,
 * SEND_WITH_INV or deallocation.
 */
#include <rdma/uverbs_ioctl.h>

#include "tbrdma.h"

int tbrdma_alloc_mw(struct ib_mw *ibmw, struct ib_udata *udata)
{
	struct tbrdma_dev *tdev = to_tdev(ibmw->device);
	struct tbrdma_mw *mw = to_tmw(ibmw);
	struct tbrdma_mr *win;
	int tries, err;

	if (ibmw->type != IB_MW_TYPE_1 && ibmw->type != IB_MW_TYPE_2)
		return -EINVAL;
	err = tbrdma_mr_count_get(tdev);
	if (err)
		return err;
	win = kzalloc(sizeof(*win), GFP_KERNEL_ACCOUNT);
	if (!win) {
		atomic_dec(&tdev->n_mr);
		return -ENOMEM;
	}
	win->pd = to_tpd(ibmw->pd);
	win->window = true;
	win->window_type = ibmw->type;
	win->state = TBRDMA_MR_FREE;
	/* Keys as fast MRs have them (index << 8 | key byte): a bind changes the key byte. */
	err = -ENOSPC;
	for (tries = 0; tries < 64; tries++) {
		u32 index = (get_random_u32() | TBRDMA_KEY_FAST) & ~0xffU;

		err = xa_insert_bh(&tdev->mrs, index, win, GFP_KERNEL);
		if (err == -EBUSY)
			continue;
		if (err)
			break;
		win->rkey = index | (get_random_u32() & 0xff);
		mw->win = win;
		ibmw->rkey = win->rkey;
		return 0;
	}
	kfree(win);
	atomic_dec(&tdev->n_mr);
	return err;
}

/* The window no longer lends its MR's pages. Link lock held. */
static void unbind(struct tbrdma_mr *win)
{
	if (win->parent)
		atomic_dec(&win->parent->num_mw);
	win->parent = NULL;
	win->pages = NULL;
	win->npages = 0;
	win->bound_qpn = 0;
	WRITE_ONCE(win->state, TBRDMA_MR_FREE);
}

int tbrdma_dealloc_mw(struct ib_mw *ibmw)
{
	struct tbrdma_dev *tdev = to_tdev(ibmw->device);
	struct tbrdma_mr *win = to_tmw(ibmw)->win;

	/* Under the link lock: no core callback is halfway through the window. */
	spin_lock_bh(&tdev->lock);
	xa_erase(&tdev->mrs, tbrdma_key_index(win->rkey));
	unbind(win);
	spin_unlock_bh(&tdev->lock);
	kfree_rcu(win, rcu);
	atomic_dec(&tdev->n_mr);
	return 0;
}

/* rxe_check_bind_mw and rxe_do_bind_mw. Link lock held. */
int tbrdma_bind_mw(struct tbrdma_qp *qp, const struct tbrdma_send_wqe *wqe)
{
	struct tbrdma_dev *tdev = qp->tdev;
	struct tbrdma_mr *win = xa_load(&tdev->mrs, tbrdma_key_index(wqe->bind.mw_rkey));
	struct tbrdma_mr *mr = NULL;
	/* The window grants remote rights only; zero-based windows are not supported. */
	int access = wqe->bind.access &
		     (IB_ACCESS_REMOTE_READ | IB_ACCESS_REMOTE_WRITE | IB_ACCESS_REMOTE_ATOMIC);
	u64 offset;

	lockdep_assert_held(&tdev->lock);
	if (!win || !win->window || win->rkey != wqe->bind.mw_rkey ||
	    &win->pd->ibpd != qp->ibqp.pd)
		return -EINVAL;
	/* The new key keeps the window's index; only its low 8 bits are the consumer's. */
	if ((wqe->bind.new_rkey & ~0xffU) != (win->rkey & ~0xffU))
		return -EINVAL;
	/* A type 2 window is invalidated before it is bound again, and only on an RC QP. */
	if (win->window_type == IB_MW_TYPE_2 &&
	    (win->state != TBRDMA_MR_FREE || qp->ibqp.qp_type != IB_QPT_RC))
		return -EINVAL;
	if (wqe->bind.access & IB_ZERO_BASED)
		return -EINVAL;
	if (wqe->bind.length) {
		mr = tbrdma_lookup_mr(tdev, wqe->bind.mr_lkey, false);
		if (!mr || mr->window || mr->fast || mr->is_dma || !mr->pages ||
		    &mr->pd->ibpd != qp->ibqp.pd || !(mr->access & IB_ACCESS_MW_BIND) ||
		    !tbrdma_mr_range_ok(mr, wqe->bind.addr, wqe->bind.length))
			return -EINVAL;
		/* IBA 10.6.7.2.6: remote write or atomic rights need local write on the MR. */
		if ((access & (IB_ACCESS_REMOTE_WRITE | IB_ACCESS_REMOTE_ATOMIC)) &&
		    !(mr->access & IB_ACCESS_LOCAL_WRITE))
			return -EINVAL;
	}
	unbind(win);
	if (mr) {
		atomic_inc(&mr->num_mw);
		win->parent = mr;
		win->pages = mr->pages;
		win->npages = mr->npages;
		/* The window's addresses map onto the MR's pages: offset from the window's
		 * start is offset from the MR's start plus the distance between them. */
		offset = wqe->bind.addr - mr->iova;
		win->first_page_offset = mr->first_page_offset + offset;
	}
	win->iova = wqe->bind.addr;
	win->length = wqe->bind.length;
	WRITE_ONCE(win->access, access);
	if (win->window_type == IB_MW_TYPE_2)
		win->bound_qpn = qp->ibqp.qp_num;
	WRITE_ONCE(win->rkey, wqe->bind.new_rkey);
	WRITE_ONCE(win->state, TBRDMA_MR_VALID);
	return 0;
}

/*
 * LOCAL_INV or SEND_WITH_INV of a window's key (tbrdma_invalidate_key): only a type 2 window
 * bound to the QP that asks, or, remotely, to the QP the peer's message arrived on.
 */
int tbrdma_invalidate_mw(struct tbrdma_mr *win, struct tbrdma_qp *qp)
{
	if (win->window_type != IB_MW_TYPE_2 || win->state != TBRDMA_MR_VALID ||
	    !qp || win->bound_qpn != qp->ibqp.qp_num)
		return -EINVAL;
	unbind(win);
	return 0;
}
