// SPDX-License-Identifier: GPL-2.0-only
/*
 * Thunderbolt/USB4 rails: the tbrdma service on an XDomain, in the manner of thunderbolt-net
 * (drivers/net/thunderbolt/main.c), on whatever host interface bound it (rail_tb_ops.h: the
 * real NHI through rail_tb_nhi.c, or the lab's emulation).
 *
 * Per XDomain: tb_ring_pairs ring pairs, each its own rail "tb:<peer UUID>@<XDomain>/<k>".
 * A pair is a TX and an RX ring (frame mode, one protocol frame per 4 KiB ring frame, E2E
 * flow control), an input HopID the peer transmits to, and a login exchange over the
 * XDomain control channel in which each side announces the pair's input HopID. Once a
 * pair's login went through, each side allocates the peer's HopID as the pair's output
 * HopID, starts the rings and enables the DMA paths. Several pairs are what uses both lanes
 * of a cable: one ring's DMA runs on one lane's worth of bandwidth (~10 Gb/s per ring in
 * the research driver's measurements).
 *
 * Receive is polled, NAPI-style: the RX ring's interrupt schedules rx_work, which takes up
 * to a budget of completed frames into the core as one batch (one core tick per batch),
 * re-posts them and re-arms the interrupt only when the ring is drained.
 *
 * Rails are wanted by name (configfs add_rail "tb:<uuid>", "tb:<uuid>@<XDomain>" or a pair's
 * full name): a wish outlives the XDomain, so after an unplug, a peer reboot or a reload of
 * the host interface the pairs that come back join their device by themselves.
 */
#include <linux/dma-mapping.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/uuid.h>

#include "rail_tb.h"

#if IS_REACHABLE(CONFIG_USB4)

static bool tb_e2e = true;
module_param(tb_e2e, bool, 0444);
MODULE_PARM_DESC(tb_e2e, "End-to-end flow control on the rings (default on)");

static unsigned int tb_irq_throttle_ns = 16000;
module_param(tb_irq_throttle_ns, uint, 0444);
MODULE_PARM_DESC(tb_irq_throttle_ns,
		 "RX ring interrupt throttle where the kernel lets drivers set it (default 16 us)");

/*
 * Which connection manager sets up the XDomain's DMA paths. A firmware one (ICM, on Intel
 * Thunderbolt 3 hosts and some Apple/Intel USB4 ones) drops every path of the XDomain when
 * any service disables one of its own, thunderbolt-net's included; a software one (the
 * kernel's, on every USB4 host it runs) drops only the path it is told. "auto" tells them
 * apart as the thunderbolt driver creates the XDomain: the firmware hands it the peer's
 * UUID, the software CM asks the peer for it (xd->needs_uuid).
 */
enum { TB_CM_AUTO, TB_CM_SOFTWARE, TB_CM_FIRMWARE };
static const char *const tb_cm_names[] = { "auto", "software", "firmware" };
static int tb_cm = TB_CM_AUTO;

static int tb_cm_set(const char *val, const struct kernel_param *kp)
{
	int i = sysfs_match_string(tb_cm_names, val);

	if (i < 0) {
		pr_err("tbrdma: tb_cm=%s: expected auto, software or firmware\n", val);
		return -EINVAL;
	}
	WRITE_ONCE(tb_cm, i);
	return 0;
}

static int tb_cm_get(char *buf, const struct kernel_param *kp)
{
	return scnprintf(buf, PAGE_SIZE, "%s\n", tb_cm_names[READ_ONCE(tb_cm)]);
}

static const struct kernel_param_ops tb_cm_ops = { .set = tb_cm_set, .get = tb_cm_get };
module_param_cb(tb_cm, &tb_cm_ops, NULL, 0644);
MODULE_PARM_DESC(tb_cm, "Connection manager of the XDomains' paths: auto (default), software or firmware");

/* Decided once per XDomain, at bind. */
bool tbrdma_tb_firmware_cm(const struct tb_xdomain *xd)
{
	int cm = READ_ONCE(tb_cm);

	return cm == TB_CM_AUTO ? !xd->needs_uuid : cm == TB_CM_FIRMWARE;
}

/* Login/logout messages on the control channel: 7a6bb0eb-2e6f-474a-a753-68a79552541b */
const uuid_t tbrdma_tb_proto_uuid =
	UUID_INIT(0x7a6bb0eb, 0x2e6f, 0x474a, 0xa7, 0x53, 0x68, 0xa7, 0x95, 0x52, 0x54, 0x1b);

