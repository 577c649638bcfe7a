// SPDX-License-Identifier: GPL-2.0-only
/*
 * Verbs objects: device/port queries, PD, MR (user memory and DMA), CQ, RC/UC QPs and their
 * state machine. The data path hands work to the protocol core through glue.c; QP1 (GSI) and
 * address handles are in gsi.c.
 */
#include <linux/ethtool.h>
#include <linux/highmem.h>
#include <linux/random.h>
#include <linux/rtnetlink.h>
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
	attr->max_cq = TBRDMA_MAX_CQ;
	attr->max_cqe = TBRDMA_MAX_CQE;
	attr->max_mr = TBRDMA_MAX_MR;
	attr->max_pd = TBRDMA_MAX_PD;
	attr->max_qp_rd_atom = 16;
	attr->max_qp_init_rd_atom = 16;
	attr->max_res_rd_atom = 16 * TBRDMA_MAX_QP;
	attr->atomic_cap = IB_ATOMIC_NONE;
	attr->max_pkeys = 1;
	attr->local_ca_ack_delay = 15;
	return 0;
}

/*
 * Lane rates in Mb/s (IBA 14.2.5.6 / ib_core's enum ib_port_speed). FDR10 and the rates past
 * NDR are left out so the same table works on every supported kernel.
 */
static const struct {
	u16 speed;
	u32 mbps;
} tbrdma_lane_rates[] = {
	{ IB_SPEED_SDR, 2500 }, { IB_SPEED_DDR, 5000 }, { IB_SPEED_QDR, 10000 },
	{ IB_SPEED_FDR, 14000 }, { IB_SPEED_EDR, 25000 }, { IB_SPEED_HDR, 50000 },
	{ IB_SPEED_NDR, 100000 },
};

static const struct {
	u8 width;
	u32 lanes;
} tbrdma_widths[] = {
	{ IB_WIDTH_1X, 1 }, { IB_WIDTH_2X, 2 }, { IB_WIDTH_4X, 4 }, { IB_WIDTH_8X, 8 },
	{ IB_WIDTH_12X, 12 },
};

/* The largest IB rate (width x lane speed) not above mbps; at least 1X SDR. */
static void tbrdma_rate_to_ib(u64 mbps, u16 *speed, u8 *width)
{
	u64 best = 0;
	unsigned int i, j;

	*speed = IB_SPEED_SDR;
	*width = IB_WIDTH_1X;
	for (i = 0; i < ARRAY_SIZE(tbrdma_widths); i++) {
		for (j = 0; j < ARRAY_SIZE(tbrdma_lane_rates); j++) {
			u64 rate = (u64)tbrdma_widths[i].lanes * tbrdma_lane_rates[j].mbps;

			if (rate <= mbps && rate > best) {
				best = rate;
				*speed = tbrdma_lane_rates[j].speed;
				*width = tbrdma_widths[i].width;
			}
		}
	}
}

/*
 * Sum of the link speeds of the rails carrying the link. An Ethernet rail reports ethtool's
 * speed (unknown counts as 1 Gb/s, like ib_get_eth_speed() for rxe); a Thunderbolt rail
 * counts as USB4's 40 Gb/s. Takes RTNL (as rxe's query_port does) and the rail mutex.
 */
static u64 tbrdma_rails_mbps(struct tbrdma_dev *tdev)
{
	u64 total = 0;
	int i;

	rtnl_lock();
	mutex_lock(&tdev->rail_mutex);
	for (i = 0; i < TBRDMA_MAX_RAILS; i++) {
		struct tbrdma_rail *rail = &tdev->rails[i];
		struct ethtool_link_ksettings ks;
		u32 mbps = SPEED_1000;

		if (!rail->in_use || !rail->core_added || !tbrdma_rail_running(rail))
			continue;
		if (rail->kind == TBRDMA_RAIL_TB) {
			total += 40000;
			continue;
		}
		if (!netif_carrier_ok(rail->netdev))
			continue;
		if (!__ethtool_get_link_ksettings(rail->netdev, &ks) &&
		    ks.base.speed != (u32)SPEED_UNKNOWN && ks.base.speed)
			mbps = ks.base.speed;
		total += mbps;
	}
	mutex_unlock(&tdev->rail_mutex);
	rtnl_unlock();
	return total;
}

