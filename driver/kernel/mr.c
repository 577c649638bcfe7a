// SPDX-License-Identifier: GPL-2.0-only
/*
 * Memory management extensions (IB_DEVICE_MEM_MGT_EXTENSIONS) for kernel ULPs: fast
 * registration MRs (alloc_mr + map_mr_sg + IB_WR_REG_MR), IB_WR_LOCAL_INV and the
 * invalidation a peer's SEND_WITH_INV asks for.
 *
 * Semantics are rxe's (rxe_mr.c, rxe_req.c): a fast MR is FREE after alloc_mr and after an
 * invalidation, REG_MR makes a FREE MR of the QP's PD VALID with the access rights, iova and
 * length of the WR and changes only the low 8 bits of its key; only VALID MRs are found by
 * tbrdma_lookup_mr. Local operations take effect when the send queue reaches them (in post
 * order with the WRs the core carries) and complete in post order.
 */
#include <linux/delay.h>
#include <linux/log2.h>
#include <linux/module.h>
#include <linux/random.h>

#include "tbrdma.h"
#include "tbp.h"

struct ib_mr *tbrdma_alloc_mr(struct ib_pd *ibpd, enum ib_mr_type type, u32 max_num_sg)
{
	struct tbrdma_dev *tdev = to_tdev(ibpd->device);
	struct tbrdma_mr *mr;
	int tries, err;

	if (type != IB_MR_TYPE_MEM_REG || !max_num_sg || max_num_sg > TBRDMA_MAX_FR_PAGES)
		return ERR_PTR(-EINVAL);
	err = tbrdma_mr_count_get(tdev);
	if (err)
		return ERR_PTR(err);
	mr = kzalloc(sizeof(*mr), GFP_KERNEL);
	if (!mr) {
		err = -ENOMEM;
		goto err_count;
	}
	mr->fr_addrs = kcalloc(max_num_sg, sizeof(*mr->fr_addrs), GFP_KERNEL);
	if (!mr->fr_addrs) {
		err = -ENOMEM;
		goto err_free;
	}
	mr->pd = to_tpd(ibpd);
	mr->fast = true;
	mr->fr_max = max_num_sg;
	mr->state = TBRDMA_MR_FREE;
	/* One entry at the key's upper 24 bits; REG_MR picks the low 8 (rxe: index << 8). */
	err = -ENOSPC;
	for (tries = 0; tries < 64; tries++) {
		u32 index = (get_random_u32() | TBRDMA_KEY_FAST) & ~0xffU;
		u32 key = index | (get_random_u32() & 0xff);

		err = xa_insert_bh(&tdev->mrs, index, mr, GFP_KERNEL);
		if (err == -EBUSY)
			continue;
		if (err)
			break;
		/* rxe_mr_init_fast: remote access is always possible, so rkey == lkey. */
		mr->lkey = key;
		mr->rkey = key;
		mr->ibmr.lkey = key;
		mr->ibmr.rkey = key;
		return &mr->ibmr;
	}
	kfree(mr->fr_addrs);
err_free:
	kfree(mr);
err_count:
	atomic_dec(&tdev->n_mr);
	return ERR_PTR(err);
}

/* dereg_mr, after the keys are gone; the MR itself is freed after an RCU grace period. */
void tbrdma_free_fast_mr(struct tbrdma_mr *mr)
{
	kfree(mr->fr_addrs);
	mr->fr_addrs = NULL;
}

/* ib_sg_to_pages hands one mr page (page_size, aligned) at a time: its kernel address. */
static int tbrdma_fr_set_page(struct ib_mr *ibmr, u64 addr)
{
	struct tbrdma_mr *mr = to_tmr(ibmr);

	if (mr->fr_mapped >= mr->fr_max)
		return -ENOMEM;
	mr->fr_addrs[mr->fr_mapped++] = addr;
	return 0;
}

/*
 * The device uses virtual DMA (no dma_device), so the "DMA addresses" ib_sg_to_pages sees
 * are kernel virtual addresses, as for rxe. The layout only takes effect at REG_MR.
 */
int tbrdma_map_mr_sg(struct ib_mr *ibmr, struct scatterlist *sg, int sg_nents,
		     unsigned int *sg_offset)
{
	struct tbrdma_mr *mr = to_tmr(ibmr);

	/* An atomic's 8 aligned bytes never straddle pages of at least 8 bytes. */
	if (!mr->fast || !is_power_of_2(ibmr->page_size) || ibmr->page_size < 8 ||
	    ibmr->page_size > (1U << 30))
		return -EINVAL;
	mr->fr_mapped = 0;
	mr->fr_map_shift = ilog2(ibmr->page_size);
	return ib_sg_to_pages(ibmr, sg, sg_nents, sg_offset, tbrdma_fr_set_page);
}

