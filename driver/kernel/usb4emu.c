// SPDX-License-Identifier: GPL-2.0-only
/*
 * tbrdma_usb4emu: an emulated USB4 host interface for the lab (test-only; never shipped).
 *
 * QEMU has no USB4 NHI, so the Thunderbolt rail (rail_tb.c) could never run. This module
 * gives it the host interface it expects, through the ops table of rail_tb_ops.h, and
 * carries rings and control messages between two lab VMs over a virtual cable: a netdev
 * (the lab's thunderbolt<N> NICs) on which it sends its own Ethernet frames (EMU_ETH_P).
 *
 * What it models, because the rail's correctness and speed depend on it:
 * - XDomain discovery: each end says HELLO with its host UUID every EMU_HELLO_MS; a peer
 *   heard makes an XDomain (route, UUIDs, max HopID, link speed and width) and binds the
 *   rail to it. Carrier loss on the cable or EMU_PEER_TIMEOUT_MS without HELLO is a hot
 *   unplug (xd->is_unplugged, then unbind); the peer back is a new XDomain (replug).
 * - The control channel: requests wait for a response with a timeout; incoming packets go
 *   to the protocol handlers first (in process context, like the NHI's control ring work)
 *   and, if none consumes them, to the pending request whose route and UUID match, which
 *   is how the real XDomain core matches responses.
 * - HopIDs (8..EMU_MAX_HOPID, per XDomain), ring hops per XDomain, DMA paths: a frame
 *   travels to the peer's input HopID and lands in the RX ring that path was enabled for;
 *   with fw_cm=1 disabling any path drops every path of the XDomain, as a firmware
 *   connection manager (ICM) does, and the XDomain comes with the peer's UUID
 *   (xd->needs_uuid clear), which is how the rail tells the two apart.
 * - A thunderbolt-net stand-in (usb4emu_net.c) with its own rings and paths on every
 *   XDomain, to show that tbrdma leaves another service on the cable alone.
 * - Rings: frame mode with SOF/EOF PDFs and 12-bit sizes, a fixed number of posted
 *   buffers (an RX frame with no posted buffer is an overrun: dropped and counted),
 *   E2E flow control (a sender's ring with RING_FLAG_E2E sends only into buffers the
 *   receiver posted, from credit messages), a per-ring rate cap (ring_mbps), and the
 *   interrupt throttle (irq_throttle_us between two interrupts of a ring, lowered by
 *   tb_ring_throttling). RX rings with start_poll are polled like the NHI's.
 * Not modelled: the PCIe device, MSI-X vectors, real DMA (buffers are copied), lane
 * bonding, power management; docs/driver.md lists what only hardware can prove.
 */
#include <linux/debugfs.h>
#include <linux/etherdevice.h>
#include <linux/module.h>
#include <linux/seq_file.h>
#include <linux/skbuff.h>
#include <linux/slab.h>

#include "usb4emu.h"

#if IS_REACHABLE(CONFIG_USB4)

static char *cables;
module_param(cables, charp, 0444);
MODULE_PARM_DESC(cables, "Comma-separated netdevs that are virtual USB4 cables (required)");
static char *host_uuid;
module_param(host_uuid, charp, 0444);
MODULE_PARM_DESC(host_uuid, "This host's USB4 UUID, or one per cable (a host router, and domain, per cable; default: one random per load)");
unsigned int emu_ring_mbps;
module_param_named(ring_mbps, emu_ring_mbps, uint, 0644);
MODULE_PARM_DESC(ring_mbps, "Rate cap per TX ring in Mb/s (0: none)");
unsigned int emu_irq_throttle_us = 128;
module_param_named(irq_throttle_us, emu_irq_throttle_us, uint, 0644);
MODULE_PARM_DESC(irq_throttle_us, "Default interval between two interrupts of a ring (NHI: 128 us)");
bool emu_fw_cm;
module_param_named(fw_cm, emu_fw_cm, bool, 0644);
MODULE_PARM_DESC(fw_cm, "Firmware connection manager: disabling a path drops all of the XDomain's");
static unsigned int link_speed = 20;
module_param(link_speed, uint, 0444);
MODULE_PARM_DESC(link_speed, "Link speed per lane in Gb/s reported in the XDomain (two lanes)");

