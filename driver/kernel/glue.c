// SPDX-License-Identifier: GPL-2.0-only
/*
 * Talks to the protocol core (driver/proto) for the cable's link (loop.c does for the loopback
 * links): it implements struct tbp_env on top of verbs objects and rails, serialises every
 * core call with tdev->lock, and drives tbp_tick() from a soft hrtimer. Framing, reliability
 * and the handshake live in the core.
 */
#include <crypto/hash.h>
#include <linux/ktime.h>
#include <linux/module.h>
#include <linux/random.h>
#include <linux/vmalloc.h>

#include "tbrdma.h"
#include "tbp.h"

/*
 * Link timing defaults. The core's own defaults suit a dedicated USB4 ring; these also hold up
 * on a loaded host or a TCG guest, where a 50 ms scheduling stall is routine and must not
 * count as a dead rail. Each new link takes the values current at its creation.
 */
static unsigned int keepalive_ms = 100;
module_param(keepalive_ms, uint, 0644);
MODULE_PARM_DESC(keepalive_ms, "Idle time before a rail sends a keepalive (default 100)");
static unsigned int rail_dead_ms = 1000;
module_param(rail_dead_ms, uint, 0644);
MODULE_PARM_DESC(rail_dead_ms, "Silence after which a rail is declared down (default 1000)");
static unsigned int link_dead_ms = 10000;
module_param(link_dead_ms, uint, 0644);
MODULE_PARM_DESC(link_dead_ms, "Time with no rail up before the link fails (default 10000)");
static unsigned int rto_min_us = 1000;
module_param(rto_min_us, uint, 0644);
MODULE_PARM_DESC(rto_min_us, "Lower bound of the retransmission timeout (default 1000)");
static bool payload_checksum = true;
module_param(payload_checksum, bool, 0644);
MODULE_PARM_DESC(payload_checksum,
		 "CRC32C over frame payloads too; Ethernet rails need it (default Y)");
static bool frame_mac = true;
module_param(frame_mac, bool, 0644);
MODULE_PARM_DESC(frame_mac,
		 "SipHash MAC and replay counter on every frame; Ethernet rails need it (default Y)");
static bool pacing = true;
module_param(pacing, bool, 0644);
MODULE_PARM_DESC(pacing,
		 "Pace each rail's data frames at 1.25 x its window per round trip (default Y)");
static unsigned int max_outstanding = TBP_MODULE_MAX_OUTSTANDING;
module_param(max_outstanding, uint, 0444);
MODULE_PARM_DESC(max_outstanding, "Work requests in flight per link (default 1024)");

/* The core refuses to tick faster than this; a past deadline means "soon", not "now". */
#define TBRDMA_MIN_TICK_NS	(5 * NSEC_PER_USEC)

static struct tbp_link *core_link(struct tbrdma_dev *tdev)
{
	return tdev->link_ready ? tdev->link : NULL;
}

/*
 * The core links an RC/UC QP is open on: the cable's, or loop links. None for a UD QP: its
 * datagrams use the channel (ud.c). Link lock held.
 */
static unsigned int qp_links(struct tbrdma_qp *qp, struct tbp_link *links[2])
{
	if (qp->ibqp.qp_type == IB_QPT_UD)
		return 0;
	if (qp->loop_side != TBRDMA_LOOP_NONE)
		return tbrdma_loop_links(qp, links);
	links[0] = core_link(qp->tdev);
	return links[0] ? 1 : 0;
}

/* The link a QP's WRs are posted on, or NULL while it has none. Link lock held. */
static struct tbp_link *qp_post_link(struct tbrdma_qp *qp)
{
	struct tbp_link *links[2];

	if (!qp_links(qp, links))
		return NULL;
	if (qp->loop_side != TBRDMA_LOOP_NONE)
		qp->tdev->loop.dirty = true;	/* the loop links tick for it */
	return links[0];
}

/* The core's CRC32C convention (pre- and post-inverted) on top of the kernel's. */
uint32_t tbp_port_crc32c(uint32_t crc, const void *data, size_t len)
{
	return ~crc32c(~crc, data, len);
}

/* ---- environment callbacks (run with tdev->lock held, BHs off) ---- */

static uint64_t env_now_ns(void *ctx)
{
	return ktime_get_ns();
}

static struct tbrdma_rail *env_rail(struct tbrdma_dev *tdev, uint32_t rail_id)
{
	struct tbrdma_rail *rail;

	if (rail_id >= TBRDMA_MAX_RAILS)
		return NULL;
	rail = &tdev->rails[rail_id];
	if (!rail->in_use || (rail->kind == TBRDMA_RAIL_ETH && !rail->netdev))
		return NULL;
	return rail;
}

static int env_xmit(void *ctx, uint32_t rail_id, const void *frame, uint32_t len)
{
	struct tbrdma_rail *rail = env_rail(ctx, rail_id);

	if (!rail)
		return -ENODEV;
	switch (rail->kind) {
	case TBRDMA_RAIL_ETH:
		return tbrdma_eth_xmit(rail, frame, len);
	case TBRDMA_RAIL_TB:
		return tbrdma_tb_xmit(rail, frame, len);
	}
	return -ENODEV;
}

/* Data frames are built where they leave from: an Ethernet rail's skb, a Thunderbolt
 * rail's TX ring frame. token: the skb or the ring frame. */
static void *env_frame_get(void *ctx, uint32_t rail_id, uint32_t len, void **token)
{
	struct tbrdma_dev *tdev = ctx;
	struct tbrdma_rail *rail = env_rail(tdev, rail_id);
	struct sk_buff *skb;
	void *frame;

	if (!rail || len > TBP_MAX_FRAME)
		return NULL;
	if (rail->kind == TBRDMA_RAIL_TB) {
		frame = tbrdma_tb_frame_get(rail, len, token);
		return IS_ERR(frame) ? NULL : frame;
	}
	frame = tbrdma_eth_frame_get(rail, len, &skb);
	if (IS_ERR(frame))
		return NULL;
	*token = skb;
	return frame;
}

static int env_frame_commit(void *ctx, uint32_t rail_id, void *token, uint32_t len)
{
	struct tbrdma_dev *tdev = ctx;
	struct tbrdma_rail *rail = &tdev->rails[rail_id];

	if (rail->kind == TBRDMA_RAIL_TB)
		return tbrdma_tb_frame_commit(rail, token, len);
	return tbrdma_eth_frame_commit(rail, token, len);
}

static void env_hmac_sha256(void *ctx, const uint8_t *key, uint32_t key_len, const uint8_t *msg,
			    uint32_t msg_len, uint8_t out[32])
{
	struct tbrdma_dev *tdev = ctx;
	SHASH_DESC_ON_STACK(desc, tdev->hmac);

	/* A failure leaves a MAC the peer rejects; the handshake then retries. */
	memset(out, 0, 32);
	if (crypto_shash_setkey(tdev->hmac, key, key_len))
		return;
	desc->tfm = tdev->hmac;
	crypto_shash_digest(desc, msg, msg_len, out);
	shash_desc_zero(desc);
}

static void env_random_bytes(void *ctx, void *buf, uint32_t len)
{
	get_random_bytes(buf, len);
}

