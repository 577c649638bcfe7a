// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * tbp_link.c - link layer: handshake, rails, send/receive window, acks,
 * retransmission, rail scheduling and liveness.
 */
#include "tbp_internal.h"

#define NS_PER_US 1000ull
#define NS_PER_MS 1000000ull
#define NS_PER_S 1000000000ull

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static void mark_queued(struct tbp_link *l, uint32_t seq)
{
	if (!l->queued || seq_diff(seq, l->q_first) < 0)
		l->q_first = seq;
	l->queued++;
}

void tbp_config_default(struct tbp_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->role = TBP_ROLE_INITIATOR;
	cfg->caps = TBP_CAP_FRAME_MAC;
	cfg->window = 256;
	cfg->max_msgs = 256;
	cfg->max_rx_msgs = 256;
	cfg->max_qps = 64;
	cfg->max_msg_len = TBP_MSG_LEN_LIMIT;
	cfg->rto_min_ns = 200 * NS_PER_US;
	cfg->rto_max_ns = 100 * NS_PER_MS;
	cfg->ack_delay_ns = 20 * NS_PER_US;
	cfg->keepalive_ns = 10 * NS_PER_MS;
	cfg->rail_dead_ns = 50 * NS_PER_MS;
	cfg->link_dead_ns = 2000 * NS_PER_MS;
	cfg->hello_retry_ns = 5 * NS_PER_MS;
	cfg->rnr_backoff_ns = 1 * NS_PER_MS;
	cfg->pace_gain_pct = 125;
	cfg->pace_burst = 4;
}

static bool config_valid(const struct tbp_config *c)
{
	if (c->role > TBP_ROLE_RESPONDER)
		return false;
	if (c->window < 16 || c->window > TBP_WINDOW_MAX || (c->window & (c->window - 1)))
		return false;
	/* The reassembly table also holds one slot per QP for its next in-order message. */
	if (c->max_msgs < 2 || c->max_msgs >= TBP_NONE || c->max_rx_msgs < 1 ||
	    c->max_qps < 1 || c->max_rx_msgs + c->max_qps >= TBP_NONE)
		return false;
	if (c->max_msg_len > TBP_MSG_LEN_LIMIT)
		return false;
	if (c->key_len < 16 || c->key_len > TBP_KEY_MAX)
		return false;
	if (!c->rto_min_ns || c->rto_max_ns < c->rto_min_ns || !c->ack_delay_ns ||
	    !c->keepalive_ns || c->rail_dead_ns <= c->keepalive_ns || !c->link_dead_ns ||
	    !c->hello_retry_ns || !c->rnr_backoff_ns)
		return false;
	if (c->pace_gain_pct && (c->pace_gain_pct < 100 || c->pace_gain_pct > 1000 ||
				 c->pace_burst < 1 || c->pace_burst > TBP_WINDOW_MAX))
		return false;
	return true;
}

static size_t align8(size_t n)
{
	return (n + 7u) & ~(size_t)7u;
}

struct layout {
	size_t tx, rx_bits, smsgs, rmsgs, qps, rbuckets, qbuckets, scratch, total;
	uint32_t nbuckets, nqbuckets;
};

static void compute_layout(const struct tbp_config *c, struct layout *lo)
{
	size_t off = align8(sizeof(struct tbp_link));
	size_t rx_words = c->window / 64u ? c->window / 64u : 1u;

	lo->tx = off;
	off = align8(off + sizeof(struct tbp_txslot) * c->window);
	lo->rx_bits = off;
	off = align8(off + sizeof(uint64_t) * rx_words);
	lo->smsgs = off;
	off = align8(off + sizeof(struct tbp_smsg) * c->max_msgs);
	lo->rmsgs = off;
	off = align8(off + sizeof(struct tbp_rmsg) * (c->max_rx_msgs + c->max_qps));
	lo->qps = off;
	off = align8(off + sizeof(struct tbp_qp) * c->max_qps);
	lo->nbuckets = 16;
	while (lo->nbuckets < 2 * (c->max_rx_msgs + c->max_qps))
		lo->nbuckets *= 2;
	lo->rbuckets = off;
	off = align8(off + sizeof(uint16_t) * lo->nbuckets);
	lo->nqbuckets = 16;
	while (lo->nqbuckets < 2 * c->max_qps)
		lo->nqbuckets *= 2;
	lo->qbuckets = off;
	off = align8(off + sizeof(uint16_t) * lo->nqbuckets);
	lo->scratch = off;
	off = align8(off + TBP_MAX_FRAME);
	lo->total = off;
}

size_t tbp_link_size(const struct tbp_config *cfg)
{
	struct layout lo;

	if (!config_valid(cfg))
		return 0;
	compute_layout(cfg, &lo);
	return lo.total;
}

int tbp_link_init(struct tbp_link **out, void *mem, size_t mem_len,
		  const struct tbp_config *cfg, const struct tbp_env *env)
{
	struct tbp_link *l = mem;
	struct layout lo;
	uint8_t *base = mem;
	uint32_t i;

	if (!mem || ((uintptr_t)mem & 7u) || !config_valid(cfg) || !env || !env->now_ns ||
	    !env->xmit || !env->hmac_sha256 || !env->random_bytes || !env->mr_check ||
	    !env->buf_read || !env->buf_write || !env->recv_claim || !env->send_done ||
	    !env->recv_done || !env->event || !env->frame_get != !env->frame_commit)
		return -EINVAL;
	compute_layout(cfg, &lo);
	if (mem_len < lo.total)
		return -EINVAL;
	memset(mem, 0, lo.total);
	l->cfg = *cfg;
	l->env = *env;
	l->tx = (struct tbp_txslot *)(base + lo.tx);
	l->rx_bits = (uint64_t *)(base + lo.rx_bits);
	l->smsgs = (struct tbp_smsg *)(base + lo.smsgs);
	l->rmsgs = (struct tbp_rmsg *)(base + lo.rmsgs);
	l->qps = (struct tbp_qp *)(base + lo.qps);
	l->rbuckets = (uint16_t *)(base + lo.rbuckets);
	l->rbucket_mask = lo.nbuckets - 1;
	l->qbuckets = (uint16_t *)(base + lo.qbuckets);
	l->qbucket_mask = lo.nqbuckets - 1;
	l->scratch = base + lo.scratch;
	l->win_mask = cfg->window - 1;
	l->state = TBP_LINK_HANDSHAKE;
	l->rto = cfg->rto_min_ns * 4 < cfg->rto_max_ns ? cfg->rto_min_ns * 4 : cfg->rto_max_ns;
	l->sendq_head = TBP_NONE;
	l->sendq_tail = TBP_NONE;
	for (i = 0; i < TBP_QL_COUNT; i++)
		l->qlist[i].head = l->qlist[i].tail = TBP_NONE;
	l->snd_una = l->snd_nxt = l->rcv_nxt = l->rcv_hi = l->q_first = TBP_SEQ_START;
	l->qp_timer_next = ~0ull;
	l->now = env->now_ns(env->ctx);
	env->random_bytes(env->ctx, l->nonce, TBP_NONCE_LEN);
	tbp_msg_init(l);
	*out = l;
	return 0;
}