struct emu_ctl_pkt {
	struct list_head node;
	struct emu_cable *cable;
	enum tb_cfg_pkg_type type;
	size_t size;
	u8 data[];
};

/* Each host router is a domain with its own UUID: one for all cables, or one per cable. */
static uuid_t emu_uuids[EMU_MAX_CABLES];
static unsigned int emu_nuuids;
static struct emu_cable emu_cables[EMU_MAX_CABLES];
static unsigned int emu_ncables;
struct platform_device *emu_pdev;
static struct dentry *emu_debugfs;
static LIST_HEAD(emu_handlers);
static DEFINE_MUTEX(emu_handlers_lock);
static LIST_HEAD(emu_ctl_queue);
static DEFINE_SPINLOCK(emu_ctl_lock);
static void emu_ctl_work_fn(struct work_struct *work);
static DECLARE_WORK(emu_ctl_work, emu_ctl_work_fn);
static bool emu_exiting;

/* ---- the wire ---- */

int emu_send(struct emu_cable *cable, u8 kind, u16 hop, u32 seq, u32 arg,
	     const void *payload, u32 len, gfp_t gfp)
{
	struct net_device *ndev = cable->ndev;
	struct emu_hdr *h;
	struct sk_buff *skb;
	u8 dst[ETH_ALEN];

	if (sizeof(*h) + len > ndev->mtu)
		return -EMSGSIZE;
	skb = alloc_skb(LL_RESERVED_SPACE(ndev) + sizeof(*h) + len, gfp);
	if (!skb)
		return -ENOMEM;
	skb_reserve(skb, LL_RESERVED_SPACE(ndev));
	skb_reset_network_header(skb);
	h = skb_put(skb, sizeof(*h));
	h->kind = kind;
	h->cable = cable->index;
	h->hop = cpu_to_be16(hop);
	h->seq = cpu_to_be32(seq);
	h->arg = cpu_to_be32(arg);
	h->len = cpu_to_be32(len);
	memcpy(h->uuid, cable->uuid.b, 16);
	if (len)
		skb_put_data(skb, payload, len);
	spin_lock_bh(&cable->lock);
	if (cable->peer_known && kind != EMU_HELLO)
		ether_addr_copy(dst, cable->peer_mac);
	else
		eth_broadcast_addr(dst);
	spin_unlock_bh(&cable->lock);
	skb->dev = ndev;
	skb->protocol = htons(EMU_ETH_P);
	if (dev_hard_header(skb, ndev, EMU_ETH_P, dst, ndev->dev_addr, skb->len) < 0) {
		kfree_skb(skb);
		return -EINVAL;
	}
	return dev_queue_xmit(skb) == NET_XMIT_SUCCESS ? 0 : -ENOBUFS;
}

/* ---- control channel ---- */

static const void *emu_ctl_uuid(const void *buf)
{
	return (const u8 *)buf + 12;	/* after the XDomain header's three dwords */
}

static int emu_request(struct tb_xdomain *xd, const void *request, size_t request_size,
		       enum tb_cfg_pkg_type request_type, void *response, size_t response_size,
		       enum tb_cfg_pkg_type response_type, unsigned int timeout_msec)
{
	struct emu_xd *exd = to_emu_xd(xd);
	int err;

	if (request_size < 28 || request_size > EMU_CTL_MAX || response_size < 28)
		return -EINVAL;
	mutex_lock(&exd->request_lock);
	reinit_completion(&exd->request_done);
	spin_lock_bh(&exd->lock);
	exd->request = request;
	exd->response = response;
	exd->response_size = response_size;
	spin_unlock_bh(&exd->lock);
	err = exd->dead ? -ENOTCONN :
	      emu_send(exd->cable, EMU_CTL, 0, 0, request_type, request, request_size,
		       GFP_KERNEL);
	if (!err && !wait_for_completion_timeout(&exd->request_done,
						 msecs_to_jiffies(timeout_msec)))
		err = -ETIMEDOUT;
	spin_lock_bh(&exd->lock);
	exd->request = NULL;
	spin_unlock_bh(&exd->lock);
	mutex_unlock(&exd->request_lock);
	return err;
}

static int emu_response(struct tb_xdomain *xd, const void *response, size_t size,
			enum tb_cfg_pkg_type type)
{
	struct emu_xd *exd = to_emu_xd(xd);