static int env_mr_check(void *ctx, uint32_t qpn, uint32_t rkey, uint64_t addr, uint64_t len,
			uint32_t access)
{
	struct tbrdma_dev *tdev = ctx;
	struct tbrdma_mr *mr = tbrdma_lookup_mr(tdev, rkey, true);
	struct tbrdma_qp *qp = xa_load(&tdev->qps, qpn);
	int qp_access = qp ? qp->attr.qp_access_flags : 0;

	/*
	 * The responder QP must allow the operation (IBA 9.7.5.1.1; rxe's check_op_valid):
	 * otherwise an invalid request, and the QP goes to error as below.
	 */
	if (qp && !qp->gsi &&
	    (((access & TBP_ACCESS_REMOTE_WRITE) && !(qp_access & IB_ACCESS_REMOTE_WRITE)) ||
	     ((access & TBP_ACCESS_REMOTE_READ) && !(qp_access & IB_ACCESS_REMOTE_READ)) ||
	     ((access & TBP_ACCESS_REMOTE_ATOMIC) && !(qp_access & IB_ACCESS_REMOTE_ATOMIC)))) {
		tbrdma_defer_qp_error(qp);
		return TBP_ERR_REMOTE_INVALID;
	}
	if (!mr || mr->is_dma || !qp || to_tpd(qp->ibqp.pd) != mr->pd ||
	    /* a type 2 memory window serves the QP it is bound to only (mw.c) */
	    (mr->window && mr->bound_qpn && mr->bound_qpn != qpn) ||
	    ((access & TBP_ACCESS_REMOTE_WRITE) && !(mr->access & IB_ACCESS_REMOTE_WRITE)) ||
	    ((access & TBP_ACCESS_REMOTE_READ) && !(mr->access & IB_ACCESS_REMOTE_READ)) ||
	    ((access & TBP_ACCESS_REMOTE_ATOMIC) && !(mr->access & IB_ACCESS_REMOTE_ATOMIC)) ||
	    /* a FLUSH asks for the placement types the MR was registered for (rxe) */
	    ((access & TBP_ACCESS_FLUSH_GLOBAL) &&
	     !(TBRDMA_ACCESS_FLUSH_GLOBAL && (mr->access & TBRDMA_ACCESS_FLUSH_GLOBAL))) ||
	    ((access & TBP_ACCESS_FLUSH_PERSISTENT) &&
	     !(TBRDMA_ACCESS_FLUSH_PERSISTENT && (mr->access & TBRDMA_ACCESS_FLUSH_PERSISTENT))) ||
	    addr < mr->iova || len > mr->length || addr - mr->iova > mr->length - len) {
		/*
		 * IBA 9.9.3 / rxe: a responder that detects a remote access violation NAKs it
		 * and its QP goes to the error state too (QP1 never does).
		 */
		if (qp && !qp->gsi)
			tbrdma_defer_qp_error(qp);
		return TBP_ERR_REMOTE_ACCESS;
	}
	return 0;
}

static struct tbrdma_recv_wqe *recv_wqe_of(struct tbrdma_dev *tdev, u64 handle,
					   struct tbrdma_qp **qp_out)
{
	struct tbrdma_qp *qp = xa_load(&tdev->qps, (u32)(handle >> 32));
	u32 slot = handle & 0xffff;
	struct tbrdma_recv_wqe *wqe;

	/* QP1's handles name datagram slots (gsi.c), never its consumer's receives. */
	if (!qp || qp->gsi || slot >= qp->rq_capacity)
		return NULL;
	wqe = &qp->rq[slot];
	if (wqe->generation != (u16)(handle >> 16) || wqe->done)
		return NULL;
	*qp_out = qp;
	return wqe;
}

/*
 * rq_lock held: `wqe` of `qp`'s receive ring has completed with `wc`. Receives complete in
 * any order (claimed out of order by the core); the ring's head moves past every done slot
 * in order, and each retired slot's generation makes stale core handles to it harmless.
 */
void tbrdma_rq_complete(struct tbrdma_qp *qp, struct tbrdma_recv_wqe *wqe,
			const struct ib_wc *wc, bool solicited)
{
	wqe->done = true;
	if (solicited)
		tbrdma_qp_complete_solicited(qp, wc);
	else
		tbrdma_qp_complete(qp, false, wc);
	while (qp->rq_head != qp->rq_claim && qp->rq[qp->rq_head % qp->rq_capacity].done) {
		struct tbrdma_recv_wqe *old = &qp->rq[qp->rq_head % qp->rq_capacity];

		old->done = false;
		old->generation++;
		qp->rq_head++;
	}
	tbrdma_rq_ring_retired(qp);
}

/* A datagram slot (UD channel or QP1) of `max` bytes; NULL: the slot was taken back. */
static int slot_copy(u8 *slot, u32 max, u64 off, void *data, u32 len, bool to_buf)
{
	if (!slot)
		return TBP_ERR_FLUSHED;
	if (off > max || len > max - off)
		return TBP_ERR_LOCAL_LENGTH;
	if (to_buf)
		memcpy(slot + off, data, len);
	else
		memcpy(data, slot + off, len);
	return 0;
}

static int env_buf_copy(struct tbrdma_dev *tdev, const struct tbp_buf *buf, u64 off, void *data,
			u32 len, bool to_buf)
{
	struct tbrdma_send_wqe *swqe;
	struct tbrdma_recv_wqe *rwqe;
	struct tbrdma_qp *qp;
	struct tbrdma_mr *mr;

	switch (buf->kind) {
	case TBP_BUF_LOCAL:
		swqe = (struct tbrdma_send_wqe *)(uintptr_t)buf->addr;
		if (off > swqe->total_len || len > swqe->total_len - off)
			return TBP_ERR_LOCAL_LENGTH;
		if (swqe->gathered) {
			/* A GSI datagram, gathered when it was handed over; only ever read. */
			if (to_buf)
				return TBP_ERR_LOCAL_PROTECTION;
			memcpy(data, swqe->gathered + off, len);
			return 0;
		}
		if (tbrdma_copy_sges(tdev, swqe->sge, swqe->num_sge, off, data, len, to_buf))
			return TBP_ERR_LOCAL_PROTECTION;
		return 0;
	case TBP_BUF_RECV:
		if ((u32)(buf->addr >> 32) == TBRDMA_UD_CHAN_QPN)
			return slot_copy(tbrdma_ud_slot_buf(tdev, buf->addr), TBRDMA_UD_DGRAM_MAX,
					 off, data, len, to_buf);
		qp = xa_load(&tdev->qps, (u32)(buf->addr >> 32));
		if (qp && qp->gsi)
			return slot_copy(tbrdma_gsi_slot_buf(qp, buf->addr), TBRDMA_GSI_DGRAM_MAX,
					 off, data, len, to_buf);
		rwqe = recv_wqe_of(tdev, buf->addr, &qp);
		if (!rwqe)
			return TBP_ERR_FLUSHED;
		if (off > rwqe->total_len || len > rwqe->total_len - off)
			return TBP_ERR_LOCAL_LENGTH;
		/* Posted unchecked (qp.c); an SRQ's WQEs were checked against its PD when posted. */
		if (!qp->srq && tbrdma_check_sges(qp, rwqe->sge, rwqe->num_sge, true))
			return TBP_ERR_LOCAL_PROTECTION;
		if (tbrdma_copy_sges(tdev, rwqe->sge, rwqe->num_sge, off, data, len, to_buf))
			return TBP_ERR_LOCAL_PROTECTION;
		return 0;
	case TBP_BUF_MR:
		mr = tbrdma_lookup_mr(tdev, buf->rkey, true);
		if (!mr || mr->is_dma || buf->addr + off < buf->addr)
			return TBP_ERR_REMOTE_ACCESS;
		if (tbrdma_mr_copy(mr, buf->addr + off, data, len, to_buf))
			return TBP_ERR_REMOTE_ACCESS;
		return 0;
	}
	return TBP_ERR_REMOTE_INVALID;
}

static int env_buf_read(void *ctx, const struct tbp_buf *buf, uint64_t off, void *dst,
			uint32_t len)
{
	return env_buf_copy(ctx, buf, off, dst, len, false);
}

static int env_buf_write(void *ctx, const struct tbp_buf *buf, uint64_t off, const void *src,
			 uint32_t len)
{
	/* The copy helpers take a non-const buffer for both directions; nothing writes to src. */
	return env_buf_copy(ctx, buf, off, (void *)src, len, true);
}

