/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Thunderbolt rails, inside the module: a bound XDomain service and its ring pairs, shared by
 * rail_tb.c (rings, data path, login) and rail_tb_bind.c (binding, rails, wishes).
 */
#ifndef TBRDMA_RAIL_TB_H
#define TBRDMA_RAIL_TB_H

#include <linux/kref.h>
#include <linux/mutex.h>
#include <linux/uuid.h>
#include <linux/workqueue.h>

#include "tbrdma.h"
#include "rail_tb_msg.h"
#include "rail_tb_ops.h"

#define TBRDMA_TB_RING_SIZE		512
#define TBRDMA_TB_MAX_PAIRS		4
#define TBRDMA_TB_POLL_BUDGET		64
#define TBRDMA_TB_PDF_SOF		1	/* start/end of frame PDF values of our rings */
#define TBRDMA_TB_PDF_EOF		2
#define TBRDMA_TB_LOGIN_FIRST_MS	100
#define TBRDMA_TB_LOGIN_DELAY_MS	1000
#define TBRDMA_TB_LOGIN_TIMEOUT_MS	500
#define TBRDMA_TB_LOGIN_RETRIES		60
#define TBRDMA_TB_LOGOUT_TIMEOUT_MS	1000
#define TBRDMA_TB_SILENCE_GRACE_MS	1000

struct tbrdma_tb_frame {
	struct ring_frame frame;
	struct tbrdma_tb_pair *pair;
	void *buf;			/* TBRDMA_TB_FRAME_SIZE bytes, DMA-mapped for the ring */
	u32 gen;			/* tx_gen when taken by frame_get */
	u16 index;
};

struct tbrdma_tb_pair {
	struct tbrdma_tb_service *ts;
	unsigned int index;
	char name[TBRDMA_RAIL_NAME_LEN];

	/* Login state, paths and ring start/stop: under the service's conn_lock. */
	bool connected;			/* rings started, DMA paths enabled */
	int login_retries;
	int peer_hopid;			/* validated peer input HopID while connected, else -1 */
	u32 peer_max_frame;
	struct delayed_work login_work;

	/* The latest LOGIN/LOGOUT from the peer for this pair (handler -> ctl_work). */
	bool ctl_answered;		/* we accepted a peer login: it may have paths to us */
	u32 ctl_type;			/* 0 if none pending; under the service's ctl_lock */
	u32 ctl_hopid;
	u32 ctl_max_frame;
	struct work_struct ctl_work;

	/* The core heard nothing on the rail: log in again unless frames arrive meanwhile. */
	struct delayed_work silence_work;
	u64 silent_rx_polls;		/* rx_polls when the silence was reported */
	u64 silent_relogins, paths_kept;

	struct tb_ring *tx_ring;
	struct tb_ring *rx_ring;
	int in_hopid;			/* ours, where the peer transmits to */
	int out_hopid;			/* the peer's in_hopid while connected, else -1 */

	/* Transmit (atomic: called by the core under the device lock with BHs off). */
	spinlock_t tx_lock;
	bool tx_ready;			/* mirrors connected for the atomic path */
	bool tx_stalled;		/* the ring was full; a completion kicks the core */
	u32 tx_gen;			/* bumped whenever the free list is rebuilt */
	u32 max_frame;			/* min(peer's, ours); fixed while tx_ready */
	unsigned int tx_nfree;
	u16 *tx_free;
	struct tbrdma_tb_frame *tx_frames;
	struct tbrdma_tb_frame *rx_frames;

	/* The rail received frames go to; NULL while not attached to a device. */
	spinlock_t rx_lock;
	struct tbrdma_rail *rail;
	struct work_struct rx_work;	/* polls the RX ring */
	u64 rx_errors, rx_polls;
};

struct tbrdma_tb_service {
	struct kref kref;		/* the service list and each attached rail */
	struct list_head node;		/* on tbrdma_tb_services while bound */
	const struct tbrdma_tb_ops *ops;
	struct tb_xdomain *xd;
	struct device *dev;
	char peer[TBRDMA_RAIL_NAME_LEN];	/* "tb:<peer UUID>" */
	char cable[TBRDMA_RAIL_NAME_LEN];	/* "tb:<peer UUID>@<XDomain>" */
	struct tb_protocol_handler handler;

	/*
	 * Login state, paths and ring start/stop of every pair (sleeps). Never held around
	 * our own request, and the protocol handler never takes it: enabling paths waits for
	 * the control channel, whose receive work runs that handler.
	 */
	struct mutex conn_lock;
	/* One request in flight: the XDomain core matches responses by route and UUID only. */
	struct mutex request_lock;
	bool removing;
	bool suspended;			/* host suspend or shutdown: pairs stay down */
	bool firmware_cm;		/* disabling one path drops all: never while plugged */
	atomic_t command_id;

	spinlock_t ctl_lock;
	bool ctl_closed;		/* removing: refuse logins, queue nothing */

	unsigned int npairs;
	struct tbrdma_tb_pair pairs[];
};

extern const uuid_t tbrdma_tb_proto_uuid;

void tbrdma_tb_release(struct kref *kref);
int tbrdma_tb_alloc_resources(struct tbrdma_tb_pair *pair);
void tbrdma_tb_free_resources(struct tbrdma_tb_pair *pair);
bool tbrdma_tb_disconnect(struct tbrdma_tb_pair *pair);
int tbrdma_tb_request(struct tbrdma_tb_pair *pair, u32 type, u32 sequence,
		      unsigned int timeout_ms, struct tbrdma_tb_msg *reply);
void tbrdma_tb_login_work(struct work_struct *work);
void tbrdma_tb_ctl_work(struct work_struct *work);
void tbrdma_tb_silence_work(struct work_struct *work);
void tbrdma_tb_rx_work(struct work_struct *work);
int tbrdma_tb_handle_packet(const void *buf, size_t size, void *data);
void tbrdma_tb_start_login(struct tbrdma_tb_pair *pair, unsigned int delay_ms);
bool tbrdma_tb_firmware_cm(const struct tb_xdomain *xd);

#endif