	if (size > EMU_CTL_MAX)
		return -EINVAL;
	if (exd->dead)
		return -ENOTCONN;
	return emu_send(exd->cable, EMU_CTL, 0, 0, type, response, size, GFP_KERNEL);
}

static int emu_register_protocol_handler(struct tb_protocol_handler *handler)
{
	if (!handler->uuid || !handler->callback)
		return -EINVAL;
	mutex_lock(&emu_handlers_lock);
	list_add_tail(&handler->list, &emu_handlers);
	mutex_unlock(&emu_handlers_lock);
	return 0;
}

static void emu_unregister_protocol_handler(struct tb_protocol_handler *handler)
{
	mutex_lock(&emu_handlers_lock);
	list_del_init(&handler->list);
	mutex_unlock(&emu_handlers_lock);
}

/* Handlers first; what none consumes answers the pending request of that XDomain. */
static void emu_ctl_deliver(struct emu_ctl_pkt *pkt)
{
	struct tb_protocol_handler *handler;
	struct emu_xd *exd;
	int ret = 0;

	mutex_lock(&emu_handlers_lock);
	list_for_each_entry(handler, &emu_handlers, list) {
		if (!uuid_equal(handler->uuid, emu_ctl_uuid(pkt->data)))
			continue;
		ret = handler->callback(pkt->data, pkt->size, handler->data);
		if (ret)
			break;
	}
	mutex_unlock(&emu_handlers_lock);
	if (ret > 0 || pkt->type != TB_CFG_PKG_XDOMAIN_RESP)
		return;
	rcu_read_lock();
	exd = rcu_dereference(pkt->cable->exd);
	if (exd) {
		spin_lock_bh(&exd->lock);
		/* Route (bit 63 aside) and protocol UUID, like tb_xdomain_match(). */
		if (exd->request && pkt->size >= exd->response_size &&
		    ((((const u32 *)pkt->data)[0] & ~BIT(31)) ==
		     ((const u32 *)exd->request)[0]) &&
		    ((const u32 *)pkt->data)[1] == ((const u32 *)exd->request)[1] &&
		    !memcmp(emu_ctl_uuid(pkt->data), emu_ctl_uuid(exd->request), 16)) {
			memcpy(exd->response, pkt->data, exd->response_size);
			exd->request = NULL;
			complete(&exd->request_done);
		}
		spin_unlock_bh(&exd->lock);
	}
	rcu_read_unlock();
}

static void emu_ctl_work_fn(struct work_struct *work)
{
	struct emu_ctl_pkt *pkt;

	for (;;) {
		spin_lock_bh(&emu_ctl_lock);
		pkt = list_first_entry_or_null(&emu_ctl_queue, struct emu_ctl_pkt, node);
		if (pkt)
			list_del(&pkt->node);
		spin_unlock_bh(&emu_ctl_lock);
		if (!pkt)
			return;
		emu_ctl_deliver(pkt);
		kfree(pkt);
	}
}

static void emu_detached(struct tb_xdomain *xd);

static const struct tbrdma_tb_ops emu_ops = {
	.name = "usb4emu",
	.ring_alloc_tx = emu_ring_alloc_tx,
	.ring_alloc_rx = emu_ring_alloc_rx,
	.ring_start = emu_ring_start,
	.ring_stop = emu_ring_stop,
	.ring_free = emu_ring_free,
	.ring_enqueue = emu_ring_enqueue,
	.ring_poll = emu_ring_poll,
	.ring_poll_complete = emu_ring_poll_complete,
	.ring_throttling = emu_ring_throttling,
	.ring_dma_device = emu_ring_dma_device,
	.alloc_in_hopid = emu_alloc_in_hopid,
	.release_in_hopid = emu_release_in_hopid,
	.alloc_out_hopid = emu_alloc_out_hopid,
	.release_out_hopid = emu_release_out_hopid,
	.enable_paths = emu_enable_paths,
	.disable_paths = emu_disable_paths,
	.request = emu_request,
	.response = emu_response,
	.register_protocol_handler = emu_register_protocol_handler,
	.unregister_protocol_handler = emu_unregister_protocol_handler,
	.detached = emu_detached,
};

/*
 * ---- tbrdma, reached through symbol_get() ----
 *
 * The emulation does not depend on tbrdma: tbrdma loads and unloads beside it, as a
 * service driver does on the real bus. Each call holds a reference on tbrdma for its
 * duration; while one is held tbrdma cannot start unloading, so the service it returns is
 * recorded before the reference goes.
 */

