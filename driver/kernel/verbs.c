// SPDX-License-Identifier: GPL-2.0-only
/*
 * Verbs objects: device/port queries, PD, MR (user memory and DMA), CQ, RC/UC QPs and their
 * state machine. The data path hands work to the protocol core through glue.c; QP1 (GSI) and
 * address handles are in gsi.c.
 */
#include <linux/highmem.h>
#include <linux/random.h>
#include <linux/vmalloc.h>
#include <rdma/ib_mad.h>
#include <rdma/uverbs_ioctl.h>

#include "tbrdma.h"

static int tbrdma_query_device(struct ib_device *ibdev, struct ib_device_attr *attr,
			       struct ib_udata *udata)
{
	if (udata && (udata->inlen || udata->outlen))
		return -EINVAL;
	memset(attr, 0, sizeof(*attr));
	attr->fw_ver = 1;
	attr->sys_image_guid = ibdev->node_guid;
	attr->max_mr_size = TBRDMA_MAX_MR_SIZE;
	attr->page_size_cap = PAGE_SIZE;
	attr->vendor_id = 0xffffff;
	attr->vendor_part_id = 0x7b;
	attr->hw_ver = 1;
	attr->max_qp = TBRDMA_MAX_QP;
	attr->max_qp_wr = TBRDMA_MAX_QP_WR;
	attr->device_cap_flags = IB_DEVICE_RC_RNR_NAK_GEN | IB_DEVICE_SYS_IMAGE_GUID |
				 IB_DEVICE_CHANGE_PHY_PORT;
	attr->kernel_cap_flags = IBK_ALLOW_USER_UNREG;
	attr->max_send_sge = TBRDMA_MAX_SGE;
	attr->max_recv_sge = TBRDMA_MAX_SGE;
	attr->max_sge_rd = TBRDMA_MAX_SGE;
	attr->max_cq = 4096;
	attr->max_cqe = TBRDMA_MAX_CQE;
	attr->max_mr = 65536;
	attr->max_pd = 4096;
	attr->max_qp_rd_atom = 16;
	attr->max_qp_init_rd_atom = 16;
	attr->max_res_rd_atom = 16 * TBRDMA_MAX_QP;
	attr->atomic_cap = IB_ATOMIC_NONE;
	attr->max_pkeys = 1;
	attr->local_ca_ack_delay = 15;
	return 0;
}

static int tbrdma_query_port(struct ib_device *ibdev, u32 port, struct ib_port_attr *attr)
{
	struct tbrdma_dev *tdev = to_tdev(ibdev);

	/* ib_core hands a zeroed attr; fill only what we know. */
	attr->state = tdev->port_state;
	attr->phys_state = tdev->port_state == IB_PORT_ACTIVE ? IB_PORT_PHYS_STATE_LINK_UP :
				IB_PORT_PHYS_STATE_POLLING;
	attr->max_mtu = IB_MTU_4096;
	attr->active_mtu = IB_MTU_4096;
	attr->gid_tbl_len = 32;
	attr->port_cap_flags = IB_PORT_CM_SUP;
	attr->max_msg_sz = TBRDMA_MAX_MSG_SIZE;
	attr->bad_pkey_cntr = 0;
	attr->qkey_viol_cntr = 0;
	attr->pkey_tbl_len = 1;
	attr->active_width = IB_WIDTH_4X;
	attr->active_speed = IB_SPEED_EDR;
	return 0;
}

static int tbrdma_get_port_immutable(struct ib_device *ibdev, u32 port,
				     struct ib_port_immutable *immutable)
{
	struct ib_port_attr attr = {};
	int err;

	err = ib_query_port(ibdev, port, &attr);
	if (err)
		return err;
	immutable->pkey_tbl_len = attr.pkey_tbl_len;
	immutable->gid_tbl_len = attr.gid_tbl_len;
	/*
	 * RoCEv2-style addressing gives stock tools GIDs from the rail's IP addresses; the wire
	 * protocol itself is ours, so no RoCE packet is ever sent.
	 */
	immutable->core_cap_flags = RDMA_CORE_PORT_IBA_ROCE_UDP_ENCAP;
	immutable->max_mad_size = IB_MGMT_MAD_SIZE;
	return 0;
}

static enum rdma_link_layer tbrdma_get_link_layer(struct ib_device *ibdev, u32 port)
{
	return IB_LINK_LAYER_ETHERNET;
}

static int tbrdma_query_pkey(struct ib_device *ibdev, u32 port, u16 index, u16 *pkey)
{
	if (index > 0)
		return -EINVAL;
	*pkey = IB_DEFAULT_PKEY_FULL;
	return 0;
}

