// SPDX-License-Identifier: GPL-2.0-only
/*
 * tbrdma_usb4emu (test-only): a thunderbolt-net stand-in on every emulated XDomain.
 *
 * The real thunderbolt-net binds to the real thunderbolt bus and cannot run on the
 * emulation, yet what the lab must show is that tbrdma never disturbs it on a shared cable.
 * So each XDomain also carries "usb4net<cable>", a netdev whose Ethernet frames travel, one
 * per ring frame, on a ring pair and DMA paths of its own (input and output HopID
 * EMU_NET_HOPID on both hosts), next to tbrdma's, as thunderbolt-net's do.
 *
 * Like thunderbolt-net it does not notice when its paths vanish under it: under fw_cm=1 a
 * disable_paths by anyone on the XDomain drops its paths too and it stays broken until it is
 * taken down and up again. Taking it down (ip link set down) disables its own paths, which
 * under fw_cm drops tbrdma's: the rail must heal by itself.
 */
#include <linux/dma-mapping.h>
#include <linux/etherdevice.h>
#include <linux/slab.h>

#include "usb4emu.h"

#if IS_REACHABLE(CONFIG_USB4)

#define EMU_NET_FRAMES	64

struct emu_net_frame {
	struct ring_frame frame;
	struct emu_net *net;
	void *buf;
	u16 index;
};

struct emu_net {
	struct net_device *ndev;
	struct emu_xd *exd;
	struct tb_ring *tx_ring, *rx_ring;
	spinlock_t tx_lock;		/* the free TX frames */
	unsigned int tx_nfree;
	u16 tx_free[EMU_NET_FRAMES];
	struct emu_net_frame tx_frames[EMU_NET_FRAMES];
	struct emu_net_frame rx_frames[EMU_NET_FRAMES];
};

static void emu_net_tx_done(struct tb_ring *ring, struct ring_frame *frame, bool canceled)
{
	struct emu_net_frame *nf = container_of(frame, struct emu_net_frame, frame);
	struct emu_net *net = nf->net;
	unsigned long flags;

	spin_lock_irqsave(&net->tx_lock, flags);
	net->tx_free[net->tx_nfree++] = nf->index;
	spin_unlock_irqrestore(&net->tx_lock, flags);
	if (!canceled)
		netif_wake_queue(net->ndev);
}

static void emu_net_rx_done(struct tb_ring *ring, struct ring_frame *frame, bool canceled)
{
	struct emu_net_frame *nf = container_of(frame, struct emu_net_frame, frame);
	struct net_device *ndev = nf->net->ndev;
	u32 len = frame->size ? frame->size : EMU_FRAME_SIZE;
	struct sk_buff *skb;

	if (canceled)
		return;
	if (len < ETH_HLEN) {
		ndev->stats.rx_errors++;
	} else if ((skb = netdev_alloc_skb_ip_align(ndev, len))) {
		skb_put_data(skb, emu_buf(frame), len);
		skb->protocol = eth_type_trans(skb, ndev);
		ndev->stats.rx_packets++;
		ndev->stats.rx_bytes += len;
		netif_rx(skb);
	} else {
		ndev->stats.rx_dropped++;
	}
	emu_ring_enqueue(ring, frame);
}

static int emu_net_open(struct net_device *ndev)
{
	struct emu_net *net = netdev_priv(ndev);
	unsigned int i;
	int err;

	emu_ring_start(net->tx_ring);
	emu_ring_start(net->rx_ring);
	for (i = 0; i < EMU_NET_FRAMES; i++)
		emu_ring_enqueue(net->rx_ring, &net->rx_frames[i].frame);
	err = emu_enable_paths(&net->exd->xd, EMU_NET_HOPID, net->tx_ring->hop, EMU_NET_HOPID,
			       net->rx_ring->hop);
	if (err) {
		emu_ring_stop(net->rx_ring);
		emu_ring_stop(net->tx_ring);
		return err;
	}
	netif_carrier_on(ndev);
	netif_start_queue(ndev);
	return 0;
}

static int emu_net_stop(struct net_device *ndev)
{
	struct emu_net *net = netdev_priv(ndev);

	netif_stop_queue(ndev);
	netif_carrier_off(ndev);
	emu_disable_paths(&net->exd->xd, EMU_NET_HOPID, net->tx_ring->hop, EMU_NET_HOPID,
			  net->rx_ring->hop);
	emu_ring_stop(net->rx_ring);
	emu_ring_stop(net->tx_ring);
	return 0;
}

static netdev_tx_t emu_net_xmit(struct sk_buff *skb, struct net_device *ndev)
{
	struct emu_net *net = netdev_priv(ndev);
	struct emu_net_frame *nf = NULL;
	unsigned long flags;

	if (skb->len > EMU_FRAME_SIZE)
		goto drop;
	spin_lock_irqsave(&net->tx_lock, flags);
	if (net->tx_nfree)
		nf = &net->tx_frames[net->tx_free[--net->tx_nfree]];
	if (!net->tx_nfree)
		netif_stop_queue(ndev);
	spin_unlock_irqrestore(&net->tx_lock, flags);
	if (!nf)
		return NETDEV_TX_BUSY;
	skb_copy_bits(skb, 0, nf->buf, skb->len);
	nf->frame.size = skb->len == EMU_FRAME_SIZE ? 0 : skb->len;
	ndev->stats.tx_packets++;
	ndev->stats.tx_bytes += skb->len;
	if (emu_ring_enqueue(net->tx_ring, &nf->frame))
		emu_net_tx_done(net->tx_ring, &nf->frame, true);
	dev_consume_skb_any(skb);
	return NETDEV_TX_OK;
drop:
	ndev->stats.tx_dropped++;
	dev_kfree_skb_any(skb);
	return NETDEV_TX_OK;
}