void tbp_link_fail(struct tbp_link *l, uint32_t status)
{
	l->state = TBP_LINK_FAILED;
	tbp_msg_fail_all(l, status);
	l->env.event(l->env.ctx, TBP_EV_LINK_FAILED, 0);
}

void tbp_link_teardown(struct tbp_link *l)
{
	if (l->state != TBP_LINK_FAILED)
		tbp_msg_fail_all(l, TBP_ERR_FLUSHED);
	l->state = TBP_LINK_FAILED;
	tbp_auth_wipe(l);
}

uint32_t tbp_link_state(const struct tbp_link *l)
{
	return l->state;
}

void tbp_get_stats(const struct tbp_link *l, struct tbp_stats *out)
{
	uint32_t r, up = 0;

	*out = l->st;
	for (r = 0; r < TBP_MAX_RAILS; r++)
		up += l->rails[r].state == RAIL_UP;
	out->rails_up = up;
	out->link_state = l->state;
	out->srtt_ns = l->srtt;
	out->rttvar_ns = l->rttvar;
	out->rto_ns = l->rto;
	for (r = 0; r < TBP_MAX_RAILS; r++)
		out->cwnd[r] = l->rails[r].state == RAIL_UP ? l->rails[r].cwnd : 0;
}

bool tbp_link_idle(const struct tbp_link *l)
{
	return l->snd_una == l->snd_nxt && l->smsgs_used == 0 && l->rmsgs_used == 0 &&
	       l->qlist[TBP_QL_ACK].len == 0;
}

/* ---- rails ---- */

uint32_t tbp_rails_up(const struct tbp_link *l)
{
	uint32_t r, n = 0;

	for (r = 0; r < TBP_MAX_RAILS; r++)
		n += l->rails[r].state == RAIL_UP;
	return n;
}

uint32_t tbp_rail_payload(const struct tbp_link *l, uint32_t r)
{
	return l->rails[r].max_frame - TBP_HDR_LEN - tbp_auth_overhead(l);
}

/* Give every in-flight frame sent on rail r back to the scheduler. */
static void requeue_rail(struct tbp_link *l, uint32_t r)
{
	uint32_t seq;

	for (seq = l->snd_una; seq != l->snd_nxt; seq++) {
		struct tbp_txslot *s = &l->tx[seq & l->win_mask];

		if (s->state == TX_INFLIGHT && s->rail == r) {
			s->state = TX_QUEUED;
			mark_queued(l, seq);
			l->st.rail_failovers++;
		}
	}
	l->rails[r].inflight = 0;
	l->rails[r].rto_probe = 0;
	l->rails[r].grace_until = 0;
}

/*
 * Congestion control, per rail and delay-based. A rail's queue (a netdev's qdisc, a ring)
 * can hold far more than the round trip needs; filled to the send window it makes frames
 * wait longer than any RTO computed from earlier samples, and the resends queue behind
 * them too (every frame resent, nearly all spuriously). So a rail may have only cwnd data
 * frames in flight, and cwnd follows the frames the rail is queueing, as TCP Vegas
 * estimates them: cwnd * (rtt - min_rtt) / rtt. Each ack's newest first copy on the rail is
 * a round-trip sample (older frames of the same ack also waited for the receiver's ack
 * batching). Fewer than TBP_CWND_ALPHA queued: grow (by every acked frame until the first
 * reduction, then by one frame per window's worth of acks, and only while the rail used at
 * least half its window); more than TBP_CWND_BETA: cut by a quarter, at most once per round
 * trip; a timeout halves it. Counting frames rather than comparing delays keeps a jittery
 * round trip (a TCG guest's scheduling, interrupt moderation) from pinning a small window:
 * with few frames in flight even a doubled RTT means few queued. Control frames (acks,
 * NAKs, handshakes) and resends are never held back.
 */
#define TBP_CWND_INIT 32u
#define TBP_CWND_MIN 4u
#define TBP_CWND_ALPHA 8u
#define TBP_CWND_BETA 24u
#define TBP_MIN_RTT_WINDOW_NS (10 * NS_PER_S)

static void cwnd_reset(const struct tbp_link *l, struct tbp_rail *rl)
{
	rl->cwnd = TBP_CWND_INIT < l->cfg.window ? TBP_CWND_INIT : l->cfg.window;
	rl->cwnd_acc = 0;
	rl->slow_start = 1;
	rl->min_rtt = 0;
	rl->cwnd_hold_until = 0;
	rl->sig_frames = 0;
	tbp_pace_reset(rl);
}

static void cwnd_reduce(struct tbp_link *l, struct tbp_rail *rl, uint32_t num, uint32_t den)
{
	uint32_t cwnd = (uint32_t)((uint64_t)rl->cwnd * num / den);

	if (l->now < rl->cwnd_hold_until)
		return;
	rl->cwnd = cwnd > TBP_CWND_MIN ? cwnd : TBP_CWND_MIN;
	rl->cwnd_acc = 0;
	rl->slow_start = 0;
	rl->cwnd_hold_until = l->now + (l->srtt ? l->srtt : l->rto);
	l->st.cwnd_reductions++;
	tbp_pace_update(l, rl);
}

static void rail_rtt_signal(struct tbp_link *l, struct tbp_rail *rl, uint64_t rtt,
			    uint32_t acked)
{
	uint64_t queued;

	if (!rtt)
		rtt = 1;
	if (!rl->min_rtt || rtt < rl->min_rtt || l->now - rl->min_rtt_ns >= TBP_MIN_RTT_WINDOW_NS) {
		rl->min_rtt = rtt;
		rl->min_rtt_ns = l->now;
	}
	queued = (uint64_t)rl->cwnd * (rtt - rl->min_rtt) / rtt;
	if (queued > TBP_CWND_BETA) {
		cwnd_reduce(l, rl, 3, 4);
		return;
	}
	/* Only a rail that used its window learns that a bigger one is safe. */
	if (queued >= TBP_CWND_ALPHA || rl->inflight + acked < rl->cwnd / 2)
		return;
	if (rl->slow_start) {
		rl->cwnd += acked;
	} else {
		rl->cwnd_acc += acked;
		while (rl->cwnd_acc >= rl->cwnd) {
			rl->cwnd_acc -= rl->cwnd;
			rl->cwnd++;
		}
	}
	if (rl->cwnd > l->cfg.window)
		rl->cwnd = l->cfg.window;
}

/* After an ack: one round-trip signal per rail it covered. */
static void rails_rtt_signals(struct tbp_link *l)
{
	uint32_t r;

	for (r = 0; r < TBP_MAX_RAILS; r++) {
		struct tbp_rail *rl = &l->rails[r];

		if (!rl->sig_frames)
			continue;
		if (rl->state == RAIL_UP) {
			tbp_pace_rtt(rl, l->now - rl->sig_sent_ns);
			rail_rtt_signal(l, rl, l->now - rl->sig_sent_ns, rl->sig_frames);
			tbp_pace_update(l, rl);
		}
		rl->sig_frames = 0;
		rl->sig_sent_ns = 0;
	}
}

static void rail_went_down(struct tbp_link *l, uint32_t r)
{
	struct tbp_rail *rl = &l->rails[r];

	if (rl->state != RAIL_UP)
		return;
	rl->state = RAIL_HELLO;
	rl->hello_ns = 0;
	requeue_rail(l, r);
	l->env.event(l->env.ctx, TBP_EV_RAIL_DOWN, r);
	if (tbp_rails_up(l) == 0 && l->state == TBP_LINK_UP) {
		l->state = TBP_LINK_DEGRADED;
		l->down_since = l->now;
	}
}