static int env_recv_claim(void *ctx, uint32_t qpn, uint64_t *handle, uint32_t *capacity)
{
	struct tbrdma_dev *tdev = ctx;
	struct tbrdma_qp *qp = xa_load(&tdev->qps, qpn);
	struct tbrdma_recv_wqe *wqe;
	unsigned long flags;
	int err = -EAGAIN;
	u32 slot;

	if (qpn == TBRDMA_UD_CHAN_QPN)
		return tbrdma_ud_slot_claim(tdev, handle, capacity);
	if (!qp || (qp->state != IB_QPS_RTR && qp->state != IB_QPS_RTS))
		return -EAGAIN;
	if (qp->gsi)
		return tbrdma_gsi_slot_claim(qp, handle, capacity);
	spin_lock_irqsave(&qp->rq_lock, flags);
	if (tbrdma_rq_refill(qp)) {
		slot = qp->rq_claim % qp->rq_capacity;
		wqe = &qp->rq[slot];
		qp->rq_claim++;
		*handle = TBRDMA_RECV_HANDLE(qpn, wqe->generation, slot);
		*capacity = wqe->total_len;
		err = 0;
	}
	spin_unlock_irqrestore(&qp->rq_lock, flags);
	return err;
}

static enum ib_wc_status wc_status_of(uint32_t status)
{
	switch (status) {
	case TBP_OK:
		return IB_WC_SUCCESS;
	case TBP_ERR_REMOTE_ACCESS:
		return IB_WC_REM_ACCESS_ERR;
	case TBP_ERR_REMOTE_INVALID:
		return IB_WC_REM_INV_REQ_ERR;
	case TBP_ERR_REMOTE_OP:
		return IB_WC_REM_OP_ERR;
	case TBP_ERR_LOCAL_LENGTH:
		return IB_WC_LOC_LEN_ERR;
	case TBP_ERR_LOCAL_PROTECTION:
		return IB_WC_LOC_PROT_ERR;
	case TBP_ERR_LINK_DOWN:
		return IB_WC_RETRY_EXC_ERR;
	case TBP_ERR_FLUSHED:
		return IB_WC_WR_FLUSH_ERR;
	case TBP_ERR_RETRY_EXC:
		return IB_WC_RETRY_EXC_ERR;
	case TBP_ERR_RNR_RETRY_EXC:
		return IB_WC_RNR_RETRY_EXC_ERR;
	}
	return IB_WC_GENERAL_ERR;
}

/*
 * The QP goes to error after the current core call returns: the core may not be re-entered
 * from its callbacks. Link lock held.
 */
void tbrdma_defer_qp_error(struct tbrdma_qp *qp)
{
	lockdep_assert_held(&qp->tdev->lock);
	if (list_empty(&qp->pending_error_node))
		list_add_tail(&qp->pending_error_node, &qp->tdev->pending_errors);
}

static void env_send_done(void *ctx, uint32_t qpn, uint64_t wr_id, uint32_t status)
{
	struct tbrdma_dev *tdev = ctx;
	struct tbrdma_qp *qp = xa_load(&tdev->qps, qpn);
	struct tbrdma_send_wqe *wqe;
	struct ib_wc wc = {};
	unsigned long flags;
	bool unfenced = false;

	if (qpn == TBRDMA_UD_CHAN_QPN) {
		tbrdma_ud_chan_done(tdev, wr_id, status == TBP_OK);
		return;
	}
	if (!qp) {
		tdev->stat_orphan_completions++;
		return;
	}
	spin_lock_irqsave(&qp->sq_lock, flags);
	/* The core completes in post order, so this is the oldest outstanding WR. */
	wqe = list_first_entry_or_null(&qp->send_outstanding, struct tbrdma_send_wqe, node);
	if (wqe) {
		list_del(&wqe->node);
		qp->send_count--;
		/* A responder resource is free again: a fenced WR or one over max_rd_atomic
		 * may go now. */
		if (tbrdma_wr_is_rd_atomic(wqe->opcode)) {
			qp->reads_in_core--;
			unfenced = !list_empty(&qp->send_waiting);
		}
	}
	spin_unlock_irqrestore(&qp->sq_lock, flags);
	if (!wqe) {
		tdev->stat_orphan_completions++;
		return;
	}
	if (wqe->wr_id != wr_id)
		tdev->stat_orphan_completions++;
	/* A fenced WR waits outside the backlog until the QP's READs are done. */
	if (unfenced)
		tbrdma_backlog_add(qp);

	wc.wr_id = wqe->wr_id;
	wc.status = wc_status_of(status);
	wc.qp = &qp->ibqp;
	/* int: before 6.2 the enum lacks ATOMIC_WRITE and FLUSH (compat.h) */
	switch ((int)wqe->opcode) {
	case IB_WR_RDMA_READ:
		wc.opcode = IB_WC_RDMA_READ;
		wc.byte_len = wqe->total_len;
		break;
	case IB_WR_RDMA_WRITE:
	case IB_WR_RDMA_WRITE_WITH_IMM:
		wc.opcode = IB_WC_RDMA_WRITE;
		break;
	case IB_WR_ATOMIC_CMP_AND_SWP:
		wc.opcode = IB_WC_COMP_SWAP;
		wc.byte_len = 8;
		break;
	case IB_WR_ATOMIC_FETCH_AND_ADD:
		wc.opcode = IB_WC_FETCH_ADD;
		wc.byte_len = 8;
		break;
	case TBRDMA_WR_ATOMIC_WRITE:
		wc.opcode = TBRDMA_WC_ATOMIC_WRITE;
		break;
	case TBRDMA_WR_FLUSH:
		wc.opcode = TBRDMA_WC_FLUSH;
		break;
	default:
		wc.opcode = IB_WC_SEND;
		break;
	}
	if (wqe->signaled || status != TBP_OK)
		tbrdma_qp_complete(qp, true, &wc);
	tbrdma_free_send_wqe(tdev, wqe);
	/* Local operations that waited for this WR complete now (mr.c); after an error the
	 * flush completes them. */
	if (status == TBP_OK && !qp->gsi)
		tbrdma_complete_local_ops(qp);
	if (qp->gsi) {
		/* A datagram's fate never takes QP1 down; the core has room again. */
		if (status == TBP_OK)
			tdev->stat_gsi_sent++;
		tbrdma_gsi_kick(qp);
		return;
	}
	if (status != TBP_OK && status != TBP_ERR_FLUSHED)
		tbrdma_defer_qp_error(qp);
}

static void env_recv_done(void *ctx, const struct tbp_recv_completion *c)
{
	struct tbrdma_dev *tdev = ctx;
	struct tbrdma_recv_wqe *wqe = NULL;
	struct tbrdma_qp *qp = NULL;
	struct ib_wc wc = {};
	unsigned long flags;

	if (c->qpn == TBRDMA_UD_CHAN_QPN) {
		if (c->recv_handle)
			tbrdma_ud_slot_done(tdev, c->recv_handle, c->src_qpn, c->len,
					    c->status == TBP_OK && c->opcode == TBP_OP_SEND &&
					    !c->has_imm);
		else
			tdev->stat_ud_dropped++;	/* WRITE_WITH_IMM: not a datagram */
		return;
	}
	qp = xa_load(&tdev->qps, c->qpn);
	if (qp && qp->gsi) {
		if (c->recv_handle)
			tbrdma_gsi_slot_done(qp, c->recv_handle, c->src_qpn, c->len,
					     c->status == TBP_OK && c->opcode == TBP_OP_SEND &&
					     !c->has_imm);
		else
			tdev->stat_gsi_dropped++;	/* WRITE_WITH_IMM: not a datagram */
		return;
	}
	if (!qp) {
		tdev->stat_orphan_completions++;
		return;
	}
	spin_lock_irqsave(&qp->rq_lock, flags);
	if (c->recv_handle) {
		struct tbrdma_qp *owner = NULL;

		wqe = recv_wqe_of(tdev, c->recv_handle, &owner);
		if (owner != qp)
			wqe = NULL;
	} else if (tbrdma_rq_refill(qp)) {
		/* WRITE_WITH_IMM consumes the next posted receive without the core claiming it. */
		wqe = &qp->rq[qp->rq_claim % qp->rq_capacity];
		qp->rq_claim++;
	}
	if (!wqe) {
		spin_unlock_irqrestore(&qp->rq_lock, flags);
		tdev->stat_orphan_completions++;
		return;
	}
	wc.wr_id = wqe->wr_id;
	wc.status = wc_status_of(c->status);
	wc.qp = &qp->ibqp;
	wc.src_qp = c->src_qpn;
	wc.byte_len = c->len;
	wc.opcode = c->opcode == TBP_OP_RDMA_WRITE_WITH_IMM ? IB_WC_RECV_RDMA_WITH_IMM : IB_WC_RECV;
	if (c->has_imm) {
		wc.wc_flags |= IB_WC_WITH_IMM;
		/* Immediate data is opaque: the core carries the 32 bits unchanged. */
		wc.ex.imm_data = (__force __be32)c->imm;
	}
	/* The core had the key invalidated before it reported the receive (mr.c). */
	if (c->opcode == TBP_OP_SEND_WITH_INV && c->status == TBP_OK) {
		wc.wc_flags |= qp->is_user ? TBRDMA_UVERBS_WC_WITH_INV : IB_WC_WITH_INVALIDATE;
		wc.ex.invalidate_rkey = c->invalidate_rkey;
	}
	tbrdma_rq_complete(qp, wqe, &wc, c->solicited);
	spin_unlock_irqrestore(&qp->rq_lock, flags);
	if (c->status != TBP_OK && c->status != TBP_ERR_FLUSHED)
		tbrdma_defer_qp_error(qp);
}

