// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * simnet.c - the deterministic TBP simulator (see simnet.h).
 *
 * Everything random comes from one seeded xorshift generator and events are
 * ordered by (time, insertion number), so a seed replays exactly.
 */
#include "simnet.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../userspace/hmac_sha256.h"

#define NEP 2
#define MAX_QPS 4
#define ARENA_SIZE (4u << 20)    /* each endpoint's writable MR */
#define WRITE_SLOT (64u << 10)   /* WRITE targets rotate through ARENA_SIZE / WRITE_SLOT */
#define PATTERN_SIZE (1u << 20)  /* read-only MR that READs fetch */
#define RKEY_ARENA 0x1000u
#define RKEY_PATTERN 0x2000u
#define RKEY_COUNTER 0x3000u     /* MAX_QPS u64 counters: FETCH_ADD target of the peer's QP q */
/* SEND_WITH_INV keys: 0x5 << 24 | QP << 16 | the sender's count of them on that QP (mod 2^16);
 * INV_BAD marks one the receiver refuses (errors mix). */
#define INV_KEY(q, n) (0x05000000u | ((uint32_t)(q) << 16) | ((n) & 0xffffu))
#define INV_BAD 0x80000000u
#define APP_STEP_NS 50000ull
#define RECV_TARGET 48u

struct buffer {
	uint32_t len;
	uint8_t data[];
};

struct wr_rec {
	struct wr_rec *all_next;     /* every record, freed at the end of the run */
	struct wr_rec *next_posted;  /* sender's per-QP FIFO */
	struct wr_rec *next_expect;  /* receiver's per-QP FIFO of receive-consuming WRs */
	uint64_t wr_id;
	uint32_t opcode;
	uint32_t len;
	uint32_t imm;
	uint32_t rkey;
	uint64_t raddr;
	uint32_t expect_status;      /* at the sender */
	uint32_t expect_rx_status;   /* in the receiver's completion */
	uint32_t pattern_seed;
	uint64_t post_ns;
	int slot;                    /* WRITE target region held (WRITE, SEND: unused) */
	struct buffer *local;
};

struct fifo {
	struct wr_rec *head, *tail;
};

struct recvbuf {
	struct buffer *buf;
	struct recvbuf *next;
};

struct endpoint {
	struct sim *sim;
	int id;
	void *mem;
	struct tbp_link *link;
	uint8_t *arena;
	uint8_t *pattern;
	uint32_t qpn[MAX_QPS];
	struct fifo posted[MAX_QPS];     /* my WRs awaiting send_done */
	struct fifo expect[MAX_QPS];     /* peer's WRs that will complete a receive of mine */
	struct recvbuf *recv_head[MAX_QPS], *recv_tail[MAX_QPS];
	uint32_t recv_posted[MAX_QPS];
	uint32_t wrs_posted, wrs_done, outstanding, recvs_done;
	bool post_closed;                /* link failed: no more posting */
	uint64_t next_tick;
	uint64_t bytes_placed, bytes_expected;
	uint32_t inv_sent[MAX_QPS];      /* SEND_WITH_INVs posted on the QP */
	uint32_t inv_next[MAX_QPS];      /* the count the next invalidation must carry */
	uint64_t invalidations;
	uint32_t rail_inflight[4];
	uint8_t *tx_frame;               /* frame_get's buffer (the in-place endpoint only) */
	uint32_t tx_frame_len;           /* its length while the core builds in it, else 0 */
	bool qp_open[MAX_QPS];           /* opened in the core (and not closed) */
	bool qp_failed[MAX_QPS];         /* a transport error completion was seen */
	uint32_t qp_outstanding[MAX_QPS];
	uint64_t first_done_ns[MAX_QPS], last_done_ns[MAX_QPS];
	uint64_t error_done_ns;          /* when QP special's error completion came */
	uint64_t bytes_slack;            /* bytes that may or may not have been placed */
	uint32_t write_slot;
	/* WRITE target regions of outstanding WRs: with per-QP retries a WR can stay outstanding
	 * while many later ones complete, so a region is reused only once its WR completed. */
	bool slot_busy[ARENA_SIZE / WRITE_SLOT];
	int link_failed_events;
	/* Atomics: counter[q] is what the peer's QP q adds to; atomic_next[q] the original the
	 * next FETCH_ADD of my QP q must return (each one runs once, in order). */
	uint64_t counter[MAX_QPS];
	uint64_t atomic_next[MAX_QPS];
	uint64_t atomics_ok[MAX_QPS];
};

struct event {
	uint64_t t;
	uint64_t order;
	int ep;      /* destination */
	int rail;
	uint8_t *frame;
	uint32_t len;
	bool copy;      /* the medium's duplicate of a frame (not counted as sent or lost) */
	bool corrupted; /* a bit was flipped on the way */
};

struct sim {
	struct sim_params p;
	uint64_t rng;
	uint64_t now;
	uint64_t order;
	struct endpoint ep[NEP];
	struct event *heap;
	size_t nheap, capheap;
	uint64_t rail_dead_until[4];
	uint64_t next_app;
	uint64_t blackout_at;
	uint32_t special;        /* the QP of the per-QP scenarios */
	int in_place_ep;         /* builds its data frames in place (frame_get): seed parity */
	uint64_t split_rng;      /* which frames arrive in pieces (its own stream: the rest of a
				  * seed's run is what it was before frames were split) */
	bool released, closed, opened, bigrail_done;
	struct wr_rec *rnr_last_wr; /* last WR ep0 posted on the RNR QP before the release */
	uint64_t rnr_last_done;
	bool failed;
	char *why;
	size_t why_len;
	bool verbose;
	struct wr_rec *all_wrs;
	bool tearing_down;       /* callbacks from the final teardown are not checked */
	struct sim_result res;   /* the medium's counts (sim_result) */
	uint64_t rail_last_t[NEP][4]; /* fifo: latest arrival scheduled per destination, rail */
	uint32_t max_seq[NEP];   /* highest sequence number delivered to each endpoint */
	bool have_max[NEP];
};

static uint64_t rnd(struct sim *s)
{
	uint64_t x = s->rng;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	s->rng = x;
	return x * 0x2545f4914f6cdd1dull;
}

static uint64_t rnd_below(struct sim *s, uint64_t n)
{
	return n ? rnd(s) % n : 0;
}

static bool chance_ppm(struct sim *s, uint32_t ppm)
{
	return ppm && rnd_below(s, 1000000) < ppm;
}

static void fail(struct sim *s, const char *fmt, ...)
{
	va_list ap;

	if (s->failed)
		return;
	s->failed = true;
	va_start(ap, fmt);
	vsnprintf(s->why, s->why_len, fmt, ap);
	va_end(ap);
}

static uint8_t pattern_byte(uint32_t seed, uint32_t i)
{
	uint32_t x = seed * 2654435761u + i * 40503u;

	x ^= x >> 13;
	return (uint8_t)(x * 0x5bd1e995u >> 24);
}

/* ---- event heap ---- */

static bool ev_before(const struct event *a, const struct event *b)
{
	return a->t < b->t || (a->t == b->t && a->order < b->order);
}

static void heap_push(struct sim *s, struct event ev)
{
	size_t i;

	if (s->nheap == s->capheap) {
		s->capheap = s->capheap ? s->capheap * 2 : 1024;
		s->heap = realloc(s->heap, s->capheap * sizeof(*s->heap));
		if (!s->heap)
			abort();
	}
	ev.order = s->order++;
	i = s->nheap++;
	while (i && ev_before(&ev, &s->heap[(i - 1) / 2])) {
		s->heap[i] = s->heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	s->heap[i] = ev;
}

static struct event heap_pop(struct sim *s)
{
	struct event top = s->heap[0], last = s->heap[--s->nheap];
	size_t i = 0;

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= s->nheap)
			break;
		if (c + 1 < s->nheap && ev_before(&s->heap[c + 1], &s->heap[c]))
			c++;
		if (!ev_before(&s->heap[c], &last))
			break;
		s->heap[i] = s->heap[c];
		i = c;
	}
	if (s->nheap)
		s->heap[i] = last;
	return top;
}

/* ---- environment callbacks ---- */

static uint64_t env_now(void *ctx)
{
	return ((struct endpoint *)ctx)->sim->now;
}

static bool rail_alive(struct sim *s, int rail)
{
	return s->now >= s->rail_dead_until[rail];
}

static uint32_t rail_flags(const struct sim_params *p, uint32_t rail)
{
	return (p->dma_rails & (1u << rail)) ? TBP_RAIL_DMA : 0;
}

/* Header bytes the medium's accounting reads (docs/protocol.md, "Wire format"). */
static bool is_seq_frame(const uint8_t *f, uint32_t len)
{
	return len >= TBP_HDR_LEN && (f[6] & TBP_F_SEQ);
}