void tbp_rail_came_up(struct tbp_link *l, uint32_t r)
{
	struct tbp_rail *rl = &l->rails[r];

	if (rl->state == RAIL_UP)
		return;
	rl->state = RAIL_UP;
	rl->last_rx_ns = l->now;
	rl->last_tx_ns = l->now;
	rl->inflight = 0;
	rl->rto_probe = 0;
	rl->grace_until = 0;
	rl->acked_tx_no = rl->tx_no;
	cwnd_reset(l, rl);
	l->env.event(l->env.ctx, TBP_EV_RAIL_UP, r);
	if (l->state == TBP_LINK_HANDSHAKE || l->state == TBP_LINK_DEGRADED) {
		l->state = TBP_LINK_UP;
		l->env.event(l->env.ctx, TBP_EV_LINK_UP, 0);
	}
}

int tbp_rail_add(struct tbp_link *l, uint32_t rail, uint32_t weight, uint32_t max_frame,
		 uint32_t flags)
{
	struct tbp_rail *rl;

	if (rail >= TBP_MAX_RAILS || weight == 0 || weight > 0xffff ||
	    max_frame < TBP_MIN_FRAME || max_frame > TBP_MAX_FRAME || (flags & ~TBP_RAIL_DMA))
		return -EINVAL;
	rl = &l->rails[rail];
	if (rl->state != RAIL_ABSENT)
		return -EEXIST;
	memset(rl, 0, sizeof(*rl));
	rl->state = RAIL_HELLO;
	rl->weight = weight;
	rl->max_frame = max_frame;
	rl->dma = (flags & TBP_RAIL_DMA) != 0;
	return 0;
}

int tbp_rail_down(struct tbp_link *l, uint32_t rail)
{
	if (rail >= TBP_MAX_RAILS || l->rails[rail].state == RAIL_ABSENT)
		return -EINVAL;
	l->now = l->env.now_ns(l->env.ctx);
	rail_went_down(l, rail);
	tbp_push(l);
	return 0;
}

int tbp_rail_remove(struct tbp_link *l, uint32_t rail)
{
	if (rail >= TBP_MAX_RAILS || l->rails[rail].state == RAIL_ABSENT)
		return -EINVAL;
	l->now = l->env.now_ns(l->env.ctx);
	rail_went_down(l, rail);
	l->rails[rail].state = RAIL_ABSENT;
	tbp_push(l);
	return 0;
}

/*
 * Pick the up rail with the least in-flight frames per unit of weight that can carry len
 * bytes and has not reported a full queue in this round; a data frame's first copy also
 * needs room in the rail's congestion window (a resend must not wait for acks that the
 * frames held since the timeout may never bring) and, unless it is a MSG_ACK, its turn on
 * the rail's pacing clock (tbp_pace.c). Returns TBP_MAX_RAILS if none.
 */
enum rail_need {
	NEED_FIT = 0,   /* resends, control frames: any rail that is up and not full */
	NEED_CWND = 1,  /* first copies: room in the congestion window */
	NEED_PACE = 2,  /* first copies of data: the pacing clock allows one more */
};

/* Rail r may carry a frame of len bytes now, with what need asks for, counting the first
 * copies already cut for it (planned). */
static bool rail_can_take(const struct tbp_link *l, uint32_t r, uint32_t len, unsigned int need,
			  uint32_t planned)
{
	const struct tbp_rail *rl = &l->rails[r];

	return rl->state == RAIL_UP && !rl->busy && rl->max_frame >= len &&
	       (!(need & NEED_CWND) || rl->inflight + planned < rl->cwnd) &&
	       (!(need & NEED_PACE) || tbp_pace_allows(l, rl, planned));
}

/* The eligible rail with the fewest frames in flight (and planned) per unit of weight. */
static uint32_t least_loaded_rail(const struct tbp_link *l, uint32_t len, unsigned int need,
				  bool count_planned)
{
	uint32_t r, best = TBP_MAX_RAILS;
	uint64_t best_score = ~0ull;

	for (r = 0; r < TBP_MAX_RAILS; r++) {
		const struct tbp_rail *rl = &l->rails[r];
		uint32_t planned = count_planned ? rl->planned : 0;
		uint64_t score;

		if (!rail_can_take(l, r, len, need, planned))
			continue;
		score = (((uint64_t)rl->inflight + planned + 1) << 16) / rl->weight;
		if (score < best_score) {
			best_score = score;
			best = r;
		}
	}
	return best;
}

static uint32_t choose_rail(const struct tbp_link *l, uint32_t len, unsigned int need)
{
	return least_loaded_rail(l, len, need, false);
}

/* No rail could take a paced frame; count it when pacing alone held it back. */
static void count_pace_hold(struct tbp_link *l, uint32_t len, unsigned int need,
			    bool count_planned)
{
	if ((need & NEED_PACE) &&
	    least_loaded_rail(l, len, need & ~NEED_PACE, count_planned) != TBP_MAX_RAILS)
		l->st.pace_holds++;
}

/*
 * First copies are cut for the rail that will carry them, to its frame size, when its
 * congestion window has room: a 9000-byte Ethernet rail pooled with a 4 KiB USB4 ring (or a
 * 1500-byte NIC) carries frames of its own size, not the smallest rail's. A frame that has to
 * move (its rail went down, a resend) goes on any rail it fits, or is cut again smaller
 * (tbp_msg_recut).
 */
uint32_t tbp_plan_rail(struct tbp_link *l)
{
	uint32_t r = least_loaded_rail(l, 0, NEED_CWND | NEED_PACE, true);

	if (r != TBP_MAX_RAILS)
		l->rails[r].planned++;
	else
		count_pace_hold(l, 0, NEED_CWND | NEED_PACE, true);
	return r;
}

/* ---- framing ---- */

static uint64_t build_sack(const struct tbp_link *l)
{
	uint64_t sack = 0;
	uint32_t i, limit = l->cfg.window - 1 < TBP_SACK_BITS ? l->cfg.window - 1 : TBP_SACK_BITS;

	for (i = 0; i < limit; i++) {
		uint32_t seq = l->rcv_nxt + 1 + i;

		if (l->rx_bits[(seq & l->win_mask) / 64] & (1ull << (seq & 63)))
			sack |= 1ull << i;
	}
	return sack;
}

/* Some frame arrived further beyond rcv_nxt than the header's bitmap reaches. */
static bool past_bitmap(const struct tbp_link *l)
{
	return l->rx_ooo && seq_diff(l->rcv_hi, l->rcv_nxt) > (int32_t)(1 + TBP_SACK_BITS);
}

/*
 * Ranges are worth their cost only for a hole that holds the cumulative ack for a while:
 * frames reordered between rails fill theirs within microseconds, and the next ack covers
 * everything past them anyway (sack_due).
 */
static bool sack_ranges_needed(const struct tbp_link *l)
{
	return past_bitmap(l) && l->now - l->hole_ns >= l->cfg.ack_delay_ns;
}