/* Binds the rail to the XDomain if tbrdma is loaded (else the hello work tries again). */
static void emu_bind(struct emu_xd *exd)
{
	typeof(&tbrdma_tb_bind) bind = symbol_get(tbrdma_tb_bind);
	struct tbrdma_tb_service *ts;

	if (!bind)
		return;
	ts = bind(&emu_ops, &exd->xd, exd->cable->ndev->name, &emu_pdev->dev);
	if (IS_ERR(ts)) {
		dev_warn_ratelimited(&emu_pdev->dev, "%s: binding the rail failed (%ld)\n",
				     exd->cable->ndev->name, PTR_ERR(ts));
	} else {
		reinit_completion(&exd->detached);
		spin_lock_bh(&exd->lock);
		exd->ts = ts;
		spin_unlock_bh(&exd->lock);
	}
	symbol_put(tbrdma_tb_bind);
}

static struct tbrdma_tb_service *emu_service(struct emu_xd *exd)
{
	struct tbrdma_tb_service *ts;

	spin_lock_bh(&exd->lock);
	ts = exd->ts;
	spin_unlock_bh(&exd->lock);
	return ts;
}

/* Unbinds the rail, or waits until tbrdma, unloading, has done it (emu_detached()). */
static void emu_unbind(struct emu_xd *exd)
{
	typeof(&tbrdma_tb_unbind) unbind;
	struct tbrdma_tb_service *ts = emu_service(exd);

	if (!ts)
		return;
	unbind = symbol_get(tbrdma_tb_unbind);
	if (!unbind) {
		wait_for_completion(&exd->detached);
		return;
	}
	unbind(ts);
	spin_lock_bh(&exd->lock);
	exd->ts = NULL;
	spin_unlock_bh(&exd->lock);
	symbol_put(tbrdma_tb_unbind);
}

/* tbrdma is unloading and unbound the service itself. */
static void emu_detached(struct tb_xdomain *xd)
{
	struct emu_xd *exd = to_emu_xd(xd);

	spin_lock_bh(&exd->lock);
	exd->ts = NULL;
	spin_unlock_bh(&exd->lock);
	complete_all(&exd->detached);
}

/* Calls fn (tbrdma_tb_suspend or _resume) on the XDomain's service, if tbrdma has one here. */
#define emu_call_service(exd, fn)					\
	do {								\
		typeof(&fn) call = symbol_get(fn);			\
		struct tbrdma_tb_service *ts;				\
									\
		if (call) {						\
			ts = emu_service(exd);				\
			if (ts)						\
				call(ts);				\
			symbol_put(fn);					\
		}							\
	} while (0)

/* ---- receive ---- */

static void emu_rx_ctl(struct emu_cable *cable, u32 type, const void *data, u32 len)
{
	struct emu_ctl_pkt *pkt;

	if (len < 28 || len > EMU_CTL_MAX || READ_ONCE(emu_exiting))
		return;
	pkt = kmalloc(sizeof(*pkt) + len, GFP_ATOMIC);
	if (!pkt)
		return;
	pkt->cable = cable;
	pkt->type = type;
	pkt->size = len;
	memcpy(pkt->data, data, len);
	spin_lock(&emu_ctl_lock);
	list_add_tail(&pkt->node, &emu_ctl_queue);
	spin_unlock(&emu_ctl_lock);
	queue_work(system_long_wq, &emu_ctl_work);
}

static void emu_rx_hello(struct emu_cable *cable, const struct emu_hdr *h, const u8 *src)
{
	bool replug;

	spin_lock(&cable->lock);
	replug = !cable->peer_known || memcmp(cable->peer_uuid.b, h->uuid, 16);
	ether_addr_copy(cable->peer_mac, src);
	memcpy(cable->peer_uuid.b, h->uuid, 16);
	cable->peer_index = h->cable;
	cable->peer_seen = jiffies;
	cable->peer_known = true;
	spin_unlock(&cable->lock);
	if (replug)
		queue_work(system_long_wq, &cable->plug_work);
}

static int emu_rcv(struct sk_buff *skb, struct net_device *ndev, struct packet_type *pt,
		   struct net_device *orig_dev)
{
	struct emu_cable *cable = container_of(pt, struct emu_cable, ptype);
	const struct emu_hdr *h;
	struct emu_xd *exd;
	u32 len;

