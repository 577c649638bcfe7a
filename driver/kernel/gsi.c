// SPDX-License-Identifier: GPL-2.0-only
/*
 * QP1 (GSI): the MADs of ib_cm, and so rdma_cm, between the two ends of a link.
 *
 * The port is RoCEv2-style (GIDs are the rail netdev's IP addresses), but no RoCE packet is
 * ever sent: a datagram travels as a core SEND on the QP pair 1 <-> 1, prefixed with a small
 * header (struct tbrdma_gsi_hdr) naming the GIDs, P_Key and Q_Key. The receiver validates the
 * header, builds the 40-byte GRH a RoCEv2 device would deliver (for IPv4 GIDs an IPv4 header
 * in its last 20 bytes) and completes the consumer's receive like rxe does. A link has exactly
 * one peer, so every datagram goes to that peer's QP1.
 *
 * Reliable delivery is stronger than UD needs and is kept. UD semantics that differ from RC:
 * a datagram that arrives when no receive is posted, or that fails validation, is dropped
 * and counted (gsi_dropped), and errors never move QP1 to the error state.
 */
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <net/ip.h>
#include <net/ipv6.h>
#include <rdma/ib_addr.h>
#include <rdma/ib_cache.h>
#include <rdma/ib_mad.h>

#include "tbrdma.h"

static_assert(sizeof(struct tbrdma_gsi_hdr) == 52);
static_assert(sizeof(union rdma_network_hdr) == 40);
static_assert(TBRDMA_GSI_MAX_MAD == IB_MGMT_MAD_SIZE);

/* Bytes a RoCEv2 packet carries after its UDP header besides the MAD: BTH, DETH and ICRC. */
#define TBRDMA_ROCE_UD_OVERHEAD	(12 + 8 + 4)

/* ---- QP1 life cycle ---- */

static void tbrdma_gsi_work(struct work_struct *work);

int tbrdma_gsi_create(struct tbrdma_qp *qp)
{
	struct tbrdma_gsi *gsi = kvzalloc(sizeof(*gsi), GFP_KERNEL);

	if (!gsi)
		return -ENOMEM;
	gsi->qp = qp;
	spin_lock_init(&gsi->lock);
	INIT_LIST_HEAD(&gsi->pending);
	INIT_WORK(&gsi->work, tbrdma_gsi_work);
	qp->gsi = gsi;
	return 0;
}

/* The QP is in error and out of the QP table: only a misbehaving consumer still posts. */
void tbrdma_gsi_destroy(struct tbrdma_qp *qp)
{
	struct tbrdma_send_wqe *wqe, *next;

	cancel_work_sync(&qp->gsi->work);
	list_for_each_entry_safe(wqe, next, &qp->gsi->pending, node)
		tbrdma_free_send_wqe(qp->tdev, wqe);
	kvfree(qp->gsi);
	qp->gsi = NULL;
}

void tbrdma_gsi_kick(struct tbrdma_qp *qp)
{
	queue_work(system_highpri_wq, &qp->gsi->work);
}

static void gsi_complete_send(struct tbrdma_qp *qp, struct tbrdma_send_wqe *wqe,
			      enum ib_wc_status status)
{
	struct ib_wc wc = {
		.wr_id = wqe->wr_id,
		.status = status,
		.opcode = IB_WC_SEND,
		.qp = &qp->ibqp,
	};

	if (wqe->signaled || status != IB_WC_SUCCESS)
		tbrdma_qp_complete(qp, true, &wc);
	tbrdma_free_send_wqe(qp->tdev, wqe);
}

/* Posted sends the core never saw complete as flushed. Link lock held. */
void tbrdma_gsi_flush_pending(struct tbrdma_qp *qp)
{
	struct tbrdma_gsi *gsi = qp->gsi;
	struct tbrdma_send_wqe *wqe, *next;
	unsigned long flags;
	LIST_HEAD(flushed);

	spin_lock_irqsave(&gsi->lock, flags);
	list_splice_init(&gsi->pending, &flushed);
	gsi->pending_count = 0;
	spin_unlock_irqrestore(&gsi->lock, flags);
	list_for_each_entry_safe(wqe, next, &flushed, node) {
		list_del(&wqe->node);
		qp->stat_flushed++;
		gsi_complete_send(qp, wqe, IB_WC_WR_FLUSH_ERR);
	}
}