static int tbrdma_alloc_ucontext(struct ib_ucontext *uctx, struct ib_udata *udata)
{
	return 0;
}

static void tbrdma_dealloc_ucontext(struct ib_ucontext *uctx)
{
}

static int tbrdma_alloc_pd(struct ib_pd *ibpd, struct ib_udata *udata)
{
	return 0;
}

static int tbrdma_dealloc_pd(struct ib_pd *ibpd, struct ib_udata *udata)
{
	return 0;
}

/* ---- memory regions ---- */

/* Both keys random and distinct; an MR is found by either, and the caller says which. */
static int tbrdma_assign_keys(struct tbrdma_dev *tdev, struct tbrdma_mr *mr)
{
	u32 key;
	int tries, err;

	for (tries = 0; tries < 64; tries++) {
		key = get_random_u32();
		if (!key)
			continue;
		err = xa_insert_bh(&tdev->mrs, key, mr, GFP_KERNEL);
		if (err == -EBUSY)
			continue;
		if (err)
			return err;
		if (!mr->ibmr.lkey) {
			mr->ibmr.lkey = key;
			continue;
		}
		mr->ibmr.rkey = key;
		return 0;
	}
	if (mr->ibmr.lkey)
		xa_erase_bh(&tdev->mrs, mr->ibmr.lkey);
	return -ENOSPC;
}

static void tbrdma_release_keys(struct tbrdma_dev *tdev, struct tbrdma_mr *mr)
{
	/* Under the link lock so no copy callback is halfway through this MR. */
	spin_lock_bh(&tdev->lock);
	xa_erase(&tdev->mrs, mr->ibmr.lkey);
	xa_erase(&tdev->mrs, mr->ibmr.rkey);
	spin_unlock_bh(&tdev->lock);
}

struct tbrdma_mr *tbrdma_lookup_mr(struct tbrdma_dev *tdev, u32 key, bool remote)
{
	struct tbrdma_mr *mr = xa_load(&tdev->mrs, key);

	if (!mr)
		return NULL;
	if (remote ? mr->ibmr.rkey != key : mr->ibmr.lkey != key)
		return NULL;
	return mr;
}

static struct ib_mr *tbrdma_get_dma_mr(struct ib_pd *ibpd, int access)
{
	struct tbrdma_dev *tdev = to_tdev(ibpd->device);
	struct tbrdma_mr *mr;
	int err;

	mr = kzalloc(sizeof(*mr), GFP_KERNEL);
	if (!mr)
		return ERR_PTR(-ENOMEM);
	mr->pd = to_tpd(ibpd);
	mr->is_dma = true;
	mr->access = access;
	mr->iova = 0;
	mr->length = U64_MAX;
	err = tbrdma_assign_keys(tdev, mr);
	if (err) {
		kfree(mr);
		return ERR_PTR(err);
	}
	return &mr->ibmr;
}

static struct ib_mr *tbrdma_reg_user_mr(struct ib_pd *ibpd, u64 start, u64 length, u64 iova,
					int access, TBRDMA_REG_USER_MR_EXTRA_ARGS
					struct ib_udata *udata)
{
	struct tbrdma_dev *tdev = to_tdev(ibpd->device);
	struct sg_page_iter sg_iter;
	struct tbrdma_mr *mr;
	unsigned long i = 0;
	int err;

	if (!length || length > TBRDMA_MAX_MR_SIZE)
		return ERR_PTR(-EINVAL);
	mr = kzalloc(sizeof(*mr), GFP_KERNEL);
	if (!mr)
		return ERR_PTR(-ENOMEM);
	mr->umem = tbrdma_umem_get(ibpd->device, start, length, access);
	if (IS_ERR(mr->umem)) {
		err = PTR_ERR(mr->umem);
		goto err_free;
	}
	mr->first_page_offset = ib_umem_offset(mr->umem);
	mr->npages = ib_umem_num_pages(mr->umem);
	mr->pages = kvcalloc(mr->npages, sizeof(*mr->pages), GFP_KERNEL);
	if (!mr->pages) {
		err = -ENOMEM;
		goto err_umem;
	}
	for_each_sgtable_page(&mr->umem->sgt_append.sgt, &sg_iter, 0) {
		if (i >= mr->npages)
			break;
		mr->pages[i++] = sg_page_iter_page(&sg_iter);
	}
	if (i != mr->npages) {
		err = -EFAULT;
		goto err_pages;
	}
	mr->pd = to_tpd(ibpd);
	mr->iova = iova;
	mr->length = length;
	mr->access = access;
	mr->ibmr.iova = iova;
	mr->ibmr.length = length;
	err = tbrdma_assign_keys(tdev, mr);
	if (err)
		goto err_pages;
	return &mr->ibmr;

err_pages:
	kvfree(mr->pages);
err_umem:
	ib_umem_release(mr->umem);
err_free:
	kfree(mr);
	return ERR_PTR(err);
}

