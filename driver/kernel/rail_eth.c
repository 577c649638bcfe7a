// SPDX-License-Identifier: GPL-2.0-only
/*
 * Ethernet rail: protocol frames ride raw Ethernet with ethertype 0x88B5 (IEEE local
 * experimental) on one named netdev. Used in the lab, in CI and on any Ethernet link.
 */
#include <linux/if_ether.h>
#include <linux/netdevice.h>
#include <linux/skbuff.h>

#include "tbrdma.h"
#include "tbp.h"

/* The linear part and every page fragment. */
#define ETH_RX_MAX_FRAGS (MAX_SKB_FRAGS + 1)

/*
 * The frame as the pieces the core reads in place: the linear part, then each page fragment
 * (a jumbo frame from virtio-net or a NIC's page pool is mostly fragments). Copying them into
 * one buffer first would be a second pass over every payload byte before the core's copy into
 * the memory region. Returns the number of pieces, or 0 when the skb must be linearized: a
 * frag_list (chained skbs), or a fragment without a kernel address (a highmem page that is not
 * mapped, memory the CPU cannot read).
 */
static unsigned int eth_rx_frags(struct sk_buff *skb, struct tbp_rx_frag *frag)
{
	const struct skb_shared_info *shinfo = skb_shinfo(skb);
	unsigned int i, n = 0;

	if (skb_has_frag_list(skb) || shinfo->nr_frags >= ETH_RX_MAX_FRAGS)
		return 0;
	frag[n].data = skb->data;
	frag[n++].len = skb_headlen(skb);
	for (i = 0; i < shinfo->nr_frags; i++) {
		const skb_frag_t *f = &shinfo->frags[i];

		frag[n].data = skb_frag_address_safe(f);
		if (!frag[n].data)
			return 0;
		frag[n++].len = skb_frag_size(f);
	}
	return n;
}

/* One received frame, inside a tbrdma_link_rx_begin/end batch (device lock held). */
static int eth_rx_one(struct tbrdma_rail *rail, struct sk_buff *skb)
{
	struct tbp_rx_frag frag[ETH_RX_MAX_FRAGS];
	unsigned int n;

	if (skb->pkt_type == PACKET_OTHERHOST || skb->pkt_type == PACKET_LOOPBACK)
		goto drop;
	skb = skb_share_check(skb, GFP_ATOMIC);
	if (!skb)
		return NET_RX_DROP;
	n = eth_rx_frags(skb, frag);
	if (!n) {
		rail->tdev->stat_rx_linearized++;
		if (skb_linearize(skb))
			goto drop;
		n = eth_rx_frags(skb, frag);
	}
	rail->rx_frames++;
	/*
	 * Until we learn the peer's address we broadcast. Anyone on the segment can send frames
	 * with our ethertype and any source address, so the address is only learnt from a frame
	 * the core proved to be the peer's and fresh (frame MAC with an unseen counter, or a
	 * handshake answer bound to our nonces): a forged or replayed frame cannot redirect
	 * our traffic. The transmit path reads peer_mac under the same lock.
	 */
	if (tbrdma_link_rx_frags(rail, frag, n) &&
	    (!rail->peer_mac_known || !ether_addr_equal(rail->peer_mac, eth_hdr(skb)->h_source))) {
		ether_addr_copy(rail->peer_mac, eth_hdr(skb)->h_source);
		rail->peer_mac_known = true;
	}
	consume_skb(skb);
	return NET_RX_SUCCESS;
drop:
	kfree_skb(skb);
	return NET_RX_DROP;
}

static int tbrdma_eth_rcv(struct sk_buff *skb, struct net_device *ndev, struct packet_type *pt,
			  struct net_device *orig_dev)
{
	struct tbrdma_rail *rail = container_of(pt, struct tbrdma_rail, ptype);
	int ret;

	tbrdma_link_rx_begin(rail->tdev);
	ret = eth_rx_one(rail, skb);
	tbrdma_link_rx_end(rail->tdev);
	return ret;
}