/* When owed ranges are due at the latest: the hole and the last ranges ack_delay_ns old. */
static uint64_t sack_due_ns(const struct tbp_link *l)
{
	return (l->hole_ns > l->last_sack_tx_ns ? l->hole_ns : l->last_sack_tx_ns) +
	       l->cfg.ack_delay_ns;
}

/*
 * The runs received past the bitmap's reach (rcv_nxt + 65 on), lowest first, up to
 * TBP_SACK_MAX_RANGES: one pass over the receive bitmap, a ring of max(window, 64) bits
 * indexed by the sequence number, a 64-bit word at a time. Runs end at rcv_hi at the latest.
 */
static uint32_t build_sack_ranges(const struct tbp_link *l, struct tbp_sack_range *r)
{
	uint32_t span = l->rcv_hi - l->rcv_nxt, off = 1 + TBP_SACK_BITS, n = 0;
	bool in_run = false;

	while (off < span) {
		uint32_t pos = (l->rcv_nxt + off) & (l->win_mask | 63u), bits = 64u - (pos & 63u);
		uint64_t w = l->rx_bits[pos / 64] >> (pos & 63u);

		if (bits > span - off)
			bits = span - off;
		for (;;) {
			uint64_t change = in_run ? ~w : w;
			uint32_t t = change ? (uint32_t)__builtin_ctzll(change) : 64u;

			if (t >= bits) {
				off += bits;
				break;
			}
			off += t;
			bits -= t;
			w >>= t;
			if (in_run) {
				r[n].len = (uint16_t)(off - r[n].off);
				if (++n == TBP_SACK_MAX_RANGES)
					return n;
			} else {
				r[n].off = (uint16_t)off;
			}
			in_run = !in_run;
		}
	}
	if (in_run) {
		r[n].len = (uint16_t)(span - r[n].off);
		n++;
	}
	return n;
}

static void fill_link_fields(struct tbp_link *l, struct tbp_hdr *h, uint32_t rail)
{
	h->magic = TBP_MAGIC;
	h->version = TBP_PROTO_VERSION;
	h->rail = (uint8_t)rail;
	h->session = l->session;
	h->ack = l->rcv_nxt;
	h->sack = l->rx_ooo ? build_sack(l) : 0;
	/* A frame that failed on one rail is refilled for the next one. */
	h->flags &= (uint8_t)~(TBP_F_PCSUM | TBP_F_MAC);
	if (l->rails[rail].dma)
		return;
	if (l->caps & TBP_CAP_PAYLOAD_CSUM)
		h->flags |= TBP_F_PCSUM;
	if (l->caps & TBP_CAP_FRAME_MAC)
		h->flags |= TBP_F_MAC;
}

/* A frame of len bytes (room for the link's MAC trailer included) about to go on rail: a
 * DMA rail's frames go without the trailer, the others are sealed. Returns its length. */
static uint32_t seal_for_rail(struct tbp_link *l, uint32_t rail, uint8_t *frame, uint32_t len)
{
	if (l->rails[rail].dma)
		return len - tbp_auth_overhead(l);
	tbp_auth_seal(l, frame, len);
	return len;
}

static void rail_refused(struct tbp_link *l, uint32_t rail)
{
	l->st.xmit_busy++;
	l->rails[rail].busy = 1;
}

static void frame_left(struct tbp_link *l, uint32_t rail)
{
	l->st.tx_frames++;
	l->rails[rail].last_tx_ns = l->now;
	/* Every frame carries the cumulative ack, so nothing is owed after it. */
	l->ack_owed = 0;
	l->ack_deadline = 0;
	l->last_ack_tx_ns = l->now;
}

/* Hand l->scratch (len bytes, room for the MAC trailer included) to a rail. Returns 0 or the
 * xmit error. */
static int xmit_scratch(struct tbp_link *l, uint32_t rail, uint32_t len)
{
	int rc = l->env.xmit(l->env.ctx, rail, l->scratch, seal_for_rail(l, rail, l->scratch, len));

	if (rc) {
		rail_refused(l, rail);
		return rc;
	}
	frame_left(l, rail);
	return 0;
}

void tbp_send_unsequenced(struct tbp_link *l, uint32_t rail, uint8_t op, uint32_t dst_qpn,
			  uint32_t src_qpn)
{
	struct tbp_hdr h;

	memset(&h, 0, sizeof(h));
	h.opcode = op;
	h.dst_qpn = dst_qpn;
	h.src_qpn = src_qpn;
	fill_link_fields(l, &h, rail);
	tbp_hdr_encode(l->scratch, &h);
	xmit_scratch(l, rail, TBP_HDR_LEN + tbp_auth_overhead(l));
}

void tbp_send_nak(struct tbp_link *l, uint32_t dst_qpn, uint32_t src_qpn, uint32_t msn,
		  uint16_t code, uint16_t attempt, uint32_t delay_us)
{
	uint32_t len = TBP_HDR_LEN + tbp_auth_overhead(l), rail = choose_rail(l, len, NEED_FIT);
	struct tbp_hdr h;

	/* Lost or not sent: the peer's ACK timer resends, and the resend is answered again. */
	if (rail == TBP_MAX_RAILS)
		return;
	memset(&h, 0, sizeof(h));
	h.opcode = TBP_W_NAK;
	h.dst_qpn = dst_qpn;
	h.src_qpn = src_qpn;
	h.msn = msn;
	h.status = code;
	h.ssn = attempt;
	h.imm = delay_us;
	/* A full rail queue is not a reason to lose it: try the others. */
	do {
		h.flags = 0;
		fill_link_fields(l, &h, rail);
		tbp_hdr_encode(l->scratch, &h);
		if (xmit_scratch(l, rail, len) == 0)
			return;
		rail = choose_rail(l, len, NEED_FIT);
	} while (rail != TBP_MAX_RAILS);
}

/*
 * The cumulative ack and the bitmap in the header and, once frames arrived past the bitmap's
 * reach, the receive window's runs as SACK ranges in the payload, so that the sender neither
 * resends them on its timers nor misses the holes between them.
 */
static void send_standalone_ack(struct tbp_link *l)
{
	struct tbp_sack_range r[TBP_SACK_MAX_RANGES];
	uint32_t n = sack_ranges_needed(l) ? build_sack_ranges(l, r) : 0;
	uint32_t plen = tbp_sack_encode(l->scratch + TBP_HDR_LEN, r, n);
	uint32_t len = TBP_HDR_LEN + plen + tbp_auth_overhead(l);
	uint32_t rail = choose_rail(l, len, NEED_FIT);
	struct tbp_hdr h;

	if (rail == TBP_MAX_RAILS)
		return;
	memset(&h, 0, sizeof(h));
	h.opcode = TBP_W_ACK;
	h.payload_len = (uint16_t)plen;
	fill_link_fields(l, &h, rail);
	tbp_hdr_encode(l->scratch, &h);
	if (xmit_scratch(l, rail, len))
		return;
	l->st.tx_acks++;
	if (n) {
		l->st.tx_sack_ranges++;
		l->sack_owed = 0;
		l->last_sack_tx_ns = l->now;
	}
}

int tbp_seq_alloc(struct tbp_link *l, uint8_t op, uint16_t msg, uint32_t off, uint32_t plen,
		  struct tbp_txslot **out)
{
	struct tbp_txslot *s;

