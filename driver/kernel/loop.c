// SPDX-License-Identifier: GPL-2.0-only
/*
 * Loopback: RC and UC QPs connected to QPs of this same device (rdma-core's own test suite,
 * rdma_cm between two local addresses, MPI ranks on one host).
 *
 * rxe loops such packets back below its transport. tbrdma does the same one level lower: two
 * extra core links, joined by an in-memory rail, carry them with the very transport a cable
 * link runs (ordering, RNR, retries, READ/atomic responder resources, NAKs), so a loopback
 * QP behaves exactly like one across the cable. Of two connected QPs, the one with the lower
 * QPN opens on link 0 and its peer on link 1; a QP connected to itself opens on both.
 *
 * A frame one link sends is copied into the other link's queue; a work item feeds the queue
 * to the core, because a core may not be re-entered from inside its own callbacks. Both links
 * use a random key of their own; the frame MAC and payload CRC are off (nothing but this
 * file can put a frame on the in-memory rail). Everything here runs under tdev->lock.
 */
#include <linux/random.h>
#include <linux/slab.h>

#include "tbrdma.h"
#include "tbp.h"

/* Largest frame on the in-memory rail: a frame and its list node fit one 8 KiB allocation. */
#define TBRDMA_LOOP_FRAME	(8192 - 64)
/* Frames waiting per link before its peer link is told "rail busy" (it retries). */
#define TBRDMA_LOOP_QUEUE	2048
/* Frames fed to the cores per work run, before the others on its CPU get a turn. */
#define TBRDMA_LOOP_BUDGET	256
#define TBRDMA_LOOP_MSGS	1024

struct tbrdma_loop_frame {
	struct list_head node;
	u32 len;
	u8 data[];
};

static struct tbrdma_dev *loop_tdev(struct tbrdma_loop *loop)
{
	return container_of(loop, struct tbrdma_dev, loop);
}

/* A frame of link `from` for the other link: queued for the rx work. Link lock held. */
/* A frame for the other side, to be built in place (the core's frame_get). */
static void *loop_frame_get(struct tbrdma_dev *tdev, unsigned int from, u32 len, void **token)
{
	struct tbrdma_loop *loop = &tdev->loop;
	struct tbrdma_loop_frame *f;

	if (!loop->ready || tdev->dying || len > TBRDMA_LOOP_FRAME)
		return NULL;
	if (loop->queued[!from] >= TBRDMA_LOOP_QUEUE) {
		loop->stat_busy++;
		return NULL;
	}
	f = kmalloc(struct_size(f, data, len), GFP_ATOMIC | __GFP_NOWARN);
	if (!f) {
		loop->stat_busy++;
		return NULL;
	}
	*token = f;
	return f->data;
}

static int loop_frame_commit(struct tbrdma_dev *tdev, unsigned int from, void *token, u32 len)
{
	struct tbrdma_loop *loop = &tdev->loop;
	struct tbrdma_loop_frame *f = token;

	f->len = len;
	list_add_tail(&f->node, &loop->queue[!from]);
	loop->queued[!from]++;
	loop->stat_frames++;
	queue_work(system_highpri_wq, &loop->rx_work);
	return 0;
}

static int loop_xmit(struct tbrdma_dev *tdev, unsigned int from, const void *frame, u32 len)
{
	void *token, *data = loop_frame_get(tdev, from, len, &token);

	if (!data)
		return -ENOBUFS;
	memcpy(data, frame, len);
	return loop_frame_commit(tdev, from, token, len);
}

static int loop_xmit_from0(void *ctx, uint32_t rail, const void *frame, uint32_t len)
{
	return loop_xmit(ctx, 0, frame, len);
}

static int loop_xmit_from1(void *ctx, uint32_t rail, const void *frame, uint32_t len)
{
	return loop_xmit(ctx, 1, frame, len);
}

static void *loop_frame_get_from0(void *ctx, uint32_t rail, uint32_t len, void **token)
{
	return loop_frame_get(ctx, 0, len, token);
}

static void *loop_frame_get_from1(void *ctx, uint32_t rail, uint32_t len, void **token)
{
	return loop_frame_get(ctx, 1, len, token);
}

static int loop_frame_commit_from0(void *ctx, uint32_t rail, void *token, uint32_t len)
{
	return loop_frame_commit(ctx, 0, token, len);
}

static int loop_frame_commit_from1(void *ctx, uint32_t rail, void *token, uint32_t len)
{
	return loop_frame_commit(ctx, 1, token, len);
}