static int tbrdma_dereg_mr(struct ib_mr *ibmr, struct ib_udata *udata)
{
	struct tbrdma_mr *mr = to_tmr(ibmr);

	tbrdma_release_keys(to_tdev(ibmr->device), mr);
	if (mr->umem) {
		kvfree(mr->pages);
		ib_umem_release(mr->umem);
	}
	kfree(mr);
	return 0;
}

static bool tbrdma_mr_range_ok(const struct tbrdma_mr *mr, u64 iova, u64 len)
{
	if (mr->is_dma)
		return true;
	if (iova < mr->iova || len > mr->length)
		return false;
	return iova - mr->iova <= mr->length - len;
}

/* Copies between buf and [iova, iova+len) of mr; the caller has checked the range. */
int tbrdma_mr_copy(struct tbrdma_mr *mr, u64 iova, void *buf, u32 len, bool to_mr)
{
	u64 offset;

	if (!tbrdma_mr_range_ok(mr, iova, len))
		return -EFAULT;
	if (mr->is_dma) {
		void *kaddr = (void *)(uintptr_t)iova;

		if (to_mr)
			memcpy(kaddr, buf, len);
		else
			memcpy(buf, kaddr, len);
		return 0;
	}
	offset = iova - mr->iova + mr->first_page_offset;
	while (len) {
		unsigned long page_index = offset >> PAGE_SHIFT;
		unsigned int in_page = offset & ~PAGE_MASK;
		u32 chunk = min_t(u32, len, PAGE_SIZE - in_page);
		void *kaddr;

		if (page_index >= mr->npages)
			return -EFAULT;
		kaddr = kmap_local_page(mr->pages[page_index]);
		if (to_mr)
			memcpy(kaddr + in_page, buf, chunk);
		else
			memcpy(buf, kaddr + in_page, chunk);
		kunmap_local(kaddr);
		buf += chunk;
		offset += chunk;
		len -= chunk;
	}
	return 0;
}

/* Walks an SGE list as one contiguous buffer; MRs are looked up again on every copy. */
int tbrdma_copy_sges(struct tbrdma_dev *tdev, const struct tbrdma_sge *sge, u32 num_sge,
		     u64 offset, void *buf, u32 len, bool to_mr)
{
	u32 i;

	for (i = 0; i < num_sge && len; i++) {
		struct tbrdma_mr *mr;
		u32 chunk;
		int err;

		if (offset >= sge[i].length) {
			offset -= sge[i].length;
			continue;
		}
		chunk = min_t(u64, len, sge[i].length - offset);
		mr = tbrdma_lookup_mr(tdev, sge[i].lkey, false);
		if (!mr)
			return -EFAULT;
		err = tbrdma_mr_copy(mr, sge[i].addr + offset, buf, chunk, to_mr);
		if (err)
			return err;
		buf += chunk;
		len -= chunk;
		offset = 0;
	}
	return len ? -EFAULT : 0;
}

/* Checks a stored SGE list against the QP's PD, access and MR bounds. Link lock held. */
int tbrdma_check_sges(struct tbrdma_qp *qp, const struct tbrdma_sge *sge, u32 num_sge,
		      bool for_write_into)
{
	u32 i;

	for (i = 0; i < num_sge; i++) {
		struct tbrdma_mr *mr;

		if (!sge[i].length)
			continue;
		mr = tbrdma_lookup_mr(qp->tdev, sge[i].lkey, false);
		if (!mr || &mr->pd->ibpd != qp->ibqp.pd)
			return -EINVAL;
		if (for_write_into && !(mr->access & IB_ACCESS_LOCAL_WRITE))
			return -EACCES;
		if (!tbrdma_mr_range_ok(mr, sge[i].addr, sge[i].length))
			return -EINVAL;
	}
	return 0;
}

/* ---- completion queues ---- */

static void tbrdma_cq_notify_work(struct work_struct *work);

struct tbrdma_cq_notify {
	struct work_struct work;
	struct tbrdma_cq *cq;
};

static int tbrdma_create_cq(struct ib_cq *ibcq, const struct ib_cq_init_attr *attr,
			    TBRDMA_CREATE_CQ_LAST_ARG)
{
	struct tbrdma_cq *cq = to_tcq(ibcq);

	if (attr->flags || attr->cqe < 1 || attr->cqe > TBRDMA_MAX_CQE)
		return -EINVAL;
	spin_lock_init(&cq->lock);
	cq->capacity = attr->cqe;
	cq->queue = kvcalloc(cq->capacity, sizeof(*cq->queue), GFP_KERNEL);
	if (!cq->queue)
		return -ENOMEM;
	INIT_WORK(&cq->notify_work, tbrdma_cq_notify_work);
	ibcq->cqe = attr->cqe;
	return 0;
}