static void env_event(void *ctx, uint32_t event, uint32_t rail)
{
	struct tbrdma_dev *tdev = ctx;

	switch (event) {
	case TBP_EV_LINK_UP:
		tdev->core_link_up = true;
		break;
	case TBP_EV_RAIL_DOWN:
		/* Silence on a Thunderbolt pair may mean its DMA paths went away under it. */
		if (tdev->in_tick && rail < TBRDMA_MAX_RAILS &&
		    tdev->rails[rail].kind == TBRDMA_RAIL_TB &&
		    tdev->rails[rail].tb)
			tbrdma_tb_rail_silent(tdev->rails[rail].tb);
		break;
	case TBP_EV_LINK_FAILED:
		tdev->core_link_up = false;
		/* Terminal for this link instance: rebuild it (allocation) from process context. */
		if (!tdev->dying)
			queue_work(system_wq, &tdev->relink_work);
		break;
	default:
		break;
	}
	tdev->port_state_dirty = true;
}

/* ---- core calls ---- */

/* ---- send backlog: posted WRs the core has no room for yet ---- */

void tbrdma_backlog_add(struct tbrdma_qp *qp)
{
	struct tbrdma_dev *tdev = qp->tdev;
	unsigned long flags;

	spin_lock_irqsave(&tdev->backlog_lock, flags);
	if (list_empty(&qp->backlog_node))
		list_add_tail(&qp->backlog_node, &tdev->backlog);
	spin_unlock_irqrestore(&tdev->backlog_lock, flags);
}

void tbrdma_backlog_del(struct tbrdma_qp *qp)
{
	struct tbrdma_dev *tdev = qp->tdev;
	unsigned long flags;

	spin_lock_irqsave(&tdev->backlog_lock, flags);
	list_del_init(&qp->backlog_node);
	spin_unlock_irqrestore(&tdev->backlog_lock, flags);
}

/*
 * The next WR the backlog may hand over, moved to the QP's outstanding list (the core may
 * complete it within tbp_post), or NULL when the backlog is empty. QPs take turns; a QP
 * leaves the backlog when it has nothing waiting or its next WR is fenced behind READs.
 * A WR of a QP no longer in RTS is taken off its queue with *flush set: it completes as
 * flushed (posted in the error state, or racing the error transition). Link lock held.
 */
static struct tbrdma_send_wqe *backlog_next(struct tbrdma_dev *tdev, bool *flush)
{
	struct tbrdma_send_wqe *wqe = NULL;
	unsigned long flags;

	*flush = false;
	spin_lock_irqsave(&tdev->backlog_lock, flags);
	while (!wqe && !list_empty(&tdev->backlog)) {
		struct tbrdma_qp *qp = list_first_entry(&tdev->backlog, struct tbrdma_qp,
							backlog_node);

		spin_lock(&qp->sq_lock);
		wqe = list_first_entry_or_null(&qp->send_waiting, struct tbrdma_send_wqe, node);
		if (wqe && qp->state != IB_QPS_RTS) {
			list_del(&wqe->node);
			qp->send_count--;
			*flush = true;
		} else if (wqe && wqe->fence && qp->reads_in_core) {
			wqe = NULL;
		} else if (wqe && tbrdma_wr_is_rd_atomic(wqe->opcode) &&
			   tbrdma_rd_atomic_full(qp)) {
			wqe = NULL;
		} else if (wqe) {
			list_move_tail(&wqe->node, &qp->send_outstanding);
			if (tbrdma_wr_is_rd_atomic(wqe->opcode))
				qp->reads_in_core++;
		}
		if (wqe)
			list_move_tail(&qp->backlog_node, &tdev->backlog);
		else
			list_del_init(&qp->backlog_node);
		spin_unlock(&qp->sq_lock);
	}
	spin_unlock_irqrestore(&tdev->backlog_lock, flags);
	return wqe;
}

/* A WR the core did not take: back to the head of its queue (full) or failed. */
static void backlog_undo(struct tbrdma_qp *qp, struct tbrdma_send_wqe *wqe, bool requeue)
{
	unsigned long flags;

	spin_lock_irqsave(&qp->sq_lock, flags);
	if (tbrdma_wr_is_rd_atomic(wqe->opcode))
		qp->reads_in_core--;
	if (requeue) {
		list_move(&wqe->node, &qp->send_waiting);
	} else {
		list_del(&wqe->node);
		qp->send_count--;
	}
	spin_unlock_irqrestore(&qp->sq_lock, flags);
	if (requeue)
		tbrdma_backlog_add(qp);
}

static const u32 tbp_opcode_of[] = {
	[IB_WR_SEND] = TBP_OP_SEND,
	[IB_WR_SEND_WITH_IMM] = TBP_OP_SEND_WITH_IMM,
	[IB_WR_RDMA_WRITE] = TBP_OP_RDMA_WRITE,
	[IB_WR_RDMA_WRITE_WITH_IMM] = TBP_OP_RDMA_WRITE_WITH_IMM,
	[IB_WR_RDMA_READ] = TBP_OP_RDMA_READ,
	[IB_WR_ATOMIC_CMP_AND_SWP] = TBP_OP_ATOMIC_CMP_SWP,
	[IB_WR_ATOMIC_FETCH_AND_ADD] = TBP_OP_ATOMIC_FETCH_ADD,
	[IB_WR_SEND_WITH_INV] = TBP_OP_SEND_WITH_INV,
	/* posted through the mapped send queue only (sq.c) */
	[TBRDMA_WR_ATOMIC_WRITE] = TBP_OP_ATOMIC_WRITE,
	[TBRDMA_WR_FLUSH] = TBP_OP_FLUSH,
};

/*
 * A UD WR leaves its QP: delivered here (to a QP of this device) or handed to the core on the
 * datagram channel, and completed either way. False when the core is full (it waits). Link
 * lock held.
 */
static bool push_ud(struct tbrdma_dev *tdev, struct tbp_link *link, struct tbrdma_send_wqe *wqe)
{
	struct tbp_wr twr = {
		.opcode = TBP_OP_SEND,
		.qpn = TBRDMA_UD_CHAN_QPN,
		.wr_id = (uintptr_t)wqe,
		.local_buf = (uintptr_t)wqe,
		.len = wqe->total_len,
	};
	struct tbrdma_qp *qp = wqe->qp;
	bool signaled = wqe->signaled;
	u64 wr_id = wqe->wr_id;
	enum ib_wc_status status;
	int err;

	if (tbrdma_ud_prepare(wqe, &status) == TBRDMA_UD_DONE) {
		tbrdma_ud_detach(wqe);
		tbrdma_ud_complete(qp, wr_id, signaled, status);
		tbrdma_free_send_wqe(tdev, wqe);
		return true;
	}
	/* no link (rebuilding): the WR waits for the next one */
	if (!link) {
		backlog_undo(qp, wqe, true);
		return false;
	}
	/* The channel owns it before tbp_post, which may already complete it. */
	tbrdma_ud_detach(wqe);
	list_add_tail(&wqe->node, &tdev->ud_inflight);
	err = tbp_post(link, &twr);
	if (err == -ENOBUFS) {
		unsigned long flags;

		list_del(&wqe->node);
		spin_lock_irqsave(&qp->sq_lock, flags);
		list_add(&wqe->node, &qp->send_waiting);
		qp->send_count++;
		spin_unlock_irqrestore(&qp->sq_lock, flags);
		tbrdma_backlog_add(qp);
		return false;
	}
	tbrdma_ud_complete(qp, wr_id, signaled, IB_WC_SUCCESS);
	if (err) {
		/* A channel the core refused (failed link): the datagram is lost, as UD allows. */
		list_del(&wqe->node);
		tdev->stat_ud_lost++;
		tbrdma_free_send_wqe(tdev, wqe);
	}
	return true;
}