static const struct net_device_ops emu_net_ops = {
	.ndo_open = emu_net_open,
	.ndo_stop = emu_net_stop,
	.ndo_start_xmit = emu_net_xmit,
	.ndo_set_mac_address = eth_mac_addr,
	.ndo_validate_addr = eth_validate_addr,
};

static int emu_net_init_frames(struct emu_net *net, struct emu_net_frame *frames,
			       void (*done)(struct tb_ring *, struct ring_frame *, bool),
			       enum dma_data_direction dir)
{
	struct device *dma = &emu_pdev->dev;
	unsigned int i;

	for (i = 0; i < EMU_NET_FRAMES; i++) {
		struct emu_net_frame *nf = &frames[i];

		nf->buf = kmalloc(EMU_FRAME_SIZE, GFP_KERNEL);
		if (!nf->buf)
			return -ENOMEM;
		nf->frame.buffer_phy = dma_map_single(dma, nf->buf, EMU_FRAME_SIZE, dir);
		if (dma_mapping_error(dma, nf->frame.buffer_phy)) {
			kfree(nf->buf);
			nf->buf = NULL;
			return -EIO;
		}
		nf->frame.callback = done;
		nf->net = net;
		nf->index = i;
	}
	return 0;
}

static void emu_net_free_frames(struct emu_net_frame *frames, enum dma_data_direction dir)
{
	unsigned int i;

	for (i = 0; i < EMU_NET_FRAMES && frames[i].buf; i++) {
		dma_unmap_single(&emu_pdev->dev, frames[i].frame.buffer_phy, EMU_FRAME_SIZE, dir);
		kfree(frames[i].buf);
	}
}

static void emu_net_free(struct emu_net *net)
{
	struct tb_xdomain *xd = &net->exd->xd;

	if (net->rx_ring)
		emu_ring_free(net->rx_ring);
	if (net->tx_ring)
		emu_ring_free(net->tx_ring);
	emu_net_free_frames(net->rx_frames, DMA_FROM_DEVICE);
	emu_net_free_frames(net->tx_frames, DMA_TO_DEVICE);
	emu_release_in_hopid(xd, EMU_NET_HOPID);
	emu_release_out_hopid(xd, EMU_NET_HOPID);
	free_netdev(net->ndev);
}

/* Before tbrdma binds the XDomain, so EMU_NET_HOPID is free on both hosts. */
struct emu_net *emu_net_add(struct emu_xd *exd)
{
	struct net_device *ndev;
	struct emu_net *net;
	char name[IFNAMSIZ];
	unsigned int i;
	int err;

	snprintf(name, sizeof(name), "usb4net%u", exd->cable->index);
	ndev = alloc_netdev(sizeof(*net), name, NET_NAME_PREDICTABLE, ether_setup);
	if (!ndev)
		return ERR_PTR(-ENOMEM);
	net = netdev_priv(ndev);
	net->ndev = ndev;
	net->exd = exd;
	spin_lock_init(&net->tx_lock);
	for (i = 0; i < EMU_NET_FRAMES; i++)
		net->tx_free[i] = i;
	net->tx_nfree = EMU_NET_FRAMES;
	ndev->netdev_ops = &emu_net_ops;
	ndev->max_mtu = EMU_FRAME_SIZE - ETH_HLEN;
	eth_hw_addr_random(ndev);
	if (emu_alloc_in_hopid(&exd->xd, EMU_NET_HOPID) != EMU_NET_HOPID) {
		free_netdev(ndev);
		return ERR_PTR(-EBUSY);
	}
	if (emu_alloc_out_hopid(&exd->xd, EMU_NET_HOPID) != EMU_NET_HOPID) {
		emu_release_in_hopid(&exd->xd, EMU_NET_HOPID);
		free_netdev(ndev);
		return ERR_PTR(-EBUSY);
	}
	net->tx_ring = emu_ring_alloc_tx(&exd->xd, EMU_NET_FRAMES, 0);
	net->rx_ring = emu_ring_alloc_rx(&exd->xd, EMU_NET_FRAMES, 0, 0, 0, 0, NULL, NULL);
	err = net->tx_ring && net->rx_ring ? 0 : -ENOMEM;
	if (!err)
		err = emu_net_init_frames(net, net->tx_frames, emu_net_tx_done, DMA_TO_DEVICE);
	if (!err)
		err = emu_net_init_frames(net, net->rx_frames, emu_net_rx_done, DMA_FROM_DEVICE);
	netif_carrier_off(ndev);	/* on at open, once its paths are enabled */
	if (!err)
		err = register_netdev(ndev);
	if (err) {
		emu_net_free(net);
		return ERR_PTR(err);
	}
	return net;
}

/* The XDomain is going (dead): the netdev goes first, then its rings and HopIDs. */
void emu_net_remove(struct emu_net *net)
{
	if (IS_ERR_OR_NULL(net))
		return;
	unregister_netdev(net->ndev);
	emu_net_free(net);
}

#endif
