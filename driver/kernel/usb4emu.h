/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * tbrdma_usb4emu (test-only): the emulated USB4 host interface's shared types. usb4emu.c
 * has the wire, the control channel, discovery and the module; usb4emu_ring.c the rings,
 * HopIDs and paths; usb4emu_net.c the thunderbolt-net stand-in.
 */
#ifndef TBRDMA_USB4EMU_H
#define TBRDMA_USB4EMU_H

#include <linux/hrtimer.h>
#include <linux/idr.h>
#include <linux/netdevice.h>
#include <linux/platform_device.h>
#include <linux/uuid.h>
#include <linux/workqueue.h>

#include "rail_tb_ops.h"


#define EMU_ETH_P		0x88b6		/* IEEE 802 local experimental EtherType 2 */
#define EMU_MAX_CABLES		4
#define EMU_MIN_HOPID		8
#define EMU_MAX_HOPID		31
#define EMU_RING_HOPS		32
#define EMU_FRAME_SIZE		4096
#define EMU_CTL_MAX		256
#define EMU_HELLO_MS		200
#define EMU_PEER_TIMEOUT_MS	2000
#define EMU_NET_HOPID		EMU_MIN_HOPID	/* the thunderbolt-net stand-in's, both ends */

/* module parameters (usb4emu.c) */
extern unsigned int emu_ring_mbps;
extern unsigned int emu_irq_throttle_us;
extern bool emu_fw_cm;

enum emu_kind { EMU_HELLO = 1, EMU_BYE, EMU_CTL, EMU_DATA, EMU_CREDIT };

/* On the wire after the Ethernet header; every field is checked before use. */
struct emu_hdr {
	u8 kind;
	u8 cable;		/* the sender's cable index */
	__be16 hop;		/* DATA: destination HopID; CREDIT: the receiver's HopID */
	__be32 seq;		/* DATA: per-ring sequence; CREDIT: last sequence seen */
	__be32 arg;		/* DATA: sof << 8 | eof; CTL: package type; CREDIT: free buffers */
	__be32 len;		/* payload bytes */
	u8 uuid[16];		/* sender's host UUID */
} __packed;

struct emu_xd;
struct emu_net;

struct emu_ring {
	struct tb_ring ring;		/* what the rail holds; ring.lock guards the lists */
	struct emu_xd *exd;
	struct list_head posted;	/* TX: to send; RX: empty buffers */
	struct list_head done;		/* RX: completed, for ring_poll / callbacks */
	struct work_struct work;	/* TX: sends; RX without start_poll: completes */
	struct hrtimer irq_timer;	/* RX: a throttled interrupt */
	ktime_t last_irq;
	unsigned int throttle_ns;
	bool irq_enabled;		/* RX polling mode: off from interrupt to poll_complete */
	int out_hopid;			/* TX: path to the peer's input HopID, or -1 */
	u32 seq;			/* TX: last sent; RX: last seen */
	u32 peer_free, peer_seen;	/* TX with E2E: the receiver's latest credit */
	bool peer_credit;		/* a credit arrived since the path came up */
	u64 frames, overruns, no_path, e2e_waits;
	struct work_struct credit_work;	/* RX with E2E: tell the sender what is posted */
};

struct emu_xd {
	struct tb_xdomain xd;
	uuid_t remote_uuid;
	struct emu_cable *cable;
	struct tbrdma_tb_service *ts;	/* under lock; NULL while tbrdma is not loaded */
	struct completion detached;	/* tbrdma unloading unbound ts itself */
	struct emu_net *net;		/* the thunderbolt-net stand-in (usb4emu_net.c) */
	struct ida in_hopids, out_hopids, tx_hops, rx_hops;
	spinlock_t lock;		/* the tables below */
	struct emu_ring *tx_rings[EMU_RING_HOPS];
	struct emu_ring *rx_rings[EMU_RING_HOPS];
	u8 in_path[EMU_MAX_HOPID + 1];	/* input HopID -> RX ring hop (0: none) */
	struct mutex request_lock;
	struct completion request_done;
	const void *request;		/* the pending request, NULL if none */
	void *response;
	size_t response_size;
	bool dead;			/* unplugged: nothing goes in or out */
};

struct emu_cable {
	unsigned int index;
	uuid_t uuid;			/* this end's host router (domain) */
	struct net_device *ndev;
	struct packet_type ptype;
	struct delayed_work hello_work;
	struct work_struct plug_work;
	spinlock_t lock;
	u8 peer_mac[ETH_ALEN];
	uuid_t peer_uuid;
	unsigned int peer_index;
	unsigned long peer_seen;	/* jiffies of the last HELLO */
	bool peer_known;
	struct emu_xd __rcu *exd;
	struct mutex plug_lock;		/* plug/unplug */
};

extern struct platform_device *emu_pdev;

static inline struct emu_ring *to_emu_ring(struct tb_ring *ring)
{
	return container_of(ring, struct emu_ring, ring);
}

static inline struct emu_xd *to_emu_xd(struct tb_xdomain *xd)
{
	return container_of(xd, struct emu_xd, xd);
}

/*
 * A ring buffer's CPU address. The DMA device is a platform device with direct mapping and
 * the lab guests have no IOMMU, so a DMA address is the physical one (checked at load).
 */
static inline void *emu_buf(const struct ring_frame *frame)
{
	return phys_to_virt((phys_addr_t)frame->buffer_phy);
}

struct tb_ring *emu_ring_alloc_tx(struct tb_xdomain *xd, int size, unsigned int flags);
struct tb_ring *emu_ring_alloc_rx(struct tb_xdomain *xd, int size, unsigned int flags,
				  int e2e_tx_hop, u16 sof_mask, u16 eof_mask,
				  void (*start_poll)(void *), void *poll_data);
void emu_ring_start(struct tb_ring *ring);
void emu_ring_stop(struct tb_ring *ring);
void emu_ring_free(struct tb_ring *ring);
int emu_ring_enqueue(struct tb_ring *ring, struct ring_frame *frame);
struct ring_frame *emu_ring_poll(struct tb_ring *ring);
void emu_ring_poll_complete(struct tb_ring *ring);
int emu_ring_throttling(struct tb_ring *ring, unsigned int interval_nsec);
struct device *emu_ring_dma_device(struct tb_ring *ring);
int emu_alloc_in_hopid(struct tb_xdomain *xd, int hopid);
int emu_alloc_out_hopid(struct tb_xdomain *xd, int hopid);
void emu_release_in_hopid(struct tb_xdomain *xd, int hopid);
void emu_release_out_hopid(struct tb_xdomain *xd, int hopid);
int emu_enable_paths(struct tb_xdomain *xd, int transmit_path, int transmit_ring,
		     int receive_path, int receive_ring);
int emu_disable_paths(struct tb_xdomain *xd, int transmit_path, int transmit_ring,
		      int receive_path, int receive_ring);
void emu_rx_data(struct emu_xd *exd, u16 hop, u32 seq, u32 pdf, const void *payload,
		 u32 len);
void emu_rx_credit(struct emu_xd *exd, u16 hop, u32 seen, u32 free);
void emu_refresh_credits(struct emu_xd *exd);
struct emu_net *emu_net_add(struct emu_xd *exd);
void emu_net_remove(struct emu_net *net);
int emu_send(struct emu_cable *cable, u8 kind, u16 hop, u32 seq, u32 arg,
	     const void *payload, u32 len, gfp_t gfp);

#endif