static int tbrdma_query_port(struct ib_device *ibdev, u32 port, struct ib_port_attr *attr)
{
	struct tbrdma_dev *tdev = to_tdev(ibdev);
	u16 speed;
	u8 width;

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
	tbrdma_rate_to_ib(tbrdma_rails_mbps(tdev), &speed, &width);
	attr->active_speed = speed;
	attr->active_width = width;
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
	struct tbrdma_dev *tdev = to_tdev(ibpd->device);

	if (atomic_inc_return(&tdev->n_pd) > TBRDMA_MAX_PD) {
		atomic_dec(&tdev->n_pd);
		return -EINVAL;
	}
	return 0;
}

static int tbrdma_dealloc_pd(struct ib_pd *ibpd, struct ib_udata *udata)
{
	atomic_dec(&to_tdev(ibpd->device)->n_pd);
	return 0;
}

/* The advertised max_mr holds: every MR (DMA or user) counts. */
static int tbrdma_mr_count_get(struct tbrdma_dev *tdev)
{
	if (atomic_inc_return(&tdev->n_mr) > TBRDMA_MAX_MR) {
		atomic_dec(&tdev->n_mr);
		return -EINVAL;
	}
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

/* Link lock or RCU read lock held. */
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

	err = tbrdma_mr_count_get(tdev);
	if (err)
		return ERR_PTR(err);
	mr = kzalloc(sizeof(*mr), GFP_KERNEL_ACCOUNT);
	if (!mr) {
		atomic_dec(&tdev->n_mr);
		return ERR_PTR(-ENOMEM);
	}
	mr->pd = to_tpd(ibpd);
	mr->is_dma = true;
	mr->access = access;
	mr->iova = 0;
	mr->length = U64_MAX;
	err = tbrdma_assign_keys(tdev, mr);
	if (err) {
		kfree(mr);
		atomic_dec(&tdev->n_mr);
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
	err = tbrdma_mr_count_get(tdev);
	if (err)
		return ERR_PTR(err);
	mr = kzalloc(sizeof(*mr), GFP_KERNEL_ACCOUNT);
	if (!mr) {
		atomic_dec(&tdev->n_mr);
		return ERR_PTR(-ENOMEM);
	}
	mr->umem = tbrdma_umem_get(ibpd->device, start, length, access);
	if (IS_ERR(mr->umem)) {
		err = PTR_ERR(mr->umem);
		goto err_free;
	}
	mr->first_page_offset = ib_umem_offset(mr->umem);
	mr->npages = ib_umem_num_pages(mr->umem);
	mr->pages = kvcalloc(mr->npages, sizeof(*mr->pages), GFP_KERNEL_ACCOUNT);
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
	atomic_dec(&tdev->n_mr);
	return ERR_PTR(err);
}

static int tbrdma_dereg_mr(struct ib_mr *ibmr, struct ib_udata *udata)
{
	struct tbrdma_mr *mr = to_tmr(ibmr);

	/* After this no core callback can reach the pages; a post may still be checking. */
	tbrdma_release_keys(to_tdev(ibmr->device), mr);
	if (mr->umem) {
		kvfree(mr->pages);
		ib_umem_release(mr->umem);
	}
	kfree_rcu(mr, rcu);
	atomic_dec(&to_tdev(ibmr->device)->n_mr);
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
static void tbrdma_cq_err_work(struct work_struct *work);

static int tbrdma_create_cq(struct ib_cq *ibcq, const struct ib_cq_init_attr *attr,
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

static int tbrdma_destroy_cq(struct ib_cq *ibcq, struct ib_udata *udata)
{
	struct tbrdma_cq *cq = to_tcq(ibcq);

	cancel_work_sync(&cq->notify_work);
	cancel_work_sync(&cq->err_work);
	kvfree(cq->queue);
	atomic_dec(&to_tdev(ibcq->device)->n_cq);
	return 0;
}

/* Keeps every queued completion, in order; fewer entries than queued is -EINVAL like rxe. */
static int tbrdma_resize_cq(struct ib_cq *ibcq, tbrdma_cqe_t cqe, struct ib_udata *udata)
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
bool tbrdma_cq_push(struct tbrdma_cq *cq, const struct ib_wc *wc)
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
	/*
	 * IB_CQ_SOLICITED: the wire does not carry the solicited-event bit, so every receive
	 * completion counts as solicited (a superset: a sleeper may wake early, never late), as
	 * does every unsuccessful completion.
	 */
	if (cq->notify_flags == IB_CQ_NEXT_COMP ||
	    (cq->notify_flags == IB_CQ_SOLICITED &&
	     (wc->status != IB_WC_SUCCESS || (wc->opcode & IB_WC_RECV)))) {
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
static void tbrdma_cq_purge(struct tbrdma_cq *cq, struct tbrdma_qp *qp)
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
void tbrdma_qp_complete(struct tbrdma_qp *qp, bool send, const struct ib_wc *wc)
{
	if (qp->discard)
		return;
	if (!tbrdma_cq_push(to_tcq(send ? qp->ibqp.send_cq : qp->ibqp.recv_cq), wc) &&
	    !qp->gsi && READ_ONCE(qp->state) != IB_QPS_ERR)
		tbrdma_defer_qp_error(qp);
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

static void tbrdma_qp_event_work(struct work_struct *work)
{
	struct tbrdma_qp *qp = container_of(work, struct tbrdma_qp, event_work);
	struct ib_event ev = {
		.device = qp->ibqp.device,
		.element.qp = &qp->ibqp,
		.event = IB_EVENT_QP_FATAL,
	};

	/* Outside every driver lock: a ULP may call ib_modify_qp() from its handler. */
	if (test_and_clear_bit(0, &qp->pending_events) && qp->ibqp.event_handler)
		qp->ibqp.event_handler(&ev, qp->ibqp.qp_context);
}

struct tbrdma_send_wqe *tbrdma_alloc_send_wqe(struct tbrdma_dev *tdev, size_t size, gfp_t gfp)
{
	struct tbrdma_send_wqe *wqe = kzalloc(size, gfp | __GFP_ACCOUNT);

	if (wqe)
		atomic_inc(&tdev->n_wqe);
	return wqe;
}

void tbrdma_free_send_wqe(struct tbrdma_dev *tdev, struct tbrdma_send_wqe *wqe)
{
	atomic_dec(&tdev->n_wqe);
	kfree(wqe);
}

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
	if (atomic_inc_return(&tdev->n_qp) > TBRDMA_MAX_QP) {
		atomic_dec(&tdev->n_qp);
		return -EINVAL;
	}

	qp->tdev = tdev;
	mutex_init(&qp->state_mutex);
	spin_lock_init(&qp->sq_lock);
	spin_lock_init(&qp->rq_lock);
	INIT_LIST_HEAD(&qp->send_outstanding);
	INIT_LIST_HEAD(&qp->send_waiting);
	INIT_LIST_HEAD(&qp->backlog_node);
	INIT_LIST_HEAD(&qp->pending_error_node);
	INIT_WORK(&qp->event_work, tbrdma_qp_event_work);
	qp->state = IB_QPS_RESET;
	qp->sq_sig_all = init->sq_sig_type == IB_SIGNAL_ALL_WR;
	qp->max_send_wr = max(init->cap.max_send_wr, 1U);
	qp->max_recv_wr = max(init->cap.max_recv_wr, 1U);
	qp->max_send_sge = max(init->cap.max_send_sge, 1U);
	qp->max_recv_sge = max(init->cap.max_recv_sge, 1U);
	qp->attr.port_num = 1;
	qp->attr.path_mtu = IB_MTU_4096;
	qp->attr.path_mig_state = IB_MIG_MIGRATED;
	qp->rq_capacity = qp->max_recv_wr;
	qp->rq = kvcalloc(qp->rq_capacity, sizeof(*qp->rq), GFP_KERNEL_ACCOUNT);
	if (!qp->rq) {
		err = -ENOMEM;
		goto err_count;
	}

	if (init->qp_type == IB_QPT_GSI) {
		/* GSI datagrams go to the peer's QP1, carried on the core QP pair 1 <-> 1. */
		qp->dest_qpn = TBRDMA_GSI_QPN;
		err = tbrdma_gsi_create(qp);
		if (err)
			goto err_rq;
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
		goto err_rq;
	}
	ibqp->qp_num = qpn;
	init->cap.max_send_wr = qp->max_send_wr;
	init->cap.max_recv_wr = qp->max_recv_wr;
	init->cap.max_send_sge = qp->max_send_sge;
	init->cap.max_recv_sge = qp->max_recv_sge;
	init->cap.max_inline_data = 0;
	return 0;

err_rq:
	kvfree(qp->rq);
err_count:
	atomic_dec(&tdev->n_qp);
	return err;
}

/* Completes every receive WQE not yet completed with a flush error. rq_lock held. */
static void flush_recvs_locked(struct tbrdma_qp *qp)
{
	struct ib_wc wc = {
		.status = IB_WC_WR_FLUSH_ERR,
		.opcode = IB_WC_RECV,
		.qp = &qp->ibqp,
	};

	while (qp->rq_head != qp->rq_tail) {
		struct tbrdma_recv_wqe *wqe = &qp->rq[qp->rq_head % qp->rq_capacity];

		if (!wqe->done) {
			wc.wr_id = wqe->wr_id;
			tbrdma_qp_complete(qp, false, &wc);
			qp->stat_flushed++;
		}
		wqe->done = false;
		wqe->generation++;
		qp->rq_head++;
	}
	qp->rq_claim = qp->rq_head;
}

static void tbrdma_flush_recvs(struct tbrdma_qp *qp)
{
	unsigned long flags;

	if (qp->gsi) {
		spin_lock_irqsave(&qp->gsi->lock, flags);
		tbrdma_gsi_flush_recvs(qp);
		spin_unlock_irqrestore(&qp->gsi->lock, flags);
		return;
	}
	spin_lock_irqsave(&qp->rq_lock, flags);
	flush_recvs_locked(qp);
	spin_unlock_irqrestore(&qp->rq_lock, flags);
}

/* Flushes what the core no longer owns (and what it never got), in post order. */
static void tbrdma_flush_sends(struct tbrdma_qp *qp)
{
	struct tbrdma_send_wqe *wqe, *next;
	unsigned long flags;
	LIST_HEAD(flushed);

	spin_lock_irqsave(&qp->sq_lock, flags);
	list_splice_init(&qp->send_outstanding, &flushed);
	list_splice_tail_init(&qp->send_waiting, &flushed);
	qp->send_count = 0;
	qp->reads_in_core = 0;
	spin_unlock_irqrestore(&qp->sq_lock, flags);
	tbrdma_backlog_del(qp);
	list_for_each_entry_safe(wqe, next, &flushed, node) {
		struct ib_wc wc = {
			.wr_id = wqe->wr_id,
			.status = IB_WC_WR_FLUSH_ERR,
			.qp = &qp->ibqp,
		};

		list_del(&wqe->node);
		tbrdma_qp_complete(qp, true, &wc);
		qp->stat_flushed++;
		tbrdma_free_send_wqe(qp->tdev, wqe);
	}
	if (qp->gsi)
		tbrdma_gsi_flush_pending(qp);
}

/* Link lock held. fatal: a transport error, reported to the consumer as an async event. */
void tbrdma_qp_to_error(struct tbrdma_qp *qp, bool fatal)
{
	if (qp->state == IB_QPS_ERR || qp->state == IB_QPS_RESET)
		return;
	/* Set before flushing: a post that sees ERR flushes its own WR (sq/rq lock order). */
	WRITE_ONCE(qp->state, IB_QPS_ERR);
	qp->attr.qp_state = IB_QPS_ERR;
	tbrdma_link_cancel_qp(qp);
	tbrdma_flush_sends(qp);
	tbrdma_flush_recvs(qp);
	if (fatal && !qp->discard) {
		set_bit(0, &qp->pending_events);
		queue_work(system_wq, &qp->event_work);
	}
}

/*
 * Drops the QP's work without completions and purges its CQ entries. Link lock held. The QP
 * stays in discard mode (a QP1 work item may still flush): RESET clears it afterwards.
 */
static void tbrdma_qp_discard(struct tbrdma_qp *qp)
{
	qp->discard = true;
	list_del_init(&qp->pending_error_node);
	tbrdma_qp_to_error(qp, false);
	tbrdma_flush_sends(qp);
	tbrdma_flush_recvs(qp);
	tbrdma_cq_purge(to_tcq(qp->ibqp.send_cq), qp);
	if (qp->ibqp.recv_cq != qp->ibqp.send_cq)
		tbrdma_cq_purge(to_tcq(qp->ibqp.recv_cq), qp);
}

/* Copies the attributes modify_qp set, for query_qp (rxe keeps them the same way). */
static void tbrdma_save_attr(struct tbrdma_qp *qp, const struct ib_qp_attr *attr, int mask)
{
	struct ib_qp_attr *a = &qp->attr;

	if (mask & IB_QP_ACCESS_FLAGS)
		a->qp_access_flags = attr->qp_access_flags;
	if (mask & IB_QP_PKEY_INDEX)
		a->pkey_index = attr->pkey_index;
	if (mask & IB_QP_PORT)
		a->port_num = attr->port_num;
	if (mask & IB_QP_QKEY)
		a->qkey = attr->qkey;
	if (mask & IB_QP_AV) {
		a->ah_attr = attr->ah_attr;
		/* a reference ib_core drops after modify_qp; only the index is kept */
		a->ah_attr.grh.sgid_attr = NULL;
	}
	if (mask & IB_QP_PATH_MTU)
		a->path_mtu = attr->path_mtu;
	if (mask & IB_QP_TIMEOUT)
		a->timeout = attr->timeout;
	if (mask & IB_QP_RETRY_CNT)
		a->retry_cnt = attr->retry_cnt;
	if (mask & IB_QP_RNR_RETRY)
		a->rnr_retry = attr->rnr_retry;
	if (mask & IB_QP_RQ_PSN)
		a->rq_psn = attr->rq_psn & 0xffffff;
	if (mask & IB_QP_MAX_QP_RD_ATOMIC)
		a->max_rd_atomic = attr->max_rd_atomic;
	if (mask & IB_QP_MIN_RNR_TIMER)
		a->min_rnr_timer = attr->min_rnr_timer;
	if (mask & IB_QP_SQ_PSN)
		a->sq_psn = attr->sq_psn & 0xffffff;
	if (mask & IB_QP_MAX_DEST_RD_ATOMIC)
		a->max_dest_rd_atomic = attr->max_dest_rd_atomic;
	if (mask & IB_QP_PATH_MIG_STATE)
		a->path_mig_state = attr->path_mig_state;
	if (mask & IB_QP_DEST_QPN)
		a->dest_qp_num = attr->dest_qp_num;
	if (mask & IB_QP_EN_SQD_ASYNC_NOTIFY)
		a->en_sqd_async_notify = attr->en_sqd_async_notify;
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
	if (((mask & IB_QP_PORT) && attr->port_num != 1) ||
	    ((mask & IB_QP_PKEY_INDEX) && attr->pkey_index != 0) ||
	    ((mask & IB_QP_PATH_MTU) && attr->path_mtu > IB_MTU_4096) ||
	    ((mask & IB_QP_MAX_QP_RD_ATOMIC) && attr->max_rd_atomic > 16) ||
	    ((mask & IB_QP_MAX_DEST_RD_ATOMIC) && attr->max_dest_rd_atomic > 16) ||
	    ((mask & IB_QP_DEST_QPN) && attr->dest_qp_num > TBRDMA_MAX_QPN)) {
		err = -EINVAL;
		goto out;
	}

	spin_lock_bh(&tdev->lock);
	tbrdma_save_attr(qp, attr, mask);
	if ((mask & IB_QP_DEST_QPN) && ibqp->qp_type != IB_QPT_GSI)
		qp->dest_qpn = attr->dest_qp_num;
	if (mask & IB_QP_QKEY)
		qp->qkey = attr->qkey;

	if (next != cur) {
		switch (next) {
		case IB_QPS_RESET:
			/* IBA: the work queues are emptied, without completions. */
			tbrdma_qp_discard(qp);
			qp->discard = false;
			WRITE_ONCE(qp->state, IB_QPS_RESET);
			break;
		case IB_QPS_ERR:
			tbrdma_qp_to_error(qp, false);
			break;
		case IB_QPS_RTR:
			err = tbrdma_link_open_qp(qp);
			if (!err)
				WRITE_ONCE(qp->state, next);
			break;
		default:
			WRITE_ONCE(qp->state, next);
			break;
		}
	}
	qp->attr.qp_state = qp->state;
	tbrdma_after_core_call(tdev);
	spin_unlock_bh(&tdev->lock);
out:
	mutex_unlock(&qp->state_mutex);
	return err;
}

static int tbrdma_query_qp(struct ib_qp *ibqp, struct ib_qp_attr *attr, int mask,
			   struct ib_qp_init_attr *init)
{
	struct tbrdma_qp *qp = to_tqp(ibqp);

	memset(init, 0, sizeof(*init));
	mutex_lock(&qp->state_mutex);
	spin_lock_bh(&qp->tdev->lock);
	*attr = qp->attr;
	attr->qp_state = qp->state;
	spin_unlock_bh(&qp->tdev->lock);
	mutex_unlock(&qp->state_mutex);
	attr->cur_qp_state = attr->qp_state;
	attr->sq_draining = 0;
	attr->cap.max_send_wr = qp->max_send_wr;
	attr->cap.max_recv_wr = qp->max_recv_wr;
	attr->cap.max_send_sge = qp->max_send_sge;
	attr->cap.max_recv_sge = qp->max_recv_sge;
	attr->cap.max_inline_data = 0;
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
	/* Outstanding work vanishes with the QP and no CQ entry may still point at it. */
	tbrdma_qp_discard(qp);
	xa_erase(&tdev->qps, ibqp->qp_num);
	tbrdma_after_core_call(tdev);
	spin_unlock_bh(&tdev->lock);
	mutex_unlock(&qp->state_mutex);
	/* Outside the state mutex: a pending handler may be in ib_modify_qp() on this QP. */
	cancel_work_sync(&qp->event_work);
	if (qp->gsi)
		tbrdma_gsi_destroy(qp);
	kvfree(qp->rq);
	mutex_destroy(&qp->state_mutex);
	atomic_dec(&tdev->n_qp);
	return 0;
}

/*
 * Resolves and checks an SGE list against the QP's PD. Any context: MRs are freed after an
 * RCU grace period, and only their immutable fields are read here.
 */
static int tbrdma_take_sges(struct tbrdma_qp *qp, const struct ib_sge *src, int num_sge,
			    struct tbrdma_sge *dst, u32 *total, bool for_write_into)
{
	u64 sum = 0;
	int i, err = 0;

	rcu_read_lock();
	for (i = 0; i < num_sge; i++) {
		struct tbrdma_mr *mr;

		dst[i].addr = src[i].addr;
		dst[i].length = src[i].length;
		dst[i].lkey = src[i].lkey;
		if (!src[i].length)
			continue;
		mr = tbrdma_lookup_mr(qp->tdev, src[i].lkey, false);
		if (!mr || &mr->pd->ibpd != qp->ibqp.pd) {
			err = -EINVAL;
			break;
		}
		if (for_write_into && !(mr->access & IB_ACCESS_LOCAL_WRITE)) {
			err = -EACCES;
			break;
		}
		if (!tbrdma_mr_range_ok(mr, src[i].addr, src[i].length)) {
			err = -EINVAL;
			break;
		}
		sum += src[i].length;
	}
	rcu_read_unlock();
	if (err)
		return err;
	if (sum > TBRDMA_MAX_MSG_SIZE)
		return -EINVAL;
	*total = sum;
	return 0;
}

/* Checks one WR and builds its WQE (any context). */
static int tbrdma_build_send(struct tbrdma_qp *qp, const struct ib_send_wr *wr,
			     struct tbrdma_send_wqe **out)
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

	wqe = tbrdma_alloc_send_wqe(qp->tdev, sizeof(*wqe), GFP_ATOMIC);
	if (!wqe)
		return -ENOMEM;
	wqe->qp = qp;
	wqe->wr_id = wr->wr_id;
	wqe->opcode = wr->opcode;
	wqe->signaled = qp->sq_sig_all || (wr->send_flags & IB_SEND_SIGNALED);
	wqe->fence = !!(wr->send_flags & IB_SEND_FENCE);
	wqe->num_sge = wr->num_sge;
	if (wr->opcode == IB_WR_SEND_WITH_IMM || wr->opcode == IB_WR_RDMA_WRITE_WITH_IMM)
		wqe->imm = (__force u32)wr->ex.imm_data;
	if (wr->opcode != IB_WR_SEND && wr->opcode != IB_WR_SEND_WITH_IMM) {
		wqe->rkey = rdma_wr(wr)->rkey;
		wqe->raddr = rdma_wr(wr)->remote_addr;
	}
	err = tbrdma_take_sges(qp, wr->sg_list, wr->num_sge, wqe->sge, &wqe->total_len,
			       wr->opcode == IB_WR_RDMA_READ);
	if (err) {
		tbrdma_free_send_wqe(qp->tdev, wqe);
		return err;
	}
	*out = wqe;
	return 0;
}

/*
 * Any context (rxe and siw accept posts with interrupts off, and so do we): WRs are checked
 * and queued under the QP's IRQ-safe send lock; the device's backlog hands them to the core
 * in post order, right here when the device lock may be taken, else from a work item.
 */
static int tbrdma_post_send(struct ib_qp *ibqp, const struct ib_send_wr *wr,
			    const struct ib_send_wr **bad_wr)
{
	struct tbrdma_qp *qp = to_tqp(ibqp);
	struct tbrdma_dev *tdev = qp->tdev;
	enum ib_qp_state state;
	unsigned long flags;
	bool queued = false;
	int err = 0;

	if (qp->gsi)
		return tbrdma_gsi_post_send(qp, wr, bad_wr);
	state = READ_ONCE(qp->state);
	if (state != IB_QPS_RTS && state != IB_QPS_ERR) {
		*bad_wr = wr;
		return -EINVAL;
	}
	/* no link yet (no key): nothing could carry the WR */
	if (state == IB_QPS_RTS && !READ_ONCE(tdev->link_ready)) {
		*bad_wr = wr;
		return -ENOTCONN;
	}
	for (; wr; wr = wr->next) {
		struct tbrdma_send_wqe *wqe;

		err = tbrdma_build_send(qp, wr, &wqe);
		if (err) {
			*bad_wr = wr;
			break;
		}
		spin_lock_irqsave(&qp->sq_lock, flags);
		if (qp->send_count >= qp->max_send_wr) {
			spin_unlock_irqrestore(&qp->sq_lock, flags);
			tbrdma_free_send_wqe(tdev, wqe);
			err = -ENOMEM;
			*bad_wr = wr;
			break;
		}
		list_add_tail(&wqe->node, &qp->send_waiting);
		qp->send_count++;
		spin_unlock_irqrestore(&qp->sq_lock, flags);
		queued = true;
	}
	if (!queued)
		return err;
	tbrdma_backlog_add(qp);
	if (irqs_disabled() || in_hardirq()) {
		queue_work(system_highpri_wq, &tdev->kick_work);
		return err;
	}
	tbrdma_link_push_backlog(tdev);
	return err;
}

/* Any context: the receive ring has its own IRQ-safe lock (the core's claims nest inside). */
static int tbrdma_post_recv(struct ib_qp *ibqp, const struct ib_recv_wr *wr,
			    const struct ib_recv_wr **bad_wr)
{
	struct tbrdma_qp *qp = to_tqp(ibqp);
	unsigned long flags;
	int err = 0;

	if (qp->gsi)
		return tbrdma_gsi_post_recv(qp, wr, bad_wr);
	spin_lock_irqsave(&qp->rq_lock, flags);
	if (READ_ONCE(qp->state) == IB_QPS_RESET) {
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
	/* The error transition sets the state before it flushes under this lock. */
	if (READ_ONCE(qp->state) == IB_QPS_ERR)
		flush_recvs_locked(qp);
out:
	spin_unlock_irqrestore(&qp->rq_lock, flags);
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
	.TBRDMA_RESIZE_CQ_OP = tbrdma_resize_cq,
	.req_notify_cq = tbrdma_req_notify_cq,

	INIT_RDMA_OBJ_SIZE(ib_ah, tbrdma_ah, ibah),
	INIT_RDMA_OBJ_SIZE(ib_cq, tbrdma_cq, ibcq),
	INIT_RDMA_OBJ_SIZE(ib_pd, tbrdma_pd, ibpd),
	INIT_RDMA_OBJ_SIZE(ib_qp, tbrdma_qp, ibqp),
	INIT_RDMA_OBJ_SIZE(ib_ucontext, tbrdma_ucontext, ibuc),
};