	if (l->snd_nxt - l->snd_una >= l->cfg.window)
		return -ENOBUFS;
	s = &l->tx[l->snd_nxt & l->win_mask];
	memset(s, 0, sizeof(*s));
	s->state = TX_QUEUED;
	s->op = op;
	s->msg = msg;
	s->frag_off = off;
	s->payload_len = plen;
	mark_queued(l, l->snd_nxt);
	l->snd_nxt++;
	*out = s;
	return 0;
}

static uint64_t slot_deadline(const struct tbp_link *l, const struct tbp_txslot *s)
{
	uint64_t rto = l->rto;
	uint32_t i;

	for (i = 0; i < s->backoff && rto < l->cfg.rto_max_ns; i++)
		rto *= 2;
	if (rto > l->cfg.rto_max_ns)
		rto = l->cfg.rto_max_ns;
	return s->sent_ns + rto;
}

static bool some_up_rail_fits(const struct tbp_link *l, uint32_t len)
{
	uint32_t r;

	for (r = 0; r < TBP_MAX_RAILS; r++)
		if (l->rails[r].state == RAIL_UP && l->rails[r].max_frame >= len)
			return true;
	return false;
}

static uint32_t rail_frame_len(const struct tbp_link *l, uint32_t rail, uint32_t len)
{
	return l->rails[rail].dma ? len - tbp_auth_overhead(l) : len;
}

/*
 * Build slot s's frame for rail at frame: payload (read from its buffer, the one copy of the
 * send side when frame is the rail's own buffer), header, seal. *len: the frame's length with
 * room for the MAC trailer, shortened when the frame goes out as a NOP. Returns its length on
 * the rail. Built anew for every rail tried: the header names the rail, the seal covers it.
 */
static uint32_t build_slot_frame(struct tbp_link *l, uint32_t seq, struct tbp_txslot *s,
				 uint32_t rail, uint8_t *frame, uint32_t *len)
{
	struct tbp_hdr h;

	memset(&h, 0, sizeof(h));
	if (!tbp_build_seq_frame(l, s, &h, frame + TBP_HDR_LEN)) {
		/* The local copy failed: the sequence number still has to reach the peer. */
		memset(&h, 0, sizeof(h));
		h.opcode = TBP_W_NOP;
		s->op = TBP_W_NOP;
		s->payload_len = 0;
		*len = TBP_HDR_LEN + tbp_auth_overhead(l);
	}
	h.flags |= TBP_F_SEQ;
	h.seq = seq;
	fill_link_fields(l, &h, rail);
	tbp_hdr_encode(frame, &h);
	return seal_for_rail(l, rail, frame, *len);
}

/* What a queued slot needs of its rail: a resend only a fit, a first copy window room and,
 * unless it is a MSG_ACK (a control frame), its turn on the pacing clock. */
static unsigned int slot_need(const struct tbp_txslot *s)
{
	if (s->sent_once)
		return NEED_FIT;
	return s->op == TBP_W_MSG_ACK ? NEED_CWND : NEED_CWND | NEED_PACE;
}

/* Send one queued slot; returns false when no rail can take it now. */
static bool send_slot(struct tbp_link *l, uint32_t seq, struct tbp_txslot *s)
{
	uint32_t rail, len = TBP_HDR_LEN + s->payload_len + tbp_auth_overhead(l);
	unsigned int need = slot_need(s);

	/* A first copy goes on the rail it was cut for while that one can take it. */
	if (s->plan && rail_can_take(l, s->plan - 1u, len, need, 0))
		rail = s->plan - 1u;
	else
		rail = choose_rail(l, len, need);
	if (rail == TBP_MAX_RAILS)
		count_pace_hold(l, len, need, false);
	if (rail == TBP_MAX_RAILS) {
		/* Cut for a bigger rail that is gone (or an MTU that shrank): waiting cannot help,
		 * so the sequence number goes out as a NOP and the bytes are resent smaller. */
		if (s->payload_len == 0 || !tbp_rails_up(l) || some_up_rail_fits(l, len))
			return false;
		tbp_msg_recut(l, s);
		len = TBP_HDR_LEN + tbp_auth_overhead(l);
		rail = choose_rail(l, len, need);
		if (rail == TBP_MAX_RAILS)
			return false;
	}
	for (;;) {
		int rc;

		if (l->env.frame_get) {
			void *token;
			uint8_t *frame = l->env.frame_get(l->env.ctx, rail,
							  rail_frame_len(l, rail, len), &token);

			rc = -EAGAIN;
			if (frame)
				rc = l->env.frame_commit(l->env.ctx, rail, token,
							 build_slot_frame(l, seq, s, rail, frame, &len));
		} else {
			rc = l->env.xmit(l->env.ctx, rail, l->scratch,
					 build_slot_frame(l, seq, s, rail, l->scratch, &len));
		}
		if (rc == 0)
			break;
		rail_refused(l, rail);
		rail = choose_rail(l, len, need);
		if (rail == TBP_MAX_RAILS)
			return false;
	}
	frame_left(l, rail);
	/* Paced frames and resends take their turn on the clock; MSG_ACKs are too small to. */
	if (need != NEED_CWND)
		tbp_pace_sent(l, &l->rails[rail]);
	if (s->plan) {
		l->rails[s->plan - 1u].planned--;
		s->plan = 0;
	}
	if (s->sent_once) {
		s->retx++;
		l->st.retransmits++;
	} else {
		s->sent_once = 1;
		s->first_sent_ns = l->now;
		l->st.tx_data_frames++;
	}
	s->state = TX_INFLIGHT;
	s->rail = (uint8_t)rail;
	s->sent_ns = l->now;
	s->rail_tx_no = ++l->rails[rail].tx_no;
	l->rails[rail].inflight++;
	l->queued--;
	if (l->rtx_next)
		l->rtx_next = min_u64(l->rtx_next, slot_deadline(l, s));
	return true;
}

static uint32_t ack_every(const struct tbp_link *l)
{
	return l->cfg.window / 8 < 32 ? l->cfg.window / 8 : 32;
}

/*
 * Ranges are owed apart from the cumulative ack: a data frame going the other way carries
 * the ack and the bitmap (and clears ack_owed) but not the ranges. Once the hole has held
 * the cumulative ack for ack_delay_ns (a lost frame, not reordering between rails), they are
 * due on the standalone ack's schedule: after ack_every frames past the bitmap, or
 * ack_delay_ns after the last ranges (tbp_tick wakes for that: sack_due_ns). That is soon
 * enough: the sender resends on its timer only after an RTO (at least rto_min_ns, far above
 * ack_delay_ns), and its fast retransmit of the holes past the bitmap waits for the later
 * frames of their rails, which these same ranges report. An ACK per reordered frame would
 * double the reverse traffic exactly when reordering is heavy, and ranges for holes that
 * fill within microseconds would cost both ends a walk of the window for nothing.
 */
static bool sack_due(struct tbp_link *l)
{
	if (!l->sack_owed)
		return false;
	if (!past_bitmap(l)) {
		/* Filled in, or close enough to rcv_nxt for the bitmap of any frame. */
		l->sack_owed = 0;
		return false;
	}
	return sack_ranges_needed(l) &&
	       (l->sack_owed >= ack_every(l) || l->now - l->last_sack_tx_ns >= l->cfg.ack_delay_ns);
}