void tbrdma_tb_release(struct kref *kref)
{
	struct tbrdma_tb_service *ts = container_of(kref, struct tbrdma_tb_service, kref);
	unsigned int i;

	for (i = 0; i < ts->npairs; i++) {
		kfree(ts->pairs[i].tx_free);
		kfree(ts->pairs[i].tx_frames);
		kfree(ts->pairs[i].rx_frames);
	}
	kfree(ts);
}

static struct device *tbrdma_tb_dma_dev(struct tbrdma_tb_pair *pair, struct tb_ring *ring)
{
	return pair->ts->ops->ring_dma_device(ring);
}

/* ---- data path ---- */

/*
 * The next free TX ring frame, for a frame of len bytes built straight in its buffer, or an
 * ERR_PTR (-ENOBUFS: the ring is full, a completion kicks the core). Called with the device
 * lock held and BHs off: never sleeps. The frame must go to tbrdma_tb_frame_commit().
 */
void *tbrdma_tb_frame_get(struct tbrdma_rail *rail, size_t len, void **token)
{
	struct tbrdma_tb_pair *pair = rail->tb;
	struct tbrdma_tb_frame *tf = NULL;
	unsigned long flags;
	void *buf;

	spin_lock_irqsave(&pair->tx_lock, flags);
	if (!pair->tx_ready) {
		buf = ERR_PTR(-ENETDOWN);
	} else if (len > pair->max_frame) {
		buf = ERR_PTR(-EMSGSIZE);
	} else if (!pair->tx_nfree) {
		pair->tx_stalled = true;
		rail->tx_busy++;
		buf = ERR_PTR(-ENOBUFS);
	} else {
		tf = &pair->tx_frames[pair->tx_free[--pair->tx_nfree]];
		tf->gen = pair->tx_gen;
		*token = tf;
		buf = tf->buf;
	}
	spin_unlock_irqrestore(&pair->tx_lock, flags);
	if (!IS_ERR(buf))
		dma_sync_single_for_cpu(tbrdma_tb_dma_dev(pair, pair->tx_ring),
					tf->frame.buffer_phy, len, DMA_TO_DEVICE);
	return buf;
}

/* Queues a frame from tbrdma_tb_frame_get() on the ring; len <= the length asked for. */
int tbrdma_tb_frame_commit(struct tbrdma_rail *rail, void *token, size_t len)
{
	struct tbrdma_tb_pair *pair = rail->tb;
	struct tbrdma_tb_frame *tf = token;
	unsigned long flags;
	int err = 0;

	dma_sync_single_for_device(tbrdma_tb_dma_dev(pair, pair->tx_ring), tf->frame.buffer_phy,
				   len, DMA_TO_DEVICE);
	/* The descriptor's 12-bit size: 0 stands for a full 4096-byte frame. */
	tf->frame.size = len == TBRDMA_TB_FRAME_SIZE ? 0 : len;
	spin_lock_irqsave(&pair->tx_lock, flags);
	if (!pair->tx_ready || tf->gen != pair->tx_gen) {
		/* Paths went down since frame_get; a reconnect rebuilt the free list. */
		err = -ENETDOWN;
	} else if (pair->ts->ops->ring_enqueue(pair->tx_ring, &tf->frame)) {
		/* Only a stopped ring refuses; tx_ready drops with it. */
		pair->tx_free[pair->tx_nfree++] = tf->index;
		err = -ENETDOWN;
	} else {
		rail->tx_frames++;
	}
	spin_unlock_irqrestore(&pair->tx_lock, flags);
	return err;
}

int tbrdma_tb_xmit(struct tbrdma_rail *rail, const void *frame, size_t len)
{
	void *token, *buf = tbrdma_tb_frame_get(rail, len, &token);

	if (IS_ERR(buf))
		return PTR_ERR(buf);
	memcpy(buf, frame, len);
	return tbrdma_tb_frame_commit(rail, token, len);
}

/* The core may be waiting for ring space: run it now instead of at its next deadline. */
static void tbrdma_tb_kick(struct tbrdma_tb_pair *pair)
{
	spin_lock_bh(&pair->rx_lock);
	if (pair->rail)
		tbrdma_link_kick(pair->rail->tdev);
	spin_unlock_bh(&pair->rx_lock);
}