static uint32_t frame_seq(const uint8_t *f)
{
	return (uint32_t)f[12] | (uint32_t)f[13] << 8 | (uint32_t)f[14] << 16 |
	       (uint32_t)f[15] << 24;
}

/* A sequenced original the medium dropped or corrupted: the link has to resend it. */
static void count_lost(struct sim *s, const uint8_t *frame, uint32_t len, bool copy)
{
	if (!copy && is_seq_frame(frame, len))
		s->res.seq_lost++;
}

/* An intact sequenced frame reaches dst: behind a higher sequence number is reordered. */
static void count_delivered(struct sim *s, int dst, const uint8_t *frame, uint32_t len)
{
	uint32_t seq;

	if (!is_seq_frame(frame, len))
		return;
	seq = frame_seq(frame);
	if (s->have_max[dst] && (int32_t)(seq - s->max_seq[dst]) < 0) {
		s->res.seq_reordered++;
		if (s->max_seq[dst] - seq > 64)
			s->res.seq_far++;
		return;
	}
	s->max_seq[dst] = seq;
	s->have_max[dst] = true;
}

static void schedule_frame(struct sim *s, int dst, int rail, const void *frame, uint32_t len,
			   uint64_t extra, bool copy)
{
	struct event ev;

	memset(&ev, 0, sizeof(ev));
	ev.t = s->now + s->p.delay_ns + rnd_below(s, s->p.jitter_ns + 1) + extra +
	       (uint64_t)rail * s->p.rail_skew_ns;
	if (s->p.fifo) {
		/* equal times pop in insertion order, so the rail stays FIFO */
		if (ev.t < s->rail_last_t[dst][rail])
			ev.t = s->rail_last_t[dst][rail];
		s->rail_last_t[dst][rail] = ev.t;
	}
	ev.ep = dst;
	ev.rail = rail;
	ev.len = len;
	ev.copy = copy;
	ev.frame = malloc(len ? len : 1);
	if (!ev.frame)
		abort();
	memcpy(ev.frame, frame, len);
	if (chance_ppm(s, s->p.corrupt_ppm)) {
		uint32_t at = (uint32_t)rnd_below(s, len);

		count_lost(s, frame, len, copy);
		if (s->p.dma_rails & (1u << rail)) {
			free(ev.frame); /* the receiving host interface's CRC check */
			return;
		}
		ev.frame[at] ^= (uint8_t)(1u << rnd_below(s, 8));
		ev.corrupted = true;
	}
	s->ep[1 - dst].rail_inflight[rail]++;
	heap_push(s, ev);
}

static int env_xmit(void *ctx, uint32_t rail, const void *frame, uint32_t len)
{
	struct endpoint *e = ctx;
	struct sim *s = e->sim;

	if (rail >= s->p.rails)
		fail(s, "ep%d: xmit on rail %u that was never added", e->id, rail);
	if (len < TBP_HDR_LEN || len > TBP_MAX_FRAME)
		fail(s, "ep%d: xmit of a %u byte frame", e->id, len);
	if (e->rail_inflight[rail] >= s->p.rail_queue)
		return -EAGAIN;
	if (is_seq_frame(frame, len))
		s->res.seq_sent++;
	if (!rail_alive(s, (int)rail) || chance_ppm(s, s->p.loss_ppm)) {
		count_lost(s, frame, len, false);
		return 0;
	}
	schedule_frame(s, 1 - e->id, (int)rail, frame, len, 0, false);
	if (chance_ppm(s, s->p.dup_ppm))
		schedule_frame(s, 1 - e->id, (int)rail, frame, len, rnd_below(s, 200000), true);
	return 0;
}

/* One endpoint of every run builds its data frames in the "rail's buffer" (frame_get), the
 * other through xmit: each mix covers both paths. The buffer is poisoned so that a frame the
 * core did not fully build is caught by the byte checks. */
static void *env_frame_get(void *ctx, uint32_t rail, uint32_t len, void **token)
{
	struct endpoint *e = ctx;
	struct sim *s = e->sim;

	if (e->tx_frame_len)
		fail(s, "ep%d: frame_get before the last frame was committed", e->id);
	if (len < TBP_HDR_LEN || len > TBP_MAX_FRAME)
		fail(s, "ep%d: frame_get of a %u byte frame", e->id, len);
	if (rail >= s->p.rails || e->rail_inflight[rail] >= s->p.rail_queue)
		return NULL;
	memset(e->tx_frame, 0x5a, len);
	e->tx_frame_len = len;
	*token = e->tx_frame;
	return e->tx_frame;
}

static int env_frame_commit(void *ctx, uint32_t rail, void *token, uint32_t len)
{
	struct endpoint *e = ctx;

	if (token != e->tx_frame || !e->tx_frame_len || len > e->tx_frame_len)
		fail(e->sim, "ep%d: commit of %u bytes breaks the frame_get contract", e->id, len);
	e->tx_frame_len = 0;
	return env_xmit(ctx, rail, e->tx_frame, len);
}

static void env_hmac(void *ctx, const uint8_t *key, uint32_t key_len, const uint8_t *msg,
		     uint32_t msg_len, uint8_t out[32])
{
	(void)ctx;
	hmac_sha256(key, key_len, msg, msg_len, out);
}

static void env_random(void *ctx, void *buf, uint32_t len)
{
	struct endpoint *e = ctx;
	uint8_t *p = buf;
	uint32_t i;

	for (i = 0; i < len; i++)
		p[i] = (uint8_t)rnd(e->sim);
}

static int env_mr_check(void *ctx, uint32_t qpn, uint32_t rkey, uint64_t addr, uint64_t len,
			uint32_t access)
{
	(void)ctx;
	(void)qpn;
	if (rkey == RKEY_ARENA)
		return addr + len <= ARENA_SIZE && addr + len >= addr ? 0 : TBP_ERR_REMOTE_ACCESS;
	if (rkey == RKEY_PATTERN)
		return addr + len <= PATTERN_SIZE && addr + len >= addr &&
		       access == TBP_ACCESS_REMOTE_READ ? 0 : TBP_ERR_REMOTE_ACCESS;
	if (rkey == RKEY_COUNTER)
		return addr < MAX_QPS * 8 && len == 8 && access == TBP_ACCESS_REMOTE_ATOMIC ?
		       0 : TBP_ERR_REMOTE_ACCESS;
	return TBP_ERR_REMOTE_ACCESS;
}

static int env_atomic(void *ctx, const struct tbp_buf *b, uint32_t op, uint64_t add,
		      uint64_t swap, uint64_t *orig)
{
	struct endpoint *e = ctx;

	(void)swap;
	if (b->kind != TBP_BUF_MR || b->rkey != RKEY_COUNTER || (b->addr & 7) ||
	    b->addr >= MAX_QPS * 8 || op != TBP_OP_ATOMIC_FETCH_ADD) {
		fail(e->sim, "ep%d: atomic outside the checked counter MR", e->id);
		return TBP_ERR_REMOTE_ACCESS;
	}
	*orig = e->counter[b->addr / 8];
	e->counter[b->addr / 8] += add;
	return 0;
}

static int qp_of(struct endpoint *e, uint32_t qpn);

/* Each SEND_WITH_INV of the peer is invalidated exactly once, in its QP's order. */
static int env_invalidate(void *ctx, uint32_t qpn, uint32_t rkey)
{
	struct endpoint *e = ctx;
	struct sim *s = e->sim;
	int q = qp_of(e, qpn);
	uint32_t n;

	e->invalidations++;
	if (q < 0 || (rkey & ~INV_BAD & 0xffff0000u) != INV_KEY(q, 0)) {
		fail(s, "ep%d: invalidation of key %#x on QP %u, not one of its keys", e->id, rkey,
		     qpn);
		return TBP_ERR_REMOTE_INVALID;
	}
	n = rkey & 0xffffu;
	/* Only a link failure or a closed QP may lose one (never run one twice). */
	if ((uint16_t)(n - e->inv_next[q]) >= 0x8000u ||
	    (n != (e->inv_next[q] & 0xffffu) && !s->p.blackout && !s->p.close_ns))
		fail(s, "ep%d qp%d: invalidation %u, expected %u (run twice or lost)", e->id, q, n,
		     e->inv_next[q] & 0xffffu);
	e->inv_next[q] = n + 1;
	return rkey & INV_BAD ? TBP_ERR_REMOTE_INVALID : 0;
}

static bool is_atomic(uint32_t op)
{
	return op == TBP_OP_ATOMIC_FETCH_ADD;
}

/* WRs that write into a rotating region of the peer's arena (or send from one). */
static bool uses_slot(uint32_t op)
{
	return op != TBP_OP_RDMA_READ && !is_atomic(op);
}