/* ---- send ---- */

/* The header and wire form of one WR; its SGEs are checked and gathered later. */
struct tbrdma_gsi_send {
	struct tbrdma_send_wqe wqe;	/* first: the wqe is what gets freed */
	struct tbrdma_gsi_hdr hdr;
	u8 mad[TBRDMA_GSI_MAX_MAD];	/* directly after hdr: hdr is packed */
};

static int gsi_queue_send(struct tbrdma_qp *qp, const struct ib_send_wr *wr)
{
	const struct ib_ud_wr *ud = ud_wr(wr);
	struct tbrdma_gsi *gsi = qp->gsi;
	struct tbrdma_gsi_send *gs;
	struct tbrdma_ah *ah;
	u64 total = 0;
	u32 qkey;
	int i;

	if (wr->opcode != IB_WR_SEND || (wr->send_flags & IB_SEND_INLINE))
		return -EINVAL;
	if (wr->num_sge < 0 || wr->num_sge > qp->max_send_sge)
		return -EINVAL;
	if (!ud->ah || ud->ah->pd != qp->ibqp.pd || ud->pkey_index != 0)
		return -EINVAL;
	/* The only datagram destination a link has is the peer's QP1. */
	if (ud->remote_qpn != TBRDMA_GSI_QPN)
		return -EINVAL;
	for (i = 0; i < wr->num_sge; i++)
		total += wr->sg_list[i].length;
	if (total < TBRDMA_GSI_MIN_MAD || total > TBRDMA_GSI_MAX_MAD)
		return -EINVAL;
	if (gsi->pending_count + READ_ONCE(qp->send_count) >= qp->max_send_wr)
		return -ENOMEM;

	gs = (struct tbrdma_gsi_send *)tbrdma_alloc_send_wqe(qp->tdev, sizeof(*gs), GFP_ATOMIC);
	if (!gs)
		return -ENOMEM;
	ah = to_tah(ud->ah);
	/* IBA 10.2.5: a WR Q_Key with the high bit set means the QP's own Q_Key. */
	qkey = (ud->remote_qkey & 0x80000000) ? qp->qkey : ud->remote_qkey;
	gs->hdr.magic = cpu_to_le32(TBRDMA_GSI_MAGIC);
	gs->hdr.src_qpn = cpu_to_le32(TBRDMA_GSI_QPN);
	gs->hdr.qkey = cpu_to_le32(qkey);
	gs->hdr.pkey = cpu_to_le16(IB_DEFAULT_PKEY_FULL);
	gs->hdr.traffic_class = ah->traffic_class;
	gs->hdr.hop_limit = ah->hop_limit;
	gs->hdr.flow_label = cpu_to_le32(ah->flow_label);
	memcpy(gs->hdr.sgid, ah->sgid.raw, sizeof(gs->hdr.sgid));
	memcpy(gs->hdr.dgid, ah->dgid.raw, sizeof(gs->hdr.dgid));

	gs->wqe.qp = qp;
	gs->wqe.wr_id = wr->wr_id;
	gs->wqe.opcode = IB_WR_SEND;
	gs->wqe.signaled = qp->sq_sig_all || (wr->send_flags & IB_SEND_SIGNALED);
	gs->wqe.num_sge = wr->num_sge;
	for (i = 0; i < wr->num_sge; i++) {
		gs->wqe.sge[i].addr = wr->sg_list[i].addr;
		gs->wqe.sge[i].length = wr->sg_list[i].length;
		gs->wqe.sge[i].lkey = wr->sg_list[i].lkey;
	}
	gs->wqe.total_len = sizeof(gs->hdr) + total;
	gs->wqe.gathered = (u8 *)&gs->hdr;
	list_add_tail(&gs->wqe.node, &gsi->pending);
	gsi->pending_count++;
	return 0;
}

/* May run with interrupts off (ib_mad holds its send queue lock): queues, never sends. */
int tbrdma_gsi_post_send(struct tbrdma_qp *qp, const struct ib_send_wr *wr,
			 const struct ib_send_wr **bad_wr)
{
	struct tbrdma_gsi *gsi = qp->gsi;
	enum ib_qp_state state = READ_ONCE(qp->state);
	unsigned long flags;
	int err = 0;

	if (state != IB_QPS_RTS && state != IB_QPS_ERR) {
		*bad_wr = wr;
		return -EINVAL;
	}
	spin_lock_irqsave(&gsi->lock, flags);
	for (; wr; wr = wr->next) {
		err = gsi_queue_send(qp, wr);
		if (err) {
			*bad_wr = wr;
			break;
		}
	}
	spin_unlock_irqrestore(&gsi->lock, flags);
	/* Also in error state: the work item flushes what it finds then. */
	tbrdma_gsi_kick(qp);
	return err;
}

