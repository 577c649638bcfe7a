// SPDX-License-Identifier: GPL-2.0-only
/*
 * Thunderbolt/USB4 rail: an XDomain service driver in the manner of thunderbolt-net
 * (drivers/net/thunderbolt/main.c). The module advertises a "tbrdma" property directory;
 * when the peer host advertises it too, the thunderbolt bus probes us with a tb_service.
 *
 * Per service: a TX and an RX ring on the NHI (frame mode, one protocol frame per 4 KiB ring
 * frame), an input HopID the peer transmits to, and a login exchange over the XDomain
 * control channel in which each side announces its input HopID. Once both logins went
 * through, each side allocates the peer's HopID as its output HopID, starts the rings and
 * enables the DMA paths. The service is offered as rail "tb:<peer host UUID>" which configfs
 * add_rail attaches to a tbrdma device (docs/driver.md).
 *
 * Only USB4/Thunderbolt hardware gets here (QEMU has no NHI): this file is compiled for every
 * kernel and its message checks are unit-tested in userspace (rail_tb_msg.c), but the ring,
 * path and login code has not run on hardware.
 */
#include <linux/dma-mapping.h>
#include <linux/kref.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/thunderbolt.h>
#include <linux/uuid.h>
#include <linux/workqueue.h>

#include "tbrdma.h"
#include "rail_tb_msg.h"

#define TBRDMA_TB_PROTOCOL_KEY		"tbrdma"
#define TBRDMA_TB_PROTOCOL_ID		1
#define TBRDMA_TB_PROTOCOL_VERSION	1
#define TBRDMA_TB_PROTOCOL_REVISION	1

#if IS_REACHABLE(CONFIG_USB4)

#define TBRDMA_TB_RING_SIZE		128
#define TBRDMA_TB_PDF_SOF		1	/* start/end of frame PDF values of our rings */
#define TBRDMA_TB_PDF_EOF		2
#define TBRDMA_TB_LOGIN_FIRST_MS	100
#define TBRDMA_TB_LOGIN_DELAY_MS	1000
#define TBRDMA_TB_LOGIN_TIMEOUT_MS	500
#define TBRDMA_TB_LOGIN_RETRIES		60
#define TBRDMA_TB_LOGOUT_TIMEOUT_MS	1000

/* Property directory of the service: 896012a9-536e-4847-99f9-e3fcd1350f8b */
static const uuid_t tbrdma_tb_dir_uuid =
	UUID_INIT(0x896012a9, 0x536e, 0x4847, 0x99, 0xf9, 0xe3, 0xfc, 0xd1, 0x35, 0x0f, 0x8b);

/* Login/logout messages on the control channel: 7a6bb0eb-2e6f-474a-a753-68a79552541b */
static const uuid_t tbrdma_tb_proto_uuid =
	UUID_INIT(0x7a6bb0eb, 0x2e6f, 0x474a, 0xa7, 0x53, 0x68, 0xa7, 0x95, 0x52, 0x54, 0x1b);

struct tbrdma_tb_frame {
	struct ring_frame frame;
	struct tbrdma_tb_service *ts;
	void *buf;			/* TBRDMA_TB_FRAME_SIZE bytes, DMA-mapped for the ring */
	u16 index;
};

struct tbrdma_tb_service {
	struct kref kref;		/* the service list and an attached rail */
	struct list_head node;		/* on tbrdma_tb_services while bound */
	char name[TBRDMA_RAIL_NAME_LEN];
	struct tb_service *svc;
	struct tb_xdomain *xd;
	struct tb_protocol_handler handler;

	/*
	 * Login state, paths and ring start/stop (sleeps). Never held around our own
	 * request, and the protocol handler never takes it: enabling paths waits for the
	 * control channel, whose receive work runs that handler.
	 */
	struct mutex conn_lock;
	bool connected;			/* rings started, DMA paths enabled */
	bool removing;
	int login_retries;
	int peer_hopid;			/* validated peer input HopID while connected, else -1 */
	u32 peer_max_frame;
	atomic_t command_id;
	struct delayed_work login_work;

	/* The latest LOGIN/LOGOUT from the peer, for ctl_work (handler -> process context). */
	spinlock_t ctl_lock;
	bool ctl_closed;		/* removing: refuse logins, queue nothing */
	bool ctl_answered;		/* we accepted a peer login: it may have paths to us */
	u32 ctl_type;			/* 0 if none pending */
	u32 ctl_hopid;
	struct work_struct ctl_work;

	struct tb_ring *tx_ring;
	struct tb_ring *rx_ring;
	int in_hopid;			/* ours, where the peer transmits to */
	int out_hopid;			/* the peer's in_hopid while connected, else -1 */

