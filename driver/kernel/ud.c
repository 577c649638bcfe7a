// SPDX-License-Identifier: GPL-2.0-only
/*
 * UD QPs of kernel and user consumers.
 *
 * The protocol core carries messages between QP pairs fixed at open; a UD QP talks to any UD
 * QP of the peer, WR by WR. So, like QP1 (gsi.c), every UD datagram travels as one core SEND
 * on a fixed pair, here TBRDMA_UD_CHAN_QPN <-> TBRDMA_UD_CHAN_QPN, opened with each link, and
 * carries a struct tbrdma_ud_hdr naming source and destination QP, Q_Key, immediate data and
 * the AH's GRH fields. The receiver checks every field, the destination QP's Q_Key (a
 * mismatch is dropped silently and counted, IBA 10.2.5 / rxe check_keys), builds the 40-byte
 * GRH a RoCEv2 device delivers (shared with QP1) and completes the next posted receive with
 * src_qp and IB_WC_GRH.
 *
 * A datagram whose destination GID is one of this device's own GIDs never reaches the core:
 * it is delivered to the local QP right when it is handed over (what rxe does by looping the
 * skb back), so a UD QP can talk to QPs of its own device.
 *
 * Send completions: a UD send completes when the datagram leaves the QP (handed to the core,
 * or delivered locally), as on rxe; the core's copy is then the device's (ud_inflight) and is
 * freed when the core is done with it, so flushing or destroying the QP never races the core.
 * Delivery over the link is reliable, which UD permits. A message longer than the port MTU is
 * not sent and completes successfully (IBA C10-93.1.1, as rxe does), counted as ud_oversize.
 */
#include <linux/uaccess.h>
#include <rdma/ib_addr.h>
#include <rdma/ib_mad.h>

#include "tbrdma.h"

static_assert(sizeof(struct tbrdma_ud_hdr) == 64);

/* A UD send WR: header and payload side by side, read by the core as one buffer. */
struct tbrdma_ud_send {
	struct tbrdma_send_wqe wqe;	/* first: the wqe is what gets freed */
	u32 payload_len;
	bool oversize;			/* over the MTU: never sent (IBA C10-93.1.1) */
	struct tbrdma_ud_hdr hdr;
	u8 data[];			/* directly after hdr: hdr is packed */
};

static_assert(offsetof(struct tbrdma_ud_send, data) ==
	      offsetof(struct tbrdma_ud_send, hdr) + sizeof(struct tbrdma_ud_hdr));

static struct tbrdma_ud_send *to_ud_send(struct tbrdma_send_wqe *wqe)
{
	return container_of(wqe, struct tbrdma_ud_send, wqe);
}

int tbrdma_ud_init(struct tbrdma_dev *tdev)
{
	INIT_LIST_HEAD(&tdev->ud_inflight);
	INIT_LIST_HEAD(&tdev->mcast);
	tdev->ud_slots = kvcalloc(TBRDMA_UD_SLOTS, sizeof(*tdev->ud_slots), GFP_KERNEL);
	return tdev->ud_slots ? 0 : -ENOMEM;
}

/* After the link's teardown, which completed (and so freed) every datagram the core had. */
void tbrdma_ud_fini(struct tbrdma_dev *tdev)
{
	struct tbrdma_send_wqe *wqe, *next;

	list_for_each_entry_safe(wqe, next, &tdev->ud_inflight, node) {
		list_del(&wqe->node);
		tbrdma_free_send_wqe(tdev, wqe);
	}
	kvfree(tdev->ud_slots);
	tdev->ud_slots = NULL;
}

/* ---- send ---- */

/* Checks one UD WR and builds its WQE (any context). */
int tbrdma_ud_build_send(struct tbrdma_qp *qp, const struct ib_send_wr *wr,
			 struct tbrdma_send_wqe **out)
{
	const struct ib_ud_wr *ud = ud_wr(wr);
	bool inl = wr->send_flags & IB_SEND_INLINE;
	struct tbrdma_ud_send *us;
	struct tbrdma_ah *ah;
	u64 sum = 0;
	u32 qkey, done = 0;
	bool oversize;
	int i, err;