/*
 * The stack hands over the frames of one NAPI poll as a list (up to
 * net.core.gro_normal_batch of them): one batch for the core, one tick.
 */
static void tbrdma_eth_rcv_list(struct list_head *head, struct packet_type *pt,
				struct net_device *orig_dev)
{
	struct tbrdma_rail *rail = container_of(pt, struct tbrdma_rail, ptype);
	struct sk_buff *skb, *next;

	tbrdma_link_rx_begin(rail->tdev);
	list_for_each_entry_safe(skb, next, head, list) {
		skb_list_del_init(skb);
		eth_rx_one(rail, skb);
	}
	tbrdma_link_rx_end(rail->tdev);
}

int tbrdma_eth_rail_start(struct tbrdma_rail *rail)
{
	rail->ptype.type = htons(TBRDMA_ETHERTYPE);
	rail->ptype.dev = rail->netdev;
	rail->ptype.func = tbrdma_eth_rcv;
	rail->ptype.list_func = tbrdma_eth_rcv_list;
	dev_add_pack(&rail->ptype);
	return 0;
}

void tbrdma_eth_rail_stop(struct tbrdma_rail *rail)
{
	/* Waits for receive handlers in flight (synchronize_net). */
	dev_remove_pack(&rail->ptype);
}

/*
 * Data frames are built by the core straight in the skb they leave in (frame_get/commit):
 * the MR's bytes are copied once, into the skb. Called with the device lock held and BHs
 * disabled. Returns where the frame of up to len bytes goes, or an ERR_PTR.
 */
void *tbrdma_eth_frame_get(struct tbrdma_rail *rail, size_t len, struct sk_buff **token)
{
	struct net_device *ndev = rail->netdev;
	struct sk_buff *skb;

	if (!netif_running(ndev) || !netif_carrier_ok(ndev))
		return ERR_PTR(-ENETDOWN);
	if (len > ndev->mtu)
		return ERR_PTR(-EMSGSIZE);
	if (netif_xmit_stopped(netdev_get_tx_queue(ndev, 0)) && ndev->real_num_tx_queues == 1) {
		rail->tx_busy++;
		return ERR_PTR(-EAGAIN);
	}
	skb = alloc_skb(LL_RESERVED_SPACE(ndev) + len + ndev->needed_tailroom, GFP_ATOMIC);
	if (!skb) {
		rail->tx_busy++;
		return ERR_PTR(-ENOBUFS);
	}
	skb_reserve(skb, LL_RESERVED_SPACE(ndev));
	skb_reset_network_header(skb);
	*token = skb;
	return skb_put(skb, len);
}

/* Sends (or frees) the skb of tbrdma_eth_frame_get, holding a frame of len bytes. */
int tbrdma_eth_frame_commit(struct tbrdma_rail *rail, struct sk_buff *skb, size_t len)
{
	struct net_device *ndev = rail->netdev;
	int ret;

	skb_trim(skb, len);
	skb->dev = ndev;
	skb->protocol = htons(TBRDMA_ETHERTYPE);
	if (dev_hard_header(skb, ndev, TBRDMA_ETHERTYPE, rail->peer_mac, ndev->dev_addr,
			    skb->len) < 0) {
		kfree_skb(skb);
		return -EINVAL;
	}
	ret = dev_queue_xmit(skb);
	if (ret != NET_XMIT_SUCCESS) {
		rail->tx_busy++;
		return -ENOBUFS;
	}
	rail->tx_frames++;
	return 0;
}

/* Control frames, built in the core's own buffer. */
int tbrdma_eth_xmit(struct tbrdma_rail *rail, const void *frame, size_t len)
{
	struct sk_buff *skb;
	void *data = tbrdma_eth_frame_get(rail, len, &skb);

	if (IS_ERR(data))
		return PTR_ERR(data);
	memcpy(data, frame, len);
	return tbrdma_eth_frame_commit(rail, skb, len);
}
