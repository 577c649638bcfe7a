// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * tbp_hello.c - the authenticated HELLO / HELLO_ACK / HELLO_CONFIRM handshake that
 * brings each rail up and derives the link's session and frame keys (docs/protocol.md,
 * "Handshake").
 *
 * Replay: HELLO_ACK must echo the rail nonce of the initiator's current attempt and
 * HELLO_CONFIRM the rail nonce of the responder's pending answer, both fresh, so a recorded
 * handshake frame changes nothing. A HELLO carries nothing fresh from the responder, so it
 * commits nothing either: the responder only answers it, and takes the peer, the session and
 * the rail on the CONFIRM.
 */
#include "tbp_internal.h"

/* Payload layout; the MAC is HMAC-SHA256 truncated to 192 bits over opcode || [0, HP_MAC). */
enum {
	HP_VERSION = 0, HP_CAPS = 4, HP_RAIL = 8, HP_MAX_FRAME = 12, HP_NONCE_I = 16,
	HP_NONCE_R = 32, HP_PEER_RAIL = 48, HP_FLAGS = 52, HP_HN_I = 56, HP_HN_R = 64, HP_MAC = 72,
	HP_MAC_LEN = 24,
};

static void le32_put(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static uint32_t le32_get(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}

/* MAC over the opcode and every field before the MAC: both nonces bind it to this exchange. */
static void hello_mac(struct tbp_link *l, uint8_t op, const uint8_t *payload, uint8_t out[32])
{
	uint8_t msg[1 + HP_MAC];

	msg[0] = op;
	memcpy(msg + 1, payload, HP_MAC);
	l->env.hmac_sha256(l->env.ctx, l->cfg.key, l->cfg.key_len, msg, sizeof(msg), out);
}

static bool same(const uint8_t *a, const uint8_t *b, uint32_t n)
{
	return tbp_ct_equal(a, b, n);
}

static void derive_session(struct tbp_link *l, const uint8_t *nonce_i, const uint8_t *nonce_r)
{
	uint8_t msg[1 + 2 * TBP_NONCE_LEN], mac[TBP_MAC_LEN];

	msg[0] = 'S';
	memcpy(msg + 1, nonce_i, TBP_NONCE_LEN);
	memcpy(msg + 1 + TBP_NONCE_LEN, nonce_r, TBP_NONCE_LEN);
	l->env.hmac_sha256(l->env.ctx, l->cfg.key, l->cfg.key_len, msg, sizeof(msg), mac);
	l->session = le32_get(mac) | 1u; /* never 0: handshake frames use 0 */
	tbp_auth_derive(l, nonce_i, nonce_r);
}

void tbp_send_hello(struct tbp_link *l, uint32_t rail, uint8_t op)
{
	struct tbp_hdr h;
	struct tbp_rail_hs *hs = &l->auth.hs[rail];
	uint8_t *p = l->scratch + TBP_HDR_LEN, mac[TBP_MAC_LEN];
	bool initiator = l->cfg.role == TBP_ROLE_INITIATOR;

	/* A new attempt on this rail (added, or back from down) gets a new rail nonce. */
	if (op == TBP_W_HELLO && !l->rails[rail].hello_ns)
		l->env.random_bytes(l->env.ctx, hs->hn_mine, TBP_RAIL_NONCE_LEN);
	memset(p, 0, TBP_HELLO_LEN);
	le32_put(p + HP_VERSION, TBP_PROTO_VERSION);
	le32_put(p + HP_CAPS, l->cfg.caps);
	le32_put(p + HP_RAIL, rail);
	le32_put(p + HP_MAX_FRAME, l->rails[rail].max_frame);
	if (initiator) {
		memcpy(p + HP_NONCE_I, l->nonce, TBP_NONCE_LEN);
		memcpy(p + HP_HN_I, hs->hn_mine, TBP_RAIL_NONCE_LEN);
		if (op == TBP_W_HELLO_CONFIRM) {
			memcpy(p + HP_NONCE_R, l->peer_nonce, TBP_NONCE_LEN);
			le32_put(p + HP_PEER_RAIL, l->rails[rail].peer_rail);
			memcpy(p + HP_HN_R, hs->hn_peer, TBP_RAIL_NONCE_LEN);
		}
	} else {
		/* HELLO_ACK answers the pending HELLO of this rail. */
		memcpy(p + HP_NONCE_I, hs->pend_nonce, TBP_NONCE_LEN);
		memcpy(p + HP_NONCE_R, l->nonce, TBP_NONCE_LEN);
		le32_put(p + HP_PEER_RAIL, hs->peer_rail);
		memcpy(p + HP_HN_I, hs->hn_peer, TBP_RAIL_NONCE_LEN);
		memcpy(p + HP_HN_R, hs->hn_mine, TBP_RAIL_NONCE_LEN);
	}
	hello_mac(l, op, p, mac);
	memcpy(p + HP_MAC, mac, HP_MAC_LEN);
	memset(&h, 0, sizeof(h));
	h.magic = TBP_MAGIC;
	h.version = TBP_PROTO_VERSION;
	h.opcode = op;
	h.rail = (uint8_t)rail;
	h.payload_len = TBP_HELLO_LEN;
	h.flags = TBP_F_PCSUM;
	tbp_hdr_encode(l->scratch, &h);
	l->rails[rail].hello_ns = l->now;
	if (l->env.xmit(l->env.ctx, rail, l->scratch, TBP_HDR_LEN + TBP_HELLO_LEN) == 0) {
		l->st.tx_frames++;
		l->rails[rail].last_tx_ns = l->now;
	} else {
		l->st.xmit_busy++;
	}
}

/*
 * An authentic handshake frame with a peer nonce other than the recorded one: the peer rebuilt
 * its link. Once this link has been up, the session died with the peer's state, so with no
 * rail up the link fails and its owner builds a fresh one; while a rail is up the frame can
 * only be a replay. Before the link was ever up nothing is recorded yet (the responder takes
 * the peer on the CONFIRM), so a new initiator simply replaces the pending one.
 */
static void peer_restarted(struct tbp_link *l)
{
	if (l->state == TBP_LINK_DEGRADED && tbp_rails_up(l) == 0)
		tbp_link_fail(l, TBP_ERR_LINK_DOWN);
}

/* Budget of handshake MAC verifications per rail and hello_retry_ns: a flood of forged
 * HELLOs costs at most TBP_HS_BUDGET HMACs per period, the rest is dropped unread. */
static bool hs_budget_ok(struct tbp_link *l, struct tbp_rail_hs *hs)
{
	if (l->now - hs->budget_start >= l->cfg.hello_retry_ns) {
		hs->budget_start = l->now;
		hs->budget = 0;
	}
	if (hs->budget >= TBP_HS_BUDGET) {
		l->st.drop_ratelimit++;
		return false;
	}
	hs->budget++;
	return true;
}

/* The peer's nonce in an authentic frame is the recorded one (or none is recorded yet). */
static bool known_peer(struct tbp_link *l, const uint8_t *their_nonce, uint32_t caps)
{
	if (!l->have_peer)
		return true;
	if (!same(their_nonce, l->peer_nonce, TBP_NONCE_LEN)) {
		peer_restarted(l);
		return false;
	}
	return caps == l->caps;
}

static void take_peer(struct tbp_link *l, const uint8_t *nonce_i, const uint8_t *nonce_r,
		      uint32_t caps)
{
	if (l->have_peer)
		return;
	memcpy(l->peer_nonce, l->cfg.role == TBP_ROLE_INITIATOR ? nonce_r : nonce_i,
	       TBP_NONCE_LEN);
	l->have_peer = 1;
	l->caps = caps;
	derive_session(l, nonce_i, nonce_r);
}

static void rail_confirmed(struct tbp_link *l, uint32_t rail, const uint8_t *p)
{
	struct tbp_rail *rl = &l->rails[rail];
	uint32_t peer_max = le32_get(p + HP_MAX_FRAME);

	rl->peer_rail = (uint8_t)le32_get(p + HP_RAIL);
	if (peer_max < rl->max_frame)
		rl->max_frame = peer_max;
	rl->last_rx_ns = l->now;
	l->auth.rx_authentic = 1;
}

void tbp_rx_hello(struct tbp_link *l, uint32_t rail, const struct tbp_hdr *h,
		  const uint8_t *p)
{
	struct tbp_rail *rl = &l->rails[rail];
	struct tbp_rail_hs *hs = &l->auth.hs[rail];
	bool initiator = l->cfg.role == TBP_ROLE_INITIATOR;
	uint8_t mac[TBP_MAC_LEN];
	uint32_t peer_max, caps;

	if (l->state == TBP_LINK_FAILED ||
	    (initiator ? h->opcode != TBP_W_HELLO_ACK : h->opcode == TBP_W_HELLO_ACK)) {
		l->st.drop_state++;
		return;
	}
	if (!hs_budget_ok(l, hs))
		return;
	hello_mac(l, h->opcode, p, mac);
	peer_max = le32_get(p + HP_MAX_FRAME);
	caps = le32_get(p + HP_CAPS) | l->cfg.caps;
	if (!same(mac, p + HP_MAC, HP_MAC_LEN) ||
	    le32_get(p + HP_VERSION) != TBP_PROTO_VERSION ||
	    le32_get(p + HP_RAIL) >= TBP_MAX_RAILS || peer_max < TBP_MIN_FRAME ||
	    peer_max > TBP_MAX_FRAME) {
		l->st.drop_auth++;
		return;
	}
	switch (h->opcode) {
	case TBP_W_HELLO:
		if (!known_peer(l, p + HP_NONCE_I, caps)) {
			l->st.drop_auth++;
			return;
		}
		/*
		 * Answer a new attempt with a fresh rail nonce; nothing else changes until the
		 * CONFIRM. A retry of the pending attempt (a round trip longer than
		 * hello_retry_ns) gets the same answer, so whichever copy the initiator
		 * confirms is the one pending here.
		 */
		if (!hs->pending || !same(hs->pend_nonce, p + HP_NONCE_I, TBP_NONCE_LEN) ||
		    !same(hs->hn_peer, p + HP_HN_I, TBP_RAIL_NONCE_LEN)) {
			memcpy(hs->pend_nonce, p + HP_NONCE_I, TBP_NONCE_LEN);
			memcpy(hs->hn_peer, p + HP_HN_I, TBP_RAIL_NONCE_LEN);
			l->env.random_bytes(l->env.ctx, hs->hn_mine, TBP_RAIL_NONCE_LEN);
			hs->peer_rail = (uint8_t)le32_get(p + HP_RAIL);
			hs->pending = 1;
		}
		rl->confirm_owed = 1; /* resent when data arrives on the unconfirmed rail */
		tbp_send_hello(l, rail, TBP_W_HELLO_ACK);
		break;
	case TBP_W_HELLO_ACK:
		if (!same(p + HP_NONCE_I, l->nonce, TBP_NONCE_LEN) || !rl->hello_ns ||
		    !same(p + HP_HN_I, hs->hn_mine, TBP_RAIL_NONCE_LEN) ||
		    le32_get(p + HP_PEER_RAIL) != rail || !known_peer(l, p + HP_NONCE_R, caps)) {
			l->st.drop_auth++;
			return;
		}
		memcpy(hs->hn_peer, p + HP_HN_R, TBP_RAIL_NONCE_LEN);
		if (rl->state == RAIL_UP) {
			/* The responder lost our CONFIRM (or this is a copy): answer again, at
			 * most once per hello_retry_ns; the rail itself learns nothing new. */
			if (l->now - rl->hello_ns >= l->cfg.hello_retry_ns)
				tbp_send_hello(l, rail, TBP_W_HELLO_CONFIRM);
			return;
		}
		take_peer(l, l->nonce, p + HP_NONCE_R, caps);
		/* The handshake round trip seeds the RTT estimate before any data is acked. */
		if (l->now > rl->hello_ns && !l->srtt)
			tbp_rtt_sample(l, l->now - rl->hello_ns);
		rail_confirmed(l, rail, p);
		tbp_send_hello(l, rail, TBP_W_HELLO_CONFIRM);
		tbp_rail_came_up(l, rail);
		break;
	default: /* HELLO_CONFIRM */
		if (!hs->pending || !same(p + HP_NONCE_I, hs->pend_nonce, TBP_NONCE_LEN) ||
		    !same(p + HP_NONCE_R, l->nonce, TBP_NONCE_LEN) ||
		    !same(p + HP_HN_I, hs->hn_peer, TBP_RAIL_NONCE_LEN) ||
		    !same(p + HP_HN_R, hs->hn_mine, TBP_RAIL_NONCE_LEN) ||
		    le32_get(p + HP_PEER_RAIL) != rail || le32_get(p + HP_RAIL) != hs->peer_rail ||
		    !known_peer(l, p + HP_NONCE_I, caps)) {
			l->st.drop_auth++;
			return;
		}
		/* Single use: a copy of this CONFIRM finds nothing pending. */
		hs->pending = 0;
		rl->confirm_owed = 0;
		take_peer(l, p + HP_NONCE_I, l->nonce, caps);
		rail_confirmed(l, rail, p);
		tbp_rail_came_up(l, rail);
		break;
	}
}