	/* Transmit (atomic: called by the core under the device lock with BHs off). */
	spinlock_t tx_lock;
	bool tx_ready;			/* mirrors connected for the atomic path */
	bool tx_stalled;		/* xmit found the ring full; a completion kicks the core */
	u32 max_frame;			/* min(peer's, ours); fixed while tx_ready */
	unsigned int tx_nfree;
	u16 tx_free[TBRDMA_TB_RING_SIZE];
	struct tbrdma_tb_frame tx_frames[TBRDMA_TB_RING_SIZE];
	struct tbrdma_tb_frame rx_frames[TBRDMA_TB_RING_SIZE];

	/* The rail received frames go to; NULL while not attached to a device. */
	spinlock_t rx_lock;
	struct tbrdma_rail *rail;
	u64 rx_errors;
};

static struct tb_property_dir *tbrdma_tb_dir;
/* Bound services by name; add_rail looks them up and attaches under this mutex. */
static LIST_HEAD(tbrdma_tb_services);
static DEFINE_MUTEX(tbrdma_tb_mutex);

static void tbrdma_tb_release(struct kref *kref)
{
	kfree(container_of(kref, struct tbrdma_tb_service, kref));
}

/* ---- data path ---- */

/* Called with the device lock held and BHs off: never sleeps. */
int tbrdma_tb_xmit(struct tbrdma_rail *rail, const void *frame, size_t len)
{
	struct tbrdma_tb_service *ts = rail->tb;
	struct tbrdma_tb_frame *tf;
	struct device *dma_dev;
	unsigned long flags;
	int err = 0;

	spin_lock_irqsave(&ts->tx_lock, flags);
	if (!ts->tx_ready) {
		err = -ENETDOWN;
		goto out;
	}
	if (len > ts->max_frame) {
		err = -EMSGSIZE;
		goto out;
	}
	if (!ts->tx_nfree) {
		ts->tx_stalled = true;
		rail->tx_busy++;
		err = -ENOBUFS;
		goto out;
	}
	tf = &ts->tx_frames[ts->tx_free[--ts->tx_nfree]];
	dma_dev = tb_ring_dma_device(ts->tx_ring);
	dma_sync_single_for_cpu(dma_dev, tf->frame.buffer_phy, len, DMA_TO_DEVICE);
	memcpy(tf->buf, frame, len);
	dma_sync_single_for_device(dma_dev, tf->frame.buffer_phy, len, DMA_TO_DEVICE);
	/* The descriptor's 12-bit size: 0 stands for a full 4096-byte frame. */
	tf->frame.size = len == TBRDMA_TB_FRAME_SIZE ? 0 : len;
	if (tb_ring_tx(ts->tx_ring, &tf->frame)) {
		/* Only a stopped ring refuses; tx_ready drops with it. */
		ts->tx_free[ts->tx_nfree++] = tf->index;
		err = -ENETDOWN;
		goto out;
	}
	rail->tx_frames++;
out:
	spin_unlock_irqrestore(&ts->tx_lock, flags);
	return err;
}

/* The core may be waiting for ring space: run it now instead of at its next deadline. */
static void tbrdma_tb_kick(struct tbrdma_tb_service *ts)
{
	spin_lock_bh(&ts->rx_lock);
	if (ts->rail)
		tbrdma_link_kick(ts->rail->tdev);
	spin_unlock_bh(&ts->rx_lock);
}

/* TX completion (ring work, process context), or cancellation when the ring stops. */
static void tbrdma_tb_tx_done(struct tb_ring *ring, struct ring_frame *frame, bool canceled)
{
	struct tbrdma_tb_frame *tf = container_of(frame, struct tbrdma_tb_frame, frame);
	struct tbrdma_tb_service *ts = tf->ts;
	unsigned long flags;
	bool kick;

	spin_lock_irqsave(&ts->tx_lock, flags);
	if (!WARN_ON_ONCE(ts->tx_nfree >= TBRDMA_TB_RING_SIZE))
		ts->tx_free[ts->tx_nfree++] = tf->index;
	kick = ts->tx_stalled && !canceled;
	ts->tx_stalled = false;
	spin_unlock_irqrestore(&ts->tx_lock, flags);
	if (kick)
		tbrdma_tb_kick(ts);
}

/* RX completion (ring work, process context): hand the frame over, then re-post it. */
static void tbrdma_tb_rx_done(struct tb_ring *ring, struct ring_frame *frame, bool canceled)
{
	struct tbrdma_tb_frame *tf = container_of(frame, struct tbrdma_tb_frame, frame);
	struct device *dma_dev = tb_ring_dma_device(ring);
	struct tbrdma_tb_service *ts = tf->ts;
	int len;

	if (canceled)
		return;		/* the ring stopped; frames are posted again at the next connect */
	len = tbrdma_tb_rx_frame_len(frame->size, frame->flags & RING_DESC_CRC_ERROR,
				     frame->flags & RING_DESC_BUFFER_OVERRUN, TBRDMA_TB_FRAME_SIZE);
	dma_sync_single_for_cpu(dma_dev, frame->buffer_phy, TBRDMA_TB_FRAME_SIZE,
				DMA_FROM_DEVICE);
	spin_lock_bh(&ts->rx_lock);
	if (len < 0) {
		ts->rx_errors++;
	} else if (ts->rail) {
		ts->rail->rx_frames++;
		tbrdma_link_rx(ts->rail, tf->buf, len);
	}
	spin_unlock_bh(&ts->rx_lock);
	dma_sync_single_for_device(dma_dev, frame->buffer_phy, TBRDMA_TB_FRAME_SIZE,
				   DMA_FROM_DEVICE);
	tb_ring_rx(ring, frame);	/* -ESHUTDOWN if the ring stopped meanwhile: fine */
}

