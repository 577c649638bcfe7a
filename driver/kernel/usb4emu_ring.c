// SPDX-License-Identifier: GPL-2.0-only
/*
 * tbrdma_usb4emu (test-only): rings, HopIDs and DMA paths of the emulated USB4 host
 * interface (see usb4emu.c for what is modelled and why).
 */
#include <linux/dma-mapping.h>
#include <linux/slab.h>

#include "compat.h"
#include "usb4emu.h"

#if IS_REACHABLE(CONFIG_USB4)

/* ---- rings ---- */

static void emu_fire_irq(struct emu_ring *er)
{
	lockdep_assert_held(&er->ring.lock);
	er->irq_enabled = false;	/* masked until poll_complete, as the NHI does */
	er->last_irq = ktime_get();
	if (er->ring.start_poll)
		er->ring.start_poll(er->ring.poll_data);
	else
		queue_work(system_highpri_wq, &er->work);
}

/* Completed RX frames wait for the ring's next interrupt, at most one per throttle. */
static void emu_raise_irq(struct emu_ring *er)
{
	ktime_t due;

	lockdep_assert_held(&er->ring.lock);
	if (!er->irq_enabled || hrtimer_active(&er->irq_timer))
		return;
	due = ktime_add_ns(er->last_irq, er->throttle_ns);
	if (ktime_compare(ktime_get(), due) >= 0)
		emu_fire_irq(er);
	else
		hrtimer_start(&er->irq_timer, due, HRTIMER_MODE_ABS);
}

static enum hrtimer_restart emu_irq_timer(struct hrtimer *timer)
{
	struct emu_ring *er = container_of(timer, struct emu_ring, irq_timer);
	unsigned long flags;

	spin_lock_irqsave(&er->ring.lock, flags);
	if (er->ring.running && er->irq_enabled && !list_empty(&er->done))
		emu_fire_irq(er);
	spin_unlock_irqrestore(&er->ring.lock, flags);
	return HRTIMER_NORESTART;
}

/* The receiver's side of E2E: free buffers and the last frame seen, to the sender. */
static void emu_credit_work(struct work_struct *work)
{
	struct emu_ring *er = container_of(work, struct emu_ring, credit_work);
	struct emu_xd *exd = er->exd;
	u32 free = 0, seen;
	struct list_head *pos;
	int hopid = -1, i;

	spin_lock_bh(&exd->lock);
	for (i = EMU_MIN_HOPID; i <= EMU_MAX_HOPID; i++)
		if (exd->in_path[i] == er->ring.hop)
			hopid = i;
	spin_unlock_bh(&exd->lock);
	spin_lock_irq(&er->ring.lock);
	list_for_each(pos, &er->posted)
		free++;
	seen = er->seq;
	spin_unlock_irq(&er->ring.lock);
	if (hopid >= 0 && !exd->dead)
		emu_send(exd->cable, EMU_CREDIT, hopid, seen, free, NULL, 0, GFP_KERNEL);
}

/*
 * E2E: room in the receiver's ring, from its latest credit: the buffers it had posted less
 * what we sent since the last frame it had seen. A credit from before the receiver's ring
 * restarted (it saw nothing of ours yet) counts nothing in flight.
 */
static bool emu_tx_may_send(struct emu_ring *er)
{
	u32 in_flight = er->seq - er->peer_seen;

	if (!(er->ring.flags & RING_FLAG_E2E))
		return true;
	if (in_flight > 4 * (u32)er->ring.size)
		in_flight = 0;
	return er->peer_credit && er->peer_free > in_flight;
}

/* TX: sends what is queued (rate-capped, within E2E credit), then completes each frame. */
static void emu_tx_work(struct work_struct *work)
{
	struct emu_ring *er = container_of(work, struct emu_ring, work);
	struct emu_xd *exd = er->exd;
	u64 next_ns = 0;

	for (;;) {
		struct ring_frame *frame;
		u32 len, seq;
		int hop;
		u64 now = ktime_get_ns();

		if (next_ns > now) {
			u64 wait_us = div_u64(next_ns - now, 1000);

			usleep_range(wait_us, wait_us + 20);
		}
		spin_lock_irq(&er->ring.lock);
		frame = list_first_entry_or_null(&er->posted, struct ring_frame, list);
		if (!er->ring.running || !frame) {
			spin_unlock_irq(&er->ring.lock);
			return;
		}
		hop = er->out_hopid;
		if (hop >= 0 && !emu_tx_may_send(er)) {
			er->e2e_waits++;
			spin_unlock_irq(&er->ring.lock);
			return;		/* a credit queues us again */
		}
		list_del(&frame->list);
		seq = ++er->seq;
		spin_unlock_irq(&er->ring.lock);

		len = frame->size ? frame->size : EMU_FRAME_SIZE;
		if (hop < 0 || exd->dead)
			er->no_path++;	/* no path: the frame leaves and goes nowhere */
		else if (!emu_send(exd->cable, EMU_DATA, hop, seq,
				   frame->sof << 8 | frame->eof,
				   emu_buf(frame), len,
				   GFP_KERNEL))
			er->frames++;
		if (emu_ring_mbps)
			next_ns = max(now, next_ns) + div_u64((u64)len * 8 * 1000, emu_ring_mbps);
		if (frame->callback)
			frame->callback(&er->ring, frame, false);
	}
}