	if (wr->opcode != IB_WR_SEND && wr->opcode != IB_WR_SEND_WITH_IMM)
		return -EINVAL;
	if (!ud->ah || ud->ah->pd != qp->ibqp.pd || ud->remote_qpn > TBRDMA_MAX_QPN)
		return -EINVAL;
	for (i = 0; i < wr->num_sge; i++)
		sum += wr->sg_list[i].length;
	if (inl && sum > TBRDMA_MAX_INLINE)
		return -EINVAL;
	oversize = sum > TBRDMA_UD_MTU;

	us = (struct tbrdma_ud_send *)tbrdma_alloc_send_wqe(qp->tdev, sizeof(*us) +
							    (oversize ? 0 : sum), GFP_ATOMIC);
	if (!us)
		return -ENOMEM;
	us->wqe.qp = qp;
	us->wqe.wr_id = wr->wr_id;
	us->wqe.opcode = wr->opcode;
	us->wqe.signaled = qp->sq_sig_all || (wr->send_flags & IB_SEND_SIGNALED);
	us->payload_len = sum;
	us->oversize = oversize;
	if (inl) {
		/* Copied now, as for RC (qp.c): the buffer may be reused once the post returns. */
		for (i = 0; i < wr->num_sge; i++) {
			const struct ib_sge *sge = &wr->sg_list[i];

			if (!qp->is_user)
				memcpy(us->data + done, (void *)(uintptr_t)sge->addr, sge->length);
			else if (copy_from_user(us->data + done, u64_to_user_ptr(sge->addr),
						sge->length)) {
				tbrdma_free_send_wqe(qp->tdev, &us->wqe);
				return -EFAULT;
			}
			done += sge->length;
		}
	} else {
		/* Checked now (a bad lkey fails the post), gathered when handed over. */
		u32 total;

		err = tbrdma_take_sges(qp->tdev, qp->ibqp.pd, wr->sg_list, wr->num_sge,
				       us->wqe.sge, &total, false);
		if (err) {
			tbrdma_free_send_wqe(qp->tdev, &us->wqe);
			return err;
		}
		us->wqe.num_sge = wr->num_sge;
	}

	ah = to_tah(ud->ah);
	/* IBA 10.2.5: a WR Q_Key with the high bit set means the QP's own Q_Key. */
	qkey = (ud->remote_qkey & 0x80000000) ? READ_ONCE(qp->qkey) : ud->remote_qkey;
	us->hdr.magic = cpu_to_le32(TBRDMA_UD_MAGIC);
	us->hdr.src_qpn = cpu_to_le32(qp->ibqp.qp_num);
	us->hdr.dst_qpn = cpu_to_le32(ud->remote_qpn);
	us->hdr.qkey = cpu_to_le32(qkey);
	if (wr->opcode == IB_WR_SEND_WITH_IMM) {
		us->hdr.flags |= TBRDMA_UD_F_IMM;
		/* opaque 32 bits, carried unchanged like the core's immediate */
		us->hdr.imm = cpu_to_le32((__force u32)wr->ex.imm_data);
	}
	if (wr->send_flags & IB_SEND_SOLICITED)
		us->hdr.flags |= TBRDMA_UD_F_SOLICITED;
	us->hdr.pkey = cpu_to_le16(IB_DEFAULT_PKEY_FULL);
	us->hdr.traffic_class = ah->traffic_class;
	us->hdr.hop_limit = ah->hop_limit;
	us->hdr.flow_label = cpu_to_le32(ah->flow_label);
	memcpy(us->hdr.sgid, ah->sgid.raw, sizeof(us->hdr.sgid));
	memcpy(us->hdr.dgid, ah->dgid.raw, sizeof(us->hdr.dgid));
	us->wqe.gathered = (u8 *)&us->hdr;
	us->wqe.total_len = sizeof(us->hdr) + (oversize ? 0 : sum);
	*out = &us->wqe;
	return 0;
}

/* A UD QP's membership in a multicast group (attach_mcast), on tdev->mcast. */
struct tbrdma_mcast_attach {
	struct list_head node;
	union ib_gid mgid;
	struct tbrdma_qp *qp;
};

static void ud_receive(struct tbrdma_dev *tdev, const u8 *dgram, u32 len);