/* ---- rings and frame buffers ---- */

static void tbrdma_tb_free_frames(struct tbrdma_tb_frame *frames, struct tb_ring *ring,
				  enum dma_data_direction dir)
{
	struct device *dma_dev = tb_ring_dma_device(ring);
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

static int tbrdma_tb_alloc_frames(struct tbrdma_tb_service *ts, struct tbrdma_tb_frame *frames,
				  struct tb_ring *ring, enum dma_data_direction dir,
				  ring_cb callback)
{
	struct device *dma_dev = tb_ring_dma_device(ring);
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
		tf->ts = ts;
		tf->index = i;
		tf->frame.buffer_phy = dma;
		tf->frame.callback = callback;
		tf->frame.sof = TBRDMA_TB_PDF_SOF;
		tf->frame.eof = TBRDMA_TB_PDF_EOF;
	}
	return 0;

err:
	tbrdma_tb_free_frames(frames, ring, dir);
	return -ENOMEM;
}

/* Rings, input HopID and buffers: everything the service needs before any login. */
static int tbrdma_tb_alloc_resources(struct tbrdma_tb_service *ts)
{
	struct tb_nhi *nhi = ts->xd->tb->nhi;
	int err;

	ts->tx_ring = tb_ring_alloc_tx(nhi, -1, TBRDMA_TB_RING_SIZE, RING_FLAG_FRAME);
	if (!ts->tx_ring)
		return -ENOMEM;
	ts->rx_ring = tb_ring_alloc_rx(nhi, -1, TBRDMA_TB_RING_SIZE, RING_FLAG_FRAME,
				       ts->tx_ring->hop, BIT(TBRDMA_TB_PDF_SOF),
				       BIT(TBRDMA_TB_PDF_EOF), NULL, NULL);
	if (!ts->rx_ring) {
		err = -ENOMEM;
		goto err_tx_ring;
	}
	ts->in_hopid = tb_xdomain_alloc_in_hopid(ts->xd, -1);
	if (ts->in_hopid < 0) {
		err = ts->in_hopid;
		goto err_rx_ring;
	}
	err = tbrdma_tb_alloc_frames(ts, ts->tx_frames, ts->tx_ring, DMA_TO_DEVICE,
				     tbrdma_tb_tx_done);
	if (err)
		goto err_hopid;
	err = tbrdma_tb_alloc_frames(ts, ts->rx_frames, ts->rx_ring, DMA_FROM_DEVICE,
				     tbrdma_tb_rx_done);
	if (err)
		goto err_tx_frames;
	return 0;

err_tx_frames:
	tbrdma_tb_free_frames(ts->tx_frames, ts->tx_ring, DMA_TO_DEVICE);
err_hopid:
	tb_xdomain_release_in_hopid(ts->xd, ts->in_hopid);
	ts->in_hopid = -1;
err_rx_ring:
	tb_ring_free(ts->rx_ring);
	ts->rx_ring = NULL;
err_tx_ring:
	tb_ring_free(ts->tx_ring);
	ts->tx_ring = NULL;
	return err;
}

/* Reverse of tbrdma_tb_alloc_resources(); the rings are stopped. */
static void tbrdma_tb_free_resources(struct tbrdma_tb_service *ts)
{
	tbrdma_tb_free_frames(ts->rx_frames, ts->rx_ring, DMA_FROM_DEVICE);
	tbrdma_tb_free_frames(ts->tx_frames, ts->tx_ring, DMA_TO_DEVICE);
	tb_xdomain_release_in_hopid(ts->xd, ts->in_hopid);
	ts->in_hopid = -1;
	tb_ring_free(ts->rx_ring);
	ts->rx_ring = NULL;
	tb_ring_free(ts->tx_ring);
	ts->tx_ring = NULL;
}

/* ---- connection: paths up and down (conn_lock held) ---- */