/*
 * Kernel address of byte iova of a VALID fast MR whose range was checked, and how many bytes
 * follow it in the same page (*avail); NULL outside the pages REG_MR gave it.
 */
void *tbrdma_fr_kaddr(const struct tbrdma_mr *mr, u64 iova, u32 *avail)
{
	u64 page_size = 1ULL << mr->fr_shift;
	u64 offset, index;

	if (iova < mr->iova)
		return NULL;
	offset = iova - mr->iova + mr->fr_offset;
	index = offset >> mr->fr_shift;
	if (index >= mr->fr_npages)
		return NULL;
	offset &= page_size - 1;
	*avail = page_size - offset;
	return (void *)(uintptr_t)(mr->fr_addrs[index] + offset);
}

/*
 * rxe_invalidate_mr: the key must be the current one of a fast-registration MR (a user MR
 * cannot be invalidated), which becomes FREE, or of a memory window (mw.c). A remote
 * invalidation also requires the QP's PD. Link lock held.
 */
int tbrdma_invalidate_key(struct tbrdma_qp *qp, u32 key, bool remote)
{
	struct tbrdma_mr *mr = xa_load(&qp->tdev->mrs, tbrdma_key_index(key));

	lockdep_assert_held(&qp->tdev->lock);
	if (!mr || key != mr->rkey)
		return -EINVAL;
	if (mr->window)
		return tbrdma_invalidate_mw(mr, qp);
	if (!mr->fast || (remote && &mr->pd->ibpd != qp->ibqp.pd))
		return -EINVAL;
	WRITE_ONCE(mr->state, TBRDMA_MR_FREE);
	return 0;
}

/*
 * Core callback for a SEND_WITH_INV the peer sent to QP qpn (link lock held): the key must
 * name a fast MR of the QP's PD (rxe's invalidate_rkey). A refusal fails the receive and the
 * sender's WR with IB_WC_REM_INV_REQ_ERR, and the glue moves the QP to error.
 */
int tbrdma_env_invalidate(void *ctx, uint32_t qpn, uint32_t rkey)
{
	struct tbrdma_dev *tdev = ctx;
	struct tbrdma_qp *qp = xa_load(&tdev->qps, qpn);

	if (!qp || qp->gsi || !qp->ibqp.pd)
		return TBP_ERR_REMOTE_INVALID;
	return tbrdma_invalidate_key(qp, rkey, true) ? TBP_ERR_REMOTE_INVALID : 0;
}

/* rxe_reg_fast_mr. Link lock held. */
static int tbrdma_reg_fast_mr(struct tbrdma_qp *qp, struct tbrdma_send_wqe *wqe)
{
	struct tbrdma_mr *mr = wqe->reg_mr;
	u64 page_size, offset;

	if (!mr->fast || mr->state != TBRDMA_MR_FREE || &mr->pd->ibpd != qp->ibqp.pd)
		return -EINVAL;
	/* Only the key's low 8 bits are the consumer's (ib_update_fast_reg_key). */
	if ((mr->lkey & ~0xffU) != (wqe->reg_key & ~0xffU))
		return -EINVAL;
	/* The range map_mr_sg set up must lie in the pages it mapped. */
	page_size = 1ULL << mr->fr_map_shift;
	offset = mr->ibmr.iova & (page_size - 1);
	if (!mr->ibmr.length || mr->ibmr.length > TBRDMA_MAX_MR_SIZE ||
	    offset + mr->ibmr.length > (u64)mr->fr_mapped << mr->fr_map_shift)
		return -EINVAL;
	WRITE_ONCE(mr->access, wqe->reg_access);
	mr->iova = mr->ibmr.iova;
	mr->length = mr->ibmr.length;
	mr->fr_shift = mr->fr_map_shift;
	mr->fr_offset = offset;
	mr->fr_npages = mr->fr_mapped;
	WRITE_ONCE(mr->lkey, wqe->reg_key);
	WRITE_ONCE(mr->rkey, wqe->reg_key);
	WRITE_ONCE(mr->state, TBRDMA_MR_VALID);
	return 0;
}

/*
 * The send queue reached a local operation (push_backlog, link lock held): it takes effect
 * now, before any later WR is handed to the core; its completion waits for the WRs before
 * it (tbrdma_complete_local_ops). A failure is IB_WC_LOC_QP_OP_ERR, as in rxe.
 */