/*
 * A UD WR is being handed over (the backlog moved it to the QP's outstanding list): gathers
 * its payload and delivers it here if it is addressed to this device. Link lock held.
 */
enum tbrdma_ud_route tbrdma_ud_prepare(struct tbrdma_send_wqe *wqe, enum ib_wc_status *status)
{
	struct tbrdma_ud_send *us = to_ud_send(wqe);
	struct tbrdma_qp *qp = wqe->qp;
	struct tbrdma_dev *tdev = qp->tdev;
	bool group;

	*status = IB_WC_SUCCESS;
	if (us->oversize) {
		tdev->stat_ud_oversize++;
		return TBRDMA_UD_DONE;
	}
	if (wqe->num_sge) {
		if (tbrdma_check_sges(qp, wqe->sge, wqe->num_sge, false) ||
		    tbrdma_copy_sges(tdev, wqe->sge, wqe->num_sge, 0, us->data, us->payload_len,
				     false)) {
			*status = IB_WC_LOC_PROT_ERR;
			return TBRDMA_UD_DONE;
		}
		/* gathered: a WR the core had no room for is not gathered again */
		wqe->num_sge = 0;
	}
	group = rdma_is_multicast_addr((struct in6_addr *)us->hdr.dgid);
	if (group || tbrdma_gid_is_own(tdev, us->hdr.dgid)) {
		tdev->stat_ud_loopback++;
		ud_receive(tdev, wqe->gathered, wqe->total_len);
		/* a group's members on the peer get it over the channel */
		return group ? TBRDMA_UD_WIRE : TBRDMA_UD_DONE;
	}
	return TBRDMA_UD_WIRE;
}

/* The WR leaves its QP's send queue (the backlog had moved it to the outstanding list). */
void tbrdma_ud_detach(struct tbrdma_send_wqe *wqe)
{
	struct tbrdma_qp *qp = wqe->qp;
	unsigned long flags;

	spin_lock_irqsave(&qp->sq_lock, flags);
	list_del(&wqe->node);
	qp->send_count--;
	spin_unlock_irqrestore(&qp->sq_lock, flags);
}

/* Completes a WR that left the QP (by value: the core may own and free it already). */
void tbrdma_ud_complete(struct tbrdma_qp *qp, u64 wr_id, bool signaled,
			enum ib_wc_status status)
{
	if (signaled || status != IB_WC_SUCCESS) {
		struct ib_wc wc = {
			.wr_id = wr_id,
			.status = status,
			.opcode = IB_WC_SEND,
			.qp = &qp->ibqp,
		};

		tbrdma_qp_complete(qp, true, &wc);
	}
	/* A local protection error moves the QP to error, as on RC. Link lock held. */
	if (status != IB_WC_SUCCESS)
		tbrdma_defer_qp_error(qp);
}

/* The core finished a datagram of the channel (in hand-over order). Link lock held. */
void tbrdma_ud_chan_done(struct tbrdma_dev *tdev, u64 wr_id, u32 status_ok)
{
	struct tbrdma_send_wqe *wqe;

	wqe = list_first_entry_or_null(&tdev->ud_inflight, struct tbrdma_send_wqe, node);
	if (!wqe || (uintptr_t)wqe != wr_id) {
		tdev->stat_orphan_completions++;
		return;
	}
	list_del(&wqe->node);
	/* UD: a datagram the link could not deliver (link torn down) is lost, not an error. */
	if (status_ok)
		tdev->stat_ud_sent++;
	else
		tdev->stat_ud_lost++;
	tbrdma_free_send_wqe(tdev, wqe);
}

/* ---- receive ---- */