	skb = skb_share_check(skb, GFP_ATOMIC);
	if (!skb)
		return NET_RX_DROP;
	if (skb_linearize(skb) || skb->len < sizeof(*h))
		goto drop;
	h = (const struct emu_hdr *)skb->data;
	len = be32_to_cpu(h->len);
	if (len > skb->len - sizeof(*h))
		goto drop;
	if (!memcmp(h->uuid, cable->uuid.b, 16))
		goto drop;	/* our own broadcast looped back */
	if (h->kind == EMU_HELLO) {
		emu_rx_hello(cable, h, eth_hdr(skb)->h_source);
		goto drop;
	}
	if (h->kind == EMU_BYE) {
		spin_lock(&cable->lock);
		cable->peer_known = false;
		spin_unlock(&cable->lock);
		queue_work(system_long_wq, &cable->plug_work);
		goto drop;
	}
	rcu_read_lock();
	exd = rcu_dereference(cable->exd);
	if (exd && !exd->dead && !memcmp(h->uuid, exd->remote_uuid.b, 16)) {
		if (h->kind == EMU_DATA)
			emu_rx_data(exd, be16_to_cpu(h->hop), be32_to_cpu(h->seq),
				    be32_to_cpu(h->arg), skb->data + sizeof(*h), len);
		else if (h->kind == EMU_CREDIT)
			emu_rx_credit(exd, be16_to_cpu(h->hop), be32_to_cpu(h->seq),
				      be32_to_cpu(h->arg));
		else if (h->kind == EMU_CTL)
			emu_rx_ctl(cable, be32_to_cpu(h->arg), skb->data + sizeof(*h), len);
	}
	rcu_read_unlock();
drop:
	consume_skb(skb);
	return NET_RX_SUCCESS;
}

/* ---- XDomains: plug and unplug ---- */

static void emu_unplug(struct emu_cable *cable)
{
	struct emu_xd *exd;

	lockdep_assert_held(&cable->plug_lock);
	exd = rcu_dereference_protected(cable->exd, lockdep_is_held(&cable->plug_lock));
	if (!exd)
		return;
	/* No logout goes out on a pulled cable; the rail frees its rings and HopIDs. */
	exd->xd.is_unplugged = true;
	exd->dead = true;
	emu_unbind(exd);
	emu_net_remove(exd->net);
	RCU_INIT_POINTER(cable->exd, NULL);
	synchronize_rcu();
	flush_work(&emu_ctl_work);
	ida_destroy(&exd->in_hopids);
	ida_destroy(&exd->out_hopids);
	ida_destroy(&exd->tx_hops);
	ida_destroy(&exd->rx_hops);
	dev_info(&emu_pdev->dev, "%s: XDomain %pUb unplugged\n", cable->ndev->name,
		 &exd->remote_uuid);
	kfree(exd);
}

/* Both ends derive the same route from the two cable indices. */
static u64 emu_route(unsigned int a, unsigned int b)
{
	return (u64)(1 + min(a, b)) | (u64)(1 + max(a, b)) << 8;
}

/* A new XDomain with its thunderbolt-net stand-in; the rail binds afterwards. */
static void emu_plug(struct emu_cable *cable)
{
	struct emu_xd *exd;

	lockdep_assert_held(&cable->plug_lock);
	exd = kzalloc(sizeof(*exd), GFP_KERNEL);
	if (!exd)
		return;
	spin_lock_bh(&cable->lock);
	exd->remote_uuid = cable->peer_uuid;
	exd->xd.route = emu_route(cable->index, cable->peer_index);
	spin_unlock_bh(&cable->lock);
	exd->cable = cable;
	exd->xd.local_uuid = &cable->uuid;
	exd->xd.remote_uuid = &exd->remote_uuid;
	exd->xd.local_max_hopid = EMU_MAX_HOPID;
	exd->xd.remote_max_hopid = EMU_MAX_HOPID;
	exd->xd.link_speed = link_speed;
	exd->xd.link_width = 2;		/* two lanes: TB_LINK_WIDTH_DUAL, or the lane count < 6.4 */
	/* A firmware CM hands the thunderbolt driver the peer's UUID; the software CM asks. */
	exd->xd.needs_uuid = !READ_ONCE(emu_fw_cm);
	spin_lock_init(&exd->lock);
	mutex_init(&exd->request_lock);
	init_completion(&exd->request_done);
	init_completion(&exd->detached);
	ida_init(&exd->in_hopids);
	ida_init(&exd->out_hopids);
	ida_init(&exd->tx_hops);
	ida_init(&exd->rx_hops);
	/* Published first: the rail's logins start at once and need the control channel. */
	rcu_assign_pointer(cable->exd, exd);
	exd->net = emu_net_add(exd);
	if (IS_ERR(exd->net))
		dev_warn(&emu_pdev->dev, "%s: no thunderbolt-net stand-in (%ld)\n",
			 cable->ndev->name, PTR_ERR(exd->net));
	dev_info(&emu_pdev->dev, "%s: XDomain %pUb plugged, route %llx\n", cable->ndev->name,
		 &exd->remote_uuid, exd->xd.route);
}