static void tbrdma_tb_post_rx(struct tbrdma_tb_service *ts)
{
	struct device *dma_dev = tb_ring_dma_device(ts->rx_ring);
	int i;

	for (i = 0; i < TBRDMA_TB_RING_SIZE; i++) {
		struct ring_frame *frame = &ts->rx_frames[i].frame;

		dma_sync_single_for_device(dma_dev, frame->buffer_phy, TBRDMA_TB_FRAME_SIZE,
					   DMA_FROM_DEVICE);
		tb_ring_rx(ts->rx_ring, frame);
	}
}

static void tbrdma_tb_reset_tx(struct tbrdma_tb_service *ts, bool ready)
{
	unsigned long flags;
	int i;

	spin_lock_irqsave(&ts->tx_lock, flags);
	if (ready) {
		for (i = 0; i < TBRDMA_TB_RING_SIZE; i++)
			ts->tx_free[i] = i;
		ts->tx_nfree = TBRDMA_TB_RING_SIZE;
		ts->max_frame = min_t(u32, ts->peer_max_frame, TBRDMA_TB_FRAME_SIZE);
	}
	ts->tx_stalled = false;
	WRITE_ONCE(ts->tx_ready, ready);
	spin_unlock_irqrestore(&ts->tx_lock, flags);
}

/*
 * Our login was answered with the peer's (validated) input HopID: allocate it as output
 * HopID, start the rings, post the RX frames and enable the paths last, so RX is primed.
 */
static bool tbrdma_tb_connect(struct tbrdma_tb_service *ts, u32 peer_hopid, u32 max_frame)
{
	int hopid, err;

	lockdep_assert_held(&ts->conn_lock);
	if (ts->connected || ts->removing)
		return false;
	hopid = tb_xdomain_alloc_out_hopid(ts->xd, peer_hopid);
	if (hopid != peer_hopid) {
		if (hopid >= 0)
			tb_xdomain_release_out_hopid(ts->xd, hopid);
		dev_warn(&ts->svc->dev, "output HopID %u not available (%d)\n", peer_hopid,
			 hopid);
		return false;
	}
	ts->peer_hopid = peer_hopid;
	ts->peer_max_frame = max_frame;
	ts->out_hopid = hopid;
	tb_ring_start(ts->tx_ring);
	tb_ring_start(ts->rx_ring);
	tbrdma_tb_post_rx(ts);
	err = tb_xdomain_enable_paths(ts->xd, ts->out_hopid, ts->tx_ring->hop, ts->in_hopid,
				      ts->rx_ring->hop);
	if (err) {
		dev_warn(&ts->svc->dev, "enabling DMA paths failed (%d)\n", err);
		tb_ring_stop(ts->rx_ring);
		tb_ring_stop(ts->tx_ring);
		tb_xdomain_release_out_hopid(ts->xd, ts->out_hopid);
		ts->out_hopid = -1;
		ts->peer_hopid = -1;
		return false;
	}
	tbrdma_tb_reset_tx(ts, true);
	ts->connected = true;
	dev_info(&ts->svc->dev, "rail %s up: HopID out %d in %d, frames up to %u bytes\n",
		 ts->name, ts->out_hopid, ts->in_hopid, ts->max_frame);
	return true;
}

/* Reverse of tbrdma_tb_connect(). Returns whether the paths were up. */
static bool tbrdma_tb_disconnect(struct tbrdma_tb_service *ts)
{
	int err;

	lockdep_assert_held(&ts->conn_lock);
	if (!ts->connected)
		return false;
	/* After this no xmit is inside tb_ring_tx(): it holds tx_lock throughout. */
	tbrdma_tb_reset_tx(ts, false);
	err = tb_xdomain_disable_paths(ts->xd, ts->out_hopid, ts->tx_ring->hop, ts->in_hopid,
				       ts->rx_ring->hop);
	if (err)
		dev_dbg(&ts->svc->dev, "disabling DMA paths failed (%d)\n", err);
	tb_ring_stop(ts->rx_ring);
	tb_ring_stop(ts->tx_ring);
	tb_xdomain_release_out_hopid(ts->xd, ts->out_hopid);
	ts->out_hopid = -1;
	ts->peer_hopid = -1;
	ts->connected = false;
	dev_info(&ts->svc->dev, "rail %s down\n", ts->name);
	return true;
}

/* ---- login protocol on the XDomain control channel ---- */

static void tbrdma_tb_fill(struct tbrdma_tb_service *ts, struct tbrdma_tb_msg *msg, u32 type,
			   u64 route, u32 sequence, u32 command_id)
{
	memset(msg, 0, sizeof(*msg));
	msg->route = route;
	msg->sequence = sequence;
	memcpy(msg->initiator_uuid, ts->xd->local_uuid, 16);
	memcpy(msg->target_uuid, ts->xd->remote_uuid, 16);
	msg->type = type;
	msg->command_id = command_id;
	msg->version = TBRDMA_TB_MSG_VERSION;
	if (type == TBRDMA_TB_LOGIN || type == TBRDMA_TB_LOGIN_RESPONSE) {
		msg->in_hopid = ts->in_hopid;
		msg->max_frame = TBRDMA_TB_FRAME_SIZE;
	}
}