/* RX in callback mode: completed frames go to their callbacks. */
static void emu_rx_complete_work(struct work_struct *work)
{
	struct emu_ring *er = container_of(work, struct emu_ring, work);
	struct ring_frame *frame;

	for (;;) {
		spin_lock_irq(&er->ring.lock);
		frame = list_first_entry_or_null(&er->done, struct ring_frame, list);
		if (frame)
			list_del(&frame->list);
		else
			er->irq_enabled = true;
		spin_unlock_irq(&er->ring.lock);
		if (!frame)
			return;
		if (frame->callback)
			frame->callback(&er->ring, frame, false);
	}
}

static struct tb_ring *emu_ring_alloc(struct emu_xd *exd, bool tx, int size,
				      unsigned int flags)
{
	struct ida *hops = tx ? &exd->tx_hops : &exd->rx_hops;
	struct emu_ring *er;
	int hop;

	er = kzalloc(sizeof(*er), GFP_KERNEL);
	if (!er)
		return NULL;
	hop = ida_alloc_range(hops, 1, EMU_RING_HOPS - 1, GFP_KERNEL);
	if (hop < 0) {
		kfree(er);
		return NULL;
	}
	spin_lock_init(&er->ring.lock);
	er->ring.size = size;
	er->ring.hop = hop;
	er->ring.is_tx = tx;
	er->ring.flags = flags;
	er->exd = exd;
	er->out_hopid = -1;
	er->throttle_ns = emu_irq_throttle_us * NSEC_PER_USEC;
	INIT_LIST_HEAD(&er->posted);
	INIT_LIST_HEAD(&er->done);
	INIT_WORK(&er->work, tx ? emu_tx_work : emu_rx_complete_work);
	INIT_WORK(&er->credit_work, emu_credit_work);
	tbrdma_hrtimer_setup(&er->irq_timer, emu_irq_timer, CLOCK_MONOTONIC, HRTIMER_MODE_ABS);
	spin_lock_bh(&exd->lock);
	if (tx)
		exd->tx_rings[hop] = er;
	else
		exd->rx_rings[hop] = er;
	spin_unlock_bh(&exd->lock);
	return &er->ring;
}

struct tb_ring *emu_ring_alloc_tx(struct tb_xdomain *xd, int size, unsigned int flags)
{
	return emu_ring_alloc(to_emu_xd(xd), true, size, flags);
}

struct tb_ring *emu_ring_alloc_rx(struct tb_xdomain *xd, int size, unsigned int flags,
				  int e2e_tx_hop, u16 sof_mask, u16 eof_mask,
				  void (*start_poll)(void *), void *poll_data)
{
	struct tb_ring *ring = emu_ring_alloc(to_emu_xd(xd), false, size, flags);

	if (ring) {
		ring->e2e_tx_hop = e2e_tx_hop;
		ring->sof_mask = sof_mask;
		ring->eof_mask = eof_mask;
		ring->start_poll = start_poll;
		ring->poll_data = poll_data;
	}
	return ring;
}

void emu_ring_start(struct tb_ring *ring)
{
	struct emu_ring *er = to_emu_ring(ring);

	spin_lock_irq(&ring->lock);
	ring->running = true;
	er->irq_enabled = true;
	er->seq = 0;
	er->peer_credit = false;
	spin_unlock_irq(&ring->lock);
}

/* Queued frames come back canceled, as the NHI's ring stop does. */
void emu_ring_stop(struct tb_ring *ring)
{
	struct emu_ring *er = to_emu_ring(ring);
	struct ring_frame *frame, *next;
	LIST_HEAD(canceled);

	spin_lock_irq(&ring->lock);
	ring->running = false;
	list_splice_init(&er->posted, &canceled);
	list_splice_tail_init(&er->done, &canceled);
	spin_unlock_irq(&ring->lock);
	hrtimer_cancel(&er->irq_timer);
	cancel_work_sync(&er->work);
	cancel_work_sync(&er->credit_work);
	list_for_each_entry_safe(frame, next, &canceled, list) {
		list_del(&frame->list);
		if (frame->callback)
			frame->callback(ring, frame, true);
	}
}