/* Checks the SGEs against the QP's PD and gathers the MAD behind the header. Link lock held. */
static enum ib_wc_status gsi_gather(struct tbrdma_qp *qp, struct tbrdma_send_wqe *wqe)
{
	u32 mad_len = wqe->total_len - sizeof(struct tbrdma_gsi_hdr);

	if (tbrdma_check_sges(qp, wqe->sge, wqe->num_sge, false))
		return IB_WC_LOC_PROT_ERR;
	if (tbrdma_copy_sges(qp->tdev, wqe->sge, wqe->num_sge, 0,
			     wqe->gathered + sizeof(struct tbrdma_gsi_hdr), mad_len, false))
		return IB_WC_LOC_PROT_ERR;
	return IB_WC_SUCCESS;
}

static bool gsi_deliver(struct tbrdma_qp *qp, const u8 *dgram, u32 len);

static bool gsi_to_own_gid(struct tbrdma_qp *qp, const struct tbrdma_send_wqe *wqe)
{
	const struct tbrdma_gsi_hdr *h = (const struct tbrdma_gsi_hdr *)wqe->gathered;

	return tbrdma_gid_is_own(qp->tdev, h->dgid);
}

/* Hands queued datagrams to the core, in post order, from process context. */
static void tbrdma_gsi_work(struct work_struct *work)
{
	struct tbrdma_gsi *gsi = container_of(work, struct tbrdma_gsi, work);
	struct tbrdma_qp *qp = gsi->qp;
	struct tbrdma_dev *tdev = qp->tdev;

	spin_lock_bh(&tdev->lock);
	for (;;) {
		struct tbrdma_send_wqe *wqe;
		enum ib_wc_status status;
		int err;

		if (qp->state != IB_QPS_RTS) {
			if (qp->state == IB_QPS_ERR || qp->state == IB_QPS_RESET)
				tbrdma_gsi_flush_pending(qp);
			break;
		}
		spin_lock_irq(&gsi->lock);
		wqe = list_first_entry_or_null(&gsi->pending, struct tbrdma_send_wqe, node);
		if (wqe)
			list_del(&wqe->node);
		spin_unlock_irq(&gsi->lock);
		if (!wqe)
			break;

		status = gsi_gather(qp, wqe);
		if (status == IB_WC_SUCCESS && gsi_to_own_gid(qp, wqe)) {
			/* rdma_cm between two addresses of this device: delivered here, as on rxe */
			if (gsi_deliver(qp, wqe->gathered, wqe->total_len))
				tdev->stat_gsi_received++;
			else
				tdev->stat_gsi_dropped++;
			tdev->stat_gsi_sent++;
		} else if (status == IB_WC_SUCCESS) {
			spin_lock_irq(&qp->sq_lock);
			list_add_tail(&wqe->node, &qp->send_outstanding);
			qp->send_count++;
			spin_unlock_irq(&qp->sq_lock);
			err = tbrdma_link_post_gsi(qp, wqe);
			if (err) {
				spin_lock_irq(&qp->sq_lock);
				list_del(&wqe->node);
				qp->send_count--;
				spin_unlock_irq(&qp->sq_lock);
			}
			if (err == -ENOMEM) {
				/* The core is full: retried when one of its sends completes. */
				spin_lock_irq(&gsi->lock);
				list_add(&wqe->node, &gsi->pending);
				spin_unlock_irq(&gsi->lock);
				break;
			}
			if (err)
				status = IB_WC_RETRY_EXC_ERR;	/* no link to the peer */
			else
				wqe = NULL;	/* the core completes it */
		}
		spin_lock_irq(&gsi->lock);
		gsi->pending_count--;
		spin_unlock_irq(&gsi->lock);
		if (wqe)
			gsi_complete_send(qp, wqe, status);
	}
	spin_unlock_bh(&tdev->lock);
	tbrdma_link_kick(tdev);
}

/* ---- receive ---- */