void tbrdma_run_local_op(struct tbrdma_send_wqe *wqe)
{
	struct tbrdma_qp *qp = wqe->qp;
	int err;

	lockdep_assert_held(&qp->tdev->lock);
	if (wqe->opcode == IB_WR_REG_MR)
		err = tbrdma_reg_fast_mr(qp, wqe);
	else if (wqe->opcode == IB_WR_BIND_MW)
		err = tbrdma_bind_mw(qp, wqe);
	else
		err = tbrdma_invalidate_key(qp, wqe->rkey, false);
	wqe->local_status = err ? IB_WC_LOC_QP_OP_ERR : IB_WC_SUCCESS;
}

/*
 * Completes the local operations at the head of the QP's outstanding WRs: the ones whose
 * predecessors have all completed. Called after a local operation ran and after the core
 * completed a WR, so the head of send_outstanding is always a WR the core owns. Link lock
 * held.
 */
void tbrdma_complete_local_ops(struct tbrdma_qp *qp)
{
	for (;;) {
		struct tbrdma_send_wqe *wqe;
		struct ib_wc wc = {};
		unsigned long flags;

		spin_lock_irqsave(&qp->sq_lock, flags);
		wqe = list_first_entry_or_null(&qp->send_outstanding, struct tbrdma_send_wqe,
					       node);
		if (!wqe || !tbrdma_wr_is_local(wqe->opcode)) {
			spin_unlock_irqrestore(&qp->sq_lock, flags);
			return;
		}
		list_del(&wqe->node);
		qp->send_count--;
		spin_unlock_irqrestore(&qp->sq_lock, flags);
		wc.wr_id = wqe->wr_id;
		wc.status = wqe->local_status;
		wc.qp = &qp->ibqp;
		wc.opcode = wqe->opcode == IB_WR_REG_MR ? IB_WC_REG_MR :
			    wqe->opcode == IB_WR_BIND_MW ? IB_WC_BIND_MW : IB_WC_LOCAL_INV;
		if (wqe->signaled || wc.status != IB_WC_SUCCESS)
			tbrdma_qp_complete(qp, true, &wc);
		if (wc.status != IB_WC_SUCCESS)
			tbrdma_defer_qp_error(qp);
		tbrdma_free_send_wqe(qp->tdev, wqe);
	}
}

/*
 * ---- Test-only: fast registration driven from configfs ----
 *
 * Kernel ULPs are the only users of fast registration, and the lab has none that runs over
 * two nodes, so the lab drives the real paths from here: an FRMR in the PD of a user MR,
 * mapped (map_mr_sg) onto that MR's pages, registered and invalidated by REG_MR / LOCAL_INV
 * WRs posted (unsignaled) on a user QP of the same PD. The peer then reaches the memory
 * through the FRMR's rkey and invalidates it with SEND_WITH_INV. Off unless the module
 * parameter frmr_test_hook is set; the user QP and MR must outlive the FRMR ("free").
 */
static bool frmr_test_hook;
module_param(frmr_test_hook, bool, 0644);
MODULE_PARM_DESC(frmr_test_hook, "test only: allow configfs frmr_test (default off)");

static DEFINE_MUTEX(frmr_test_mutex);
static struct {
	struct tbrdma_dev *tdev;
	struct ib_mr *mr;
	struct sg_table sgt;
	int nents;
} frmr_test;

/* The local operation ran in the post (push_backlog) or soon after (kick work). */
static int frmr_test_wait(struct tbrdma_mr *mr, u8 state)
{
	int i;

	for (i = 0; i < 200; i++) {
		if (READ_ONCE(mr->state) == state && READ_ONCE(mr->rkey) == mr->ibmr.rkey)
			return 0;
		msleep(10);
	}
	return -ETIMEDOUT;
}

static int frmr_test_post(struct tbrdma_dev *tdev, u32 qpn, struct ib_send_wr *wr)
{
	struct tbrdma_qp *qp = xa_load(&tdev->qps, qpn);
	const struct ib_send_wr *bad;

	if (!qp || qp->ibqp.pd != frmr_test.mr->pd)
		return -EINVAL;
	return ib_post_send(&qp->ibqp, wr, &bad);
}