static uint8_t *mr_bytes(struct endpoint *e, const struct tbp_buf *b, uint64_t off, uint32_t len)
{
	uint64_t at = b->addr + off;

	if (b->rkey == RKEY_ARENA && at + len <= ARENA_SIZE)
		return e->arena + at;
	if (b->rkey == RKEY_PATTERN && at + len <= PATTERN_SIZE)
		return e->pattern + at;
	return NULL;
}

static int env_buf_read(void *ctx, const struct tbp_buf *b, uint64_t off, void *dst, uint32_t len)
{
	struct endpoint *e = ctx;

	if (b->kind == TBP_BUF_MR) {
		uint8_t *p = mr_bytes(e, b, off, len);

		if (!p) {
			fail(e->sim, "ep%d: READ source outside the checked MR", e->id);
			return TBP_ERR_REMOTE_ACCESS;
		}
		memcpy(dst, p, len);
		return 0;
	}
	if (b->kind == TBP_BUF_LOCAL) {
		struct buffer *lb = (struct buffer *)(uintptr_t)b->addr;

		if (off + len > lb->len) {
			fail(e->sim, "ep%d: read past a local buffer (%llu+%u > %u)", e->id,
			     (unsigned long long)off, len, lb->len);
			return TBP_ERR_LOCAL_PROTECTION;
		}
		memcpy(dst, lb->data + off, len);
		return 0;
	}
	fail(e->sim, "ep%d: buf_read of kind %u", e->id, b->kind);
	return TBP_ERR_LOCAL_PROTECTION;
}

static int env_buf_write(void *ctx, const struct tbp_buf *b, uint64_t off, const void *src,
			 uint32_t len)
{
	struct endpoint *e = ctx;
	uint8_t *p = NULL;

	if (b->kind == TBP_BUF_MR) {
		if (b->rkey != RKEY_ARENA)
			fail(e->sim, "ep%d: write into a non-writable MR", e->id);
		p = mr_bytes(e, b, off, len);
	} else if (b->kind == TBP_BUF_RECV || b->kind == TBP_BUF_LOCAL) {
		struct buffer *rb = (struct buffer *)(uintptr_t)b->addr;

		if (off + len <= rb->len)
			p = rb->data + off;
	}
	if (!p) {
		fail(e->sim, "ep%d: write outside its buffer (kind %u off %llu len %u)", e->id,
		     b->kind, (unsigned long long)off, len);
		return TBP_ERR_LOCAL_PROTECTION;
	}
	memcpy(p, src, len);
	e->bytes_placed += len;
	if (getenv("SIM_TRACE"))
		fprintf(stderr, "t=%llu ep%d write kind %u addr %llu off %llu len %u\n",
			(unsigned long long)e->sim->now, e->id, b->kind,
			(unsigned long long)b->addr, (unsigned long long)off, len);
	return 0;
}

static int env_recv_claim(void *ctx, uint32_t qpn, uint64_t *handle, uint32_t *capacity)
{
	struct endpoint *e = ctx;
	struct recvbuf *r;
	int q;

	for (q = 0; q < (int)e->sim->p.qps; q++)
		if (e->qpn[q] == qpn)
			break;
	if (q == (int)e->sim->p.qps) {
		fail(e->sim, "ep%d: recv_claim for unknown QP %u", e->id, qpn);
		return -EAGAIN;
	}
	r = e->recv_head[q];
	if (!r)
		return -EAGAIN;
	e->recv_head[q] = r->next;
	if (!r->next)
		e->recv_tail[q] = NULL;
	e->recv_posted[q]--;
	*handle = (uintptr_t)r->buf;
	*capacity = r->buf->len;
	free(r);
	return 0;
}

static int qp_of(struct endpoint *e, uint32_t qpn)
{
	int q;

	for (q = 0; q < (int)e->sim->p.qps; q++)
		if (e->qpn[q] == qpn)
			return q;
	return -1;
}

static bool check_bytes(const uint8_t *got, uint32_t seed, uint32_t len, uint32_t *bad_at)
{
	uint32_t i;

	for (i = 0; i < len; i++) {
		if (got[i] != pattern_byte(seed, i)) {
			*bad_at = i;
			return false;
		}
	}
	return true;
}

static bool link_failed(struct sim *s)
{
	return tbp_link_state(s->ep[0].link) == TBP_LINK_FAILED ||
	       tbp_link_state(s->ep[1].link) == TBP_LINK_FAILED;
}

static void env_send_done(void *ctx, uint32_t qpn, uint64_t wr_id, uint32_t status)
{
	struct endpoint *e = ctx;
	struct sim *s = e->sim;
	struct endpoint *peer = &s->ep[1 - e->id];
	int q = qp_of(e, qpn);
	struct wr_rec *w;
	uint32_t bad;

	if (s->tearing_down)
		return;
	if (getenv("SIM_TRACE"))
		fprintf(stderr, "t=%llu ep%d send_done wr %llu status %u\n",
			(unsigned long long)s->now, e->id, (unsigned long long)wr_id, status);
	if (q < 0) {
		fail(s, "ep%d: send_done for unknown QP %u", e->id, qpn);
		return;
	}
	w = e->posted[q].head;
	if (!w || w->wr_id != wr_id) {
		fail(s, "ep%d qp%d: send_done for wr %llu, expected %llu (order or duplicate)",
		     e->id, q, (unsigned long long)wr_id,
		     w ? (unsigned long long)w->wr_id : 0ull);
		return;
	}
	e->posted[q].head = w->next_posted;
	if (!e->posted[q].head)
		e->posted[q].tail = NULL;
	if (uses_slot(w->opcode))
		e->slot_busy[w->slot] = false;
	e->wrs_done++;
	e->outstanding--;
	e->qp_outstanding[q]--;
	if (w == s->rnr_last_wr)
		s->rnr_last_done = s->now;
	if (!e->first_done_ns[q])
		e->first_done_ns[q] = s->now;
	e->last_done_ns[q] = s->now;
	if (s->p.close_ns && e->id == 0 && (uint32_t)q == s->special && status != TBP_OK) {
		/* The peer closed the QP: one WR fails with the IBA error, the rest flush. */
		if (!e->qp_failed[q] && status != TBP_ERR_REMOTE_OP && status != TBP_ERR_RETRY_EXC)
			fail(s, "ep0 qp%d: wr %llu to the closed QP completed with status %u, expected "
			     "REMOTE_OP or RETRY_EXC", q, (unsigned long long)wr_id, status);
		else if (e->qp_failed[q] && status != TBP_ERR_FLUSHED)
			fail(s, "ep0 qp%d: wr %llu after the error completed with %u, expected FLUSHED",
			     q, (unsigned long long)wr_id, status);
		if (!e->qp_failed[q])
			e->error_done_ns = s->now;
		e->qp_failed[q] = true;
		/* An atomic places its result only with a successful completion. */
		if (w->opcode == TBP_OP_RDMA_READ)
			e->bytes_slack += w->len;
		else if (!is_atomic(w->opcode))
			peer->bytes_slack += w->len;
	} else if (e->qp_failed[q] && status == TBP_OK) {
		fail(s, "ep%d qp%d: wr %llu completed OK after the QP failed", e->id, q,
		     (unsigned long long)wr_id);
	} else if (status != w->expect_status &&
	    !(s->p.blackout && (status == TBP_ERR_LINK_DOWN || status == TBP_ERR_FLUSHED))) {
		fail(s, "ep%d qp%d: wr %llu opcode %u len %u completed with status %u, expected %u",
		     e->id, q, (unsigned long long)wr_id, w->opcode, w->len, status,
		     w->expect_status);
	} else if (status == TBP_OK) {
		if (w->opcode == TBP_OP_RDMA_WRITE || w->opcode == TBP_OP_RDMA_WRITE_WITH_IMM) {
			if (!check_bytes(peer->arena + w->raddr, w->pattern_seed, w->len, &bad))
				fail(s, "ep%d qp%d: wr %llu WRITE len %u raddr %llu: byte %u wrong at "
				     "the peer", e->id, q, (unsigned long long)wr_id, w->len,
				     (unsigned long long)w->raddr, bad);
		} else if (w->opcode == TBP_OP_RDMA_READ) {
			if (memcmp(w->local->data, peer->pattern + w->raddr, w->len) != 0)
				fail(s, "ep%d qp%d: wr %llu READ len %u returned wrong bytes", e->id,
				     q, (unsigned long long)wr_id, w->len);
			e->bytes_expected += w->len;
		} else if (is_atomic(w->opcode)) {
			uint64_t orig;

			/* One run per atomic, in QP order: the original is the count of those
			 * before it. Only a link failure or a closed QP may have run one whose
			 * completion was an error, so only then may a value be skipped. */
			memcpy(&orig, w->local->data, 8);
			if (orig < e->atomic_next[q] ||
			    (orig != e->atomic_next[q] && !s->p.blackout && !s->p.close_ns))
				fail(s, "ep%d qp%d: wr %llu FETCH_ADD returned %llu, expected %llu "
				     "(run twice or lost)", e->id, q, (unsigned long long)wr_id,
				     (unsigned long long)orig,
				     (unsigned long long)e->atomic_next[q]);
			e->atomic_next[q] = orig + 1;
			e->atomics_ok[q]++;
			e->bytes_expected += w->len;
		}
		if (uses_slot(w->opcode))
			peer->bytes_expected += w->len;
	} else if (w->opcode == TBP_OP_SEND_WITH_INV && status == w->expect_status) {
		/* A refused key: the data was placed before the invalidation failed. */
		peer->bytes_expected += w->len;
	}
	free(w->local);
	w->local = NULL;
}

