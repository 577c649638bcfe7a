// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * tbp_hello.c - the authenticated HELLO / HELLO_ACK / HELLO_CONFIRM handshake that
 * brings each rail up and derives the link's session (docs/protocol.md, "Handshake").
 */
#include "tbp_internal.h"

enum {
	HP_VERSION = 0, HP_CAPS = 4, HP_RAIL = 8, HP_MAX_FRAME = 12, HP_NONCE_I = 16,
	HP_NONCE_R = 32, HP_PEER_RAIL = 48, HP_MAC = 64,
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

static void derive_session(struct tbp_link *l, const uint8_t *nonce_i, const uint8_t *nonce_r)
{
	uint8_t msg[1 + 2 * TBP_NONCE_LEN], mac[TBP_MAC_LEN];

	msg[0] = 'S';
	memcpy(msg + 1, nonce_i, TBP_NONCE_LEN);
	memcpy(msg + 1 + TBP_NONCE_LEN, nonce_r, TBP_NONCE_LEN);
	l->env.hmac_sha256(l->env.ctx, l->cfg.key, l->cfg.key_len, msg, sizeof(msg), mac);
	l->session = le32_get(mac) | 1u; /* never 0: handshake frames use 0 */
}

void tbp_send_hello(struct tbp_link *l, uint32_t rail, uint8_t op)
{
	struct tbp_hdr h;
	uint8_t *p = l->scratch + TBP_HDR_LEN;
	bool initiator = l->cfg.role == TBP_ROLE_INITIATOR;

	memset(p, 0, TBP_HELLO_LEN);
	le32_put(p + HP_VERSION, TBP_PROTO_VERSION);
	le32_put(p + HP_CAPS, l->cfg.caps);
	le32_put(p + HP_RAIL, rail);
	le32_put(p + HP_MAX_FRAME, l->rails[rail].max_frame);
	memcpy(p + HP_NONCE_I, initiator ? l->nonce : l->peer_nonce, TBP_NONCE_LEN);
	if (op != TBP_W_HELLO) {
		memcpy(p + HP_NONCE_R, initiator ? l->peer_nonce : l->nonce, TBP_NONCE_LEN);
		le32_put(p + HP_PEER_RAIL, l->rails[rail].peer_rail);
	}
	hello_mac(l, op, p, p + HP_MAC);
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
 * its link. Before this link was ever up, a new initiator's HELLO replaces the pending one.
 * Once it has been up the session died with the peer's state, so with no rail up the link
 * fails and its owner builds a fresh one; while a rail is up the frame can only be a replay.
 * Returns true when the frame is to be handled as coming from a new peer.
 */
static bool peer_restarted(struct tbp_link *l, uint8_t op)
{
	uint32_t r;

	if (l->state == TBP_LINK_HANDSHAKE && op == TBP_W_HELLO) {
		l->have_peer = 0;
		for (r = 0; r < TBP_MAX_RAILS; r++)
			l->rails[r].confirm_owed = 0;
		return true;
	}
	if (l->state == TBP_LINK_DEGRADED && tbp_rails_up(l) == 0 && op != TBP_W_HELLO_CONFIRM)
		tbp_link_fail(l, TBP_ERR_LINK_DOWN);
	return false;
}

void tbp_rx_hello(struct tbp_link *l, uint32_t rail, const struct tbp_hdr *h,
		  const uint8_t *p)
{
	struct tbp_rail *rl = &l->rails[rail];
	bool initiator = l->cfg.role == TBP_ROLE_INITIATOR;
	uint8_t mac[TBP_MAC_LEN];
	const uint8_t *their_nonce = p + (initiator ? HP_NONCE_R : HP_NONCE_I);
	uint32_t peer_max, caps;

	if (l->state == TBP_LINK_FAILED ||
	    (initiator ? h->opcode != TBP_W_HELLO_ACK : h->opcode == TBP_W_HELLO_ACK)) {
		l->st.drop_state++;
		return;
	}
	hello_mac(l, h->opcode, p, mac);
	if (memcmp(mac, p + HP_MAC, TBP_MAC_LEN) != 0 ||
	    le32_get(p + HP_VERSION) != TBP_PROTO_VERSION ||
	    (initiator && memcmp(p + HP_NONCE_I, l->nonce, TBP_NONCE_LEN) != 0) ||
	    (h->opcode == TBP_W_HELLO_CONFIRM &&
	     memcmp(p + HP_NONCE_R, l->nonce, TBP_NONCE_LEN) != 0) ||
	    le32_get(p + HP_RAIL) >= TBP_MAX_RAILS) {
		l->st.drop_auth++;
		return;
	}
	if (l->have_peer && memcmp(their_nonce, l->peer_nonce, TBP_NONCE_LEN) != 0 &&
	    !peer_restarted(l, h->opcode)) {
		l->st.drop_auth++;
		return;
	}
	peer_max = le32_get(p + HP_MAX_FRAME);
	caps = le32_get(p + HP_CAPS) | l->cfg.caps;
	if (peer_max < TBP_MIN_FRAME || peer_max > TBP_MAX_FRAME ||
	    (l->have_peer && caps != l->caps)) {
		l->st.drop_auth++;
		return;
	}
	if (!l->have_peer) {
		if (h->opcode == TBP_W_HELLO_CONFIRM) {
			l->st.drop_state++;
			return;
		}
		memcpy(l->peer_nonce, their_nonce, TBP_NONCE_LEN);
		l->have_peer = 1;
		l->caps = caps;
		if (initiator)
			derive_session(l, l->nonce, l->peer_nonce);
		else
			derive_session(l, l->peer_nonce, l->nonce);
	}
	rl->peer_rail = (uint8_t)le32_get(p + HP_RAIL);
	if (peer_max < rl->max_frame)
		rl->max_frame = peer_max;
	rl->last_rx_ns = l->now;
	switch (h->opcode) {
	case TBP_W_HELLO:
		rl->confirm_owed = 1; /* responder: waiting for CONFIRM on this rail */
		tbp_send_hello(l, rail, TBP_W_HELLO_ACK);
		break;
	case TBP_W_HELLO_ACK:
		/* The handshake round trip seeds the RTT estimate before any data is acked. */
		if (rl->hello_ns && l->now > rl->hello_ns && !l->srtt)
			tbp_rtt_sample(l, l->now - rl->hello_ns);
		tbp_send_hello(l, rail, TBP_W_HELLO_CONFIRM);
		tbp_rail_came_up(l, rail);
		break;
	default:
		rl->confirm_owed = 0;
		tbp_rail_came_up(l, rail);
		break;
	}
}