static void loop_event(void *ctx, uint32_t event, uint32_t rail)
{
	struct tbrdma_dev *tdev = ctx;

	if (event == TBP_EV_LINK_FAILED && !tdev->dying)
		queue_work(system_wq, &tdev->loop.rebuild_work);
}

static void loop_purge(struct tbrdma_loop *loop)
{
	struct tbrdma_loop_frame *f, *next;
	unsigned int side;

	for (side = 0; side < 2; side++) {
		list_for_each_entry_safe(f, next, &loop->queue[side], node) {
			list_del(&f->node);
			kfree(f);
		}
		loop->queued[side] = 0;
	}
}

/* Takes the links down: every loopback QP goes to error, as on a failed cable link. */
static void loop_teardown(struct tbrdma_dev *tdev)
{
	struct tbrdma_loop *loop = &tdev->loop;
	struct tbrdma_qp *qp;
	unsigned long qpn;

	lockdep_assert_held(&tdev->lock);
	if (!loop->ready)
		return;
	xa_for_each(&tdev->qps, qpn, qp)
		if (qp->loop_side != TBRDMA_LOOP_NONE)
			tbrdma_qp_to_error(qp, true);
	tbp_link_teardown(loop->link[0]);
	tbp_link_teardown(loop->link[1]);
	loop->ready = false;
	loop->link[0] = loop->link[1] = NULL;
	loop_purge(loop);
	tbrdma_after_core_call(tdev);
}

/* Builds both links and starts their handshake. Process context. */
static int loop_build(struct tbrdma_dev *tdev)
{
	struct tbrdma_loop *loop = &tdev->loop;
	struct tbp_config cfg;
	struct tbp_env env;
	void *mem[2], *old[2];
	size_t size, old_size;
	unsigned int side;
	int err = 0;

	tbp_config_default(&cfg);
	tbrdma_core_timing(&cfg);
	/* Nothing can cut the in-memory rail: idle devices wake for it once a second only. */
	cfg.keepalive_ns = NSEC_PER_SEC;
	cfg.rail_dead_ns = 30 * NSEC_PER_SEC;
	if (cfg.link_dead_ns < cfg.rail_dead_ns)
		cfg.link_dead_ns = cfg.rail_dead_ns;
	cfg.key_len = TBRDMA_KEY_LEN;
	get_random_bytes(cfg.key, cfg.key_len);
	cfg.max_qps = TBRDMA_MAX_QP;
	cfg.max_msg_len = TBRDMA_MAX_MSG_SIZE;
	cfg.max_msgs = TBRDMA_LOOP_MSGS;
	cfg.max_rx_msgs = TBRDMA_LOOP_MSGS;
	cfg.caps &= ~(TBP_CAP_FRAME_MAC | TBP_CAP_PAYLOAD_CSUM);
	size = tbp_link_size(&cfg);
	if (!size)
		return -EINVAL;
	mem[0] = kvzalloc(size, GFP_KERNEL);
	mem[1] = kvzalloc(size, GFP_KERNEL);
	if (!mem[0] || !mem[1]) {
		kvfree(mem[0]);
		kvfree(mem[1]);
		return -ENOMEM;
	}

	spin_lock_bh(&tdev->lock);
	loop_teardown(tdev);
	old[0] = loop->mem[0];
	old[1] = loop->mem[1];
	old_size = loop->mem_size;
	for (side = 0; side < 2 && !err; side++) {
		tbrdma_core_env(tdev, &env);
		/* Not the device's xmit and in-place builders: those put frames on its rails. */
		env.xmit = side ? loop_xmit_from1 : loop_xmit_from0;
		env.frame_get = side ? loop_frame_get_from1 : loop_frame_get_from0;
		env.frame_commit = side ? loop_frame_commit_from1 : loop_frame_commit_from0;
		env.event = loop_event;
		cfg.role = side ? TBP_ROLE_RESPONDER : TBP_ROLE_INITIATOR;
		err = tbp_link_init(&loop->link[side], mem[side], size, &cfg, &env);
		if (!err)
			/* memory to memory inside this kernel: nothing to authenticate */
			err = tbp_rail_add(loop->link[side], 0, 1, TBRDMA_LOOP_FRAME,
					   TBP_RAIL_DMA);
	}
	memzero_explicit(&cfg, sizeof(cfg));
	if (err) {
		loop->link[0] = loop->link[1] = NULL;
		loop->mem[0] = loop->mem[1] = NULL;
	} else {
		loop->mem[0] = mem[0];
		loop->mem[1] = mem[1];
		loop->mem_size = size;
		loop->ready = true;
		loop->dirty = true;
		tbrdma_link_tick_locked(tdev);
	}
	spin_unlock_bh(&tdev->lock);
	kvfree_sensitive(old[0], old_size);
	kvfree_sensitive(old[1], old_size);
	if (err) {
		kvfree_sensitive(mem[0], size);
		kvfree_sensitive(mem[1], size);
	}
	return err;
}