/*
 * Hands waiting WRs to the core until it is full. The core's tables are per link, the verbs'
 * limits per QP: every QP may have max_qp_wr WRs posted at once, the ones beyond the core's
 * room wait here, in post order per QP. Link lock held.
 */
static void push_backlog(struct tbrdma_dev *tdev)
{
	struct tbrdma_send_wqe *wqe;
	bool flush;

	while ((wqe = backlog_next(tdev, &flush))) {
		struct tbrdma_qp *qp = wqe->qp;
		struct tbp_wr twr = {
			.opcode = tbp_opcode_of[wqe->opcode],
			.qpn = qp->ibqp.qp_num,
			.wr_id = wqe->wr_id,
			.local_buf = (uintptr_t)wqe,
			.len = wqe->total_len,
			.imm = wqe->imm,
			.rkey = wqe->rkey,
			.raddr = wqe->raddr,
			.flags = (wqe->solicited ? TBP_WR_SOLICITED : 0) | wqe->core_flags,
			.compare_add = wqe->compare_add,
			.swap = wqe->swap,
		};
		struct ib_wc wc = {
			.wr_id = wqe->wr_id,
			.status = IB_WC_WR_FLUSH_ERR,
			.qp = &qp->ibqp,
		};
		struct tbp_link *link;
		int err;

		if (flush) {
			tbrdma_qp_complete(qp, true, &wc);
			qp->stat_flushed++;
			tbrdma_free_send_wqe(tdev, wqe);
			continue;
		}
		if (tbrdma_wr_is_local(wqe->opcode)) {
			tbrdma_run_local_op(wqe);
			tbrdma_complete_local_ops(qp);
			continue;
		}
		if (qp->ibqp.qp_type == IB_QPT_UD) {
			if (!push_ud(tdev, core_link(tdev), wqe))
				return;
			continue;
		}
		link = qp_post_link(qp);
		/* no link (rebuilding): the WR waits for the next one */
		err = link ? tbp_post(link, &twr) : -ENOBUFS;
		if (!err)
			continue;
		if (err == -ENOBUFS) {
			backlog_undo(qp, wqe, true);
			return;
		}
		/* Not open in the core (a failed link) or refused: the WR fails, the QP errs. */
		backlog_undo(qp, wqe, false);
		wc.status = err == -EINVAL ? IB_WC_LOC_QP_OP_ERR : IB_WC_RETRY_EXC_ERR;
		tbrdma_qp_complete(qp, true, &wc);
		tbrdma_free_send_wqe(tdev, wqe);
		tbrdma_defer_qp_error(qp);
	}
}

/* Work the callbacks could not do from inside the core. Link lock held. */
void tbrdma_after_core_call(struct tbrdma_dev *tdev)
{
	lockdep_assert_held(&tdev->lock);
	/* The error transitions below call the core; their callbacks may queue more. */
	if (tdev->in_after_core_call)
		return;
	tdev->in_after_core_call = true;
	do {
		while (!list_empty(&tdev->pending_errors)) {
			struct tbrdma_qp *qp = list_first_entry(&tdev->pending_errors,
								struct tbrdma_qp,
								pending_error_node);

			list_del_init(&qp->pending_error_node);
			tbrdma_qp_to_error(qp, true);
		}
		push_backlog(tdev);
	} while (!list_empty(&tdev->pending_errors));
	tdev->in_after_core_call = false;
	if (tdev->port_state_dirty) {
		tdev->port_state_dirty = false;
		/* ib_dispatch_event() and its handlers run outside the device lock. */
		queue_work(system_wq, &tdev->port_work);
	}
}

static void after_core_call(struct tbrdma_dev *tdev)
{
	tbrdma_after_core_call(tdev);
}

/*
 * Runs the core's timers (the cable's link, and the loop links when due) and arms the hrtimer
 * for the next deadline. Link lock held.
 */
void tbrdma_link_tick_locked(struct tbrdma_dev *tdev)
{
	struct tbp_link *link = core_link(tdev);
	u64 now, deadline = U64_MAX;

	if (tdev->dying)
		return;
	now = ktime_get_ns();
	if (link) {
		tdev->in_tick = true;	/* a rail that goes down in here went silent */
		deadline = tbp_tick(link, now);
		tdev->in_tick = false;
		after_core_call(tdev);
	}
	deadline = min(deadline, tbrdma_loop_tick(tdev, now));
	if (deadline == U64_MAX)
		return;
	if (deadline < now + TBRDMA_MIN_TICK_NS)
		deadline = now + TBRDMA_MIN_TICK_NS;
	if (!hrtimer_active(&tdev->tick_timer) || deadline < tdev->armed_deadline) {
		tdev->armed_deadline = deadline;
		hrtimer_start(&tdev->tick_timer, ns_to_ktime(deadline), HRTIMER_MODE_ABS_SOFT);
	}
}

static enum hrtimer_restart tbrdma_tick_timer(struct hrtimer *timer)
{
	struct tbrdma_dev *tdev = container_of(timer, struct tbrdma_dev, tick_timer);

	spin_lock_bh(&tdev->lock);
	tdev->armed_deadline = U64_MAX;
	tbrdma_link_tick_locked(tdev);
	spin_unlock_bh(&tdev->lock);
	return HRTIMER_NORESTART;
}

void tbrdma_link_kick(struct tbrdma_dev *tdev)
{
	spin_lock_bh(&tdev->lock);
	tbrdma_link_tick_locked(tdev);
	spin_unlock_bh(&tdev->lock);
}

/* Hands the send backlog to the core and transmits. Process or softirq context. */
void tbrdma_link_push_backlog(struct tbrdma_dev *tdev)
{
	spin_lock_bh(&tdev->lock);
	after_core_call(tdev);
	tbrdma_link_tick_locked(tdev);
	spin_unlock_bh(&tdev->lock);
}

static void tbrdma_kick_work(struct work_struct *work)
{
	tbrdma_link_push_backlog(container_of(work, struct tbrdma_dev, kick_work));
}

static void tbrdma_port_work(struct work_struct *work)
{
	tbrdma_update_port_state(container_of(work, struct tbrdma_dev, port_work));
}

/*
 * A rail hands over received frames in batches: tbrdma_link_rx_begin(), one
 * tbrdma_link_rx_one() per frame, tbrdma_link_rx_end(). The core's timers run once per
 * batch, not once per frame.
 */
void tbrdma_link_rx_begin(struct tbrdma_dev *tdev)
	__acquires(&tdev->lock)
{
	spin_lock_bh(&tdev->lock);
}

/*
 * One frame in nfrags pieces (a nonlinear skb: linear part, then page fragments), read where
 * they lie: the core writes the payload from them straight into its destination. Returns true
 * when the core proved the frame to be the peer's and fresh.
 */
bool tbrdma_link_rx_frags(struct tbrdma_rail *rail, const struct tbp_rx_frag *frags,
			  unsigned int nfrags)
{
	struct tbrdma_dev *tdev = rail->tdev;
	struct tbp_link *link = core_link(tdev);

	lockdep_assert_held(&tdev->lock);
	if (!link || !rail->in_use) {
		tdev->stat_rx_no_link++;
		return false;
	}
	/* Lengths are size_t: the core refuses pieces adding up past any frame. */
	tbp_rx_frags(link, rail->id, frags, nfrags);
	tdev->rx_batch_frames++;
	after_core_call(tdev);
	return tbp_rx_authentic(link);
}