static void env_recv_done(void *ctx, const struct tbp_recv_completion *c)
{
	struct endpoint *e = ctx;
	struct sim *s = e->sim;
	int q = qp_of(e, c->qpn);
	struct buffer *rb = (struct buffer *)(uintptr_t)c->recv_handle;
	struct wr_rec *w;
	uint32_t bad;

	if (s->tearing_down) {
		free(rb);
		return;
	}
	if (q < 0) {
		fail(s, "ep%d: recv_done for unknown QP %u", e->id, c->qpn);
		return;
	}
	if (c->status == TBP_ERR_FLUSHED || c->status == TBP_ERR_LINK_DOWN) {
		if (!s->p.blackout && e->qp_open[q])
			fail(s, "ep%d qp%d: receive flushed (status %u) without a link failure",
			     e->id, q, c->status);
		free(rb);
		return;
	}
	w = e->expect[q].head;
	if (!w) {
		fail(s, "ep%d qp%d: unexpected receive completion (duplicate?)", e->id, q);
		free(rb);
		return;
	}
	e->expect[q].head = w->next_expect;
	if (!e->expect[q].head)
		e->expect[q].tail = NULL;
	e->recvs_done++;
	if (c->opcode != w->opcode || c->len != w->len || c->src_qpn != s->ep[1 - e->id].qpn[q] ||
	    c->has_imm != (w->opcode == TBP_OP_SEND_WITH_IMM ||
			   w->opcode == TBP_OP_RDMA_WRITE_WITH_IMM) ||
	    (c->has_imm && c->imm != w->imm) ||
	    c->invalidate_rkey != (w->opcode == TBP_OP_SEND_WITH_INV ? w->rkey : 0) ||
	    c->status != w->expect_rx_status) {
		fail(s, "ep%d qp%d: receive completion mismatch: opcode %u/%u len %u/%u imm %u/%u "
		     "status %u/%u (wr %llu)", e->id, q, c->opcode, w->opcode, c->len, w->len,
		     c->imm, w->imm, c->status, w->expect_rx_status, (unsigned long long)w->wr_id);
	} else if (c->status == TBP_OK) {
		const uint8_t *got = w->opcode == TBP_OP_RDMA_WRITE_WITH_IMM ?
				     e->arena + w->raddr : rb->data;

		if (!check_bytes(got, w->pattern_seed, w->len, &bad))
			fail(s, "ep%d qp%d: received wr %llu opcode %u len %u: byte %u wrong",
			     e->id, q, (unsigned long long)w->wr_id, w->opcode, w->len, bad);
	}
	free(rb);
}

static void env_event(void *ctx, uint32_t event, uint32_t rail)
{
	struct endpoint *e = ctx;

	if (event == TBP_EV_LINK_FAILED) {
		e->link_failed_events++;
		if (!e->sim->p.blackout)
			fail(e->sim, "ep%d: link failed although a rail stayed alive", e->id);
	}
	if (e->sim->verbose)
		fprintf(stderr, "t=%llu ep%d event %u rail %u\n",
			(unsigned long long)e->sim->now, e->id, event, rail);
}

/* ---- workload ---- */

static void post_recvs(struct sim *s, struct endpoint *e)
{
	uint32_t q;

	for (q = 0; q < s->p.qps; q++) {
		uint32_t want = RECV_TARGET;

		if (s->p.rnr)
			want = rnd_below(s, 4) == 0 ? e->recv_posted[q] + 1 : e->recv_posted[q];
		if (s->p.rnr_release_ns && e->id == 1 && q == s->special && !s->released)
			want = 0;
		while (e->recv_posted[q] < want) {
			struct recvbuf *r = malloc(sizeof(*r));

			r->buf = malloc(sizeof(struct buffer) + s->p.max_len);
			if (!r || !r->buf)
				abort();
			r->buf->len = s->p.max_len;
			memset(r->buf->data, 0xee, s->p.max_len);
			r->next = NULL;
			if (e->recv_tail[q])
				e->recv_tail[q]->next = r;
			else
				e->recv_head[q] = r;
			e->recv_tail[q] = r;
			e->recv_posted[q]++;
		}
	}
}

static uint32_t pick_len(struct sim *s)
{
	uint64_t r = rnd_below(s, 10);

	if (s->p.bulk)
		return (uint32_t)rnd_below(s, s->p.max_len + 1);
	if (r < 4)
		return (uint32_t)rnd_below(s, 257);
	if (r < 8)
		return 257 + (uint32_t)rnd_below(s, (s->p.max_len < 8192 ? s->p.max_len : 8192) - 256);
	return (uint32_t)rnd_below(s, s->p.max_len + 1);
}