/* Sends a request and checks that the answer is the matching, valid response. */
static int tbrdma_tb_request(struct tbrdma_tb_service *ts, u32 type, u32 sequence,
			     unsigned int timeout_ms, struct tbrdma_tb_msg *reply)
{
	u32 req[TBRDMA_TB_MSG_DWORDS], res[TBRDMA_TB_MSG_DWORDS];
	struct tbrdma_tb_msg msg;
	int err;

	tbrdma_tb_fill(ts, &msg, type, ts->xd->route, sequence,
		       atomic_inc_return(&ts->command_id));
	tbrdma_tb_msg_encode(&msg, tbrdma_tb_proto_uuid.b, req);
	/* Like thunderbolt-net, requests travel as XDomain responses too. */
	err = tb_xdomain_request(ts->xd, req, sizeof(req), TB_CFG_PKG_XDOMAIN_RESP, res,
				 sizeof(res), TB_CFG_PKG_XDOMAIN_RESP, timeout_ms);
	if (err)
		return err;
	err = tbrdma_tb_msg_decode(res, sizeof(res), tbrdma_tb_proto_uuid.b, reply);
	if (err)
		return err;
	if (reply->type != type + 1 || reply->command_id != msg.command_id ||
	    !tbrdma_tb_msg_for_us(reply, ts->xd->route, ts->xd->local_uuid->b,
				  ts->xd->remote_uuid->b))
		return -EPROTO;
	if (type == TBRDMA_TB_LOGIN)
		return tbrdma_tb_check_peer(reply, ts->xd->remote_max_hopid);
	return 0;
}

static int tbrdma_tb_respond(struct tbrdma_tb_service *ts, const struct tbrdma_tb_msg *req,
			     u32 status)
{
	u32 res[TBRDMA_TB_MSG_DWORDS];
	struct tbrdma_tb_msg msg;

	tbrdma_tb_fill(ts, &msg, req->type + 1, req->route, req->sequence, req->command_id);
	msg.status = status;
	tbrdma_tb_msg_encode(&msg, tbrdma_tb_proto_uuid.b, res);
	return tb_xdomain_response(ts->xd, res, sizeof(res), TB_CFG_PKG_XDOMAIN_RESP);
}

/* (Re)start our login series now or after delay_ms. conn_lock held. */
static void tbrdma_tb_start_login(struct tbrdma_tb_service *ts, unsigned int delay_ms)
{
	lockdep_assert_held(&ts->conn_lock);
	if (ts->removing)
		return;
	ts->login_retries = 0;
	mod_delayed_work(system_long_wq, &ts->login_work, msecs_to_jiffies(delay_ms));
}

/*
 * Sends LOGIN until the peer answers with its input HopID, then connects. Each end connects
 * on its own login's answer: answering a login means "I am bound, here is my HopID".
 */
static void tbrdma_tb_login_work(struct work_struct *work)
{
	struct tbrdma_tb_service *ts = container_of(to_delayed_work(work),
						    struct tbrdma_tb_service, login_work);
	struct tbrdma_tb_msg reply;
	bool up = false;
	u32 sequence;
	int err;

	mutex_lock(&ts->conn_lock);
	if (ts->connected || ts->removing) {
		mutex_unlock(&ts->conn_lock);
		return;
	}
	sequence = ts->login_retries % 4;
	mutex_unlock(&ts->conn_lock);

	err = tbrdma_tb_request(ts, TBRDMA_TB_LOGIN, sequence, TBRDMA_TB_LOGIN_TIMEOUT_MS,
				&reply);

	mutex_lock(&ts->conn_lock);
	if (!err && !ts->connected && !ts->removing) {
		up = tbrdma_tb_connect(ts, reply.in_hopid, reply.max_frame);
		if (!up)
			err = -EIO;	/* HopID taken or paths refused: try again */
	}
	if (!err || ts->connected || ts->removing) {
		/* connected, or nothing left to do */
	} else if (ts->login_retries++ < TBRDMA_TB_LOGIN_RETRIES) {
		dev_dbg(&ts->svc->dev, "login failed (%d), retrying\n", err);
		queue_delayed_work(system_long_wq, &ts->login_work,
				   msecs_to_jiffies(TBRDMA_TB_LOGIN_DELAY_MS));
	} else {
		dev_info(&ts->svc->dev, "no login answer from the peer; waiting for its login\n");
	}
	mutex_unlock(&ts->conn_lock);
	if (up)
		tbrdma_tb_rail_event(ts, false);
}

/*
 * The peer's latest LOGIN or LOGOUT, in process context. A LOGOUT takes the paths down and
 * logs in again later (the peer may come back). A LOGIN with another HopID than the one we
 * transmit to means the peer started over: reconnect at once. Any LOGIN while we are not
 * connected restarts our login series, which may have given up.
 */