/* Completes the next receive of qp with the datagram. Link lock held. False: none posted. */
static bool ud_deliver(struct tbrdma_qp *qp, const struct tbrdma_ud_hdr *h, const u8 *payload,
		       u32 payload_len, const union rdma_network_hdr *grh, int net_type)
{
	struct tbrdma_recv_wqe *wqe;
	struct ib_wc wc = {};
	unsigned long flags;

	spin_lock_irqsave(&qp->rq_lock, flags);
	if (!tbrdma_rq_refill(qp)) {
		/* UD: no receive posted, the datagram is lost. */
		spin_unlock_irqrestore(&qp->rq_lock, flags);
		return false;
	}
	wqe = &qp->rq[qp->rq_claim % qp->rq_capacity];
	/*
	 * A receive too small for GRH + payload: IBA class D for UD (rxe's responder), the
	 * datagram is dropped and the WQE stays posted; one taken from an SRQ completes with
	 * IB_WC_REM_INV_REQ_ERR (class E). Neither moves the QP to error.
	 */
	if (wqe->total_len < sizeof(*grh) + payload_len && !qp->srq) {
		spin_unlock_irqrestore(&qp->rq_lock, flags);
		return false;
	}
	qp->rq_claim++;
	wc.wr_id = wqe->wr_id;
	wc.opcode = IB_WC_RECV;
	wc.qp = &qp->ibqp;
	wc.status = IB_WC_SUCCESS;
	if (wqe->total_len < sizeof(*grh) + payload_len) {
		wc.status = IB_WC_REM_INV_REQ_ERR;
	} else if (tbrdma_check_sges(qp, wqe->sge, wqe->num_sge, true) ||
		   tbrdma_copy_sges(qp->tdev, wqe->sge, wqe->num_sge, 0, (void *)grh,
				    sizeof(*grh), true) ||
		   tbrdma_copy_sges(qp->tdev, wqe->sge, wqe->num_sge, sizeof(*grh),
				    (void *)payload, payload_len, true)) {
		wc.status = IB_WC_LOC_PROT_ERR;
	} else {
		wc.byte_len = sizeof(*grh) + payload_len;
		wc.src_qp = le32_to_cpu(h->src_qpn);
		wc.pkey_index = 0;
		wc.port_num = 1;
		wc.wc_flags = IB_WC_GRH;
		/*
		 * uverbs copies wc_flags as they are, and user space has no such bit (its 0x40
		 * is IBV_WC_TM_DATA_VALID): the network type is for kernel consumers only.
		 */
		if (!qp->is_user) {
			wc.wc_flags |= IB_WC_WITH_NETWORK_HDR_TYPE;
			wc.network_hdr_type = net_type;
		} else {
			/*
			 * User space learns the GRH's kind from sl, as mlx5 reports a RoCE UD
			 * packet's L3 header type there (1 IPv6, 2 IPv4): UCX's ud_verbs
			 * checks the destination address in the GRH by it, and drops every
			 * datagram whose IPv4 header it reads as an IPv6 GRH.
			 */
			wc.sl = net_type == RDMA_NETWORK_IPV4 ? 2 : 1;
		}
		if (h->flags & TBRDMA_UD_F_IMM) {
			wc.wc_flags |= IB_WC_WITH_IMM;
			wc.ex.imm_data = (__force __be32)le32_to_cpu(h->imm);
		}
	}
	tbrdma_rq_complete(qp, wqe, &wc, h->flags & TBRDMA_UD_F_SOLICITED);
	spin_unlock_irqrestore(&qp->rq_lock, flags);
	/* An MR that no longer fits the posted WQE: a local protection error, fatal as on RC. */
	if (wc.status == IB_WC_LOC_PROT_ERR)
		tbrdma_defer_qp_error(qp);
	return wc.status == IB_WC_SUCCESS;
}

/*
 * The Q_Key check and delivery to one destination QP. Link lock held. False: dropped (not
 * counted here).
 */
static bool ud_deliver_to(struct tbrdma_qp *qp, const struct tbrdma_ud_hdr *h,
			  const u8 *payload, u32 payload_len, const union rdma_network_hdr *grh,
			  int net_type)
{
	struct tbrdma_dev *tdev = qp->tdev;

	if (qp->ibqp.qp_type != IB_QPT_UD ||
	    (qp->state != IB_QPS_RTR && qp->state != IB_QPS_RTS))
		return false;
	/* IBA 10.2.5 (rxe check_keys): a Q_Key mismatch is dropped silently and counted. */
	if (le32_to_cpu(h->qkey) != qp->qkey) {
		tdev->stat_ud_qkey_dropped++;
		return true;
	}
	if (!ud_deliver(qp, h, payload, payload_len, grh, net_type))
		return false;
	tdev->stat_ud_received++;
	return true;
}