static bool post_one(struct sim *s, struct endpoint *e)
{
	struct endpoint *peer = &s->ep[1 - e->id];
	uint32_t q = (uint32_t)rnd_below(s, s->p.qps);
	struct wr_rec *w;
	struct tbp_wr wr;
	uint32_t i;
	int rc;

	/* Asymmetric QPs: ep1 never sends on the QP it opens late or closes; nobody posts on a
	 * failed QP; a few WRs wait on the receiver-not-ready QP, the rest go elsewhere. */
	if (!e->qp_open[q] || e->qp_failed[q] ||
	    (q == s->special && e->id == 1 && (s->p.late_open_ns || s->p.close_ns)) ||
	    (q == s->special && s->p.rnr_release_ns && !s->released && e->qp_outstanding[q] >= 4))
		return false;
	w = calloc(1, sizeof(*w));
	if (!w)
		abort();
	w->post_ns = s->now;
	w->wr_id = ((uint64_t)e->id << 40) | e->wrs_posted;
	w->opcode = TBP_OP_SEND + (uint32_t)rnd_below(s, 5);
	if (rnd_below(s, 8) == 0)
		w->opcode = TBP_OP_ATOMIC_FETCH_ADD;
	else if (w->opcode == TBP_OP_SEND && rnd_below(s, 2) == 0)
		w->opcode = TBP_OP_SEND_WITH_INV;
	w->len = is_atomic(w->opcode) ? 8 : pick_len(s);
	w->imm = (uint32_t)rnd(s);
	w->pattern_seed = (uint32_t)rnd(s);
	w->expect_status = TBP_OK;
	w->expect_rx_status = TBP_OK;
	if (is_atomic(w->opcode)) {
		w->rkey = RKEY_COUNTER;
		w->raddr = q * 8;
		w->local = malloc(sizeof(struct buffer) + 8);
		if (!w->local)
			abort();
		w->local->len = 8;
		memset(w->local->data, 0xdd, 8);
	} else if (w->opcode == TBP_OP_RDMA_READ) {
		w->rkey = RKEY_PATTERN;
		w->raddr = rnd_below(s, PATTERN_SIZE - w->len + 1);
		w->local = malloc(sizeof(struct buffer) + w->len + 1);
		if (!w->local)
			abort();
		w->local->len = w->len;
		memset(w->local->data, 0xdd, w->len);
	} else {
		w->local = malloc(sizeof(struct buffer) + w->len + 1);
		if (!w->local)
			abort();
		w->local->len = w->len;
		for (i = 0; i < w->len; i++)
			w->local->data[i] = pattern_byte(w->pattern_seed, i);
		w->rkey = w->opcode == TBP_OP_SEND_WITH_INV ? INV_KEY(q, e->inv_sent[q]) : RKEY_ARENA;
		while (e->slot_busy[e->write_slot % (ARENA_SIZE / WRITE_SLOT)])
			e->write_slot++;
		w->slot = (int)(e->write_slot % (ARENA_SIZE / WRITE_SLOT));
		w->raddr = (uint64_t)(e->write_slot % (ARENA_SIZE / WRITE_SLOT)) * WRITE_SLOT +
			   rnd_below(s, WRITE_SLOT - (w->len > WRITE_SLOT ? WRITE_SLOT : w->len) + 1);
		if (w->raddr + w->len > ARENA_SIZE)
			w->raddr = ARENA_SIZE - w->len;
	}
	if (s->p.errors && rnd_below(s, 20) == 0) {
		if (is_atomic(w->opcode)) {
			w->rkey ^= 0xdead;
			w->expect_status = TBP_ERR_REMOTE_ACCESS;
		} else if (w->opcode == TBP_OP_RDMA_WRITE ||
			   w->opcode == TBP_OP_RDMA_WRITE_WITH_IMM || w->opcode == TBP_OP_RDMA_READ) {
			if (w->len == 0)
				w->len = 1;
			w->local->len = w->len;
			w->rkey ^= 0xdead;
			w->expect_status = TBP_ERR_REMOTE_ACCESS;
			if (w->opcode == TBP_OP_RDMA_WRITE_WITH_IMM)
				w->expect_rx_status = TBP_ERR_REMOTE_ACCESS;
		} else if (w->opcode == TBP_OP_SEND_WITH_INV) {
			w->rkey |= INV_BAD;
			w->expect_status = TBP_ERR_REMOTE_INVALID;
			w->expect_rx_status = TBP_ERR_REMOTE_INVALID;
		} else if (w->opcode == TBP_OP_SEND) {
			/* Longer than every receive buffer the peer posts. */
			uint32_t extra = 1 + (uint32_t)rnd_below(s, 100);

			free(w->local);
			w->len = s->p.max_len + extra;
			w->local = malloc(sizeof(struct buffer) + w->len);
			w->local->len = w->len;
			for (i = 0; i < w->len; i++)
				w->local->data[i] = pattern_byte(w->pattern_seed, i);
			w->expect_status = TBP_ERR_REMOTE_INVALID;
			w->expect_rx_status = TBP_ERR_LOCAL_LENGTH;
		}
	}
	memset(&wr, 0, sizeof(wr));
	wr.opcode = w->opcode;
	wr.qpn = e->qpn[q];
	wr.wr_id = w->wr_id;
	wr.local_buf = (uintptr_t)w->local;
	wr.len = w->len;
	wr.imm = w->imm;
	wr.rkey = w->rkey;
	wr.raddr = w->raddr;
	wr.compare_add = 1;
	rc = tbp_post(e->link, &wr);
	if (getenv("SIM_TRACE"))
		fprintf(stderr, "t=%llu ep%d post wr %llu qp %u op %u len %u raddr %llu rc %d\n",
			(unsigned long long)s->now, e->id, (unsigned long long)w->wr_id, q, w->opcode,
			w->len, (unsigned long long)w->raddr, rc);
	if (rc) {
		if (rc == -ENOTCONN)
			e->post_closed = true;
		else if (rc == -EPIPE && e->qp_failed[q])
			; /* the QP failed; its error completion was delivered */
		else if (rc != -ENOBUFS)
			fail(s, "ep%d: tbp_post failed with %d", e->id, rc);
		free(w->local);
		free(w);
		return false;
	}
	w->all_next = s->all_wrs;
	s->all_wrs = w;
	if (w->opcode == TBP_OP_SEND_WITH_INV)
		e->inv_sent[q]++;
	if (uses_slot(w->opcode)) {
		e->slot_busy[w->slot] = true;
		e->write_slot++; /* only posted WRs use up a WRITE target region */
	}
	e->wrs_posted++;
	e->outstanding++;
	e->qp_outstanding[q]++;
	if (e->posted[q].tail)
		e->posted[q].tail->next_posted = w;
	else
		e->posted[q].head = w;
	e->posted[q].tail = w;
	/* A receive on a QP the peer closed never completes (its WQEs were flushed). */
	if ((w->opcode == TBP_OP_SEND || w->opcode == TBP_OP_SEND_WITH_IMM ||
	     w->opcode == TBP_OP_SEND_WITH_INV || w->opcode == TBP_OP_RDMA_WRITE_WITH_IMM) && !(s->p.close_ns && s->closed && q == s->special)) {
		if (peer->expect[q].tail)
			peer->expect[q].tail->next_expect = w;
		else
			peer->expect[q].head = w;
		peer->expect[q].tail = w;
	}
	return true;
}

/* ---- rails dying and coming back ---- */

static void kill_rail(struct sim *s, int rail, uint64_t for_ns)
{
	int i;

	s->rail_dead_until[rail] = s->now + for_ns;
	/* Half the time the hardware reports the carrier loss; otherwise keepalives find it. */
	if (rnd_below(s, 2))
		for (i = 0; i < NEP; i++)
			tbp_rail_down(s->ep[i].link, (uint32_t)rail);
}

static void chaos_step(struct sim *s)
{
	uint32_t r, alive = 0;

	if (s->p.blackout && s->blackout_at &&
	    (s->now >= s->blackout_at || s->ep[0].wrs_posted >= s->p.messages / 2)) {
		for (r = 0; r < s->p.rails; r++)
			kill_rail(s, (int)r, 400000000ull);
		s->blackout_at = 0;
		return;
	}
	if (!s->p.rail_death || s->p.rails < 2 || rnd_below(s, 40) != 0)
		return;
	for (r = 0; r < s->p.rails; r++)
		alive += rail_alive(s, (int)r);
	if (alive < 2)
		return;
	r = (uint32_t)rnd_below(s, s->p.rails);
	if (rail_alive(s, (int)r))
		kill_rail(s, (int)r, 1000000ull + rnd_below(s, 30000000ull));
}

/* ---- setup and main loop ---- */

static int setup_endpoint(struct sim *s, int id, const uint8_t *key)
{
	struct endpoint *e = &s->ep[id];
	struct tbp_config cfg;
	struct tbp_env env;
	size_t size;
	uint32_t i;

	e->sim = s;
	e->id = id;
	tbp_config_default(&cfg);
	cfg.role = id == 0 ? TBP_ROLE_INITIATOR : TBP_ROLE_RESPONDER;
	cfg.window = s->p.window;
	cfg.max_msgs = s->p.max_msgs;
	cfg.max_rx_msgs = s->p.max_rx_msgs;
	cfg.max_qps = s->p.qps;
	/* Frames are MACed as on every real link; corrupted frames then fail the MAC too. */
	cfg.caps = (s->p.pcsum ? TBP_CAP_PAYLOAD_CSUM : 0) | TBP_CAP_FRAME_MAC;
	cfg.key_len = 32;
	memcpy(cfg.key, key, 32);
	cfg.rto_min_ns = 100000;
	cfg.rto_max_ns = 20000000;
	cfg.ack_delay_ns = 10000;
	cfg.keepalive_ns = 1000000;
	cfg.rail_dead_ns = 5000000;
	cfg.link_dead_ns = 100000000;
	cfg.hello_retry_ns = 1000000;
	cfg.rnr_backoff_ns = 200000;
	if (s->p.delay_ns > 200000) {
		/* Long cables: keep liveness timers well above the round trip. */
		cfg.keepalive_ns = 4 * s->p.delay_ns;
		cfg.rail_dead_ns = 20 * s->p.delay_ns;
		cfg.hello_retry_ns = 3 * s->p.delay_ns;
	}
	size = tbp_link_size(&cfg);
	if (!size)
		return -1;
	e->mem = aligned_alloc(64, (size + 63) & ~(size_t)63);
	e->arena = calloc(1, ARENA_SIZE);
	e->pattern = malloc(PATTERN_SIZE);
	e->tx_frame = malloc(TBP_MAX_FRAME);
	if (!e->mem || !e->arena || !e->pattern || !e->tx_frame)
		abort();
	for (i = 0; i < PATTERN_SIZE; i++)
		e->pattern[i] = pattern_byte(0x9a77e3u + (uint32_t)id, i);
	memset(&env, 0, sizeof(env));
	env.ctx = e;
	env.now_ns = env_now;
	env.xmit = env_xmit;
	env.hmac_sha256 = env_hmac;
	env.random_bytes = env_random;
	env.mr_check = env_mr_check;
	env.buf_read = env_buf_read;
	env.buf_write = env_buf_write;
	env.recv_claim = env_recv_claim;
	env.send_done = env_send_done;
	env.recv_done = env_recv_done;
	env.event = env_event;
	env.atomic = env_atomic;
	env.invalidate = env_invalidate;
	if (id == s->in_place_ep) {
		env.frame_get = env_frame_get;
		env.frame_commit = env_frame_commit;
	}
	if (tbp_link_init(&e->link, e->mem, size, &cfg, &env))
		return -1;
	for (i = 0; i < s->p.qps; i++) {
		e->qpn[i] = (uint32_t)(id ? 0x200 : 0x100) + i;
	}
	return 0;
}