/* TX completion (ring work, process context), or cancellation when the ring stops. */
static void tbrdma_tb_tx_done(struct tb_ring *ring, struct ring_frame *frame, bool canceled)
{
	struct tbrdma_tb_frame *tf = container_of(frame, struct tbrdma_tb_frame, frame);
	struct tbrdma_tb_pair *pair = tf->pair;
	unsigned long flags;
	bool kick = false;

	spin_lock_irqsave(&pair->tx_lock, flags);
	/* A frame of an earlier connection: the free list was rebuilt without it. */
	if (tf->gen == pair->tx_gen &&
	    !WARN_ON_ONCE(pair->tx_nfree >= TBRDMA_TB_RING_SIZE)) {
		pair->tx_free[pair->tx_nfree++] = tf->index;
		kick = pair->tx_stalled && !canceled;
		pair->tx_stalled = false;
	}
	spin_unlock_irqrestore(&pair->tx_lock, flags);
	if (kick)
		tbrdma_tb_kick(pair);
}

/* The RX ring's interrupt (hard IRQ on a real NHI): poll from process context. */
static void tbrdma_tb_start_poll(void *data)
{
	struct tbrdma_tb_pair *pair = data;

	queue_work(system_highpri_wq, &pair->rx_work);
}

/*
 * Takes up to a budget of completed RX frames into the core as one batch, re-posting each;
 * re-arms the interrupt only when the ring had no more.
 */
void tbrdma_tb_rx_work(struct work_struct *work)
{
	struct tbrdma_tb_pair *pair = container_of(work, struct tbrdma_tb_pair, rx_work);
	const struct tbrdma_tb_ops *ops = pair->ts->ops;
	struct device *dma_dev = tbrdma_tb_dma_dev(pair, pair->rx_ring);
	struct ring_frame *frame;
	struct tbrdma_rail *rail;
	int n = 0;

	spin_lock_bh(&pair->rx_lock);
	rail = pair->rail;
	if (rail)
		tbrdma_link_rx_begin(rail->tdev);
	while (n < TBRDMA_TB_POLL_BUDGET && (frame = ops->ring_poll(pair->rx_ring))) {
		struct tbrdma_tb_frame *tf = container_of(frame, struct tbrdma_tb_frame, frame);
		int len = tbrdma_tb_rx_frame_len(frame->size, frame->flags & RING_DESC_CRC_ERROR,
						 frame->flags & RING_DESC_BUFFER_OVERRUN,
						 TBRDMA_TB_FRAME_SIZE);

		n++;
		dma_sync_single_for_cpu(dma_dev, frame->buffer_phy, TBRDMA_TB_FRAME_SIZE,
					DMA_FROM_DEVICE);
		if (len < 0) {
			pair->rx_errors++;
		} else if (rail) {
			rail->rx_frames++;
			tbrdma_link_rx_one(rail, tf->buf, len);
		}
		dma_sync_single_for_device(dma_dev, frame->buffer_phy, TBRDMA_TB_FRAME_SIZE,
					   DMA_FROM_DEVICE);
		ops->ring_enqueue(pair->rx_ring, frame);	/* -ESHUTDOWN once stopped: fine */
	}
	if (rail)
		tbrdma_link_rx_end(rail->tdev);
	pair->rx_polls++;
	spin_unlock_bh(&pair->rx_lock);
	if (n == TBRDMA_TB_POLL_BUDGET)
		queue_work(system_highpri_wq, &pair->rx_work);
	else
		ops->ring_poll_complete(pair->rx_ring);
}

/* ---- rings and frame buffers ---- */

static void tbrdma_tb_free_frames(struct tbrdma_tb_pair *pair, struct tbrdma_tb_frame *frames,
				  struct tb_ring *ring, enum dma_data_direction dir)
{
	struct device *dma_dev = tbrdma_tb_dma_dev(pair, ring);
	int i;

	for (i = 0; i < TBRDMA_TB_RING_SIZE; i++) {
		struct tbrdma_tb_frame *tf = &frames[i];

		if (!tf->buf)
			continue;
		dma_unmap_single(dma_dev, tf->frame.buffer_phy, TBRDMA_TB_FRAME_SIZE, dir);
		kfree(tf->buf);
		tf->buf = NULL;
	}
}

static int tbrdma_tb_alloc_frames(struct tbrdma_tb_pair *pair, struct tbrdma_tb_frame *frames,
				  struct tb_ring *ring, enum dma_data_direction dir,
				  ring_cb callback)
{
	struct device *dma_dev = tbrdma_tb_dma_dev(pair, ring);
	int i;

	for (i = 0; i < TBRDMA_TB_RING_SIZE; i++) {
		struct tbrdma_tb_frame *tf = &frames[i];
		dma_addr_t dma;

		tf->buf = kmalloc(TBRDMA_TB_FRAME_SIZE, GFP_KERNEL);
		if (!tf->buf)
			goto err;
		dma = dma_map_single(dma_dev, tf->buf, TBRDMA_TB_FRAME_SIZE, dir);
		if (dma_mapping_error(dma_dev, dma)) {
			kfree(tf->buf);
			tf->buf = NULL;
			goto err;
		}
		tf->pair = pair;
		tf->index = i;
		tf->frame.buffer_phy = dma;
		tf->frame.callback = callback;
		tf->frame.sof = TBRDMA_TB_PDF_SOF;
		tf->frame.eof = TBRDMA_TB_PDF_EOF;
	}
	return 0;

err:
	tbrdma_tb_free_frames(pair, frames, ring, dir);
	return -ENOMEM;
}