/* Completes every posted receive as flushed. gsi->lock held. */
void tbrdma_gsi_flush_recvs(struct tbrdma_qp *qp)
{
	struct ib_wc wc = {
		.status = IB_WC_WR_FLUSH_ERR,
		.opcode = IB_WC_RECV,
		.qp = &qp->ibqp,
	};

	lockdep_assert_held(&qp->gsi->lock);
	while (qp->rq_head != qp->rq_tail) {
		wc.wr_id = qp->rq[qp->rq_head % qp->rq_capacity].wr_id;
		tbrdma_qp_complete(qp, false, &wc);
		qp->stat_flushed++;
		qp->rq_head++;
	}
	qp->rq_claim = qp->rq_head;
}

/* The receive ring of QP1 is under gsi->lock (delivery takes it inside the link lock). */
int tbrdma_gsi_post_recv(struct tbrdma_qp *qp, const struct ib_recv_wr *wr,
			 const struct ib_recv_wr **bad_wr)
{
	struct tbrdma_gsi *gsi = qp->gsi;
	unsigned long flags;
	int err = 0;

	spin_lock_irqsave(&gsi->lock, flags);
	if (READ_ONCE(qp->state) == IB_QPS_RESET) {
		spin_unlock_irqrestore(&gsi->lock, flags);
		*bad_wr = wr;
		return -EINVAL;
	}
	for (; wr; wr = wr->next) {
		struct tbrdma_recv_wqe *wqe;
		u64 total = 0;
		int i;

		if (qp->rq_tail - qp->rq_head >= qp->rq_capacity) {
			err = -ENOMEM;
		} else if (wr->num_sge > qp->max_recv_sge || wr->num_sge < 0) {
			err = -EINVAL;
		} else {
			/* The SGEs are checked against the MRs when a datagram is delivered. */
			wqe = &qp->rq[qp->rq_tail % qp->rq_capacity];
			for (i = 0; i < wr->num_sge; i++) {
				wqe->sge[i].addr = wr->sg_list[i].addr;
				wqe->sge[i].length = wr->sg_list[i].length;
				wqe->sge[i].lkey = wr->sg_list[i].lkey;
				total += wr->sg_list[i].length;
			}
			wqe->num_sge = wr->num_sge;
			wqe->total_len = min_t(u64, total, TBRDMA_MAX_MSG_SIZE);
			wqe->wr_id = wr->wr_id;
			wqe->done = false;
			qp->rq_tail++;
		}
		if (err) {
			*bad_wr = wr;
			break;
		}
	}
	/*
	 * The error transition sets the state before it flushes under this lock, so a receive
	 * queued after that flush sees the state here and completes as flushed right away.
	 */
	if (READ_ONCE(qp->state) == IB_QPS_ERR)
		tbrdma_gsi_flush_recvs(qp);
	spin_unlock_irqrestore(&gsi->lock, flags);
	return err;
}

/* Link lock held. */
int tbrdma_gsi_slot_claim(struct tbrdma_qp *qp, u64 *handle, u32 *capacity)
{
	struct tbrdma_gsi *gsi = qp->gsi;
	u32 i;

	for (i = 0; i < TBRDMA_GSI_SLOTS; i++) {
		struct tbrdma_gsi_slot *slot = &gsi->slots[i];

		if (slot->busy)
			continue;
		slot->busy = true;
		*handle = TBRDMA_RECV_HANDLE(TBRDMA_GSI_QPN, slot->generation, i);
		*capacity = TBRDMA_GSI_DGRAM_MAX;
		return 0;
	}
	return -EAGAIN;
}

static struct tbrdma_gsi_slot *gsi_slot_of(struct tbrdma_qp *qp, u64 handle)
{
	u32 index = handle & 0xffff;
	struct tbrdma_gsi_slot *slot;

	if ((u32)(handle >> 32) != TBRDMA_GSI_QPN || index >= TBRDMA_GSI_SLOTS)
		return NULL;
	slot = &qp->gsi->slots[index];
	if (!slot->busy || slot->generation != (u16)(handle >> 16))
		return NULL;
	return slot;
}

/* The core's placement target for a claimed slot (TBRDMA_GSI_DGRAM_MAX bytes). Link lock held. */
u8 *tbrdma_gsi_slot_buf(struct tbrdma_qp *qp, u64 handle)
{
	struct tbrdma_gsi_slot *slot = gsi_slot_of(qp, handle);

	return slot ? slot->data : NULL;
}