static bool all_done(struct sim *s)
{
	int i;

	for (i = 0; i < NEP; i++) {
		struct endpoint *e = &s->ep[i];
		uint32_t q;

		if (e->outstanding || (!e->post_closed && e->wrs_posted < s->p.messages))
			return false;
		if (!link_failed(s)) {
			for (q = 0; q < s->p.qps; q++)
				if (e->expect[q].head)
					return false;
			if (!tbp_link_idle(e->link))
				return false;
		}
	}
	return true;
}

/* Scenario events of the per-QP mixes, and their time bounds. */
static void scenario_step(struct sim *s)
{
	const struct sim_params *p = &s->p;
	struct endpoint *e0 = &s->ep[0], *e1 = &s->ep[1];
	uint32_t q = s->special, i, o;

	if (p->late_open_ns && !s->opened && s->now >= p->late_open_ns) {
		s->opened = true;
		if (tbp_qp_open(e1->link, e1->qpn[q], e0->qpn[q]))
			fail(s, "late tbp_qp_open failed");
		e1->qp_open[q] = true;
	}
	if (p->close_ns && !s->closed && s->now >= p->close_ns) {
		s->closed = true;
		e1->qp_open[q] = false; /* its flushed receives are expected from here on */
		tbp_qp_close(e1->link, e1->qpn[q]);
		e1->expect[q].head = e1->expect[q].tail = NULL;
	}
	/* The owner closes a QP that failed (the kernel glue moves it to error). */
	for (i = 0; i < NEP; i++)
		for (o = 0; o < p->qps; o++)
			if (s->ep[i].qp_failed[o] && s->ep[i].qp_open[o]) {
				s->ep[i].qp_open[o] = false;
				tbp_qp_close(s->ep[i].link, s->ep[i].qpn[o]);
			}
	if (p->rnr_release_ns && !s->released && s->now >= p->rnr_release_ns) {
		/* Other QPs kept completing: nothing posted on them 10 ms ago is still waiting. */
		for (i = 0; i < NEP; i++)
			for (o = 0; o < p->qps; o++) {
				struct wr_rec *w = s->ep[i].posted[o].head;

				if (o != q && w && w->post_ns + 10000000ull < s->now)
					fail(s, "ep%d qp%u: wr %llu posted at %llu us still outstanding "
					     "while qp%u waits for receives (RNR stalls other QPs)", i, o,
					     (unsigned long long)w->wr_id,
					     (unsigned long long)(w->post_ns / 1000), q);
			}
		s->released = true;
		s->rnr_last_wr = e0->posted[q].tail;
	}
	if (p->bigrail_end_ns && !s->bigrail_done && s->now >= p->bigrail_end_ns) {
		s->bigrail_done = true;
		if (p->bigrail_shrinks) {
			for (i = 0; i < NEP; i++) {
				tbp_rail_remove(s->ep[i].link, 0);
				if (tbp_rail_add(s->ep[i].link, 0, 1, p->rail_frame[1],
						 rail_flags(p, 0)))
					fail(s, "re-adding the shrunk rail failed");
			}
		} else {
			s->rail_dead_until[0] = ~0ull; /* no carrier report: keepalives find it */
		}
	}
}

/* Time bounds of the per-QP mixes, checked when everything finished. */
static void scenario_check(struct sim *s)
{
	const struct sim_params *p = &s->p;
	struct endpoint *e0 = &s->ep[0];
	uint32_t q = s->special;
	uint64_t try_ns = tbp_ack_timeout_ns(12), slack = 10000000ull;

	if (p->late_open_ns && e0->first_done_ns[q] &&
	    (e0->first_done_ns[q] < p->late_open_ns ||
	     e0->first_done_ns[q] > p->late_open_ns + try_ns + slack))
		fail(s, "qp%u: first WR completed at %llu us; the peer opened it at %llu us", q,
		     (unsigned long long)(e0->first_done_ns[q] / 1000),
		     (unsigned long long)(p->late_open_ns / 1000));
	if (p->close_ns && e0->qp_failed[q] && e0->error_done_ns > p->close_ns + 8 * try_ns + slack)
		fail(s, "qp%u: error completion at %llu us, the peer closed at %llu us: later than "
		     "retry_cnt x timeout", q, (unsigned long long)(e0->error_done_ns / 1000),
		     (unsigned long long)(p->close_ns / 1000));
	/* One RNR timer after the receives, or one ACK timeout if the last RNR NAK was lost. */
	if (p->rnr_release_ns && s->rnr_last_wr &&
	    s->rnr_last_done > p->rnr_release_ns + try_ns + slack)
		fail(s, "qp%u: the WRs waiting for receives completed at %llu us, receives came "
		     "at %llu us", q, (unsigned long long)(s->rnr_last_done / 1000),
		     (unsigned long long)(p->rnr_release_ns / 1000));
	if (p->bigrail_end_ns && s->now > p->bigrail_end_ns + 2000000000ull)
		fail(s, "the transfer finished %llu ms after the big rail went away",
		     (unsigned long long)((s->now - p->bigrail_end_ns) / 1000000));
}

static void app_step(struct sim *s)
{
	int i;

	chaos_step(s);
	scenario_step(s);
	for (i = 0; i < NEP; i++) {
		struct endpoint *e = &s->ep[i];

		post_recvs(s, e);
		while (!s->failed && !e->post_closed && e->wrs_posted < s->p.messages &&
		       e->outstanding < s->p.max_msgs && rnd_below(s, 8) != 0)
			if (!post_one(s, e))
				break;
		e->next_tick = s->now;
	}
}

static void describe(struct sim *s)
{
	int i;

	for (i = 0; i < NEP; i++) {
		struct endpoint *e = &s->ep[i];
		struct tbp_stats st;
		size_t n = strlen(s->why);

		tbp_get_stats(e->link, &st);
		snprintf(s->why + n, s->why_len - n,
			 "\n  ep%d: posted %u done %u outstanding %u recvs %u | link state %u rails "
			 "up %u tx %llu rx %llu retx %llu dup %llu failover %llu rnr %llu "
			 "no_slot %llu csum %llu bad_msg %llu auth %llu rto %llu | naks rnr %llu/%llu "
			 "not_ready %llu/%llu qp_error %llu/%llu rewinds %llu timeouts %llu stale %llu "
			 "recuts %llu",
			 i, e->wrs_posted, e->wrs_done, e->outstanding, e->recvs_done,
			 st.link_state, st.rails_up, (unsigned long long)st.tx_frames,
			 (unsigned long long)st.rx_frames, (unsigned long long)st.retransmits,
			 (unsigned long long)st.rx_duplicates,
			 (unsigned long long)st.rail_failovers, (unsigned long long)st.drop_rnr,
			 (unsigned long long)st.drop_no_slot, (unsigned long long)st.drop_checksum,
			 (unsigned long long)st.drop_bad_msg, (unsigned long long)st.drop_auth,
			 (unsigned long long)st.rto_ns, (unsigned long long)st.rnr_naks_sent,
			 (unsigned long long)st.rnr_naks_received,
			 (unsigned long long)st.naks_not_ready_sent,
			 (unsigned long long)st.naks_not_ready_received,
			 (unsigned long long)st.naks_qp_error_sent,
			 (unsigned long long)st.naks_qp_error_received,
			 (unsigned long long)st.qp_rewinds, (unsigned long long)st.qp_timeouts,
			 (unsigned long long)st.rx_stale, (unsigned long long)st.recuts);
	}
}

static void cleanup(struct sim *s)
{
	int i;
	uint32_t q;

	while (s->nheap) {
		struct event ev = heap_pop(s);

		free(ev.frame);
	}
	free(s->heap);
	s->tearing_down = true;
	for (i = 0; i < NEP; i++)
		if (s->ep[i].link && tbp_link_state(s->ep[i].link) != TBP_LINK_FAILED)
			tbp_link_teardown(s->ep[i].link);
	while (s->all_wrs) {
		struct wr_rec *w = s->all_wrs;

		s->all_wrs = w->all_next;
		free(w->local);
		free(w);
	}
	for (i = 0; i < NEP; i++) {
		struct endpoint *e = &s->ep[i];

		for (q = 0; q < MAX_QPS; q++) {
			while (e->recv_head[q]) {
				struct recvbuf *r = e->recv_head[q];

				e->recv_head[q] = r->next;
				free(r->buf);
				free(r);
			}
		}
		free(e->mem);
		free(e->arena);
		free(e->pattern);
		free(e->tx_frame);
	}
}