/* A datagram to a multicast group: a copy for each QP of this device attached to it. */
static void ud_deliver_mcast(struct tbrdma_dev *tdev, const struct tbrdma_ud_hdr *h,
			     const u8 *payload, u32 payload_len,
			     const union rdma_network_hdr *grh, int net_type)
{
	struct tbrdma_mcast_attach *m;

	list_for_each_entry(m, &tdev->mcast, node)
		if (!memcmp(m->mgid.raw, h->dgid, sizeof(m->mgid.raw)) &&
		    !ud_deliver_to(m->qp, h, payload, payload_len, grh, net_type))
			tdev->stat_ud_dropped++;
}

/* One datagram from the channel or from a local UD QP: checked, then delivered. Link lock held. */
static void ud_receive(struct tbrdma_dev *tdev, const u8 *dgram, u32 len)
{
	const struct tbrdma_ud_hdr *h = (const struct tbrdma_ud_hdr *)dgram;
	union rdma_network_hdr grh;
	u32 src_qpn, dst_qpn, payload_len;
	struct tbrdma_qp *qp;
	int net_type;
	bool group;

	if (len < sizeof(*h) || len - sizeof(*h) > TBRDMA_UD_MTU)
		goto drop;
	payload_len = len - sizeof(*h);
	src_qpn = le32_to_cpu(h->src_qpn);
	dst_qpn = le32_to_cpu(h->dst_qpn);
	if (le32_to_cpu(h->magic) != TBRDMA_UD_MAGIC ||
	    src_qpn < TBRDMA_FIRST_QPN || src_qpn > TBRDMA_MAX_QPN ||
	    dst_qpn < TBRDMA_FIRST_QPN || dst_qpn > TBRDMA_MAX_QPN ||
	    (h->flags & ~(TBRDMA_UD_F_IMM | TBRDMA_UD_F_SOLICITED)) ||
	    h->reserved[0] || h->reserved[1] || h->reserved[2] ||
	    (!(h->flags & TBRDMA_UD_F_IMM) && h->imm))
		goto drop;
	/* IBA 10.5.2.2: the multicast QPN with a group's GID goes to every member here. */
	group = dst_qpn == IB_MULTICAST_QPN;
	net_type = tbrdma_dgram_grh(tdev, h->sgid, h->dgid, h->traffic_class, h->hop_limit,
				    le32_to_cpu(h->flow_label), le16_to_cpu(h->pkey), payload_len,
				    group, &grh);
	if (net_type < 0)
		goto drop;
	if (group) {
		ud_deliver_mcast(tdev, h, dgram + sizeof(*h), payload_len, &grh, net_type);
		return;
	}
	qp = xa_load(&tdev->qps, dst_qpn);
	if (!qp || !ud_deliver_to(qp, h, dgram + sizeof(*h), payload_len, &grh, net_type))
		goto drop;
	return;
drop:
	tdev->stat_ud_dropped++;
}

/* ---- the channel's receive slots (the core reassembles into them) ---- */

/* Link lock held. */
int tbrdma_ud_slot_claim(struct tbrdma_dev *tdev, u64 *handle, u32 *capacity)
{
	u32 i;

	for (i = 0; i < TBRDMA_UD_SLOTS; i++) {
		struct tbrdma_ud_slot *slot = &tdev->ud_slots[i];

		if (slot->busy)
			continue;
		slot->busy = true;
		*handle = TBRDMA_RECV_HANDLE(TBRDMA_UD_CHAN_QPN, slot->generation, i);
		*capacity = TBRDMA_UD_DGRAM_MAX;
		return 0;
	}
	return -EAGAIN;
}

static struct tbrdma_ud_slot *ud_slot_of(struct tbrdma_dev *tdev, u64 handle)
{
	u32 index = handle & 0xffff;
	struct tbrdma_ud_slot *slot;

	if ((u32)(handle >> 32) != TBRDMA_UD_CHAN_QPN || index >= TBRDMA_UD_SLOTS)
		return NULL;
	slot = &tdev->ud_slots[index];
	if (!slot->busy || slot->generation != (u16)(handle >> 16))
		return NULL;
	return slot;
}