static void loop_rx_work(struct work_struct *work)
{
	struct tbrdma_loop *loop = container_of(work, struct tbrdma_loop, rx_work);
	struct tbrdma_dev *tdev = loop_tdev(loop);
	unsigned int budget = TBRDMA_LOOP_BUDGET;
	bool more;

	spin_lock_bh(&tdev->lock);
	while (budget-- && loop->ready && (loop->queued[0] || loop->queued[1])) {
		unsigned int side = loop->next_side;
		struct tbrdma_loop_frame *f;

		loop->next_side = !side;
		if (!loop->queued[side])
			side = !side;
		f = list_first_entry(&loop->queue[side], struct tbrdma_loop_frame, node);
		list_del(&f->node);
		loop->queued[side]--;
		tbp_rx(loop->link[side], 0, f->data, f->len);
		kfree(f);
	}
	/* One tick per batch: it sends the ACKs and whatever the frames made ready. */
	loop->dirty = true;
	tbrdma_after_core_call(tdev);
	tbrdma_link_tick_locked(tdev);
	more = loop->ready && (loop->queued[0] || loop->queued[1]);
	spin_unlock_bh(&tdev->lock);
	if (more)
		queue_work(system_highpri_wq, &loop->rx_work);
}

static void loop_rebuild_work(struct work_struct *work)
{
	struct tbrdma_loop *loop = container_of(work, struct tbrdma_loop, rebuild_work);
	struct tbrdma_dev *tdev = loop_tdev(loop);

	if (!READ_ONCE(tdev->dying) && loop_build(tdev))
		pr_warn_ratelimited("tbrdma %s: loopback links not rebuilt; loopback QPs fail\n",
				    dev_name(&tdev->ibdev.dev));
}

/*
 * Ticks the loop links when work was given to them or their deadline passed; returns their
 * next deadline. Link lock held.
 */
u64 tbrdma_loop_tick(struct tbrdma_dev *tdev, u64 now)
{
	struct tbrdma_loop *loop = &tdev->loop;
	int rounds = 4;

	if (!loop->ready)
		return U64_MAX;
	/* after_core_call() may post more to the loop links: tick them again, a few times. */
	while (loop->ready && (loop->dirty || now >= loop->deadline) && rounds--) {
		loop->dirty = false;
		loop->deadline = min(tbp_tick(loop->link[0], now), tbp_tick(loop->link[1], now));
		tbrdma_after_core_call(tdev);
	}
	return loop->ready ? loop->deadline : U64_MAX;
}

/* The loop links a loopback QP is open on (posts go to the first). Link lock held. */
unsigned int tbrdma_loop_links(struct tbrdma_qp *qp, struct tbp_link *links[2])
{
	struct tbrdma_loop *loop = &qp->tdev->loop;
	unsigned int n = 0;

	if (!loop->ready || qp->loop_side == TBRDMA_LOOP_NONE)
		return 0;
	if (qp->loop_side != TBRDMA_LOOP_HIGH)
		links[n++] = loop->link[0];
	if (qp->loop_side != TBRDMA_LOOP_LOW)
		links[n++] = loop->link[1];
	return n;
}

int tbrdma_loop_create(struct tbrdma_dev *tdev)
{
	struct tbrdma_loop *loop = &tdev->loop;

	INIT_LIST_HEAD(&loop->queue[0]);
	INIT_LIST_HEAD(&loop->queue[1]);
	INIT_WORK(&loop->rx_work, loop_rx_work);
	INIT_WORK(&loop->rebuild_work, loop_rebuild_work);
	loop->deadline = U64_MAX;
	return loop_build(tdev);
}

/* tdev->dying is set: nothing queues the works again. */
void tbrdma_loop_destroy(struct tbrdma_dev *tdev)
{
	struct tbrdma_loop *loop = &tdev->loop;

	cancel_work_sync(&loop->rebuild_work);
	cancel_work_sync(&loop->rx_work);
	spin_lock_bh(&tdev->lock);
	loop_teardown(tdev);
	spin_unlock_bh(&tdev->lock);
	kvfree_sensitive(loop->mem[0], loop->mem_size);
	kvfree_sensitive(loop->mem[1], loop->mem_size);
	loop->mem[0] = loop->mem[1] = NULL;
}