void tbp_push(struct tbp_link *l)
{
	uint32_t r, seq;

	if (l->state != TBP_LINK_UP)
		return;
	for (r = 0; r < TBP_MAX_RAILS; r++)
		l->rails[r].busy = 0;
	tbp_msg_fill_window(l);
	/* Queued frames are rare below q_first, so the window is not rescanned on every call. */
	seq = seq_diff(l->q_first, l->snd_una) > 0 ? l->q_first : l->snd_una;
	for (; l->queued && seq != l->snd_nxt; seq++) {
		struct tbp_txslot *s = &l->tx[seq & l->win_mask];

		if (s->state == TX_QUEUED && !send_slot(l, seq, s))
			break;
	}
	l->q_first = seq;
	if ((l->ack_owed && tbp_ack_due(l)) || sack_due(l))
		send_standalone_ack(l);
}

bool tbp_ack_due(const struct tbp_link *l)
{
	return l->ack_owed >= ack_every(l) || l->now - l->last_ack_tx_ns >= l->cfg.ack_delay_ns;
}

/* ---- acks and retransmission ---- */

void tbp_rtt_sample(struct tbp_link *l, uint64_t rtt)
{
	uint64_t var;

	/* srtt 0 means "no sample yet": a round trip within one clock tick is 1 ns. */
	if (!rtt)
		rtt = 1;
	if (!l->srtt) {
		l->srtt = rtt;
		l->rttvar = rtt / 2;
	} else {
		uint64_t dev = l->srtt > rtt ? l->srtt - rtt : rtt - l->srtt;

		l->rttvar = (3 * l->rttvar + dev) / 4;
		l->srtt = (7 * l->srtt + rtt) / 8;
	}
	/* Queueing on busy rails makes the RTT jumpy; srtt/2 keeps spurious timeouts rare. */
	var = 4 * l->rttvar > l->srtt / 2 ? 4 * l->rttvar : l->srtt / 2;
	l->rto = l->srtt + (var > l->cfg.rto_min_ns ? var : l->cfg.rto_min_ns);
	if (l->rto_floor && l->now - l->rto_floor_ns >= NS_PER_S) {
		l->rto_floor /= 2;
		l->rto_floor_ns = l->now;
	}
	if (l->rto < l->rto_floor)
		l->rto = l->rto_floor;
	if (l->rto > l->cfg.rto_max_ns)
		l->rto = l->cfg.rto_max_ns;
}

/*
 * The ack of a frame whose timer expired: the frame was late, not lost (a stalled receiver,
 * a loaded host), if the ack came back sooner after the resend than half a round trip, or
 * before the resend went out at all. The RTO must outlast such a delay next time.
 */
static void timeout_was_early(struct tbp_link *l, struct tbp_txslot *s, bool resent)
{
	uint64_t delay = l->now - s->first_sent_ns, floor = delay + delay / 4;

	if (resent && !(l->srtt && l->now - s->sent_ns < l->srtt / 2))
		return;
	if (resent)
		l->st.retx_spurious++;
	if (floor > l->cfg.rto_max_ns)
		floor = l->cfg.rto_max_ns;
	if (floor > l->rto_floor)
		l->rto_floor = floor;
	l->rto_floor_ns = l->now;
	if (l->rto < l->rto_floor)
		l->rto = l->rto_floor;
}

static void slot_acked(struct tbp_link *l, struct tbp_txslot *s)
{
	if (s->timed_out && (s->state == TX_INFLIGHT || s->state == TX_QUEUED))
		timeout_was_early(l, s, s->state == TX_INFLIGHT);
	if (s->state == TX_INFLIGHT) {
		struct tbp_rail *rl = &l->rails[s->rail];

		if (rl->inflight)
			rl->inflight--;
		/* A resent frame's ack may be for an older copy on another rail (Karn): it says
		 * nothing about this rail's order nor about the round trip. */
		if (s->retx == 0) {
			if (s->rail_tx_no > rl->acked_tx_no)
				rl->acked_tx_no = s->rail_tx_no;
			tbp_rtt_sample(l, l->now - s->sent_ns);
			if (s->sent_ns > rl->sig_sent_ns)
				rl->sig_sent_ns = s->sent_ns;
			rl->sig_frames++;
		}
	} else if (s->state == TX_QUEUED) {
		/* An earlier copy got through while this one waited for a rail. */
		l->queued--;
	}
	s->state = TX_ACKED;
	tbp_msg_frame_acked(l, s);
}

/* A frame is presumed lost once TBP_FAST_RETX_GAP later frames on its rail were acked:
 * a rail delivers in order, so this reacts faster than the timer without being fooled
 * by the reordering between rails. Judges [seq, end), never below snd_una (those frames
 * are acked and their slots may hold newer ones). */
static void fast_retransmit(struct tbp_link *l, uint32_t seq, uint32_t end)
{
	if (seq_diff(seq, l->snd_una) < 0)
		seq = l->snd_una;
	if (seq_diff(end, l->snd_nxt) > 0)
		end = l->snd_nxt;
	for (; seq_diff(seq, end) < 0; seq++) {
		struct tbp_txslot *s = &l->tx[seq & l->win_mask];

		if (s->state == TX_INFLIGHT &&
		    l->rails[s->rail].acked_tx_no >= s->rail_tx_no + TBP_FAST_RETX_GAP) {
			l->st.retx_fast++;
			if (l->rails[s->rail].inflight)
				l->rails[s->rail].inflight--;
			s->state = TX_QUEUED;
			mark_queued(l, seq);
		}
	}
}

/*
 * Ends the RTO probes the latest ack settles. newest_sent_ns: the latest send time among the
 * frames it newly acked. Once the peer acks a frame sent after a rail's probe went out, it
 * is answering again: the rail's held frames get one more RTO (the grace) for their acks,
 * as a receiver back from a stall still works through them; after it they are resent
 * (retransmit_timers). A probe also ends when no frame sent before it is left in flight.
 */
static void end_rto_probes(struct tbp_link *l, uint64_t newest_sent_ns)
{
	uint32_t r, seq, probing = 0, held = 0;

	for (r = 0; r < TBP_MAX_RAILS; r++) {
		struct tbp_rail *rl = &l->rails[r];

		if (!rl->rto_probe)
			continue;
		if (newest_sent_ns >= rl->probe_ns) {
			rl->rto_probe = 0;
			rl->grace_until = l->now + l->rto;
		} else {
			probing |= 1u << r;
		}
	}
	if (!probing)
		return;
	for (seq = l->snd_una; seq != l->snd_nxt; seq++) {
		const struct tbp_txslot *s = &l->tx[seq & l->win_mask];

		if (s->state == TX_INFLIGHT && !s->retx && (probing & (1u << s->rail)) &&
		    s->sent_ns < l->rails[s->rail].probe_ns)
			held |= 1u << s->rail;
	}
	for (r = 0; r < TBP_MAX_RAILS; r++)
		if ((probing & (1u << r)) && !(held & (1u << r)))
			l->rails[r].rto_probe = 0;
}

/* What one received frame acknowledged for the first time. */
struct ack_news {
	uint32_t newly;          /* frames */
	uint64_t newest_sent_ns; /* the latest send time among them */
};