static int frmr_test_alloc(struct tbrdma_dev *tdev, u32 lkey)
{
	struct tbrdma_mr *umr = tbrdma_lookup_mr(tdev, lkey, false);
	struct ib_mr *mr;
	int err;

	if (!umr || !umr->umem || umr->npages > TBRDMA_MAX_FR_PAGES)
		return -EINVAL;
	mr = ib_alloc_mr(&umr->pd->ibpd, IB_MR_TYPE_MEM_REG, umr->npages);
	if (IS_ERR(mr))
		return PTR_ERR(mr);
	err = sg_alloc_table_from_pages(&frmr_test.sgt, umr->pages, umr->npages,
					umr->first_page_offset, umr->length, GFP_KERNEL);
	if (err)
		goto err_mr;
	frmr_test.nents = ib_dma_map_sg(mr->device, frmr_test.sgt.sgl,
					frmr_test.sgt.orig_nents, DMA_BIDIRECTIONAL);
	if (frmr_test.nents <= 0) {
		err = -EIO;
		goto err_sgt;
	}
	frmr_test.tdev = tdev;
	frmr_test.mr = mr;
	return 0;

err_sgt:
	sg_free_table(&frmr_test.sgt);
err_mr:
	ib_dereg_mr(mr);
	return err;
}

static void frmr_test_free(void)
{
	if (!frmr_test.mr)
		return;
	ib_dma_unmap_sg(frmr_test.mr->device, frmr_test.sgt.sgl, frmr_test.sgt.orig_nents,
			DMA_BIDIRECTIONAL);
	sg_free_table(&frmr_test.sgt);
	ib_dereg_mr(frmr_test.mr);
	frmr_test.mr = NULL;
	frmr_test.tdev = NULL;
}

/*
 * "reg <qpn> <lkey of a user MR> <access> <key byte>": (allocate,) map and REG_MR;
 * "inv <qpn>": LOCAL_INV of the FRMR's rkey; "free": deregister it.
 */
int tbrdma_frmr_test_store(struct tbrdma_dev *tdev, const char *cmd)
{
	u32 qpn, lkey, access, key;
	int err = 0, n;

	/* Freeing is always allowed: the FRMR holds a reference on a user PD. */
	if (!frmr_test_hook && strncmp(cmd, "free", 4))
		return -EPERM;
	mutex_lock(&frmr_test_mutex);
	if (frmr_test.mr && frmr_test.tdev != tdev) {
		err = -EBUSY;
	} else if (sscanf(cmd, "reg %u %i %i %i", &qpn, &lkey, &access, &key) == 4) {
		struct ib_reg_wr wr = {};

		if (!frmr_test.mr)
			err = frmr_test_alloc(tdev, lkey);
		n = err ? 0 : ib_map_mr_sg(frmr_test.mr, frmr_test.sgt.sgl, frmr_test.nents,
					   NULL, PAGE_SIZE);
		if (!err && n != frmr_test.nents)
			err = n < 0 ? n : -EINVAL;
		if (!err) {
			ib_update_fast_reg_key(frmr_test.mr, key & 0xff);
			wr.wr.opcode = IB_WR_REG_MR;
			wr.mr = frmr_test.mr;
			wr.key = frmr_test.mr->rkey;
			wr.access = access;
			err = frmr_test_post(tdev, qpn, &wr.wr);
		}
		if (!err)
			err = frmr_test_wait(to_tmr(frmr_test.mr), TBRDMA_MR_VALID);
	} else if (sscanf(cmd, "inv %u", &qpn) == 1 && frmr_test.mr) {
		struct ib_send_wr wr = { .opcode = IB_WR_LOCAL_INV };

		wr.ex.invalidate_rkey = frmr_test.mr->rkey;
		err = frmr_test_post(tdev, qpn, &wr);
		if (!err)
			err = frmr_test_wait(to_tmr(frmr_test.mr), TBRDMA_MR_FREE);
	} else if (!strncmp(cmd, "free", 4)) {
		frmr_test_free();
	} else {
		err = -EINVAL;
	}
	mutex_unlock(&frmr_test_mutex);
	return err;
}

ssize_t tbrdma_frmr_test_show(struct tbrdma_dev *tdev, char *page)
{
	struct tbrdma_mr *mr;
	ssize_t n;

	mutex_lock(&frmr_test_mutex);
	if (!frmr_test.mr || frmr_test.tdev != tdev) {
		n = sysfs_emit(page, "none\n");
	} else {
		mr = to_tmr(frmr_test.mr);
		n = sysfs_emit(page, "rkey %#x iova %#llx length %llu state %s\n",
			       READ_ONCE(mr->rkey), frmr_test.mr->iova, frmr_test.mr->length,
			       READ_ONCE(mr->state) == TBRDMA_MR_VALID ? "VALID" : "FREE");
	}
	mutex_unlock(&frmr_test_mutex);
	return n;
}