/* A frame in one buffer; as tbrdma_link_rx_frags. */
bool tbrdma_link_rx_one(struct tbrdma_rail *rail, const void *frame, size_t len)
{
	struct tbp_rx_frag one = { .data = frame, .len = len };

	return tbrdma_link_rx_frags(rail, &one, 1);
}

void tbrdma_link_rx_end(struct tbrdma_dev *tdev)
	__releases(&tdev->lock)
{
	if (tdev->rx_batch_frames) {
		tdev->rx_batch_frames = 0;
		tdev->stat_rx_batches++;
		tbrdma_link_tick_locked(tdev);
	}
	spin_unlock_bh(&tdev->lock);
}

/* A batch of one frame. */
bool tbrdma_link_rx(struct tbrdma_rail *rail, const void *frame, size_t len)
{
	bool authentic;

	tbrdma_link_rx_begin(rail->tdev);
	authentic = tbrdma_link_rx_one(rail, frame, len);
	tbrdma_link_rx_end(rail->tdev);
	return authentic;
}

/*
 * A Thunderbolt ring pair is a DMA path between the two hosts alone, CRC-checked by the host
 * interface: the core sends its frames without MAC and payload CRC (TBP_RAIL_DMA).
 */
static u32 rail_core_flags(const struct tbrdma_rail *rail)
{
	return rail->kind == TBRDMA_RAIL_TB ? TBP_RAIL_DMA : 0;
}

static u32 rail_max_frame(const struct tbrdma_rail *rail)
{
	return clamp_t(u32, tbrdma_rail_mtu(rail), TBP_MIN_FRAME, TBP_MAX_FRAME);
}

/* Rail mutex held. */
int tbrdma_link_rail_add(struct tbrdma_dev *tdev, struct tbrdma_rail *rail)
{
	struct tbp_link *link;
	int err = 0;

	if (tbrdma_rail_mtu(rail) < TBP_MIN_FRAME)
		return -EINVAL;
	spin_lock_bh(&tdev->lock);
	link = core_link(tdev);
	if (link && tbrdma_rail_running(rail)) {
		/* Re-adding after a carrier loss starts the rail's handshake afresh. */
		if (rail->core_added)
			tbp_rail_remove(link, rail->id);
		err = tbp_rail_add(link, rail->id, tdev->rail_weight, rail_max_frame(rail),
				   rail_core_flags(rail));
		rail->core_added = !err;
		after_core_call(tdev);
		tbrdma_link_tick_locked(tdev);
	}
	spin_unlock_bh(&tdev->lock);
	return err;
}

/* Rail mutex held. remove: the netdev is going away, not just its carrier. */
void tbrdma_link_rail_down(struct tbrdma_dev *tdev, struct tbrdma_rail *rail, bool remove)
{
	struct tbp_link *link;

	spin_lock_bh(&tdev->lock);
	link = core_link(tdev);
	if (link && rail->core_added) {
		if (remove) {
			tbp_rail_remove(link, rail->id);
			rail->core_added = false;
		} else {
			tbp_rail_down(link, rail->id);
		}
		after_core_call(tdev);
		tbrdma_link_tick_locked(tdev);
	}
	if (remove)
		rail->in_use = false;
	spin_unlock_bh(&tdev->lock);
}

/* Timeouts and retry counts of qp, as modify_qp set them. Link lock held. */
static void core_qp_attr(struct tbp_link *link, struct tbrdma_qp *qp)
{
	/* QP1 carries every consumer's MADs: it never gives up on the peer's QP1. */
	struct tbp_qp_attr a = {
		.timeout = qp->gsi ? 0 : qp->attr.timeout,
		.retry_cnt = qp->gsi ? 7 : qp->attr.retry_cnt,
		.rnr_retry = qp->gsi ? 7 : qp->attr.rnr_retry,
		.min_rnr_timer = qp->gsi ? 12 : qp->attr.min_rnr_timer,
	};

	tbp_qp_set_attr(link, qp->ibqp.qp_num, &a);
}

static int core_qp_open(struct tbp_link *link, struct tbrdma_qp *qp)
{
	int err = tbp_qp_open(link, qp->ibqp.qp_num, qp->dest_qpn);

	if (!err)
		core_qp_attr(link, qp);
	return err;
}

/* Link lock held. */
int tbrdma_link_open_qp(struct tbrdma_qp *qp)
{
	struct tbp_link *links[2];
	unsigned int i, n;
	int err = 0;

	/* No cable link: opened when the link is built. */
	n = qp_links(qp, links);
	for (i = 0; i < n; i++) {
		err = core_qp_open(links[i], qp);
		if (err)
			break;
	}
	/* undo the opens that succeeded before the one that failed */
	while (err && i--)
		tbp_qp_close(links[i], qp->ibqp.qp_num);
	after_core_call(qp->tdev);
	return err;
}

/* modify_qp changed timeout, retry_cnt, rnr_retry or min_rnr_timer. Link lock held. */
void tbrdma_link_qp_attr(struct tbrdma_qp *qp)
{
	struct tbp_link *links[2];
	unsigned int i, n = qp_links(qp, links);

	for (i = 0; i < n; i++)
		core_qp_attr(links[i], qp);
}

/* Link lock held. */
void tbrdma_link_cancel_qp(struct tbrdma_qp *qp)
{
	struct tbp_link *links[2];
	unsigned int i, n = qp_links(qp, links);

	for (i = 0; i < n; i++)
		tbp_qp_close(links[i], qp->ibqp.qp_num);
	/* after_core_call() is not run: this is called from within it. */
}

/* Hands one work request to the core; a full core is the verbs' -ENOMEM. Link lock held. */
static int post_to_core(struct tbrdma_dev *tdev, struct tbp_link *link, const struct tbp_wr *twr)
{
	int err = tbp_post(link, twr);

	after_core_call(tdev);
	return err == -ENOBUFS ? -ENOMEM : err;
}

/* A GSI datagram (header + MAD in wqe->gathered) as a SEND to the peer's QP1. Link lock held. */
int tbrdma_link_post_gsi(struct tbrdma_qp *qp, struct tbrdma_send_wqe *wqe)
{
	struct tbp_link *link = core_link(qp->tdev);
	struct tbp_wr twr = {
		.opcode = TBP_OP_SEND,
		.qpn = TBRDMA_GSI_QPN,
		.wr_id = wqe->wr_id,
		.local_buf = (uintptr_t)wqe,
		.len = wqe->total_len,
	};

	if (!link)
		return -ENOTCONN;
	return post_to_core(qp->tdev, link, &twr);
}

bool tbrdma_link_is_up(struct tbrdma_dev *tdev)
{
	return tdev->link_ready && tdev->core_link_up;
}

static const struct tbp_env env_template = {
	.now_ns = env_now_ns,
	.xmit = env_xmit,
	.frame_get = env_frame_get,
	.frame_commit = env_frame_commit,
	.hmac_sha256 = env_hmac_sha256,
	.random_bytes = env_random_bytes,
	.mr_check = env_mr_check,
	.buf_read = env_buf_read,
	.buf_write = env_buf_write,
	.atomic = tbrdma_env_atomic,
	.invalidate = tbrdma_env_invalidate,
	.recv_claim = env_recv_claim,
	.send_done = env_send_done,
	.recv_done = env_recv_done,
	.event = env_event,
};

/* The environment of a link of this device: verbs objects behind every callback. */
void tbrdma_core_env(struct tbrdma_dev *tdev, struct tbp_env *env)
{
	*env = env_template;
	env->ctx = tdev;
}

/* The link timing module parameters, as they are now. */
void tbrdma_core_timing(struct tbp_config *cfg)
{
	cfg->keepalive_ns = (u64)keepalive_ms * NSEC_PER_MSEC;
	cfg->rail_dead_ns = (u64)rail_dead_ms * NSEC_PER_MSEC;
	cfg->link_dead_ns = (u64)link_dead_ms * NSEC_PER_MSEC;
	cfg->rto_min_ns = (u64)rto_min_us * NSEC_PER_USEC;
	if (cfg->rto_max_ns < cfg->rto_min_ns)
		cfg->rto_max_ns = cfg->rto_min_ns;
}

