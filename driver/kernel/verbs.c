// SPDX-License-Identifier: GPL-2.0-only
/*
 * Verbs objects: device/port queries, PD, MR (user memory and DMA) and the device's op
 * table. CQs are in cq.c, QPs in qp.c, QP1 (GSI) in gsi.c, UD in ud.c, AHs in ah.c; the
 * data path hands work to the protocol core through glue.c.
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
				 IB_DEVICE_CHANGE_PHY_PORT | IB_DEVICE_SRQ_RESIZE |
				 IB_DEVICE_MEM_MGT_EXTENSIONS |	/* mr.c */
				 IB_DEVICE_MEM_WINDOW | IB_DEVICE_MEM_WINDOW_TYPE_2B |	/* mw.c */
				 TBRDMA_DEVICE_FLUSH_ATOMIC_WRITE;	/* sq.c */
	attr->max_fast_reg_page_list_len = TBRDMA_MAX_FR_PAGES;
	attr->kernel_cap_flags = IBK_ALLOW_USER_UNREG;
	attr->max_send_sge = TBRDMA_MAX_SGE;
	attr->max_recv_sge = TBRDMA_MAX_SGE;
	attr->max_sge_rd = TBRDMA_MAX_SGE;
	attr->max_cq = TBRDMA_MAX_CQ;
	attr->max_cqe = TBRDMA_MAX_CQE;
	attr->max_mr = TBRDMA_MAX_MR;
	attr->max_mw = TBRDMA_MAX_MR;	/* windows count as MRs (mw.c) */
	attr->max_pd = TBRDMA_MAX_PD;
	attr->max_srq = TBRDMA_MAX_SRQ;
	attr->max_srq_wr = TBRDMA_MAX_SRQ_WR;
	attr->max_srq_sge = TBRDMA_MAX_SGE;
	attr->max_qp_rd_atom = 16;
	attr->max_qp_init_rd_atom = 16;
	attr->max_res_rd_atom = 16 * TBRDMA_MAX_QP;
	attr->atomic_cap = IB_ATOMIC_HCA; /* atomic.c */
	attr->max_pkeys = 1;
	attr->max_ah = TBRDMA_MAX_AH;
	attr->max_mcast_grp = TBRDMA_MAX_MCAST_ATTACH;
	attr->max_mcast_qp_attach = TBRDMA_MAX_MCAST_QP_ATTACH;
	attr->max_total_mcast_qp_attach = TBRDMA_MAX_MCAST_ATTACH;
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
 * speed (unknown counts as 1 Gb/s, like ib_get_eth_speed() for rxe); a Thunderbolt rail its
 * XDomain link's speed and width. Takes RTNL (as rxe's query_port does) and the rail mutex.
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
			total += tbrdma_tb_mbps(rail);
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

/* The advertised max_mr holds: every MR (DMA, user or fast registration) counts. */
int tbrdma_mr_count_get(struct tbrdma_dev *tdev)
{
	if (atomic_inc_return(&tdev->n_mr) > TBRDMA_MAX_MR) {
		atomic_dec(&tdev->n_mr);
		return -EINVAL;
	}
	return 0;
}

/* ---- memory regions ---- */

/*
 * Both keys random and distinct, bit 31 clear (set names a fast-registration MR); an MR is
 * found by either, and the caller says which.
 */
static int tbrdma_assign_keys(struct tbrdma_dev *tdev, struct tbrdma_mr *mr)
{
	u32 key;
	int tries, err;

	mr->state = TBRDMA_MR_VALID;
	for (tries = 0; tries < 64; tries++) {
		key = get_random_u32() & ~TBRDMA_KEY_FAST;
		if (!key)
			continue;
		err = xa_insert_bh(&tdev->mrs, key, mr, GFP_KERNEL);
		if (err == -EBUSY)
			continue;
		if (err)
			return err;
		if (!mr->lkey) {
			mr->lkey = key;
			mr->ibmr.lkey = key;
			continue;
		}
		mr->rkey = key;
		mr->ibmr.rkey = key;
		return 0;
	}
	if (mr->lkey)
		xa_erase_bh(&tdev->mrs, mr->lkey);
	return -ENOSPC;
}

static void tbrdma_release_keys(struct tbrdma_dev *tdev, struct tbrdma_mr *mr)
{
	/* Under the link lock so no copy callback is halfway through this MR. */
	spin_lock_bh(&tdev->lock);
	xa_erase(&tdev->mrs, tbrdma_key_index(mr->lkey));
	if (!mr->fast)
		xa_erase(&tdev->mrs, mr->rkey);
	spin_unlock_bh(&tdev->lock);
}

/*
 * Link lock or RCU read lock held. Only a VALID MR grants access: an invalidated
 * fast-registration MR refuses every key until the next REG_MR (rxe's lookup_mr).
 */
struct tbrdma_mr *tbrdma_lookup_mr(struct tbrdma_dev *tdev, u32 key, bool remote)
{
	struct tbrdma_mr *mr = xa_load(&tdev->mrs, tbrdma_key_index(key));

	if (!mr)
		return NULL;
	if (remote ? READ_ONCE(mr->rkey) != key : READ_ONCE(mr->lkey) != key)
		return NULL;
	if (READ_ONCE(mr->state) != TBRDMA_MR_VALID)
		return NULL;
	return mr;
}