/* The links' resend counters next to what the medium lost. */
static void add_result(struct sim *s, struct sim_result *res)
{
	int i;

	for (i = 0; i < NEP; i++) {
		struct tbp_stats st;

		tbp_get_stats(s->ep[i].link, &st);
		s->res.retransmits += st.retransmits;
		s->res.retx_fast += st.retx_fast;
		s->res.retx_timeouts += st.retx_timeouts;
		s->res.retx_spurious += st.retx_spurious;
		s->res.rx_duplicates += st.rx_duplicates;
	}
	res->seq_sent += s->res.seq_sent;
	res->seq_lost += s->res.seq_lost;
	res->seq_reordered += s->res.seq_reordered;
	res->seq_far += s->res.seq_far;
	res->retransmits += s->res.retransmits;
	res->retx_fast += s->res.retx_fast;
	res->retx_timeouts += s->res.retx_timeouts;
	res->retx_spurious += s->res.retx_spurious;
	res->rx_duplicates += s->res.rx_duplicates;
}

static uint64_t split_rnd(struct sim *s, uint64_t n)
{
	uint64_t x = s->split_rng;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	s->split_rng = x;
	return (x * 0x2545f4914f6cdd1dull) % n;
}

#define SPLIT_MAX 24

static void split_piece(struct tbp_rx_frag *f, const uint8_t *src, uint32_t len)
{
	uint8_t *p = malloc(len ? len : 1);

	if (!p)
		abort();
	memcpy(p, src, len);
	f->data = p;
	f->len = len;
}

/*
 * Half the frames reach the receiver in pieces, as a NIC hands over a nonlinear skb: either
 * a short linear part and 4 KiB pages, or cuts anywhere (inside the header or the trailer
 * too, empty pieces included). Each piece is a buffer of its own, so that ASan sees any read
 * past a piece.
 */
static void deliver(struct sim *s, const struct event *ev)
{
	struct tbp_rx_frag frag[SPLIT_MAX];
	uint32_t n = 0, off = 0, k, cut;
	bool pages = split_rnd(s, 2);

	if (split_rnd(s, 2)) {
		tbp_rx(s->ep[ev->ep].link, (uint32_t)ev->rail, ev->frame, ev->len);
		return;
	}
	while (off < ev->len && n < SPLIT_MAX - 1) {
		if (pages)
			cut = n ? 4096 : 14 + (uint32_t)split_rnd(s, 200);
		else
			cut = (uint32_t)split_rnd(s, n ? ev->len / 4 + 2 : TBP_HDR_LEN + 8);
		if (cut > ev->len - off)
			cut = ev->len - off;
		split_piece(&frag[n++], ev->frame + off, cut);
		off += cut;
	}
	if (off < ev->len)
		split_piece(&frag[n++], ev->frame + off, ev->len - off);
	tbp_rx_frags(s->ep[ev->ep].link, (uint32_t)ev->rail, frag, n);
	for (k = 0; k < n; k++)
		free((void *)frag[k].data);
}

int sim_run(const struct sim_params *p, uint64_t seed, char *why, size_t why_len, bool verbose,
	    struct sim_result *res)
{
	struct sim *s = calloc(1, sizeof(*s));
	uint8_t key[32];
	uint64_t events = 0;
	int i, rc;
	uint32_t r;

	if (!s)
		abort();
	s->p = *p;
	s->rng = seed * 0x9e3779b97f4a7c15ull + 0x1234567ull;
	if (!s->rng)
		s->rng = 1;
	s->why = why;
	s->why_len = why_len;
	s->verbose = verbose;
	s->in_place_ep = (int)(seed & 1);
	s->split_rng = seed * 0xd6e8feb86659fd93ull + 0x9e37ull;
	why[0] = 0;
	for (i = 0; i < 32; i++)
		key[i] = (uint8_t)rnd(s);
	s->now = 1000000;
	for (i = 0; i < NEP; i++) {
		if (setup_endpoint(s, i, key)) {
			fail(s, "link setup rejected the configuration");
			goto out;
		}
	}
	for (r = 0; r < p->rails; r++) {
		uint32_t frame = rnd_below(s, 3) == 0 ? 9000 : rnd_below(s, 2) ? 4096 : 2048;

		if (p->rail_frame[r])
			frame = p->rail_frame[r];
		uint32_t weight = 1 + (uint32_t)rnd_below(s, 4);

		for (i = 0; i < NEP; i++)
			if (tbp_rail_add(s->ep[i].link, r, weight, frame, rail_flags(p, r)))
				fail(s, "tbp_rail_add failed");
	}
	s->special = p->qps - 1;
	for (i = 0; i < NEP; i++) {
		for (r = 0; r < p->qps; r++) {
			struct tbp_qp_attr a = { .timeout = 12, .retry_cnt = 7, .rnr_retry = 7,
						 .min_rnr_timer = 12 };

			if (i == 1 && r == s->special && p->late_open_ns)
				continue;
			if (tbp_qp_open(s->ep[i].link, s->ep[i].qpn[r], s->ep[1 - i].qpn[r]))
				fail(s, "tbp_qp_open failed");
			s->ep[i].qp_open[r] = true;
			/* 16.8 ms ACK timeout, 7 retries: 134 ms for the peer to open the QP. */
			if (r == s->special && (p->late_open_ns || p->close_ns || p->rnr_release_ns) &&
			    tbp_qp_set_attr(s->ep[i].link, s->ep[i].qpn[r], &a))
				fail(s, "tbp_qp_set_attr failed");
		}
	}
	if (p->revive_ns)
		s->rail_dead_until[1] = p->revive_ns;
	if (p->blackout)
		s->blackout_at = s->now + 2000000 + rnd_below(s, 20000000);
	s->next_app = s->now;
	while (!s->failed) {
		uint64_t t = s->next_app;
		int who = -1;

		for (i = 0; i < NEP; i++) {
			if (s->ep[i].next_tick < t) {
				t = s->ep[i].next_tick;
				who = i;
			}
		}
		if (s->nheap && s->heap[0].t <= t) {
			struct event ev = heap_pop(s);
			struct endpoint *src = &s->ep[1 - ev.ep];

			s->now = ev.t;
			src->rail_inflight[ev.rail]--;
			src->next_tick = s->now; /* a rail queue slot freed up: like a TX interrupt */
			if (rail_alive(s, ev.rail)) {
				if (!ev.corrupted)
					count_delivered(s, ev.ep, ev.frame, ev.len);
				deliver(s, &ev);
			} else if (!ev.corrupted) {
				count_lost(s, ev.frame, ev.len, ev.copy);
			}
			free(ev.frame);
			s->ep[ev.ep].next_tick = s->now;
		} else if (who >= 0) {
			s->now = t;
			s->ep[who].next_tick = tbp_tick(s->ep[who].link, s->now);
			if (s->ep[who].next_tick <= s->now)
				fail(s, "tbp_tick returned a deadline in the past");
		} else {
			s->now = t;
			app_step(s);
			s->next_app = s->now + APP_STEP_NS;
			if (all_done(s))
				break;
		}
		if (++events > 50000000ull || s->now > p->time_limit_ns) {
			fail(s, "no progress: %llu events, virtual time %llu ms (deadlock or livelock)",
			     (unsigned long long)events, (unsigned long long)(s->now / 1000000));
			break;
		}
	}
	if (!s->failed) {
		for (i = 0; i < NEP; i++) {
			struct endpoint *e = &s->ep[i];

			struct tbp_stats st;

			/* Attempts a QP abandoned (RNR, re-cut) placed bytes that are placed again. */
			tbp_get_stats(e->link, &st);
			if (!p->blackout && (e->bytes_placed < e->bytes_expected + st.rx_rewound_bytes ||
					     e->bytes_placed > e->bytes_expected + st.rx_rewound_bytes +
							       e->bytes_slack))
				fail(s, "ep%d placed %llu bytes but %llu were delivered and %llu rewound "
				     "(a fragment placed twice or lost)", i,
				     (unsigned long long)e->bytes_placed,
				     (unsigned long long)e->bytes_expected,
				     (unsigned long long)st.rx_rewound_bytes);
			if (p->blackout && !link_failed(s))
				fail(s, "blackout longer than link_dead_ns did not fail the link");
			/* Each of the peer's successful FETCH_ADDs ran exactly once here. */
			for (uint32_t q = 0; q < p->qps; q++) {
				uint64_t ok = s->ep[1 - i].atomics_ok[q];

				if (e->counter[q] < ok ||
				    (e->counter[q] != ok && !p->blackout && !p->close_ns))
					fail(s, "ep%d qp%u: counter %llu after %llu successful atomics",
					     i, q, (unsigned long long)e->counter[q],
					     (unsigned long long)ok);
			}
		}
		scenario_check(s);
	}
out:
	if (s->failed && s->ep[0].link && s->ep[1].link)
		describe(s);
	rc = s->failed ? 1 : 0;
	if (verbose) {
		for (i = 0; i < NEP; i++) {
			struct tbp_stats st;

			tbp_get_stats(s->ep[i].link, &st);
			fprintf(stderr, "ep%d: wrs %u recvs %u inv %llu bytes %llu tx %llu retx %llu dup %llu failover %llu rnr %llu "
				"csum %llu virtual %llu us\n", i, s->ep[i].wrs_done, s->ep[i].recvs_done,
				(unsigned long long)s->ep[i].invalidations,
				(unsigned long long)s->ep[i].bytes_placed, (unsigned long long)st.tx_frames,
				(unsigned long long)st.retransmits,
				(unsigned long long)st.rx_duplicates,
				(unsigned long long)st.rail_failovers,
				(unsigned long long)st.drop_rnr,
				(unsigned long long)st.drop_checksum,
				(unsigned long long)(s->now / 1000));
		}
	}
	if (res && s->ep[0].link && s->ep[1].link)
		add_result(s, res);
	cleanup(s);
	free(s);
	return rc;
}