static int tbrdma_destroy_cq(struct ib_cq *ibcq, struct ib_udata *udata)
{
	struct tbrdma_cq *cq = to_tcq(ibcq);

	cancel_work_sync(&cq->notify_work);
	kvfree(cq->queue);
	return 0;
}

static void tbrdma_cq_notify_work(struct work_struct *work)
{
	struct tbrdma_cq *cq = container_of(work, struct tbrdma_cq, notify_work);

	if (cq->ibcq.comp_handler)
		cq->ibcq.comp_handler(&cq->ibcq, cq->ibcq.cq_context);
}

void tbrdma_cq_push(struct tbrdma_cq *cq, const struct ib_wc *wc)
{
	unsigned long flags;
	bool notify = false;

	spin_lock_irqsave(&cq->lock, flags);
	if (cq->count == cq->capacity) {
		cq->overflowed = true;
		spin_unlock_irqrestore(&cq->lock, flags);
		if (cq->ibcq.event_handler) {
			struct ib_event ev = {
				.device = cq->ibcq.device,
				.element.cq = &cq->ibcq,
				.event = IB_EVENT_CQ_ERR,
			};

			cq->ibcq.event_handler(&ev, cq->ibcq.cq_context);
		}
		return;
	}
	cq->queue[(cq->head + cq->count) % cq->capacity] = *wc;
	cq->count++;
	if (cq->notify_flags == IB_CQ_NEXT_COMP ||
	    (cq->notify_flags == IB_CQ_SOLICITED && wc->status != IB_WC_SUCCESS)) {
		cq->notify_flags = 0;
		notify = true;
	}
	spin_unlock_irqrestore(&cq->lock, flags);
	/* Deferred: a consumer's handler may post again, which takes the link lock we hold. */
	if (notify)
		queue_work(system_highpri_wq, &cq->notify_work);
}

static int tbrdma_poll_cq(struct ib_cq *ibcq, int num_entries, struct ib_wc *wc)
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

static int tbrdma_req_notify_cq(struct ib_cq *ibcq, enum ib_cq_notify_flags flags)
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

/* ---- queue pairs ---- */

static int tbrdma_create_qp(struct ib_qp *ibqp, struct ib_qp_init_attr *init,
			    struct ib_udata *udata)
{
	struct tbrdma_dev *tdev = to_tdev(ibqp->device);
	struct tbrdma_qp *qp = to_tqp(ibqp);
	u32 qpn;
	int err;

	switch (init->qp_type) {
	case IB_QPT_RC:
	case IB_QPT_UC:
	case IB_QPT_GSI:
		break;
	default:
		return -EOPNOTSUPP;
	}
	if (init->srq || init->create_flags)
		return -EOPNOTSUPP;
	if (init->cap.max_send_wr > TBRDMA_MAX_QP_WR || init->cap.max_recv_wr > TBRDMA_MAX_QP_WR ||
	    init->cap.max_send_sge > TBRDMA_MAX_SGE || init->cap.max_recv_sge > TBRDMA_MAX_SGE)
		return -EINVAL;
	if (udata && (udata->inlen || udata->outlen))
		return -EINVAL;
	/* QP1 belongs to ib_mad; its queues are never user-mapped. */
	if (udata && init->qp_type == IB_QPT_GSI)
		return -EOPNOTSUPP;

	qp->tdev = tdev;
	mutex_init(&qp->state_mutex);
	INIT_LIST_HEAD(&qp->send_outstanding);
	INIT_LIST_HEAD(&qp->pending_error_node);
	qp->state = IB_QPS_RESET;
	qp->sq_sig_all = init->sq_sig_type == IB_SIGNAL_ALL_WR;
	qp->max_send_wr = max(init->cap.max_send_wr, 1U);
	qp->max_recv_wr = max(init->cap.max_recv_wr, 1U);
	qp->max_send_sge = max(init->cap.max_send_sge, 1U);
	qp->max_recv_sge = max(init->cap.max_recv_sge, 1U);
	qp->rq_capacity = qp->max_recv_wr;
	qp->rq = kvcalloc(qp->rq_capacity, sizeof(*qp->rq), GFP_KERNEL);
	if (!qp->rq)
		return -ENOMEM;