/* Builds a fresh link from the current key and role and re-adds rails and open QPs. */
static int build_link(struct tbrdma_dev *tdev)
{
	static const struct tbp_qp_attr chan_attr = {
		.timeout = 0, .retry_cnt = 7, .rnr_retry = 7, .min_rnr_timer = 12,
	};
	struct tbp_config cfg;
	struct tbp_env env;
	struct tbp_link *link;
	unsigned long qpn;
	struct tbrdma_qp *qp;
	size_t size, old_size = 0;
	void *mem, *old_mem = NULL;
	int i, err;

	lockdep_assert_held(&tdev->rail_mutex);
	tbp_config_default(&cfg);
	cfg.role = tdev->role;
	cfg.key_len = tdev->key_len;
	memcpy(cfg.key, tdev->key, tdev->key_len);
	cfg.window = TBP_MODULE_WINDOW;
	cfg.max_qps = TBRDMA_MAX_QP;
	cfg.max_msg_len = TBRDMA_MAX_MSG_SIZE;
	/*
	 * Nothing on an Ethernet path guarantees an FCS check (software bridges, tc netem, virtual
	 * NICs), so by default the payload is covered too; either side asking is enough.
	 */
	if (payload_checksum)
		cfg.caps |= TBP_CAP_PAYLOAD_CSUM;
	/*
	 * Anyone on an Ethernet segment can send frames with our ethertype: the frame MAC keeps
	 * them from writing, acking or steering. Either side asking is enough.
	 */
	if (frame_mac)
		cfg.caps |= TBP_CAP_FRAME_MAC;
	else
		cfg.caps &= ~TBP_CAP_FRAME_MAC;
	cfg.max_msgs = clamp_t(u32, max_outstanding, 2, 65534);
	cfg.max_rx_msgs = cfg.max_msgs;
	/* A full window handed to a ring or qdisc at once overflows it: spread it (core default
	 * gain) unless turned off. */
	cfg.pace_burst = TBP_MODULE_PACE_BURST;
	if (!pacing)
		cfg.pace_gain_pct = 0;
	tbrdma_core_timing(&cfg);
	size = tbp_link_size(&cfg);
	if (!size)
		return -EINVAL;
	mem = kvzalloc(size, GFP_KERNEL);
	if (!mem)
		return -ENOMEM;
	tbrdma_core_env(tdev, &env);

	spin_lock_bh(&tdev->lock);
	if (tdev->link_ready) {
		tbp_link_teardown(tdev->link);
		tdev->link_ready = false;
		tdev->core_link_up = false;
		tdev->port_state_dirty = true;
		old_mem = tdev->link_mem;
		old_size = tdev->link_mem_size;
		/*
		 * The old link took the QPs' in-flight messages with it: a QP left in RTS would
		 * lose WRs silently, so each connected QP goes to error (IB_EVENT_QP_FATAL) as on
		 * a transport failure. QP1 is connectionless and is reopened below.
		 */
		xa_for_each(&tdev->qps, qpn, qp)
			if (!qp->gsi && qp->ibqp.qp_type != IB_QPT_UD &&
			    qp->loop_side == TBRDMA_LOOP_NONE)
				tbrdma_qp_to_error(qp, true);
	}
	err = tbp_link_init(&link, mem, size, &cfg, &env);
	memzero_explicit(&cfg, sizeof(cfg));
	if (err) {
		tdev->link = NULL;
		after_core_call(tdev);
		spin_unlock_bh(&tdev->lock);
		kvfree_sensitive(mem, size);
		kvfree_sensitive(old_mem, old_size);
		return err;
	}
	tdev->link = link;
	tdev->link_mem = mem;
	tdev->link_mem_size = size;
	tdev->link_ready = true;
	for (i = 0; i < TBRDMA_MAX_RAILS; i++) {
		struct tbrdma_rail *rail = &tdev->rails[i];

		rail->core_added = false;
		if (rail->in_use && tbrdma_rail_running(rail))
			rail->core_added = !tbp_rail_add(link, i, tdev->rail_weight,
							 rail_max_frame(rail),
							 rail_core_flags(rail));
	}
	/* The UD datagram channel: connectionless like QP1, never gives up on the peer. */
	tbrdma_ud_reset_slots(tdev);
	if (!tbp_qp_open(link, TBRDMA_UD_CHAN_QPN, TBRDMA_UD_CHAN_QPN))
		tbp_qp_set_attr(link, TBRDMA_UD_CHAN_QPN, &chan_attr);
	xa_for_each(&tdev->qps, qpn, qp) {
		/* only QPs that reached RTR since no link existed, and QP1 */
		if (qp->gsi)
			tbrdma_gsi_reset_slots(qp);
		if (qp->ibqp.qp_type != IB_QPT_UD && qp->loop_side == TBRDMA_LOOP_NONE &&
		    (qp->state == IB_QPS_RTR || qp->state == IB_QPS_RTS))
			core_qp_open(link, qp);
	}
	after_core_call(tdev);
	tbrdma_link_tick_locked(tdev);
	spin_unlock_bh(&tdev->lock);
	/* Link memory held the pairing key and the frame keys. */
	kvfree_sensitive(old_mem, old_size);
	return 0;
}

/*
 * A public fingerprint of the key, HMAC-SHA256(key, "tbrdma key id"), so tbctl can tell
 * whether re-applying a pairing would change anything without the key ever being read back.
 */
static void compute_key_id(struct tbrdma_dev *tdev, const u8 *key, size_t len)
{
	static const char label[] = "tbrdma key id";
	u8 mac[32];

	spin_lock_bh(&tdev->lock);
	env_hmac_sha256(tdev, key, len, (const u8 *)label, sizeof(label) - 1, mac);
	spin_unlock_bh(&tdev->lock);
	memcpy(tdev->key_id, mac, sizeof(tdev->key_id));
}

int tbrdma_set_key(struct tbrdma_dev *tdev, const u8 *key, size_t len)
{
	int err;

	if (len < 16 || len > TBRDMA_KEY_LEN)
		return -EINVAL;
	mutex_lock(&tdev->rail_mutex);
	compute_key_id(tdev, key, len);
	memcpy(tdev->key, key, len);
	tdev->key_len = len;
	tdev->key_set = true;
	err = build_link(tdev);
	mutex_unlock(&tdev->rail_mutex);
	return err;
}

static void tbrdma_relink_work(struct work_struct *work)
{
	struct tbrdma_dev *tdev = container_of(work, struct tbrdma_dev, relink_work);

	mutex_lock(&tdev->rail_mutex);
	if (tdev->key_set && !tdev->dying)
		build_link(tdev);
	mutex_unlock(&tdev->rail_mutex);
}

int tbrdma_link_create(struct tbrdma_dev *tdev)
{
	int err = tbrdma_ud_init(tdev);

	if (err)
		return err;
	tdev->hmac = crypto_alloc_shash("hmac(sha256)", 0, 0);
	if (IS_ERR(tdev->hmac)) {
		err = PTR_ERR(tdev->hmac);
		tdev->hmac = NULL;
		tbrdma_ud_fini(tdev);
		return err;
	}
	INIT_LIST_HEAD(&tdev->pending_errors);
	spin_lock_init(&tdev->backlog_lock);
	INIT_LIST_HEAD(&tdev->backlog);
	INIT_WORK(&tdev->kick_work, tbrdma_kick_work);
	INIT_WORK(&tdev->port_work, tbrdma_port_work);
	INIT_WORK(&tdev->relink_work, tbrdma_relink_work);
	tbrdma_hrtimer_setup(&tdev->tick_timer, tbrdma_tick_timer, CLOCK_MONOTONIC,
			     HRTIMER_MODE_ABS_SOFT);
	tdev->armed_deadline = U64_MAX;
	tdev->rail_weight = 1;
	err = tbrdma_loop_create(tdev);
	if (err) {
		crypto_free_shash(tdev->hmac);
		tdev->hmac = NULL;
		tbrdma_ud_fini(tdev);
	}
	return err;
}