/* ---- mixes ---- */

static const char *const mixes[] = {
	"clean", "loss", "dup", "reorder", "corrupt", "delay", "raildeath", "rnr", "errors",
	"smallwin", "chaos", "blackout", "lateopen", "qpclose", "rnrqp", "mixedmtu", "dmarails",
	"bigwin", NULL,
};

const char *const *sim_mix_names(void)
{
	return mixes;
}

bool sim_params_for_mix(const char *mix, uint64_t seed, struct sim_params *p)
{
	struct sim tmp;
	struct sim *s = &tmp;
	static const uint32_t windows[] = { 32, 64, 128, 256 };

	s->rng = seed * 0xbf58476d1ce4e5b9ull + 77;
	memset(p, 0, sizeof(*p));
	p->rails = 1 + (uint32_t)rnd_below(s, 4);
	p->delay_ns = 2000 + rnd_below(s, 8000);
	p->jitter_ns = rnd_below(s, 2000);
	p->window = windows[rnd_below(s, 4)];
	p->max_msgs = 8 + (uint32_t)rnd_below(s, 25);
	p->qps = 1 + (uint32_t)rnd_below(s, MAX_QPS);
	p->max_rx_msgs = 1 + (uint32_t)rnd_below(s, 32);
	p->messages = 120 + (uint32_t)rnd_below(s, 120);
	p->max_len = 1024 + (uint32_t)rnd_below(s, 40000);
	p->rail_queue = 4 + (uint32_t)rnd_below(s, 60);
	p->time_limit_ns = 60000000000ull;
	p->pcsum = rnd_below(s, 2) != 0;
	if (!strcmp(mix, "clean")) {
		p->jitter_ns = 0;
	} else if (!strcmp(mix, "loss")) {
		p->loss_ppm = 10000 + (uint32_t)rnd_below(s, 90000);
	} else if (!strcmp(mix, "dup")) {
		p->dup_ppm = 20000 + (uint32_t)rnd_below(s, 200000);
	} else if (!strcmp(mix, "reorder")) {
		p->jitter_ns = 20000 + rnd_below(s, 200000);
	} else if (!strcmp(mix, "corrupt")) {
		p->corrupt_ppm = 10000 + (uint32_t)rnd_below(s, 50000);
		p->pcsum = true;
	} else if (!strcmp(mix, "delay")) {
		p->delay_ns = 500000 + rnd_below(s, 2000000);
		p->jitter_ns = rnd_below(s, 500000);
	} else if (!strcmp(mix, "raildeath")) {
		p->rails = 2 + (uint32_t)rnd_below(s, 3);
		p->rail_death = true;
		p->loss_ppm = (uint32_t)rnd_below(s, 10000);
	} else if (!strcmp(mix, "rnr")) {
		p->rnr = true;
	} else if (!strcmp(mix, "errors")) {
		p->errors = true;
	} else if (!strcmp(mix, "smallwin")) {
		p->window = 16;
		p->max_msgs = 2 + (uint32_t)rnd_below(s, 4);
		p->max_rx_msgs = 1 + (uint32_t)rnd_below(s, 3);
		p->rail_queue = 1 + (uint32_t)rnd_below(s, 3);
		p->loss_ppm = (uint32_t)rnd_below(s, 20000);
	} else if (!strcmp(mix, "chaos")) {
		p->rails = 2 + (uint32_t)rnd_below(s, 3);
		p->loss_ppm = (uint32_t)rnd_below(s, 50000);
		p->dup_ppm = (uint32_t)rnd_below(s, 50000);
		p->corrupt_ppm = (uint32_t)rnd_below(s, 20000);
		p->jitter_ns = rnd_below(s, 100000);
		p->rail_death = true;
		p->rnr = rnd_below(s, 2) != 0;
		p->errors = rnd_below(s, 2) != 0;
		p->pcsum = true;
	} else if (!strcmp(mix, "dmarails")) {
		/* USB4 ring pairs (no MAC, no payload CRC, corrupted frames dropped by the host
		 * interface) beside Ethernet rails (MAC and CRC), all of it lossy and reordered. */
		p->rails = 2 + (uint32_t)rnd_below(s, 3);
		p->dma_rails = 1u + (uint32_t)rnd_below(s, (1u << p->rails) - 1);
		p->loss_ppm = (uint32_t)rnd_below(s, 30000);
		p->dup_ppm = (uint32_t)rnd_below(s, 30000);
		p->corrupt_ppm = (uint32_t)rnd_below(s, 20000);
		p->jitter_ns = rnd_below(s, 100000);
		p->rail_death = rnd_below(s, 2) != 0;
		p->pcsum = true;
	} else if (!strcmp(mix, "lateopen")) {
		/* The peer's RTR comes 1..30 ms after our first posts on that QP. */
		p->qps = 2 + (uint32_t)rnd_below(s, MAX_QPS - 1);
		p->late_open_ns = 1000000 + 1000000 + rnd_below(s, 30000000);
		/* Time bounds: keep reassembly slots from being the bottleneck (smallwin is). */
		p->max_rx_msgs = 16 + (uint32_t)rnd_below(s, 16);
		p->loss_ppm = (uint32_t)rnd_below(s, 10000);
	} else if (!strcmp(mix, "qpclose")) {
		p->qps = 2 + (uint32_t)rnd_below(s, MAX_QPS - 1);
		p->close_ns = 1000000 + 500000 + rnd_below(s, 15000000);
		p->loss_ppm = (uint32_t)rnd_below(s, 10000);
		p->messages = 200 + (uint32_t)rnd_below(s, 200);
	} else if (!strcmp(mix, "rnrqp")) {
		p->qps = 2 + (uint32_t)rnd_below(s, MAX_QPS - 1);
		p->rnr_release_ns = 1000000 + 20000000 + rnd_below(s, 20000000);
		p->max_rx_msgs = 16 + (uint32_t)rnd_below(s, 16);
		p->messages = 300 + (uint32_t)rnd_below(s, 200);
		p->loss_ppm = (uint32_t)rnd_below(s, 5000);
	} else if (!strcmp(mix, "mixedmtu")) {
		/* Fragments cut for a 9000-byte rail while a 1024-byte one is still silent; then
		 * the big rail dies (silently) or its MTU shrinks, and the small one comes up. */
		p->rails = 2;
		p->rail_frame[0] = 9000;
		p->rail_frame[1] = rnd_below(s, 2) ? 1024 : 512;
		p->bigrail_end_ns = 1000000 + 1000000 + rnd_below(s, 5000000);
		p->revive_ns = p->bigrail_end_ns + rnd_below(s, 3000000);
		p->bigrail_shrinks = rnd_below(s, 2) != 0;
		p->max_len = 20000 + (uint32_t)rnd_below(s, 20000);
		p->loss_ppm = (uint32_t)rnd_below(s, 5000);
	} else if (!strcmp(mix, "bigwin")) {
		/* The largest window over 2..4 rails that each deliver in order but differ in
		 * latency (USB4 lanes, an Ethernet port beside a cable): frames reorder between
		 * rails, far past the header's 64-frame bitmap, and 1% of them are lost. */
		p->window = 1024;
		p->rails = 2 + (uint32_t)rnd_below(s, 3);
		p->fifo = true;
		p->rail_skew_ns = 5000 + rnd_below(s, 20000);
		p->loss_ppm = 10000;
		p->rail_queue = 256 + (uint32_t)rnd_below(s, 256);
		/* fewer WRs in flight than WRITE target regions (post_one waits for a free one) */
		p->max_msgs = 32 + (uint32_t)rnd_below(s, ARENA_SIZE / WRITE_SLOT - 32);
		p->max_rx_msgs = 128 + (uint32_t)rnd_below(s, 128);
		p->messages = 400 + (uint32_t)rnd_below(s, 200);
		p->max_len = 32768 + (uint32_t)rnd_below(s, 32768);
		p->bulk = true;
	} else if (!strcmp(mix, "blackout")) {
		p->blackout = true;
		p->loss_ppm = (uint32_t)rnd_below(s, 10000);
	} else {
		return false;
	}
	return true;
}