/* Rings, input HopID and buffers of a pair: everything it needs before any login. */
int tbrdma_tb_alloc_resources(struct tbrdma_tb_pair *pair)
{
	struct tbrdma_tb_service *ts = pair->ts;
	const struct tbrdma_tb_ops *ops = ts->ops;
	unsigned int flags = RING_FLAG_FRAME | (tb_e2e ? RING_FLAG_E2E : 0);
	int err;

	pair->tx_free = kcalloc(TBRDMA_TB_RING_SIZE, sizeof(*pair->tx_free), GFP_KERNEL);
	pair->tx_frames = kcalloc(TBRDMA_TB_RING_SIZE, sizeof(*pair->tx_frames), GFP_KERNEL);
	pair->rx_frames = kcalloc(TBRDMA_TB_RING_SIZE, sizeof(*pair->rx_frames), GFP_KERNEL);
	if (!pair->tx_free || !pair->tx_frames || !pair->rx_frames)
		return -ENOMEM;		/* the arrays are freed with the service */
	pair->tx_ring = ops->ring_alloc_tx(ts->xd, TBRDMA_TB_RING_SIZE, flags);
	if (!pair->tx_ring)
		return -ENOMEM;
	/* E2E credits for what we receive travel back on our TX ring's HopID. */
	pair->rx_ring = ops->ring_alloc_rx(ts->xd, TBRDMA_TB_RING_SIZE, flags,
					   pair->tx_ring->hop, BIT(TBRDMA_TB_PDF_SOF),
					   BIT(TBRDMA_TB_PDF_EOF), tbrdma_tb_start_poll, pair);
	if (!pair->rx_ring) {
		err = -ENOMEM;
		goto err_tx_ring;
	}
	if (ops->ring_throttling && tb_irq_throttle_ns)
		ops->ring_throttling(pair->rx_ring, tb_irq_throttle_ns);
	pair->in_hopid = ops->alloc_in_hopid(ts->xd, -1);
	if (pair->in_hopid < 0) {
		err = pair->in_hopid;
		goto err_rx_ring;
	}
	err = tbrdma_tb_alloc_frames(pair, pair->tx_frames, pair->tx_ring, DMA_TO_DEVICE,
				     tbrdma_tb_tx_done);
	if (err)
		goto err_hopid;
	/* Polled: RX frames have no callback (the NHI calls none in polling mode). */
	err = tbrdma_tb_alloc_frames(pair, pair->rx_frames, pair->rx_ring, DMA_FROM_DEVICE,
				     NULL);
	if (err)
		goto err_tx_frames;
	return 0;

err_tx_frames:
	tbrdma_tb_free_frames(pair, pair->tx_frames, pair->tx_ring, DMA_TO_DEVICE);
err_hopid:
	ops->release_in_hopid(ts->xd, pair->in_hopid);
	pair->in_hopid = -1;
err_rx_ring:
	ops->ring_free(pair->rx_ring);
	pair->rx_ring = NULL;
err_tx_ring:
	ops->ring_free(pair->tx_ring);
	pair->tx_ring = NULL;
	return err;
}

/* Reverse of tbrdma_tb_alloc_resources(); the rings are stopped. */
void tbrdma_tb_free_resources(struct tbrdma_tb_pair *pair)
{
	const struct tbrdma_tb_ops *ops = pair->ts->ops;

	if (!pair->tx_ring)
		return;
	tbrdma_tb_free_frames(pair, pair->rx_frames, pair->rx_ring, DMA_FROM_DEVICE);
	tbrdma_tb_free_frames(pair, pair->tx_frames, pair->tx_ring, DMA_TO_DEVICE);
	ops->release_in_hopid(pair->ts->xd, pair->in_hopid);
	pair->in_hopid = -1;
	ops->ring_free(pair->rx_ring);
	pair->rx_ring = NULL;
	ops->ring_free(pair->tx_ring);
	pair->tx_ring = NULL;
}