void emu_ring_free(struct tb_ring *ring)
{
	struct emu_ring *er = to_emu_ring(ring);
	struct emu_xd *exd = er->exd;

	if (ring->running)
		emu_ring_stop(ring);
	spin_lock_bh(&exd->lock);
	if (ring->is_tx)
		exd->tx_rings[ring->hop] = NULL;
	else
		exd->rx_rings[ring->hop] = NULL;
	spin_unlock_bh(&exd->lock);
	ida_free(ring->is_tx ? &exd->tx_hops : &exd->rx_hops, ring->hop);
	/* The receive handler may still hold it under RCU. */
	synchronize_rcu();
	kfree(er);
}

int emu_ring_enqueue(struct tb_ring *ring, struct ring_frame *frame)
{
	struct emu_ring *er = to_emu_ring(ring);
	unsigned long flags;
	int ret = 0;

	spin_lock_irqsave(&ring->lock, flags);
	if (!ring->running) {
		ret = -ESHUTDOWN;
	} else {
		list_add_tail(&frame->list, &er->posted);
		if (ring->is_tx)
			queue_work(system_highpri_wq, &er->work);
		else if (ring->flags & RING_FLAG_E2E)
			queue_work(system_highpri_wq, &er->credit_work);
	}
	spin_unlock_irqrestore(&ring->lock, flags);
	return ret;
}

struct ring_frame *emu_ring_poll(struct tb_ring *ring)
{
	struct emu_ring *er = to_emu_ring(ring);
	struct ring_frame *frame;
	unsigned long flags;

	spin_lock_irqsave(&ring->lock, flags);
	frame = ring->running ? list_first_entry_or_null(&er->done, struct ring_frame, list) :
		NULL;
	if (frame)
		list_del(&frame->list);
	spin_unlock_irqrestore(&ring->lock, flags);
	return frame;
}

void emu_ring_poll_complete(struct tb_ring *ring)
{
	struct emu_ring *er = to_emu_ring(ring);
	unsigned long flags;

	spin_lock_irqsave(&ring->lock, flags);
	er->irq_enabled = true;
	if (ring->running && !list_empty(&er->done))
		emu_raise_irq(er);
	spin_unlock_irqrestore(&ring->lock, flags);
}

int emu_ring_throttling(struct tb_ring *ring, unsigned int interval_nsec)
{
	if (WARN_ON_ONCE(ring->running))
		return -EBUSY;
	to_emu_ring(ring)->throttle_ns = interval_nsec;
	return 0;
}

struct device *emu_ring_dma_device(struct tb_ring *ring)
{
	return &emu_pdev->dev;
}

/* ---- HopIDs and paths ---- */

static int emu_alloc_hopid(struct ida *ida, int hopid)
{
	if (hopid < 0)
		return ida_alloc_range(ida, EMU_MIN_HOPID, EMU_MAX_HOPID, GFP_KERNEL);
	if (hopid < EMU_MIN_HOPID || hopid > EMU_MAX_HOPID)
		return -EINVAL;
	return ida_alloc_range(ida, hopid, hopid, GFP_KERNEL);
}

int emu_alloc_in_hopid(struct tb_xdomain *xd, int hopid)
{
	return emu_alloc_hopid(&to_emu_xd(xd)->in_hopids, hopid);
}

int emu_alloc_out_hopid(struct tb_xdomain *xd, int hopid)
{
	return emu_alloc_hopid(&to_emu_xd(xd)->out_hopids, hopid);
}

void emu_release_in_hopid(struct tb_xdomain *xd, int hopid)
{
	if (hopid >= 0)
		ida_free(&to_emu_xd(xd)->in_hopids, hopid);
}

void emu_release_out_hopid(struct tb_xdomain *xd, int hopid)
{
	if (hopid >= 0)
		ida_free(&to_emu_xd(xd)->out_hopids, hopid);
}

static bool emu_path_args_ok(int transmit_path, int transmit_ring, int receive_path,
			     int receive_ring)
{
	return transmit_path >= EMU_MIN_HOPID && transmit_path <= EMU_MAX_HOPID &&
	       receive_path >= EMU_MIN_HOPID && receive_path <= EMU_MAX_HOPID &&
	       transmit_ring > 0 && transmit_ring < EMU_RING_HOPS &&
	       receive_ring > 0 && receive_ring < EMU_RING_HOPS;
}