static inline void ack_seq(struct tbp_link *l, uint32_t seq, struct ack_news *an)
{
	struct tbp_txslot *s = &l->tx[seq & l->win_mask];

	if (s->state == TX_ACKED)
		return;
	if (s->state == TX_INFLIGHT && s->sent_ns > an->newest_sent_ns)
		an->newest_sent_ns = s->sent_ns;
	slot_acked(l, s);
	an->newly++;
}

/*
 * The SACK ranges of an ACK frame (only standalone ACKs carry them, so they are walked per
 * ACK, not per data frame), already checked to be sorted runs above ack inside the largest
 * window (tbp_sack_decode): once the highest ends at or below snd_nxt, every frame they name
 * has a slot in the send window. Returns how many there are (0: none, or refused).
 */
static int sack_ranges(struct tbp_link *l, const struct tbp_hdr *h, const uint8_t *payload,
		       struct tbp_sack_range *r)
{
	int n;

	if (h->opcode != TBP_W_ACK || !h->payload_len)
		return 0;
	n = tbp_sack_decode(payload, h->payload_len, r);
	if (n <= 0)
		return 0;
	if (seq_diff(h->ack + r[n - 1].off + r[n - 1].len, l->snd_nxt) > 0) {
		l->st.drop_sack++;
		return 0;
	}
	return n;
}

/*
 * Only frames the peer's ack could report on can be judged lost: the bitmap's 64 after the
 * cumulative ack and, further out, those the ranges leave out below the highest one (the
 * frames inside them were just acked).
 */
static void judge_lost(struct tbp_link *l, uint32_t ack, const struct tbp_sack_range *r, int n)
{
	uint32_t from = ack + 1 + TBP_SACK_BITS;
	int i;

	fast_retransmit(l, l->snd_una, from);
	for (i = 0; i < n; i++) {
		uint32_t start = ack + r[i].off, end = start + r[i].len;

		if (seq_diff(start, from) > 0)
			fast_retransmit(l, from, start);
		if (seq_diff(end, from) > 0)
			from = end;
	}
}

static void process_ack(struct tbp_link *l, const struct tbp_hdr *h, const uint8_t *payload)
{
	struct tbp_sack_range r[TBP_SACK_MAX_RANGES];
	struct ack_news an = { 0, 0 };
	uint32_t seq, i, ack = h->ack;
	int k, n;

	/* An ack beyond what was sent is corrupt or from another life: ignore it. */
	if (seq_diff(ack, l->snd_una) < 0 || seq_diff(ack, l->snd_nxt) > 0)
		return;
	n = sack_ranges(l, h, payload, r);
	for (seq = l->snd_una; seq != ack; seq++)
		ack_seq(l, seq, &an);
	for (i = 0; h->sack && i < TBP_SACK_BITS; i++) {
		if (!(h->sack & (1ull << i)))
			continue;
		seq = ack + 1 + i;
		if (seq_diff(seq, l->snd_nxt) >= 0)
			break;
		ack_seq(l, seq, &an);
	}
	for (k = 0; k < n; k++)
		for (seq = ack + r[k].off; seq != ack + r[k].off + r[k].len; seq++)
			ack_seq(l, seq, &an);
	while (l->snd_una != l->snd_nxt && l->tx[l->snd_una & l->win_mask].state == TX_ACKED) {
		l->tx[l->snd_una & l->win_mask].state = TX_FREE;
		l->snd_una++;
	}
	if (an.newly)
		rails_rtt_signals(l);
	if (an.newly && l->snd_una != l->snd_nxt)
		judge_lost(l, ack, r, n);
	if (an.newly)
		end_rto_probes(l, an.newest_sent_ns);
}

/*
 * Requeue timed-out frames; returns the earliest pending retransmission deadline.
 *
 * A stall (a descheduled guest, a loaded host) outlasts the timer of every frame in flight
 * at once, though the frames themselves still arrive. So, as TCP does after a timeout, a
 * rail resends only its oldest timed-out frame (the probe, whose own timer keeps backing
 * off) and holds its other first copies until the peer answers (end_rto_probes) and a grace
 * RTO has passed: by then acks have shown which of them only waited with the receiver.
 * Those still unacked are lost and are resent together. Loss outside a stall is mostly
 * repaired earlier, by fast retransmit. A rail that never answers is declared dead.
 */
static uint64_t retransmit_timers(struct tbp_link *l, uint64_t deadline)
{
	uint32_t seq;

	for (seq = l->snd_una; seq != l->snd_nxt; seq++) {
		struct tbp_txslot *s = &l->tx[seq & l->win_mask];
		struct tbp_rail *rl;
		uint64_t due;

		if (s->state != TX_INFLIGHT)
			continue;
		rl = &l->rails[s->rail];
		if (!s->retx && rl->rto_probe)
			continue;
		due = slot_deadline(l, s);
		if (!s->retx && due < rl->grace_until)
			due = rl->grace_until;
		if (l->now < due) {
			if (due < deadline)
				deadline = due;
			continue;
		}
		/* A first copy sent since the last probe: a new timeout episode starts. */
		if (!s->retx && s->sent_ns >= rl->probe_ns) {
			rl->rto_probe = 1;
			rl->probe_ns = l->now;
			cwnd_reduce(l, rl, 1, 2);
		}
		/* Without any RTT sample yet (Karn), back the base timer off instead. */
		l->st.retx_timeouts++;
		s->timed_out = 1;
		if (s->backoff < 0xffff)
			s->backoff++;
		if (!l->srtt && l->rto < l->cfg.rto_max_ns)
			l->rto = l->rto * 2 < l->cfg.rto_max_ns ? l->rto * 2 : l->cfg.rto_max_ns;
		if (rl->inflight)
			rl->inflight--;
		s->state = TX_QUEUED;
		mark_queued(l, seq);
	}
	return deadline;
}

/* ---- receive window ---- */

enum rx_verdict { RX_NEW, RX_DUP, RX_OUTSIDE };

static enum rx_verdict rx_classify(const struct tbp_link *l, uint32_t seq)
{
	int32_t d = seq_diff(seq, l->rcv_nxt);

	if (d < 0)
		return d >= -(int32_t)l->cfg.window ? RX_DUP : RX_OUTSIDE;
	if ((uint32_t)d >= l->cfg.window)
		return RX_OUTSIDE;
	if (l->rx_bits[(seq & l->win_mask) / 64] & (1ull << (seq & 63)))
		return RX_DUP;
	return RX_NEW;
}

static void rx_mark(struct tbp_link *l, uint32_t seq)
{
	uint32_t from = l->rcv_nxt, ooo = l->rx_ooo;

	if (seq_diff(seq, l->rcv_nxt) > (int32_t)TBP_SACK_BITS)
		l->sack_owed++; /* only SACK ranges can tell the sender (sack_due) */
	if (seq_diff(seq + 1, l->rcv_hi) > 0)
		l->rcv_hi = seq + 1;
	l->rx_bits[(seq & l->win_mask) / 64] |= 1ull << (seq & 63);
	l->rx_ooo++;
	while (l->rx_bits[(l->rcv_nxt & l->win_mask) / 64] & (1ull << (l->rcv_nxt & 63))) {
		l->rx_bits[(l->rcv_nxt & l->win_mask) / 64] &= ~(1ull << (l->rcv_nxt & 63));
		l->rcv_nxt++;
		l->rx_ooo--;
	}
	/* A new hole holds the cumulative ack from now on. */
	if (l->rx_ooo && (!ooo || l->rcv_nxt != from))
		l->hole_ns = l->now;
}