/* ---- connection: paths up and down (conn_lock held) ---- */

static void tbrdma_tb_post_rx(struct tbrdma_tb_pair *pair)
{
	struct device *dma_dev = tbrdma_tb_dma_dev(pair, pair->rx_ring);
	int i;

	for (i = 0; i < TBRDMA_TB_RING_SIZE; i++) {
		struct ring_frame *frame = &pair->rx_frames[i].frame;

		dma_sync_single_for_device(dma_dev, frame->buffer_phy, TBRDMA_TB_FRAME_SIZE,
					   DMA_FROM_DEVICE);
		pair->ts->ops->ring_enqueue(pair->rx_ring, frame);
	}
}

static void tbrdma_tb_reset_tx(struct tbrdma_tb_pair *pair, bool ready)
{
	unsigned long flags;
	int i;

	spin_lock_irqsave(&pair->tx_lock, flags);
	if (ready) {
		for (i = 0; i < TBRDMA_TB_RING_SIZE; i++)
			pair->tx_free[i] = i;
		pair->tx_nfree = TBRDMA_TB_RING_SIZE;
		pair->max_frame = min_t(u32, pair->peer_max_frame, TBRDMA_TB_FRAME_SIZE);
	}
	pair->tx_gen++;
	pair->tx_stalled = false;
	WRITE_ONCE(pair->tx_ready, ready);
	spin_unlock_irqrestore(&pair->tx_lock, flags);
}

/* Rings stopped (and their polling), the output HopID given back: no paths to the peer. */
static void tbrdma_tb_stop_rings(struct tbrdma_tb_pair *pair)
{
	const struct tbrdma_tb_ops *ops = pair->ts->ops;

	ops->ring_stop(pair->rx_ring);
	ops->ring_stop(pair->tx_ring);
	cancel_work_sync(&pair->rx_work);
	ops->release_out_hopid(pair->ts->xd, pair->out_hopid);
	pair->out_hopid = -1;
	pair->peer_hopid = -1;
}

/*
 * Our login was answered with the peer's (validated) input HopID: allocate it as output
 * HopID, start the rings, post the RX frames and enable the paths last, so RX is primed.
 */
static bool tbrdma_tb_connect(struct tbrdma_tb_pair *pair, u32 peer_hopid, u32 max_frame)
{
	struct tbrdma_tb_service *ts = pair->ts;
	const struct tbrdma_tb_ops *ops = ts->ops;
	int hopid, err;

	lockdep_assert_held(&ts->conn_lock);
	if (pair->connected || ts->removing || ts->suspended)
		return false;
	hopid = ops->alloc_out_hopid(ts->xd, peer_hopid);
	if (hopid != peer_hopid) {
		if (hopid >= 0)
			ops->release_out_hopid(ts->xd, hopid);
		dev_warn(ts->dev, "%s: output HopID %u not available (%d)\n", pair->name,
			 peer_hopid, hopid);
		return false;
	}
	pair->peer_hopid = peer_hopid;
	pair->peer_max_frame = max_frame;
	pair->out_hopid = hopid;
	ops->ring_start(pair->tx_ring);
	ops->ring_start(pair->rx_ring);
	tbrdma_tb_post_rx(pair);
	err = ops->enable_paths(ts->xd, pair->out_hopid, pair->tx_ring->hop, pair->in_hopid,
				pair->rx_ring->hop);
	if (err) {
		dev_warn(ts->dev, "%s: enabling DMA paths failed (%d)\n", pair->name, err);
		tbrdma_tb_stop_rings(pair);
		return false;
	}
	tbrdma_tb_reset_tx(pair, true);
	pair->connected = true;
	dev_info(ts->dev, "rail %s up: HopID out %d in %d, rings %d/%d of %d, frames up to %u bytes\n",
		 pair->name, pair->out_hopid, pair->in_hopid, pair->tx_ring->hop,
		 pair->rx_ring->hop, TBRDMA_TB_RING_SIZE, pair->max_frame);
	return true;
}