int emu_enable_paths(struct tb_xdomain *xd, int transmit_path, int transmit_ring,
		     int receive_path, int receive_ring)
{
	struct emu_xd *exd = to_emu_xd(xd);
	struct emu_ring *tx, *rx;

	if (!emu_path_args_ok(transmit_path, transmit_ring, receive_path, receive_ring))
		return -EINVAL;
	spin_lock_bh(&exd->lock);
	tx = exd->tx_rings[transmit_ring];
	rx = exd->rx_rings[receive_ring];
	if (tx && rx && !exd->dead) {
		spin_lock_irq(&tx->ring.lock);
		tx->out_hopid = transmit_path;
		tx->peer_credit = false;
		spin_unlock_irq(&tx->ring.lock);
		exd->in_path[receive_path] = receive_ring;
	}
	spin_unlock_bh(&exd->lock);
	if (!tx || !rx || exd->dead)
		return -ENOTCONN;
	if (rx->ring.flags & RING_FLAG_E2E)
		queue_work(system_highpri_wq, &rx->credit_work);
	return 0;
}

int emu_disable_paths(struct tb_xdomain *xd, int transmit_path, int transmit_ring,
		      int receive_path, int receive_ring)
{
	struct emu_xd *exd = to_emu_xd(xd);
	int i;

	if (!emu_path_args_ok(transmit_path, transmit_ring, receive_path, receive_ring))
		return -EINVAL;
	spin_lock_bh(&exd->lock);
	for (i = 1; i < EMU_RING_HOPS; i++) {
		struct emu_ring *tx = exd->tx_rings[i];

		if (tx && (emu_fw_cm || i == transmit_ring)) {
			spin_lock_irq(&tx->ring.lock);
			tx->out_hopid = -1;
			spin_unlock_irq(&tx->ring.lock);
		}
	}
	for (i = EMU_MIN_HOPID; i <= EMU_MAX_HOPID; i++)
		if (emu_fw_cm || i == receive_path)
			exd->in_path[i] = 0;
	spin_unlock_bh(&exd->lock);
	return 0;
}

/* Credits again for every E2E receive ring with a path: one lost on the wire costs 200 ms. */
void emu_refresh_credits(struct emu_xd *exd)
{
	int i;

	spin_lock_bh(&exd->lock);
	for (i = 1; i < EMU_RING_HOPS; i++) {
		struct emu_ring *rx = exd->rx_rings[i];

		if (rx && rx->ring.running && (rx->ring.flags & RING_FLAG_E2E))
			queue_work(system_highpri_wq, &rx->credit_work);
	}
	spin_unlock_bh(&exd->lock);
}

/* ---- frames from the wire ---- */

/* A DATA frame for input HopID hop: into the next posted buffer of the path's RX ring. */
void emu_rx_data(struct emu_xd *exd, u16 hop, u32 seq, u32 pdf, const void *payload,
		 u32 len)
{
	struct ring_frame *frame;
	struct emu_ring *er;
	unsigned long flags;

	if (hop > EMU_MAX_HOPID || len > EMU_FRAME_SIZE || !len)
		return;
	spin_lock(&exd->lock);
	er = exd->in_path[hop] ? exd->rx_rings[exd->in_path[hop]] : NULL;
	spin_unlock(&exd->lock);
	if (!er)
		return;		/* no path: the frame is dropped at the adapter */
	/* irqsave: the ring's throttle timer takes this lock in hard interrupt context. */
	spin_lock_irqsave(&er->ring.lock, flags);
	if (!er->ring.running)
		goto out;
	if ((s32)(seq - er->seq) > 0)
		er->seq = seq;
	frame = list_first_entry_or_null(&er->posted, struct ring_frame, list);
	if (!frame) {
		er->overruns++;
		goto out;
	}
	list_del(&frame->list);
	memcpy(emu_buf(frame), payload, len);
	frame->size = len == EMU_FRAME_SIZE ? 0 : len;
	frame->flags = RING_DESC_COMPLETED;
	frame->sof = (pdf >> 8) & 0xf;
	frame->eof = pdf & 0xf;
	er->frames++;
	list_add_tail(&frame->list, &er->done);
	emu_raise_irq(er);
out:
	spin_unlock_irqrestore(&er->ring.lock, flags);
}

/* A CREDIT from the peer's RX ring behind our path to its input HopID hop. */
void emu_rx_credit(struct emu_xd *exd, u16 hop, u32 seen, u32 free)
{
	unsigned long flags;
	int i;

	spin_lock(&exd->lock);
	for (i = 1; i < EMU_RING_HOPS; i++) {
		struct emu_ring *tx = exd->tx_rings[i];

		if (!tx || tx->out_hopid != hop)
			continue;
		spin_lock_irqsave(&tx->ring.lock, flags);
		tx->peer_free = free;
		tx->peer_seen = seen;
		tx->peer_credit = true;
		if (tx->ring.running && !list_empty(&tx->posted))
			queue_work(system_highpri_wq, &tx->work);
		spin_unlock_irqrestore(&tx->ring.lock, flags);
	}
	spin_unlock(&exd->lock);
}

#endif