static void owe_ack(struct tbp_link *l)
{
	l->ack_owed++;
	if (!l->ack_deadline)
		l->ack_deadline = l->last_ack_tx_ns + l->cfg.ack_delay_ns;
}

/* ---- entry points ---- */

void tbp_rx(struct tbp_link *l, uint32_t rail, const void *frame, uint32_t len)
{
	struct tbp_rx_frag one = { .data = frame, .len = len };

	tbp_rx_frags(l, rail, &one, 1);
}

void tbp_rx_frags(struct tbp_link *l, uint32_t rail, const struct tbp_rx_frag *frags,
		  uint32_t nfrags)
{
	struct tbp_hdr h;
	struct tbp_rail *rl;
	struct tbp_rxf f;
	int rc;

	l->st.rx_frames++;
	l->auth.rx_authentic = 0;
	if (rail >= TBP_MAX_RAILS || l->rails[rail].state == RAIL_ABSENT) {
		l->st.drop_rail++;
		return;
	}
	rl = &l->rails[rail];
	l->now = l->env.now_ns(l->env.ctx);
	tbp_rxf_init(&f, frags, nfrags);
	rc = tbp_rxf_decode(&f, TBP_MAX_FRAME, &h);
	if (rc) {
		if (rc == TBP_DEC_SHORT)
			l->st.drop_short++;
		else if (rc == TBP_DEC_MAGIC)
			l->st.drop_magic++;
		else if (rc == TBP_DEC_CHECKSUM)
			l->st.drop_checksum++;
		else
			l->st.drop_field++;
		return;
	}
	if (h.opcode <= TBP_W_HELLO_CONFIRM) {
		if (h.session != 0) {
			l->st.drop_field++;
			return;
		}
		tbp_rx_hello(l, rail, &h, f.payload);
		tbp_push(l);
		return;
	}
	if (l->state != TBP_LINK_UP && l->state != TBP_LINK_DEGRADED) {
		l->st.drop_state++;
		return;
	}
	if (h.session != l->session) {
		l->st.drop_session++;
		return;
	}
	if ((l->caps & TBP_CAP_PAYLOAD_CSUM) && !rl->dma && !(h.flags & TBP_F_PCSUM)) {
		l->st.drop_checksum++;
		return;
	}
	/* Forged or replayed frames stop here, before they can touch any state. */
	if (!tbp_auth_rx(l, rl->dma, &f, &h))
		return;
	if (rl->state != RAIL_UP) {
		/* The peer thinks this rail is up: our CONFIRM or its ACK was lost. */
		l->st.drop_rail++;
		if (l->cfg.role == TBP_ROLE_RESPONDER && rl->confirm_owed &&
		    l->now - rl->hello_ns >= l->cfg.hello_retry_ns)
			tbp_send_hello(l, rail, TBP_W_HELLO_ACK);
		return;
	}
	if (h.rail != rl->peer_rail) {
		l->st.drop_rail++;
		return;
	}
	rl->last_rx_ns = l->now;
	process_ack(l, &h, f.payload);
	if (h.flags & TBP_F_SEQ) {
		enum rx_verdict v = rx_classify(l, h.seq);

		if (v == RX_DUP) {
			l->st.rx_duplicates++;
			owe_ack(l);
			l->ack_owed = ack_every(l); /* our ack was lost: answer at once */
		} else if (v == RX_OUTSIDE) {
			l->st.drop_window++;
		} else if (h.opcode == TBP_W_NOP || tbp_msg_rx(l, &h, &f)) {
			rx_mark(l, h.seq);
			l->st.rx_accepted++;
			owe_ack(l);
		}
	} else if (h.opcode == TBP_W_NAK) {
		tbp_msg_nak(l, &h);
	}
	tbp_push(l);
}

uint64_t tbp_tick(struct tbp_link *l, uint64_t now)
{
	uint64_t deadline = now + l->cfg.keepalive_ns;
	uint32_t r;

	l->now = now;
	if (l->state == TBP_LINK_FAILED)
		return now + l->cfg.link_dead_ns;
	for (r = 0; r < TBP_MAX_RAILS; r++) {
		struct tbp_rail *rl = &l->rails[r];

		if (rl->state == RAIL_UP && now - rl->last_rx_ns >= l->cfg.rail_dead_ns)
			rail_went_down(l, r);
		if (rl->state == RAIL_UP) {
			if (now - rl->last_tx_ns >= l->cfg.keepalive_ns) {
				tbp_send_unsequenced(l, r, TBP_W_KEEPALIVE, 0, 0);
				l->st.tx_keepalives++;
			}
			deadline = min_u64(deadline, rl->last_tx_ns + l->cfg.keepalive_ns);
			deadline = min_u64(deadline, rl->last_rx_ns + l->cfg.rail_dead_ns);
		} else if (rl->state == RAIL_HELLO && l->cfg.role == TBP_ROLE_INITIATOR) {
			if (!rl->hello_ns || now - rl->hello_ns >= l->cfg.hello_retry_ns)
				tbp_send_hello(l, r, TBP_W_HELLO);
			deadline = min_u64(deadline, rl->hello_ns + l->cfg.hello_retry_ns);
		}
	}
	if (l->state == TBP_LINK_DEGRADED) {
		if (now - l->down_since >= l->cfg.link_dead_ns) {
			tbp_link_fail(l, TBP_ERR_LINK_DOWN);
			return now + l->cfg.link_dead_ns;
		}
		deadline = min_u64(deadline, l->down_since + l->cfg.link_dead_ns);
	}
	if (l->state == TBP_LINK_UP) {
		/* The window is only scanned when a timer may have expired; a shrinking RTO can
		 * delay a resend by at most the difference, which the timers tolerate. */
		if (!l->rtx_next || now >= l->rtx_next)
			l->rtx_next = retransmit_timers(l, ~0ull);
		deadline = min_u64(deadline, l->rtx_next);
	}
	/* QP ACK timers also run while no rail is up: a QP fails after its retries, not when
	 * the whole link dies. */
	if (l->state == TBP_LINK_UP || l->state == TBP_LINK_DEGRADED) {
		if (now >= l->qp_timer_next)
			l->qp_timer_next = tbp_msg_qp_timers(l, ~0ull);
		deadline = min_u64(deadline, l->qp_timer_next);
	}
	if (l->state == TBP_LINK_UP) {
		tbp_msg_retry_stalled(l);
		tbp_push(l);
		if (l->ack_deadline)
			deadline = min_u64(deadline, l->ack_deadline);
		if (l->sack_owed)
			deadline = min_u64(deadline, sack_due_ns(l));
		deadline = tbp_msg_next_deadline(l, deadline);
		/* A rail held back only by its pacing clock resumes when the clock allows. */
		deadline = tbp_pace_deadline(l, deadline);
	}
	/* A deadline already due means a resource (window, rail queue) is exhausted; the
	 * event that frees it runs tbp_rx/tbp_tick anyway, so do not spin on the timer. */
	return deadline > now + l->cfg.ack_delay_ns / 4 ? deadline : now + l->cfg.ack_delay_ns / 4 + 1;
}