	if (init->qp_type == IB_QPT_GSI) {
		/* GSI datagrams go to the peer's QP1, carried on the core QP pair 1 <-> 1. */
		qp->dest_qpn = TBRDMA_GSI_QPN;
		err = tbrdma_gsi_create(qp);
		if (err) {
			kvfree(qp->rq);
			return err;
		}
		qpn = TBRDMA_GSI_QPN;
		err = xa_insert_bh(&tdev->qps, qpn, qp, GFP_KERNEL);
	} else {
		err = xa_alloc_cyclic_bh(&tdev->qps, &qpn, qp,
					 XA_LIMIT(TBRDMA_FIRST_QPN, TBRDMA_MAX_QPN),
					 &tdev->next_qpn, GFP_KERNEL);
		if (err > 0)
			err = 0;
	}
	if (err) {
		if (qp->gsi)
			tbrdma_gsi_destroy(qp);
		kvfree(qp->rq);
		return err;
	}
	ibqp->qp_num = qpn;
	init->cap.max_send_wr = qp->max_send_wr;
	init->cap.max_recv_wr = qp->max_recv_wr;
	init->cap.max_send_sge = qp->max_send_sge;
	init->cap.max_recv_sge = qp->max_recv_sge;
	init->cap.max_inline_data = 0;
	return 0;
}

/* Completes every receive WQE not yet completed with a flush error. Link lock held. */
static void tbrdma_flush_recvs(struct tbrdma_qp *qp)
{
	struct ib_wc wc = {
		.status = IB_WC_WR_FLUSH_ERR,
		.opcode = IB_WC_RECV,
		.qp = &qp->ibqp,
	};

	if (qp->gsi) {
		unsigned long flags;

		spin_lock_irqsave(&qp->gsi->lock, flags);
		tbrdma_gsi_flush_recvs(qp);
		spin_unlock_irqrestore(&qp->gsi->lock, flags);
		return;
	}
	while (qp->rq_head != qp->rq_tail) {
		struct tbrdma_recv_wqe *wqe = &qp->rq[qp->rq_head % qp->rq_capacity];

		if (!wqe->done) {
			wc.wr_id = wqe->wr_id;
			tbrdma_cq_push(to_tcq(qp->ibqp.recv_cq), &wc);
			qp->stat_flushed++;
		}
		wqe->done = false;
		wqe->generation++;
		qp->rq_head++;
	}
	qp->rq_claim = qp->rq_head;
}

/* Flushes what the core no longer owns. Link lock held. */
static void tbrdma_flush_sends(struct tbrdma_qp *qp)
{
	struct tbrdma_send_wqe *wqe, *next;

	list_for_each_entry_safe(wqe, next, &qp->send_outstanding, node) {
		struct ib_wc wc = {
			.wr_id = wqe->wr_id,
			.status = IB_WC_WR_FLUSH_ERR,
			.qp = &qp->ibqp,
		};

		list_del(&wqe->node);
		tbrdma_cq_push(to_tcq(qp->ibqp.send_cq), &wc);
		qp->stat_flushed++;
		kfree(wqe);
	}
	qp->send_count = 0;
	if (qp->gsi)
		tbrdma_gsi_flush_pending(qp);
}

/* Link lock held. fatal: a transport error, reported to the consumer as an async event. */
void tbrdma_qp_to_error(struct tbrdma_qp *qp, bool fatal)
{
	if (qp->state == IB_QPS_ERR || qp->state == IB_QPS_RESET)
		return;
	qp->state = IB_QPS_ERR;
	tbrdma_link_cancel_qp(qp);
	tbrdma_flush_sends(qp);
	tbrdma_flush_recvs(qp);
	if (fatal && qp->ibqp.event_handler) {
		struct ib_event ev = {
			.device = qp->ibqp.device,
			.element.qp = &qp->ibqp,
			.event = IB_EVENT_QP_FATAL,
		};

		qp->ibqp.event_handler(&ev, qp->ibqp.qp_context);
	}
}

static int tbrdma_modify_qp(struct ib_qp *ibqp, struct ib_qp_attr *attr, int mask,
			    struct ib_udata *udata)
{
	struct tbrdma_qp *qp = to_tqp(ibqp);
	struct tbrdma_dev *tdev = qp->tdev;
	enum ib_qp_state cur, next;
	int err = 0;