/* The core's placement target for a claimed slot (TBRDMA_UD_DGRAM_MAX bytes). Link lock held. */
u8 *tbrdma_ud_slot_buf(struct tbrdma_dev *tdev, u64 handle)
{
	struct tbrdma_ud_slot *slot = ud_slot_of(tdev, handle);

	return slot ? slot->data : NULL;
}

static void ud_free_slot(struct tbrdma_ud_slot *slot)
{
	slot->busy = false;
	slot->generation++;
}

/* A new link: slots the old one had claimed are gone with it. Link lock held. */
void tbrdma_ud_reset_slots(struct tbrdma_dev *tdev)
{
	u32 i;

	for (i = 0; i < TBRDMA_UD_SLOTS; i++)
		if (tdev->ud_slots[i].busy)
			ud_free_slot(&tdev->ud_slots[i]);
}

/* The core finished (ok) or gave up on a claimed slot. Link lock held. */
void tbrdma_ud_slot_done(struct tbrdma_dev *tdev, u64 handle, u32 src_qpn, u32 len, bool ok)
{
	struct tbrdma_ud_slot *slot = ud_slot_of(tdev, handle);

	if (!slot) {
		tdev->stat_orphan_completions++;
		return;
	}
	if (ok && src_qpn == TBRDMA_UD_CHAN_QPN && len <= TBRDMA_UD_DGRAM_MAX)
		ud_receive(tdev, slot->data, len);
	else
		tdev->stat_ud_dropped++;
	ud_free_slot(slot);
}

/* ---- multicast groups (attach_mcast / detach_mcast) ---- */

int tbrdma_attach_mcast(struct ib_qp *ibqp, union ib_gid *gid, u16 lid)
{
	struct tbrdma_qp *qp = to_tqp(ibqp);
	struct tbrdma_dev *tdev = qp->tdev;
	struct tbrdma_mcast_attach *m, *new;
	u32 members = 0;
	int err = 0;

	if (ibqp->qp_type != IB_QPT_UD || !rdma_is_multicast_addr((struct in6_addr *)gid->raw))
		return -EINVAL;
	new = kzalloc(sizeof(*new), GFP_KERNEL);
	if (!new)
		return -ENOMEM;
	new->mgid = *gid;
	new->qp = qp;
	spin_lock_bh(&tdev->lock);
	list_for_each_entry(m, &tdev->mcast, node) {
		if (memcmp(m->mgid.raw, gid->raw, sizeof(gid->raw)))
			continue;
		if (m->qp == qp)
			goto out;	/* attached already: nothing to do, as rxe */
		members++;
	}
	if (members >= TBRDMA_MAX_MCAST_QP_ATTACH || tdev->n_mcast >= TBRDMA_MAX_MCAST_ATTACH) {
		err = -ENOMEM;
		goto out;
	}
	list_add_tail(&new->node, &tdev->mcast);
	tdev->n_mcast++;
	new = NULL;
out:
	spin_unlock_bh(&tdev->lock);
	kfree(new);
	return err;
}

int tbrdma_detach_mcast(struct ib_qp *ibqp, union ib_gid *gid, u16 lid)
{
	struct tbrdma_qp *qp = to_tqp(ibqp);
	struct tbrdma_dev *tdev = qp->tdev;
	struct tbrdma_mcast_attach *m, *found = NULL;

	spin_lock_bh(&tdev->lock);
	list_for_each_entry(m, &tdev->mcast, node) {
		if (m->qp == qp && !memcmp(m->mgid.raw, gid->raw, sizeof(gid->raw))) {
			found = m;
			list_del(&m->node);
			tdev->n_mcast--;
			break;
		}
	}
	spin_unlock_bh(&tdev->lock);
	kfree(found);
	return found ? 0 : -EINVAL;
}

/* A QP being destroyed leaves every group it is still in. Link lock held. */
void tbrdma_mcast_detach_qp(struct tbrdma_qp *qp)
{
	struct tbrdma_dev *tdev = qp->tdev;
	struct tbrdma_mcast_attach *m, *next;

	list_for_each_entry_safe(m, next, &tdev->mcast, node) {
		if (m->qp != qp)
			continue;
		list_del(&m->node);
		tdev->n_mcast--;
		kfree(m);
	}
}