/* Reverse of tbrdma_tb_connect(). Returns whether the paths were up. */
bool tbrdma_tb_disconnect(struct tbrdma_tb_pair *pair)
{
	struct tbrdma_tb_service *ts = pair->ts;
	const struct tbrdma_tb_ops *ops = ts->ops;
	int err;

	lockdep_assert_held(&ts->conn_lock);
	if (!pair->connected)
		return false;
	/* After this no xmit is inside the ring enqueue: it holds tx_lock throughout. */
	tbrdma_tb_reset_tx(pair, false);
	if (ts->firmware_cm && !READ_ONCE(ts->xd->is_unplugged)) {
		/*
		 * Disabling ours would take down every path of the XDomain, thunderbolt-net's
		 * too. They stay with the firmware, which tears them down with the XDomain;
		 * frames on them find stopped rings, and the next connect enables them again.
		 */
		pair->paths_kept++;
	} else {
		err = ops->disable_paths(ts->xd, pair->out_hopid, pair->tx_ring->hop,
					 pair->in_hopid, pair->rx_ring->hop);
		if (err)
			dev_dbg(ts->dev, "%s: disabling DMA paths failed (%d)\n", pair->name,
				err);
	}
	tbrdma_tb_stop_rings(pair);
	pair->connected = false;
	dev_info(ts->dev, "rail %s down\n", pair->name);
	return true;
}

/* ---- login protocol on the XDomain control channel ---- */

static void tbrdma_tb_fill(struct tbrdma_tb_pair *pair, struct tbrdma_tb_msg *msg, u32 type,
			   u64 route, u32 sequence, u32 command_id)
{
	struct tb_xdomain *xd = pair->ts->xd;

	memset(msg, 0, sizeof(*msg));
	msg->route = route;
	msg->sequence = sequence;
	memcpy(msg->initiator_uuid, xd->local_uuid, 16);
	memcpy(msg->target_uuid, xd->remote_uuid, 16);
	msg->type = type;
	msg->command_id = command_id;
	msg->version = TBRDMA_TB_MSG_VERSION;
	msg->pair = pair->index;
	if (type == TBRDMA_TB_LOGIN || type == TBRDMA_TB_LOGIN_RESPONSE) {
		msg->in_hopid = pair->in_hopid;
		msg->max_frame = TBRDMA_TB_FRAME_SIZE;
	}
}

/* Sends a request and checks that the answer is the matching, valid response. */
int tbrdma_tb_request(struct tbrdma_tb_pair *pair, u32 type, u32 sequence,
		      unsigned int timeout_ms, struct tbrdma_tb_msg *reply)
{
	struct tbrdma_tb_service *ts = pair->ts;
	struct tb_xdomain *xd = ts->xd;
	u32 req[TBRDMA_TB_MSG_DWORDS], res[TBRDMA_TB_MSG_DWORDS];
	struct tbrdma_tb_msg msg;
	int err;

	tbrdma_tb_fill(pair, &msg, type, xd->route, sequence,
		       atomic_inc_return(&ts->command_id));
	tbrdma_tb_msg_encode(&msg, tbrdma_tb_proto_uuid.b, req);
	/* Like thunderbolt-net, requests travel as XDomain responses too. */
	mutex_lock(&ts->request_lock);
	err = ts->ops->request(xd, req, sizeof(req), TB_CFG_PKG_XDOMAIN_RESP, res, sizeof(res),
			       TB_CFG_PKG_XDOMAIN_RESP, timeout_ms);
	mutex_unlock(&ts->request_lock);
	if (err)
		return err;
	err = tbrdma_tb_msg_decode(res, sizeof(res), tbrdma_tb_proto_uuid.b, reply);
	if (err)
		return err;
	if (reply->type != type + 1 || reply->command_id != msg.command_id ||
	    reply->pair != pair->index ||
	    !tbrdma_tb_msg_for_us(reply, xd->route, xd->local_uuid->b, xd->remote_uuid->b))
		return -EPROTO;
	if (type == TBRDMA_TB_LOGIN)
		return tbrdma_tb_check_peer(reply, xd->remote_max_hopid);
	return 0;
}

static int tbrdma_tb_respond(struct tbrdma_tb_service *ts, struct tbrdma_tb_pair *pair,
			     const struct tbrdma_tb_msg *req, u32 status)
{
	u32 res[TBRDMA_TB_MSG_DWORDS];
	struct tbrdma_tb_msg msg;

	if (pair) {
		tbrdma_tb_fill(pair, &msg, req->type + 1, req->route, req->sequence,
			       req->command_id);
	} else {
		/* A pair we do not have: refuse with the requester's own pair index. */
		tbrdma_tb_fill(&ts->pairs[0], &msg, req->type + 1, req->route, req->sequence,
			       req->command_id);
		msg.pair = req->pair;
		msg.in_hopid = 0;
	}
	msg.status = status;
	tbrdma_tb_msg_encode(&msg, tbrdma_tb_proto_uuid.b, res);
	return ts->ops->response(ts->xd, res, sizeof(res), TB_CFG_PKG_XDOMAIN_RESP);
}