	if (udata && (udata->inlen || udata->outlen))
		return -EOPNOTSUPP;
	mutex_lock(&qp->state_mutex);
	cur = (mask & IB_QP_CUR_STATE) ? attr->cur_qp_state : qp->state;
	next = (mask & IB_QP_STATE) ? attr->qp_state : cur;
	if (!ib_modify_qp_is_ok(cur, next, ibqp->qp_type, mask)) {
		err = -EINVAL;
		goto out;
	}
	if ((mask & IB_QP_PORT) && attr->port_num != 1) {
		err = -EINVAL;
		goto out;
	}
	if ((mask & IB_QP_MAX_QP_RD_ATOMIC) && attr->max_rd_atomic > 16) {
		err = -EINVAL;
		goto out;
	}
	/* IBA field widths: 5-bit timeout and RNR timer, 3-bit retry counts. */
	if (((mask & IB_QP_TIMEOUT) && attr->timeout > 31) ||
	    ((mask & IB_QP_RETRY_CNT) && attr->retry_cnt > 7) ||
	    ((mask & IB_QP_RNR_RETRY) && attr->rnr_retry > 7) ||
	    ((mask & IB_QP_MIN_RNR_TIMER) && attr->min_rnr_timer > 31)) {
		err = -EINVAL;
		goto out;
	}

	spin_lock_bh(&tdev->lock);
	if (mask & IB_QP_ACCESS_FLAGS)
		qp->access_flags = attr->qp_access_flags;
	if ((mask & IB_QP_DEST_QPN) && ibqp->qp_type != IB_QPT_GSI)
		qp->dest_qpn = attr->dest_qp_num;
	if (mask & IB_QP_QKEY)
		qp->qkey = attr->qkey;
	if (mask & IB_QP_SQ_PSN)
		qp->sq_psn = attr->sq_psn;
	if (mask & IB_QP_RQ_PSN)
		qp->rq_psn = attr->rq_psn;
	if (mask & IB_QP_PATH_MTU)
		qp->path_mtu = attr->path_mtu;
	if (mask & IB_QP_TIMEOUT)
		qp->timeout = attr->timeout;
	if (mask & IB_QP_RETRY_CNT)
		qp->retry_cnt = attr->retry_cnt;
	if (mask & IB_QP_RNR_RETRY)
		qp->rnr_retry = attr->rnr_retry;
	if (mask & IB_QP_MIN_RNR_TIMER)
		qp->min_rnr_timer = attr->min_rnr_timer;

	if (next != cur) {
		switch (next) {
		case IB_QPS_RESET:
			if (qp->state != IB_QPS_ERR)
				tbrdma_qp_to_error(qp, false);
			tbrdma_flush_sends(qp);
			tbrdma_flush_recvs(qp);
			qp->state = IB_QPS_RESET;
			break;
		case IB_QPS_ERR:
			tbrdma_qp_to_error(qp, false);
			break;
		case IB_QPS_RTR:
			err = tbrdma_link_open_qp(qp);
			if (!err)
				qp->state = next;
			break;
		default:
			qp->state = next;
			break;
		}
	}
	if (!err && (mask & (IB_QP_TIMEOUT | IB_QP_RETRY_CNT | IB_QP_RNR_RETRY |
			     IB_QP_MIN_RNR_TIMER)) &&
	    (qp->state == IB_QPS_RTR || qp->state == IB_QPS_RTS))
		tbrdma_link_qp_attr(qp);
	spin_unlock_bh(&tdev->lock);
out:
	mutex_unlock(&qp->state_mutex);
	return err;
}

static int tbrdma_query_qp(struct ib_qp *ibqp, struct ib_qp_attr *attr, int mask,
			   struct ib_qp_init_attr *init)
{
	struct tbrdma_qp *qp = to_tqp(ibqp);

	memset(attr, 0, sizeof(*attr));
	memset(init, 0, sizeof(*init));
	attr->qp_state = qp->state;
	attr->cur_qp_state = qp->state;
	attr->path_mtu = qp->path_mtu ? qp->path_mtu : IB_MTU_4096;
	attr->path_mig_state = IB_MIG_MIGRATED;
	attr->qp_access_flags = qp->access_flags;
	attr->dest_qp_num = qp->dest_qpn;
	attr->qkey = qp->qkey;
	attr->sq_psn = qp->sq_psn;
	attr->rq_psn = qp->rq_psn;
	attr->port_num = 1;
	attr->max_rd_atomic = 16;
	attr->max_dest_rd_atomic = 16;
	attr->cap.max_send_wr = qp->max_send_wr;
	attr->cap.max_recv_wr = qp->max_recv_wr;
	attr->cap.max_send_sge = qp->max_send_sge;
	attr->cap.max_recv_sge = qp->max_recv_sge;
	init->cap = attr->cap;
	init->qp_type = ibqp->qp_type;
	init->send_cq = ibqp->send_cq;
	init->recv_cq = ibqp->recv_cq;
	init->sq_sig_type = qp->sq_sig_all ? IB_SIGNAL_ALL_WR : IB_SIGNAL_REQ_WR;
	return 0;
}