void tbrdma_link_destroy(struct tbrdma_dev *tdev)
{
	void *mem = NULL;
	size_t size = 0;

	spin_lock_bh(&tdev->lock);
	tdev->dying = true;
	spin_unlock_bh(&tdev->lock);
	cancel_work_sync(&tdev->relink_work);
	cancel_work_sync(&tdev->kick_work);
	cancel_work_sync(&tdev->port_work);
	hrtimer_cancel(&tdev->tick_timer);
	tbrdma_loop_destroy(tdev);
	spin_lock_bh(&tdev->lock);
	if (tdev->link_ready) {
		tbp_link_teardown(tdev->link);
		tdev->link_ready = false;
		mem = tdev->link_mem;
		size = tdev->link_mem_size;
		tdev->link = NULL;
	}
	spin_unlock_bh(&tdev->lock);
	kvfree_sensitive(mem, size);
	tbrdma_ud_fini(tdev);
	memzero_explicit(tdev->key, sizeof(tdev->key));
	if (tdev->hmac)
		crypto_free_shash(tdev->hmac);
	tdev->hmac = NULL;
}

/* ---- counters (rdma statistic show) ---- */

const struct rdma_stat_desc tbrdma_stat_descs[] = {
	{ .name = "tx_frames" },
	{ .name = "rx_frames" },
	{ .name = "tx_data_frames" },
	{ .name = "retransmits" },
	{ .name = "rail_failovers" },
	{ .name = "rx_accepted" },
	{ .name = "rx_duplicates" },
	{ .name = "tx_acks" },
	{ .name = "tx_keepalives" },
	{ .name = "xmit_busy" },
	{ .name = "msgs_posted" },
	{ .name = "msgs_completed" },
	{ .name = "msgs_received" },
	{ .name = "rnr_naks_sent" },
	{ .name = "rnr_naks_received" },
	{ .name = "drop_short" },
	{ .name = "drop_magic" },
	{ .name = "drop_checksum" },
	{ .name = "drop_field" },
	{ .name = "drop_session" },
	{ .name = "drop_rail" },
	{ .name = "drop_window" },
	{ .name = "drop_auth" },
	{ .name = "drop_state" },
	{ .name = "drop_no_qp" },
	{ .name = "drop_no_slot" },
	{ .name = "drop_rnr" },
	{ .name = "drop_bad_msg" },
	{ .name = "drop_no_link" },
	{ .name = "rails_up" },
	{ .name = "link_state" },
	{ .name = "srtt_ns" },
	{ .name = "rto_ns" },
	{ .name = "orphan_completions" },
	{ .name = "gsi_sent" },
	{ .name = "gsi_received" },
	{ .name = "gsi_dropped" },
	{ .name = "drop_mac" },
	{ .name = "drop_replay" },
	{ .name = "drop_ratelimit" },
	{ .name = "naks_not_ready_sent" },
	{ .name = "naks_qp_error_sent" },
	{ .name = "naks_not_ready_received" },
	{ .name = "naks_qp_error_received" },
	{ .name = "qp_rewinds" },
	{ .name = "qp_timeouts" },
	{ .name = "rx_stale" },
	{ .name = "rx_rewound_bytes" },
	{ .name = "recuts" },
	{ .name = "retry_exc" },
	{ .name = "rnr_retry_exc" },
	{ .name = "ud_sent" },
	{ .name = "ud_received" },
	{ .name = "ud_dropped" },
	{ .name = "ud_qkey_dropped" },
	{ .name = "ud_loopback" },
	{ .name = "ud_oversize" },
	{ .name = "ud_lost" },
	{ .name = "loop_frames" },
	{ .name = "loop_busy" },
	{ .name = "rx_batches" },
	{ .name = "retx_timeouts" },
	{ .name = "retx_fast" },
	{ .name = "spurious_retransmits" },
	{ .name = "cwnd_reductions" },
	{ .name = "cwnd_rail0" },
	{ .name = "cwnd_rail1" },
	{ .name = "user_post_send_calls" },
	{ .name = "user_post_recv_calls" },
	{ .name = "drop_sack" },
	{ .name = "tx_sack_ranges" },
	{ .name = "rx_linearized" },
	{ .name = "pace_holds" },
};
const unsigned int tbrdma_num_stats = ARRAY_SIZE(tbrdma_stat_descs);

int tbrdma_link_fill_stats(struct tbrdma_dev *tdev, struct rdma_hw_stats *stats)
{
	struct tbp_stats s = {};
	u64 *v = stats->value;

	spin_lock_bh(&tdev->lock);
	if (tdev->link_ready)
		tbp_get_stats(tdev->link, &s);
	v[0] = s.tx_frames;
	v[1] = s.rx_frames;
	v[2] = s.tx_data_frames;
	v[3] = s.retransmits;
	v[4] = s.rail_failovers;
	v[5] = s.rx_accepted;
	v[6] = s.rx_duplicates;
	v[7] = s.tx_acks;
	v[8] = s.tx_keepalives;
	v[9] = s.xmit_busy;
	v[10] = s.msgs_posted;
	v[11] = s.msgs_completed;
	v[12] = s.msgs_received;
	v[13] = s.rnr_naks_sent;
	v[14] = s.rnr_naks_received;
	v[15] = s.drop_short;
	v[16] = s.drop_magic;
	v[17] = s.drop_checksum;
	v[18] = s.drop_field;
	v[19] = s.drop_session;
	v[20] = s.drop_rail;
	v[21] = s.drop_window;
	v[22] = s.drop_auth;
	v[23] = s.drop_state;
	v[24] = s.drop_no_qp;
	v[25] = s.drop_no_slot;
	v[26] = s.drop_rnr;
	v[27] = s.drop_bad_msg;
	v[28] = tdev->stat_rx_no_link;
	v[29] = s.rails_up;
	v[30] = s.link_state;
	v[31] = s.srtt_ns;
	v[32] = s.rto_ns;
	v[33] = tdev->stat_orphan_completions;
	v[34] = tdev->stat_gsi_sent;
	v[35] = tdev->stat_gsi_received;
	v[36] = tdev->stat_gsi_dropped;
	v[37] = s.drop_mac;
	v[38] = s.drop_replay;
	v[39] = s.drop_ratelimit;
	v[40] = s.naks_not_ready_sent;
	v[41] = s.naks_qp_error_sent;
	v[42] = s.naks_not_ready_received;
	v[43] = s.naks_qp_error_received;
	v[44] = s.qp_rewinds;
	v[45] = s.qp_timeouts;
	v[46] = s.rx_stale;
	v[47] = s.rx_rewound_bytes;
	v[48] = s.recuts;
	v[49] = s.retry_exc;
	v[50] = s.rnr_retry_exc;
	v[51] = tdev->stat_ud_sent;
	v[52] = tdev->stat_ud_received;
	v[53] = tdev->stat_ud_dropped;
	v[54] = tdev->stat_ud_qkey_dropped;
	v[55] = tdev->stat_ud_loopback;
	v[56] = tdev->stat_ud_oversize;
	v[57] = tdev->stat_ud_lost;
	v[58] = tdev->loop.stat_frames;
	v[59] = tdev->loop.stat_busy;
	v[60] = tdev->stat_rx_batches;
	v[61] = s.retx_timeouts;
	v[62] = s.retx_fast;
	v[63] = s.retx_spurious;
	v[64] = s.cwnd_reductions;
	v[65] = s.cwnd[0];
	v[66] = s.cwnd[1];
	v[67] = atomic64_read(&tdev->stat_user_post_send);
	v[68] = atomic64_read(&tdev->stat_user_post_recv);
	v[69] = s.drop_sack;
	v[70] = s.tx_sack_ranges;
	v[71] = tdev->stat_rx_linearized;
	v[72] = s.pace_holds;
	spin_unlock_bh(&tdev->lock);
	return tbrdma_num_stats;
}