/* (Re)start a pair's login series now or after delay_ms. conn_lock held. */
void tbrdma_tb_start_login(struct tbrdma_tb_pair *pair, unsigned int delay_ms)
{
	lockdep_assert_held(&pair->ts->conn_lock);
	if (pair->ts->removing || pair->ts->suspended)
		return;
	pair->login_retries = 0;
	mod_delayed_work(system_long_wq, &pair->login_work, msecs_to_jiffies(delay_ms));
}

/*
 * Sends LOGIN until the peer answers with its input HopID, then connects. Each end connects
 * on its own login's answer (answering a login means "I am bound, here is my HopID"), and
 * starts over on the peer's LOGIN when already connected (tbrdma_tb_ctl_work()).
 */
void tbrdma_tb_login_work(struct work_struct *work)
{
	struct tbrdma_tb_pair *pair = container_of(to_delayed_work(work), struct tbrdma_tb_pair,
						   login_work);
	struct tbrdma_tb_service *ts = pair->ts;
	struct tbrdma_tb_msg reply;
	bool up = false;
	u32 sequence;
	int err;

	mutex_lock(&ts->conn_lock);
	if (pair->connected || ts->removing || ts->suspended) {
		mutex_unlock(&ts->conn_lock);
		return;
	}
	sequence = pair->login_retries % 4;
	mutex_unlock(&ts->conn_lock);

	err = tbrdma_tb_request(pair, TBRDMA_TB_LOGIN, sequence, TBRDMA_TB_LOGIN_TIMEOUT_MS,
				&reply);

	mutex_lock(&ts->conn_lock);
	if (!err && !pair->connected && !ts->removing && !ts->suspended) {
		up = tbrdma_tb_connect(pair, reply.in_hopid, reply.max_frame);
		if (!up)
			err = -EIO;	/* HopID taken or paths refused: try again */
	}
	if (!err || pair->connected || ts->removing || ts->suspended) {
		/* connected, or nothing left to do */
	} else if (pair->login_retries++ < TBRDMA_TB_LOGIN_RETRIES) {
		dev_dbg(ts->dev, "%s: login failed (%d), retrying\n", pair->name, err);
		queue_delayed_work(system_long_wq, &pair->login_work,
				   msecs_to_jiffies(TBRDMA_TB_LOGIN_DELAY_MS));
	} else {
		dev_info(ts->dev, "%s: no login answer from the peer; waiting for its login\n",
			 pair->name);
	}
	mutex_unlock(&ts->conn_lock);
	if (up)
		tbrdma_tb_rail_event(pair, false);
}

/*
 * The peer's latest LOGIN or LOGOUT for a pair, in process context. A LOGOUT takes the
 * paths down and logs in again later (the peer may come back). A LOGIN means the peer
 * starts its rings over (it connects on our answer): if we are connected, ours start over
 * with them at the HopID it announced, so that nothing of the old rings (E2E credit spent
 * on frames its new ring never saw, frames in flight) meets the new ones; a ring restarted
 * at one end only can stall on E2E for good. Otherwise it restarts our login series, which
 * may have given up.
 */
void tbrdma_tb_ctl_work(struct work_struct *work)
{
	struct tbrdma_tb_pair *pair = container_of(work, struct tbrdma_tb_pair, ctl_work);
	struct tbrdma_tb_service *ts = pair->ts;
	bool was_up = false, up = false;
	u32 type, hopid, max_frame;

	spin_lock_bh(&ts->ctl_lock);
	type = pair->ctl_type;
	hopid = pair->ctl_hopid;
	max_frame = pair->ctl_max_frame;
	pair->ctl_type = 0;
	spin_unlock_bh(&ts->ctl_lock);

	mutex_lock(&ts->conn_lock);
	if (type == TBRDMA_TB_LOGOUT) {
		was_up = tbrdma_tb_disconnect(pair);
		tbrdma_tb_start_login(pair, TBRDMA_TB_LOGIN_DELAY_MS);
	} else if (type == TBRDMA_TB_LOGIN) {
		if (pair->connected) {
			was_up = tbrdma_tb_disconnect(pair);
			up = tbrdma_tb_connect(pair, hopid, max_frame);
		}
		if (!pair->connected)
			tbrdma_tb_start_login(pair, 0);
	}
	mutex_unlock(&ts->conn_lock);
	if (was_up || up)
		tbrdma_tb_rail_event(pair, false);
}