static int tbrdma_destroy_qp(struct ib_qp *ibqp, struct ib_udata *udata)
{
	struct tbrdma_qp *qp = to_tqp(ibqp);
	struct tbrdma_dev *tdev = qp->tdev;

	mutex_lock(&qp->state_mutex);
	spin_lock_bh(&tdev->lock);
	list_del_init(&qp->pending_error_node);
	tbrdma_qp_to_error(qp, false);
	tbrdma_flush_sends(qp);
	xa_erase(&tdev->qps, ibqp->qp_num);
	spin_unlock_bh(&tdev->lock);
	mutex_unlock(&qp->state_mutex);
	if (qp->gsi)
		tbrdma_gsi_destroy(qp);
	kvfree(qp->rq);
	mutex_destroy(&qp->state_mutex);
	return 0;
}

/* Resolves and checks an SGE list against the QP's PD. */
static int tbrdma_take_sges(struct tbrdma_qp *qp, const struct ib_sge *src, int num_sge,
			    struct tbrdma_sge *dst, u32 *total, bool for_write_into)
{
	u64 sum = 0;
	int i;

	for (i = 0; i < num_sge; i++) {
		struct tbrdma_mr *mr;

		if (!src[i].length)
			continue;
		mr = tbrdma_lookup_mr(qp->tdev, src[i].lkey, false);
		if (!mr || &mr->pd->ibpd != qp->ibqp.pd)
			return -EINVAL;
		if (for_write_into && !(mr->access & IB_ACCESS_LOCAL_WRITE))
			return -EACCES;
		if (!tbrdma_mr_range_ok(mr, src[i].addr, src[i].length))
			return -EINVAL;
		dst[i].addr = src[i].addr;
		dst[i].length = src[i].length;
		dst[i].lkey = src[i].lkey;
		sum += src[i].length;
	}
	if (sum > TBRDMA_MAX_MSG_SIZE)
		return -EINVAL;
	*total = sum;
	return 0;
}

static int tbrdma_post_one_send(struct tbrdma_qp *qp, const struct ib_send_wr *wr)
{
	struct tbrdma_send_wqe *wqe;
	int err;

	if (wr->num_sge > qp->max_send_sge || wr->num_sge < 0)
		return -EINVAL;
	switch (wr->opcode) {
	case IB_WR_SEND:
	case IB_WR_SEND_WITH_IMM:
	case IB_WR_RDMA_WRITE:
	case IB_WR_RDMA_WRITE_WITH_IMM:
		break;
	case IB_WR_RDMA_READ:
		if (qp->ibqp.qp_type != IB_QPT_RC)
			return -EINVAL;
		break;
	default:
		return -EINVAL;
	}
	if (wr->send_flags & IB_SEND_INLINE)
		return -EINVAL;
	if (qp->send_count >= qp->max_send_wr)
		return -ENOMEM;

	wqe = kzalloc(sizeof(*wqe), GFP_ATOMIC);
	if (!wqe)
		return -ENOMEM;
	wqe->qp = qp;
	wqe->wr_id = wr->wr_id;
	wqe->opcode = wr->opcode;
	wqe->signaled = qp->sq_sig_all || (wr->send_flags & IB_SEND_SIGNALED);
	wqe->num_sge = wr->num_sge;
	err = tbrdma_take_sges(qp, wr->sg_list, wr->num_sge, wqe->sge, &wqe->total_len,
			       wr->opcode == IB_WR_RDMA_READ);
	if (err) {
		kfree(wqe);
		return err;
	}

	if (qp->state == IB_QPS_ERR) {
		/* Work posted to a QP in error completes right away as flushed. */
		list_add_tail(&wqe->node, &qp->send_outstanding);
		tbrdma_flush_sends(qp);
		return 0;
	}
	list_add_tail(&wqe->node, &qp->send_outstanding);
	qp->send_count++;
	err = tbrdma_link_post(qp, wqe, wr);
	if (err) {
		list_del(&wqe->node);
		qp->send_count--;
		kfree(wqe);
	}
	return err;
}

static int tbrdma_post_send(struct ib_qp *ibqp, const struct ib_send_wr *wr,
			    const struct ib_send_wr **bad_wr)
{
	struct tbrdma_qp *qp = to_tqp(ibqp);
	struct tbrdma_dev *tdev = qp->tdev;
	int err = 0;

	if (qp->gsi)
		return tbrdma_gsi_post_send(qp, wr, bad_wr);
	spin_lock_bh(&tdev->lock);
	if (qp->state != IB_QPS_RTS && qp->state != IB_QPS_ERR) {
		err = -EINVAL;
		*bad_wr = wr;
		goto out;
	}
	for (; wr; wr = wr->next) {
		err = tbrdma_post_one_send(qp, wr);
		if (err) {
			*bad_wr = wr;
			break;
		}
	}
out:
	spin_unlock_bh(&tdev->lock);
	tbrdma_link_kick(tdev);
	return err;
}