static void gsi_free_slot(struct tbrdma_gsi_slot *slot)
{
	slot->busy = false;
	slot->generation++;
}

/* A new link: slots the old one had claimed are gone with it. Link lock held. */
void tbrdma_gsi_reset_slots(struct tbrdma_qp *qp)
{
	u32 i;

	for (i = 0; i < TBRDMA_GSI_SLOTS; i++)
		if (qp->gsi->slots[i].busy)
			gsi_free_slot(&qp->gsi->slots[i]);
}

static bool gid_is_unicast(const union ib_gid *gid)
{
	const struct in6_addr *a = (const struct in6_addr *)gid->raw;

	if (ipv6_addr_any(a) || rdma_is_multicast_addr((struct in6_addr *)a))
		return false;
	if (ipv6_addr_v4mapped(a)) {
		__be32 ip = a->s6_addr32[3];

		return !ipv4_is_zeronet(ip) && !ipv4_is_multicast(ip) && !ipv4_is_lbcast(ip);
	}
	return true;
}

/*
 * Checks the addressing fields of a received datagram (gsi.c and ud.c headers carry the
 * same ones) and fills the GRH a RoCEv2 device would have delivered for payload_len bytes.
 * Link lock held. Returns the network header type, or -1 to drop the datagram.
 */
int tbrdma_dgram_grh(struct tbrdma_dev *tdev, const u8 *sgid_raw, const u8 *dgid_raw,
		     u8 traffic_class, u8 hop_limit, u32 flow_label, u16 pkey, u32 payload_len,
		     bool mcast, union rdma_network_hdr *grh)
{
	union ib_gid sgid, dgid;
	bool ipv4;

	/* Our only P_Key is the full default one: any default-partition member may talk to us. */
	if ((pkey & 0x7fff) != (IB_DEFAULT_PKEY_FULL & 0x7fff))
		return -1;
	if (flow_label > 0xfffff)
		return -1;
	memcpy(sgid.raw, sgid_raw, sizeof(sgid.raw));
	memcpy(dgid.raw, dgid_raw, sizeof(dgid.raw));
	if (!gid_is_unicast(&sgid) ||
	    (mcast ? !rdma_is_multicast_addr((struct in6_addr *)dgid.raw) : !gid_is_unicast(&dgid)))
		return -1;
	ipv4 = ipv6_addr_v4mapped((struct in6_addr *)sgid.raw);
	if (ipv4 != ipv6_addr_v4mapped((struct in6_addr *)dgid.raw))
		return -1;
	/*
	 * Addressed to one of our RoCEv2 GIDs, as ib_init_ah_attr_from_wc() will require, or to
	 * a group a QP of ours joined (the caller found the attachment).
	 */
	if (!mcast && !tbrdma_gid_is_own(tdev, dgid.raw))
		return -1;

	memset(grh, 0, sizeof(*grh));
	if (ipv4) {
		struct iphdr *ip = &grh->roce4grh;

		ip->version = 4;
		ip->ihl = 5;
		ip->tos = traffic_class;
		ip->tot_len = htons(sizeof(struct iphdr) + sizeof(struct udphdr) +
				    TBRDMA_ROCE_UD_OVERHEAD + payload_len);
		ip->frag_off = htons(IP_DF);
		ip->ttl = hop_limit;
		ip->protocol = IPPROTO_UDP;
		ip->saddr = ((struct in6_addr *)sgid.raw)->s6_addr32[3];
		ip->daddr = ((struct in6_addr *)dgid.raw)->s6_addr32[3];
		ip->check = ip_fast_csum((u8 *)ip, ip->ihl);
		return RDMA_NETWORK_IPV4;
	}
	grh->ibgrh.version_tclass_flow = cpu_to_be32((6U << 28) | ((u32)traffic_class << 20) |
						     flow_label);
	grh->ibgrh.paylen = htons(sizeof(struct udphdr) + TBRDMA_ROCE_UD_OVERHEAD + payload_len);
	grh->ibgrh.next_hdr = IPPROTO_UDP;
	grh->ibgrh.hop_limit = hop_limit;
	grh->ibgrh.sgid = sgid;
	grh->ibgrh.dgid = dgid;
	return RDMA_NETWORK_IPV6;
}