/* Brings the XDomain in line with what the cable shows: peer heard, peer gone, new peer. */
static void emu_plug_work(struct work_struct *work)
{
	struct emu_cable *cable = container_of(work, struct emu_cable, plug_work);
	struct emu_xd *exd;
	bool present, same;

	mutex_lock(&cable->plug_lock);
	spin_lock_bh(&cable->lock);
	present = cable->peer_known && !READ_ONCE(emu_exiting);
	exd = rcu_dereference_protected(cable->exd, lockdep_is_held(&cable->plug_lock));
	same = exd && uuid_equal(&exd->remote_uuid, &cable->peer_uuid);
	spin_unlock_bh(&cable->lock);
	if (exd && (!present || !same))
		emu_unplug(cable);
	if (present && !same)
		emu_plug(cable);
	/* A new XDomain, or tbrdma (re)loaded since: the rail binds. */
	exd = rcu_dereference_protected(cable->exd, lockdep_is_held(&cable->plug_lock));
	if (exd && !emu_service(exd))
		emu_bind(exd);
	mutex_unlock(&cable->plug_lock);
}

static void emu_hello_work(struct work_struct *work)
{
	struct emu_cable *cable = container_of(to_delayed_work(work), struct emu_cable,
					       hello_work);
	struct emu_xd *exd;
	bool gone;


	if (netif_running(cable->ndev) && netif_carrier_ok(cable->ndev))
		emu_send(cable, EMU_HELLO, 0, 0, 0, NULL, 0, GFP_KERNEL);
	rcu_read_lock();
	exd = rcu_dereference(cable->exd);
	if (exd && !exd->dead)
		emu_refresh_credits(exd);
	if (exd && !exd->dead && !emu_service(exd))
		queue_work(system_long_wq, &cable->plug_work);	/* tbrdma may be back */
	rcu_read_unlock();
	spin_lock_bh(&cable->lock);
	gone = cable->peer_known &&
	       (!netif_carrier_ok(cable->ndev) ||
		time_after(jiffies, cable->peer_seen + msecs_to_jiffies(EMU_PEER_TIMEOUT_MS)));
	if (gone)
		cable->peer_known = false;	/* a cable pull or a silent peer: hot unplug */
	spin_unlock_bh(&cable->lock);
	if (gone)
		queue_work(system_long_wq, &cable->plug_work);
	queue_delayed_work(system_long_wq, &cable->hello_work, msecs_to_jiffies(EMU_HELLO_MS));
}

/* ---- debugfs: per ring counters ---- */