static int tbrdma_post_recv(struct ib_qp *ibqp, const struct ib_recv_wr *wr,
			    const struct ib_recv_wr **bad_wr)
{
	struct tbrdma_qp *qp = to_tqp(ibqp);
	struct tbrdma_dev *tdev = qp->tdev;
	int err = 0;

	if (qp->gsi)
		return tbrdma_gsi_post_recv(qp, wr, bad_wr);
	spin_lock_bh(&tdev->lock);
	if (qp->state == IB_QPS_RESET) {
		err = -EINVAL;
		*bad_wr = wr;
		goto out;
	}
	for (; wr; wr = wr->next) {
		struct tbrdma_recv_wqe *wqe;

		if (qp->rq_tail - qp->rq_head >= qp->rq_capacity) {
			err = -ENOMEM;
		} else if (wr->num_sge > qp->max_recv_sge || wr->num_sge < 0) {
			err = -EINVAL;
		} else {
			wqe = &qp->rq[qp->rq_tail % qp->rq_capacity];
			err = tbrdma_take_sges(qp, wr->sg_list, wr->num_sge, wqe->sge,
					       &wqe->total_len, true);
			if (!err) {
				wqe->wr_id = wr->wr_id;
				wqe->num_sge = wr->num_sge;
				wqe->done = false;
				qp->rq_tail++;
			}
		}
		if (err) {
			*bad_wr = wr;
			break;
		}
	}
	if (!err && qp->state == IB_QPS_ERR)
		tbrdma_flush_recvs(qp);
out:
	spin_unlock_bh(&tdev->lock);
	return err;
}

/* ---- statistics ---- */

static struct rdma_hw_stats *tbrdma_alloc_hw_port_stats(struct ib_device *ibdev, u32 port)
{
	return rdma_alloc_hw_stats_struct(tbrdma_stat_descs, tbrdma_num_stats,
					  RDMA_HW_STATS_DEFAULT_LIFESPAN);
}

static int tbrdma_get_hw_stats(struct ib_device *ibdev, struct rdma_hw_stats *stats, u32 port,
			       int index)
{
	return tbrdma_link_fill_stats(to_tdev(ibdev), stats);
}

const struct ib_device_ops tbrdma_dev_ops = {
	.owner = THIS_MODULE,
	.driver_id = RDMA_DRIVER_UNKNOWN,
	.uverbs_abi_ver = 1,

	.alloc_hw_port_stats = tbrdma_alloc_hw_port_stats,
	.alloc_pd = tbrdma_alloc_pd,
	.alloc_ucontext = tbrdma_alloc_ucontext,
	.create_ah = tbrdma_create_ah,
	.create_cq = tbrdma_create_cq,
	.create_qp = tbrdma_create_qp,
	.dealloc_driver = tbrdma_dealloc_driver,
	.dealloc_pd = tbrdma_dealloc_pd,
	.dealloc_ucontext = tbrdma_dealloc_ucontext,
	.dereg_mr = tbrdma_dereg_mr,
	.destroy_ah = tbrdma_destroy_ah,
	.destroy_cq = tbrdma_destroy_cq,
	.destroy_qp = tbrdma_destroy_qp,
	.get_dma_mr = tbrdma_get_dma_mr,
	.get_hw_stats = tbrdma_get_hw_stats,
	.get_link_layer = tbrdma_get_link_layer,
	.get_port_immutable = tbrdma_get_port_immutable,
	.modify_qp = tbrdma_modify_qp,
	.poll_cq = tbrdma_poll_cq,
	.post_recv = tbrdma_post_recv,
	.post_send = tbrdma_post_send,
	.query_device = tbrdma_query_device,
	.query_pkey = tbrdma_query_pkey,
	.query_port = tbrdma_query_port,
	.query_qp = tbrdma_query_qp,
	.reg_user_mr = tbrdma_reg_user_mr,
	.req_notify_cq = tbrdma_req_notify_cq,

	INIT_RDMA_OBJ_SIZE(ib_ah, tbrdma_ah, ibah),
	INIT_RDMA_OBJ_SIZE(ib_cq, tbrdma_cq, ibcq),
	INIT_RDMA_OBJ_SIZE(ib_pd, tbrdma_pd, ibpd),
	INIT_RDMA_OBJ_SIZE(ib_qp, tbrdma_qp, ibqp),
	INIT_RDMA_OBJ_SIZE(ib_ucontext, tbrdma_ucontext, ibuc),
};