/*
 * At post time (RCU): a fast MR is found by its key's upper 24 bits whatever its state, as
 * the REG_MR that sets its key may be ahead of this WR in the send queue.
 */
struct tbrdma_mr *tbrdma_lookup_mr_post(struct tbrdma_dev *tdev, u32 key)
{
	struct tbrdma_mr *mr;

	if (!(key & TBRDMA_KEY_FAST))
		return tbrdma_lookup_mr(tdev, key, false);
	mr = xa_load(&tdev->mrs, tbrdma_key_index(key));
	return mr && mr->fast ? mr : NULL;
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

	/* Bound memory windows use its pages (rxe_dereg_mr: -EINVAL). */
	if (atomic_read(&mr->num_mw))
		return -EINVAL;
	/* After this no core callback can reach the pages; a post may still be checking. */
	tbrdma_release_keys(to_tdev(ibmr->device), mr);
	if (mr->fast)
		tbrdma_free_fast_mr(mr);
	if (mr->umem) {
		kvfree(mr->pages);
		ib_umem_release(mr->umem);
	}
	kfree_rcu(mr, rcu);
	atomic_dec(&to_tdev(ibmr->device)->n_mr);
	return 0;
}

bool tbrdma_mr_range_ok(const struct tbrdma_mr *mr, u64 iova, u64 len)
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
	while (mr->fast && len) {
		u32 chunk;
		void *kaddr = tbrdma_fr_kaddr(mr, iova, &chunk);

		if (!kaddr)
			return -EFAULT;
		chunk = min(chunk, len);
		if (to_mr)
			memcpy(kaddr, buf, chunk);
		else
			memcpy(buf, kaddr, chunk);
		buf += chunk;
		iova += chunk;
		len -= chunk;
	}
	if (mr->fast)
		return 0;
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
		/* A fast MR's rights come with its REG_MR, after the post checked the SGE. */
		if (mr->fast && to_mr && !(READ_ONCE(mr->access) & IB_ACCESS_LOCAL_WRITE))
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
	.alloc_mr = tbrdma_alloc_mr,
	.alloc_mw = tbrdma_alloc_mw,
	.alloc_pd = tbrdma_alloc_pd,
	.alloc_ucontext = tbrdma_alloc_ucontext,
	.attach_mcast = tbrdma_attach_mcast,
	.create_ah = tbrdma_create_ah,
	.create_user_ah = tbrdma_create_ah,
	.create_cq = tbrdma_create_cq,
	.create_qp = tbrdma_create_qp,
	.create_srq = tbrdma_create_srq,
	.dealloc_driver = tbrdma_dealloc_driver,
	.dealloc_mw = tbrdma_dealloc_mw,
	.dealloc_pd = tbrdma_dealloc_pd,
	.dealloc_ucontext = tbrdma_dealloc_ucontext,
	.dereg_mr = tbrdma_dereg_mr,
	.destroy_ah = tbrdma_destroy_ah,
	.destroy_cq = tbrdma_destroy_cq,
	.destroy_qp = tbrdma_destroy_qp,
	.destroy_srq = tbrdma_destroy_srq,
	.detach_mcast = tbrdma_detach_mcast,
	.get_dma_mr = tbrdma_get_dma_mr,
	.get_hw_stats = tbrdma_get_hw_stats,
	.get_link_layer = tbrdma_get_link_layer,
	.get_port_immutable = tbrdma_get_port_immutable,
	.map_mr_sg = tbrdma_map_mr_sg,
	.mmap = tbrdma_mmap,
	.mmap_free = tbrdma_mmap_free,
	.modify_qp = tbrdma_modify_qp,
	.modify_srq = tbrdma_modify_srq,
	.poll_cq = tbrdma_poll_cq,
	.post_recv = tbrdma_post_recv,
	.post_send = tbrdma_post_send,
	.post_srq_recv = tbrdma_post_srq_recv,
	.query_device = tbrdma_query_device,
	.query_pkey = tbrdma_query_pkey,
	.query_port = tbrdma_query_port,
	.query_ah = tbrdma_query_ah,
	.query_qp = tbrdma_query_qp,
	.query_srq = tbrdma_query_srq,
	.reg_user_mr = tbrdma_reg_user_mr,
	.rereg_user_mr = tbrdma_rereg_user_mr,
	.TBRDMA_RESIZE_CQ_OP = tbrdma_resize_cq,
	.req_notify_cq = tbrdma_req_notify_cq,

	INIT_RDMA_OBJ_SIZE(ib_ah, tbrdma_ah, ibah),
	INIT_RDMA_OBJ_SIZE(ib_cq, tbrdma_cq, ibcq),
	INIT_RDMA_OBJ_SIZE(ib_mw, tbrdma_mw, ibmw),
	INIT_RDMA_OBJ_SIZE(ib_pd, tbrdma_pd, ibpd),
	INIT_RDMA_OBJ_SIZE(ib_qp, tbrdma_qp, ibqp),
	INIT_RDMA_OBJ_SIZE(ib_srq, tbrdma_srq, ibsrq),
	INIT_RDMA_OBJ_SIZE(ib_ucontext, tbrdma_ucontext, ibuc),
};