/*
 * The core heard nothing on the pair's rail for rail_dead_ms (its rail-down event; atomic
 * context). The paths may be gone under us: a firmware connection manager drops every path
 * of the XDomain when another service disables one of its own. A rail that is only slow
 * (a stalled peer, an overloaded ring) receives again within the grace period; one that
 * does not connects again through a new login (silence_work), which restarts the peer's
 * rings too (tbrdma_tb_ctl_work()).
 */
void tbrdma_tb_rail_silent(struct tbrdma_tb_pair *pair)
{
	struct tbrdma_tb_service *ts = pair->ts;

	spin_lock_bh(&ts->ctl_lock);
	if (!ts->ctl_closed && !delayed_work_pending(&pair->silence_work)) {
		pair->silent_rx_polls = READ_ONCE(pair->rx_polls);
		queue_delayed_work(system_long_wq, &pair->silence_work,
				   msecs_to_jiffies(TBRDMA_TB_SILENCE_GRACE_MS));
	}
	spin_unlock_bh(&ts->ctl_lock);
}

void tbrdma_tb_silence_work(struct work_struct *work)
{
	struct tbrdma_tb_pair *pair = container_of(to_delayed_work(work), struct tbrdma_tb_pair,
						   silence_work);
	struct tbrdma_tb_service *ts = pair->ts;
	bool was_up = false;

	mutex_lock(&ts->conn_lock);
	if (pair->connected && READ_ONCE(pair->rx_polls) == pair->silent_rx_polls) {
		dev_info(ts->dev, "%s: nothing received for %u ms: logging in again\n",
			 pair->name, TBRDMA_TB_SILENCE_GRACE_MS);
		pair->silent_relogins++;
		was_up = tbrdma_tb_disconnect(pair);
		tbrdma_tb_start_login(pair, 0);
	}
	mutex_unlock(&ts->conn_lock);
	if (was_up)
		tbrdma_tb_rail_event(pair, false);
}

/* Records the peer's LOGIN/LOGOUT for ctl_work; returns false once the service is going. */
static bool tbrdma_tb_post_ctl(struct tbrdma_tb_pair *pair, const struct tbrdma_tb_msg *msg)
{
	struct tbrdma_tb_service *ts = pair->ts;
	bool open;

	spin_lock_bh(&ts->ctl_lock);
	open = !ts->ctl_closed;
	if (open) {
		pair->ctl_type = msg->type;
		pair->ctl_hopid = msg->in_hopid;
		pair->ctl_max_frame = msg->max_frame;
		if (msg->type == TBRDMA_TB_LOGIN)
			pair->ctl_answered = true;
		queue_work(system_long_wq, &pair->ctl_work);
	}
	spin_unlock_bh(&ts->ctl_lock);
	return open;
}

/*
 * XDomain control messages with our protocol UUID (control ring work, process context).
 * Returning 1 consumes the message; responses must return 0 so they reach the waiting
 * request. This only answers and hands over to ctl_work: it must not wait for anything on
 * the control channel, nor for conn_lock (whose holder may).
 */
int tbrdma_tb_handle_packet(const void *buf, size_t size, void *data)
{
	struct tbrdma_tb_service *ts = data;
	struct tb_xdomain *xd = ts->xd;
	struct tbrdma_tb_pair *pair = NULL;
	struct tbrdma_tb_msg msg;
	u32 status = TBRDMA_TB_STATUS_OK;

	if (tbrdma_tb_msg_decode(buf, size, tbrdma_tb_proto_uuid.b, &msg))
		return 0;
	if (msg.type != TBRDMA_TB_LOGIN && msg.type != TBRDMA_TB_LOGOUT)
		return 0;
	if (!tbrdma_tb_msg_for_us(&msg, xd->route, xd->local_uuid->b, xd->remote_uuid->b))
		return 0;
	if (msg.pair < ts->npairs)
		pair = &ts->pairs[msg.pair];
	if (!pair)
		status = TBRDMA_TB_STATUS_REFUSED;	/* the peer runs more pairs than we do */
	else if (msg.type == TBRDMA_TB_LOGIN && tbrdma_tb_check_peer(&msg, xd->remote_max_hopid))
		status = TBRDMA_TB_STATUS_REFUSED;
	else if (msg.type == TBRDMA_TB_LOGIN && READ_ONCE(ts->suspended))
		status = TBRDMA_TB_STATUS_REFUSED;	/* no paths to us until we resume */
	else if (!tbrdma_tb_post_ctl(pair, &msg))
		status = TBRDMA_TB_STATUS_REFUSED;
	if (tbrdma_tb_respond(ts, pair, &msg, status))
		dev_dbg(ts->dev, "response to peer message %u not sent\n", msg.type);
	return 1;
}

#endif