static void tbrdma_tb_ctl_work(struct work_struct *work)
{
	struct tbrdma_tb_service *ts = container_of(work, struct tbrdma_tb_service, ctl_work);
	bool was_up = false;
	u32 type, hopid;

	spin_lock_bh(&ts->ctl_lock);
	type = ts->ctl_type;
	hopid = ts->ctl_hopid;
	ts->ctl_type = 0;
	spin_unlock_bh(&ts->ctl_lock);

	mutex_lock(&ts->conn_lock);
	if (type == TBRDMA_TB_LOGOUT) {
		was_up = tbrdma_tb_disconnect(ts);
		tbrdma_tb_start_login(ts, TBRDMA_TB_LOGIN_DELAY_MS);
	} else if (type == TBRDMA_TB_LOGIN) {
		if (ts->connected && hopid != ts->peer_hopid)
			was_up = tbrdma_tb_disconnect(ts);
		if (!ts->connected)
			tbrdma_tb_start_login(ts, 0);
	}
	mutex_unlock(&ts->conn_lock);
	if (was_up)
		tbrdma_tb_rail_event(ts, false);
}

/* Records the peer's LOGIN/LOGOUT for ctl_work; returns false once the service is going. */
static bool tbrdma_tb_post_ctl(struct tbrdma_tb_service *ts, const struct tbrdma_tb_msg *msg)
{
	bool open;

	spin_lock_bh(&ts->ctl_lock);
	open = !ts->ctl_closed;
	if (open) {
		ts->ctl_type = msg->type;
		ts->ctl_hopid = msg->in_hopid;
		if (msg->type == TBRDMA_TB_LOGIN)
			ts->ctl_answered = true;
		queue_work(system_long_wq, &ts->ctl_work);
	}
	spin_unlock_bh(&ts->ctl_lock);
	return open;
}

/*
 * XDomain control messages with our protocol UUID (control ring work, process context).
 * Returning 1 consumes the message; responses must return 0 so they reach the waiting
 * tb_xdomain_request(). This only answers and hands over to ctl_work: it must not wait
 * for anything on the control channel, nor for conn_lock (whose holder may).
 */
static int tbrdma_tb_handle_packet(const void *buf, size_t size, void *data)
{
	struct tbrdma_tb_service *ts = data;
	struct tbrdma_tb_msg msg;
	u32 status = TBRDMA_TB_STATUS_OK;

	if (tbrdma_tb_msg_decode(buf, size, tbrdma_tb_proto_uuid.b, &msg))
		return 0;
	if (msg.type != TBRDMA_TB_LOGIN && msg.type != TBRDMA_TB_LOGOUT)
		return 0;
	if (!tbrdma_tb_msg_for_us(&msg, ts->xd->route, ts->xd->local_uuid->b,
				  ts->xd->remote_uuid->b))
		return 0;
	if (msg.type == TBRDMA_TB_LOGIN && tbrdma_tb_check_peer(&msg, ts->xd->remote_max_hopid))
		status = TBRDMA_TB_STATUS_REFUSED;
	else if (!tbrdma_tb_post_ctl(ts, &msg))
		status = TBRDMA_TB_STATUS_REFUSED;
	if (tbrdma_tb_respond(ts, &msg, status))
		dev_dbg(&ts->svc->dev, "response to peer message %u not sent\n", msg.type);
	return 1;
}

/* ---- rails ---- */

int tbrdma_tb_add_rail(struct tbrdma_dev *tdev, const char *name)
{
	struct tbrdma_tb_service *ts;
	int err = -ENODEV;

	mutex_lock(&tbrdma_tb_mutex);
	list_for_each_entry(ts, &tbrdma_tb_services, node) {
		if (!strcmp(ts->name, name)) {
			err = tbrdma_add_tb_rail(tdev, ts);
			break;
		}
	}
	mutex_unlock(&tbrdma_tb_mutex);
	return err;
}

/* Rail mutex and the service list mutex held. A service feeds one device only. */
int tbrdma_tb_rail_start(struct tbrdma_rail *rail)
{
	struct tbrdma_tb_service *ts = rail->tb;
	int err = 0;

	spin_lock_bh(&ts->rx_lock);
	if (ts->rail)
		err = -EBUSY;
	else
		ts->rail = rail;
	spin_unlock_bh(&ts->rx_lock);
	if (!err)
		kref_get(&ts->kref);
	return err;
}

/* Rail mutex held. When this returns no receive handler is using the rail. */
void tbrdma_tb_rail_stop(struct tbrdma_rail *rail)
{
	struct tbrdma_tb_service *ts = rail->tb;

	spin_lock_bh(&ts->rx_lock);
	if (ts->rail == rail)
		ts->rail = NULL;
	spin_unlock_bh(&ts->rx_lock);
	rail->tb = NULL;
	kref_put(&ts->kref, tbrdma_tb_release);
}