static int emu_stats_show(struct seq_file *m, void *unused)
{
	unsigned int c;
	int i;

	for (c = 0; c < emu_ncables; c++) {
		struct emu_cable *cable = &emu_cables[c];
		struct emu_xd *exd;

		mutex_lock(&cable->plug_lock);
		exd = rcu_dereference_protected(cable->exd, lockdep_is_held(&cable->plug_lock));
		seq_printf(m, "%s peer %s\n", cable->ndev->name, exd ? "plugged" : "none");
		for (i = 1; exd && i < EMU_RING_HOPS; i++) {
			struct emu_ring *tx = exd->tx_rings[i], *rx = exd->rx_rings[i];

			if (tx)
				seq_printf(m, "  tx %d out %d frames %llu no_path %llu e2e_waits %llu\n",
					   i, tx->out_hopid, tx->frames, tx->no_path, tx->e2e_waits);
			if (rx)
				seq_printf(m, "  rx %d frames %llu overruns %llu\n", i, rx->frames,
					   rx->overruns);
		}
		mutex_unlock(&cable->plug_lock);
	}
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(emu_stats);

/* Writing 1 suspends this host's USB4 side as a system suspend would, 0 resumes it. */
static ssize_t emu_suspend_write(struct file *file, const char __user *buf, size_t count,
				 loff_t *ppos)
{
	unsigned int c;
	bool suspend;
	int err;

	err = kstrtobool_from_user(buf, count, &suspend);
	if (err)
		return err;
	for (c = 0; c < emu_ncables; c++) {
		struct emu_cable *cable = &emu_cables[c];
		struct emu_xd *exd;

		mutex_lock(&cable->plug_lock);
		exd = rcu_dereference_protected(cable->exd, lockdep_is_held(&cable->plug_lock));
		/* As the NHI's PM callbacks would deliver a host suspend or resume. */
		if (exd && suspend)
			emu_call_service(exd, tbrdma_tb_suspend);
		else if (exd)
			emu_call_service(exd, tbrdma_tb_resume);
		mutex_unlock(&cable->plug_lock);
	}
	return count;
}

static const struct file_operations emu_suspend_fops = {
	.owner = THIS_MODULE,
	.write = emu_suspend_write,
};

/* ---- module ---- */

static int emu_add_cable(const char *name)
{
	struct emu_cable *cable = &emu_cables[emu_ncables];
	struct net_device *ndev;

	if (!*name)
		return 0;	/* "a,,b" and a trailing comma: nothing between */
	if (emu_ncables == EMU_MAX_CABLES) {
		pr_err("tbrdma_usb4emu: at most %d cables\n", EMU_MAX_CABLES);
		return -E2BIG;
	}
	ndev = dev_get_by_name(&init_net, name);
	if (!ndev) {
		pr_err("tbrdma_usb4emu: cable netdev %s not found\n", name);
		return -ENODEV;
	}
	if (ndev->mtu < sizeof(struct emu_hdr) + EMU_FRAME_SIZE) {
		pr_err("tbrdma_usb4emu: %s: MTU %u is below a ring frame (%zu); raise it first\n",
		       name, ndev->mtu, sizeof(struct emu_hdr) + EMU_FRAME_SIZE);
		dev_put(ndev);
		return -EINVAL;
	}
	cable->index = emu_ncables;
	cable->ndev = ndev;
	cable->uuid = emu_uuids[emu_nuuids == 1 ? 0 : cable->index];
	spin_lock_init(&cable->lock);
	mutex_init(&cable->plug_lock);
	INIT_DELAYED_WORK(&cable->hello_work, emu_hello_work);
	INIT_WORK(&cable->plug_work, emu_plug_work);
	cable->ptype.type = htons(EMU_ETH_P);
	cable->ptype.dev = ndev;
	cable->ptype.func = emu_rcv;
	dev_add_pack(&cable->ptype);
	emu_ncables++;
	queue_delayed_work(system_long_wq, &cable->hello_work, 0);
	return 0;
}

static void emu_remove_cables(void)
{
	unsigned int c;

	WRITE_ONCE(emu_exiting, true);
	for (c = 0; c < emu_ncables; c++) {
		struct emu_cable *cable = &emu_cables[c];

		cancel_delayed_work_sync(&cable->hello_work);
		emu_send(cable, EMU_BYE, 0, 0, 0, NULL, 0, GFP_KERNEL);
	}
	for (c = 0; c < emu_ncables; c++) {
		struct emu_cable *cable = &emu_cables[c];

		cancel_work_sync(&cable->plug_work);
		mutex_lock(&cable->plug_lock);
		/* The peer had our BYE: it unplugs its side too, no logout needed. */
		emu_unplug(cable);
		mutex_unlock(&cable->plug_lock);
		dev_remove_pack(&cable->ptype);
		/* A HELLO received before the pack went may have queued it again. */
		cancel_work_sync(&cable->plug_work);
	}
	flush_work(&emu_ctl_work);
	for (c = 0; c < emu_ncables; c++)
		dev_put(emu_cables[c].ndev);
	emu_ncables = 0;
}

/* Calls take() on each item of a comma-separated module parameter, until one fails. */
static int emu_each_item(const char *param, int (*take)(const char *item))
{
	char *list = kstrdup(param, GFP_KERNEL), *cursor = list, *item;
	int err = 0;

	if (!list)
		return -ENOMEM;
	while (!err && (item = strsep(&cursor, ",")) != NULL)
		err = take(item);
	kfree(list);
	return err;
}

static int emu_add_uuid(const char *text)
{
	if (emu_nuuids == EMU_MAX_CABLES) {
		pr_err("tbrdma_usb4emu: host_uuid: at most %d UUIDs\n", EMU_MAX_CABLES);
		return -E2BIG;
	}
	if (uuid_parse(text, &emu_uuids[emu_nuuids++])) {
		pr_err("tbrdma_usb4emu: host_uuid: %s is not a UUID\n", text);
		return -EINVAL;
	}
	return 0;
}

/* host_uuid: one UUID, or one per cable; none: one random UUID. */
static int emu_parse_uuids(void)
{
	emu_nuuids = 0;
	if (host_uuid && *host_uuid)
		return emu_each_item(host_uuid, emu_add_uuid);
	uuid_gen(&emu_uuids[0]);
	emu_nuuids = 1;
	return 0;
}

/* Direct mapping is what emu_buf() relies on: refuse to run where it does not hold. */
static int emu_check_dma(void)
{
	void *probe = kmalloc(64, GFP_KERNEL);
	dma_addr_t dma;
	int err = 0;

	if (!probe)
		return -ENOMEM;
	dma = dma_map_single(&emu_pdev->dev, probe, 64, DMA_TO_DEVICE);
	if (dma_mapping_error(&emu_pdev->dev, dma)) {
		err = -EIO;
	} else {
		if (phys_to_virt((phys_addr_t)dma) != probe)
			err = -EOPNOTSUPP;
		dma_unmap_single(&emu_pdev->dev, dma, 64, DMA_TO_DEVICE);
	}
	kfree(probe);
	if (err)
		pr_err("tbrdma_usb4emu: DMA is not direct-mapped here (IOMMU?): %d\n", err);
	return err;
}

static int __init emu_init(void)
{
	int err;

	if (!cables || !*cables) {
		pr_err("tbrdma_usb4emu: cables=<netdev>[,<netdev>...] is required\n");
		return -EINVAL;
	}
	err = emu_parse_uuids();
	if (err)
		return err;
	emu_pdev = platform_device_register_simple("tbrdma_usb4emu", -1, NULL, 0);
	if (IS_ERR(emu_pdev))
		return PTR_ERR(emu_pdev);
	err = dma_coerce_mask_and_coherent(&emu_pdev->dev, DMA_BIT_MASK(64));
	if (!err)
		err = emu_check_dma();
	if (err)
		goto err_pdev;

	err = emu_each_item(cables, emu_add_cable);
	if (!err && emu_nuuids > 1 && emu_nuuids != emu_ncables) {
		pr_err("tbrdma_usb4emu: host_uuid has %u UUIDs for %u cables: give one, or one per cable\n",
		       emu_nuuids, emu_ncables);
		err = -EINVAL;
	}
	if (err)
		goto err_cables;
	emu_debugfs = debugfs_create_dir("tbrdma_usb4emu", NULL);
	debugfs_create_file("stats", 0444, emu_debugfs, NULL, &emu_stats_fops);
	debugfs_create_file("suspend", 0200, emu_debugfs, NULL, &emu_suspend_fops);
	pr_info("tbrdma_usb4emu: host %pUb, %u cables, %u host routers\n", &emu_uuids[0],
		emu_ncables, emu_nuuids);
	return 0;

err_cables:
	emu_remove_cables();
err_pdev:
	platform_device_unregister(emu_pdev);
	return err;
}

static void __exit emu_exit(void)
{
	debugfs_remove_recursive(emu_debugfs);
	emu_remove_cables();
	platform_device_unregister(emu_pdev);
}

module_init(emu_init);
module_exit(emu_exit);

#else /* !IS_REACHABLE(CONFIG_USB4) */

static int __init emu_init(void)
{
	return -ENODEV;
}
module_init(emu_init);

#endif

MODULE_DESCRIPTION("Emulated USB4 host interface for tbrdma's lab (test-only)");
MODULE_LICENSE("GPL");