/* Checks a received QP1 datagram's header; fills its GRH. Link lock held. */
static int gsi_check_and_build_grh(struct tbrdma_qp *qp, const struct tbrdma_gsi_hdr *h,
				   u32 mad_len, union rdma_network_hdr *grh)
{
	if (le32_to_cpu(h->magic) != TBRDMA_GSI_MAGIC ||
	    le32_to_cpu(h->src_qpn) != TBRDMA_GSI_QPN)
		return -1;
	/* QP1 only takes the well-known GSI Q_Key (IBA 10.2.5; rxe checks the same). */
	if (le32_to_cpu(h->qkey) != IB_QP1_QKEY)
		return -1;
	return tbrdma_dgram_grh(qp->tdev, h->sgid, h->dgid, h->traffic_class, h->hop_limit,
				le32_to_cpu(h->flow_label), le16_to_cpu(h->pkey), mad_len, false,
				grh);
}

/* Delivers one datagram to the next posted receive, GRH first. Link lock held. */
static bool gsi_deliver(struct tbrdma_qp *qp, const u8 *dgram, u32 len)
{
	const struct tbrdma_gsi_hdr *h = (const struct tbrdma_gsi_hdr *)dgram;
	u32 mad_len = len - sizeof(*h);
	struct tbrdma_gsi *gsi = qp->gsi;
	struct tbrdma_recv_wqe rwqe;
	union rdma_network_hdr grh;
	struct ib_wc wc = {};
	unsigned long flags;
	int net_type;

	net_type = gsi_check_and_build_grh(qp, h, mad_len, &grh);
	if (net_type < 0)
		return false;

	spin_lock_irqsave(&gsi->lock, flags);
	if (qp->rq_head == qp->rq_tail) {
		/* UD: no receive posted, the datagram is lost. */
		spin_unlock_irqrestore(&gsi->lock, flags);
		return false;
	}
	rwqe = qp->rq[qp->rq_head % qp->rq_capacity];
	qp->rq_head++;
	qp->rq_claim = qp->rq_head;
	spin_unlock_irqrestore(&gsi->lock, flags);

	wc.wr_id = rwqe.wr_id;
	wc.opcode = IB_WC_RECV;
	wc.qp = &qp->ibqp;
	wc.status = IB_WC_SUCCESS;
	if (rwqe.total_len < sizeof(grh) + mad_len) {
		wc.status = IB_WC_LOC_LEN_ERR;
	} else if (tbrdma_check_sges(qp, rwqe.sge, rwqe.num_sge, true) ||
		   tbrdma_copy_sges(qp->tdev, rwqe.sge, rwqe.num_sge, 0, &grh, sizeof(grh),
				    true) ||
		   tbrdma_copy_sges(qp->tdev, rwqe.sge, rwqe.num_sge, sizeof(grh),
				    (void *)(dgram + sizeof(*h)), mad_len, true)) {
		wc.status = IB_WC_LOC_PROT_ERR;
	} else {
		wc.byte_len = sizeof(grh) + mad_len;
		wc.src_qp = TBRDMA_GSI_QPN;
		wc.pkey_index = 0;
		wc.port_num = 1;
		wc.wc_flags = IB_WC_GRH | IB_WC_WITH_NETWORK_HDR_TYPE;
		wc.network_hdr_type = net_type;
	}
	tbrdma_qp_complete(qp, false, &wc);
	return wc.status == IB_WC_SUCCESS;
}

/* The core finished (ok) or gave up on (flushed, bad length) a claimed slot. Link lock held. */
void tbrdma_gsi_slot_done(struct tbrdma_qp *qp, u64 handle, u32 src_qpn, u32 len, bool ok)
{
	struct tbrdma_gsi_slot *slot = gsi_slot_of(qp, handle);
	struct tbrdma_dev *tdev = qp->tdev;

	if (!slot) {
		tdev->stat_orphan_completions++;
		return;
	}
	if (ok && src_qpn == TBRDMA_GSI_QPN && len >= sizeof(struct tbrdma_gsi_hdr) +
	    TBRDMA_GSI_MIN_MAD && len <= TBRDMA_GSI_DGRAM_MAX &&
	    (qp->state == IB_QPS_RTR || qp->state == IB_QPS_RTS) &&
	    gsi_deliver(qp, slot->data, len))
		tdev->stat_gsi_received++;
	else
		tdev->stat_gsi_dropped++;
	gsi_free_slot(slot);
}