bool tbrdma_tb_running(const struct tbrdma_rail *rail)
{
	return rail->tb && READ_ONCE(rail->tb->tx_ready);
}

u32 tbrdma_tb_max_frame(const struct tbrdma_rail *rail)
{
	if (!tbrdma_tb_running(rail))
		return TBRDMA_TB_FRAME_SIZE;
	return READ_ONCE(rail->tb->max_frame);
}

const char *tbrdma_tb_name(const struct tbrdma_rail *rail)
{
	return rail->tb ? rail->tb->name : "tb:?";
}

/*
 * The XDomain link's negotiated rate: link_speed Gb/s per lane times the lanes. Before 6.4
 * link_width was a lane count (1 or 2); since then a tb_link_width bit whose single- and
 * dual-lane values are the same 1 and 2. An asymmetric USB4 v2 link (3 lanes one way, 1
 * the other) is counted as the symmetric dual-lane link it was bonded from. Unknown speed
 * (0): USB4's nominal 40 Gb/s.
 */
u32 tbrdma_tb_mbps(const struct tbrdma_rail *rail)
{
	struct tb_xdomain *xd = rail->tb ? rail->tb->xd : NULL;
	u32 speed = xd ? READ_ONCE(xd->link_speed) : 0;
	u32 width = xd ? (u32)READ_ONCE(xd->link_width) : 0;

	if (!speed)
		return 40000;
	return speed * 1000 * (width == 1 ? 1 : 2);
}

/* ---- service driver ---- */

/* "tb:<peer UUID>", as the XDomain's sysfs unique_id shows it; unique among bound services. */
static void tbrdma_tb_set_name(struct tbrdma_tb_service *ts)
{
	struct tbrdma_tb_service *other;

	lockdep_assert_held(&tbrdma_tb_mutex);
	snprintf(ts->name, sizeof(ts->name), "tb:%pUb", ts->xd->remote_uuid);
	list_for_each_entry(other, &tbrdma_tb_services, node) {
		if (!strcmp(other->name, ts->name)) {
			snprintf(ts->name, sizeof(ts->name), "tb:%pUb@%s", ts->xd->remote_uuid,
				 dev_name(&ts->xd->dev));
			break;
		}
	}
}

static int tbrdma_tb_probe(struct tb_service *svc, const struct tb_service_id *id)
{
	struct tb_xdomain *xd = tb_service_parent(svc);
	struct tbrdma_tb_service *ts;
	int err;

	if (!xd || !xd->local_uuid || !xd->remote_uuid)
		return -ENODEV;
	ts = kzalloc(sizeof(*ts), GFP_KERNEL);
	if (!ts)
		return -ENOMEM;
	kref_init(&ts->kref);
	mutex_init(&ts->conn_lock);
	spin_lock_init(&ts->tx_lock);
	spin_lock_init(&ts->rx_lock);
	spin_lock_init(&ts->ctl_lock);
	INIT_DELAYED_WORK(&ts->login_work, tbrdma_tb_login_work);
	INIT_WORK(&ts->ctl_work, tbrdma_tb_ctl_work);
	atomic_set(&ts->command_id, 0);
	ts->svc = svc;
	ts->xd = xd;
	ts->in_hopid = -1;
	ts->out_hopid = -1;
	ts->peer_hopid = -1;

	err = tbrdma_tb_alloc_resources(ts);
	if (err)
		goto err_free;
	ts->handler.uuid = &tbrdma_tb_proto_uuid;
	ts->handler.callback = tbrdma_tb_handle_packet;
	ts->handler.data = ts;
	err = tb_register_protocol_handler(&ts->handler);
	if (err)
		goto err_resources;
	tb_service_set_drvdata(svc, ts);

	mutex_lock(&tbrdma_tb_mutex);
	tbrdma_tb_set_name(ts);
	list_add_tail(&ts->node, &tbrdma_tb_services);
	mutex_unlock(&tbrdma_tb_mutex);

	queue_delayed_work(system_long_wq, &ts->login_work,
			   msecs_to_jiffies(TBRDMA_TB_LOGIN_FIRST_MS));
	dev_info(&svc->dev, "tbrdma peer on %s: rail %s, input HopID %d\n", dev_name(&xd->dev),
		 ts->name, ts->in_hopid);
	return 0;

err_resources:
	tbrdma_tb_free_resources(ts);
err_free:
	kfree(ts);
	return err;
}

/* Driver unbind or unplug: rails first, then the login machinery, paths, rings, HopIDs. */
static void tbrdma_tb_remove(struct tb_service *svc)
{
	struct tbrdma_tb_service *ts = tb_service_get_drvdata(svc);
	struct tbrdma_tb_msg reply;
	bool answered;

	mutex_lock(&tbrdma_tb_mutex);
	list_del(&ts->node);
	mutex_unlock(&tbrdma_tb_mutex);
	tbrdma_tb_rail_event(ts, true);

	/*
	 * The XDomain core calls handlers without holding its list lock, so a message in
	 * flight may still run our handler after this; ctl_closed makes it refuse and queue
	 * nothing (thunderbolt-net has the same window).
	 */
	spin_lock_bh(&ts->ctl_lock);
	ts->ctl_closed = true;
	answered = ts->ctl_answered;
	spin_unlock_bh(&ts->ctl_lock);
	tb_unregister_protocol_handler(&ts->handler);
	mutex_lock(&ts->conn_lock);
	ts->removing = true;
	mutex_unlock(&ts->conn_lock);
	cancel_work_sync(&ts->ctl_work);
	cancel_delayed_work_sync(&ts->login_work);

	mutex_lock(&ts->conn_lock);
	/* The peer may have paths to us if it connected on our answer: tell it we go. */
	if ((ts->connected || answered) && !ts->xd->is_unplugged)
		tbrdma_tb_request(ts, TBRDMA_TB_LOGOUT, 0, TBRDMA_TB_LOGOUT_TIMEOUT_MS, &reply);
	tbrdma_tb_disconnect(ts);
	mutex_unlock(&ts->conn_lock);

	tbrdma_tb_free_resources(ts);
	tb_service_set_drvdata(svc, NULL);
	kref_put(&ts->kref, tbrdma_tb_release);
}

static const struct tb_service_id tbrdma_tb_ids[] = {
	{ TB_SERVICE(TBRDMA_TB_PROTOCOL_KEY, TBRDMA_TB_PROTOCOL_ID) },
	{ },
};
MODULE_DEVICE_TABLE(tbsvc, tbrdma_tb_ids);

static struct tb_service_driver tbrdma_tb_driver = {
	.driver = {
		.owner = THIS_MODULE,
		.name = "tbrdma",
	},
	.probe = tbrdma_tb_probe,
	.remove = tbrdma_tb_remove,
	.id_table = tbrdma_tb_ids,
};

int tbrdma_tb_init(void)
{
	int err;

	/* A service directory needs its own UUID: the peer parses one in front of its entries. */
	tbrdma_tb_dir = tb_property_create_dir(&tbrdma_tb_dir_uuid);
	if (!tbrdma_tb_dir)
		return -ENOMEM;
	tb_property_add_immediate(tbrdma_tb_dir, "prtcid", TBRDMA_TB_PROTOCOL_ID);
	tb_property_add_immediate(tbrdma_tb_dir, "prtcvers", TBRDMA_TB_PROTOCOL_VERSION);
	tb_property_add_immediate(tbrdma_tb_dir, "prtcrevs", TBRDMA_TB_PROTOCOL_REVISION);
	tb_property_add_immediate(tbrdma_tb_dir, "prtcstns", 0);
	err = tb_register_property_dir(TBRDMA_TB_PROTOCOL_KEY, tbrdma_tb_dir);
	if (err)
		goto err_dir;
	err = tb_register_service_driver(&tbrdma_tb_driver);
	if (err)
		goto err_unregister_dir;
	return 0;

err_unregister_dir:
	tb_unregister_property_dir(TBRDMA_TB_PROTOCOL_KEY, tbrdma_tb_dir);
err_dir:
	tb_property_free_dir(tbrdma_tb_dir);
	tbrdma_tb_dir = NULL;
	return err;
}

void tbrdma_tb_exit(void)
{
	tb_unregister_service_driver(&tbrdma_tb_driver);
	tb_unregister_property_dir(TBRDMA_TB_PROTOCOL_KEY, tbrdma_tb_dir);
	tb_property_free_dir(tbrdma_tb_dir);
	tbrdma_tb_dir = NULL;
}

#else /* !IS_REACHABLE(CONFIG_USB4) */

int tbrdma_tb_init(void)
{
	return 0;
}

void tbrdma_tb_exit(void)
{
}

int tbrdma_tb_add_rail(struct tbrdma_dev *tdev, const char *name)
{
	return -EOPNOTSUPP;
}

int tbrdma_tb_rail_start(struct tbrdma_rail *rail)
{
	return -EOPNOTSUPP;
}

void tbrdma_tb_rail_stop(struct tbrdma_rail *rail)
{
}

int tbrdma_tb_xmit(struct tbrdma_rail *rail, const void *frame, size_t len)
{
	return -ENODEV;
}

bool tbrdma_tb_running(const struct tbrdma_rail *rail)
{
	return false;
}

u32 tbrdma_tb_max_frame(const struct tbrdma_rail *rail)
{
	return 0;
}

u32 tbrdma_tb_mbps(const struct tbrdma_rail *rail)
{
	return 0;
}

const char *tbrdma_tb_name(const struct tbrdma_rail *rail)
{
	return "tb:?";
}

#endif
