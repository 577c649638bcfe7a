/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * auth.h - tests of frame authentication and handshake freshness: what a third host on a
 * shared Ethernet segment (it sees every frame, can send any frame, does not know the key)
 * can do to a link. Uses the two-link harness of pair.h. Included by unit.c.
 */

/* Frames one side sent, kept for replaying later. */
#define CAP_MAX 256
static struct pframe *cap;
static uint32_t ncap;

static void capture_from(int side)
{
	uint32_t k;

	if (!cap)
		cap = calloc(CAP_MAX, sizeof(*cap));
	for (k = 0; k < P[side].nout && ncap < CAP_MAX; k++)
		cap[ncap++] = P[side].out[k];
}

/* Handshake like pair_up, keeping every frame the initiator sends. */
static void pair_up_captured(uint32_t rails)
{
	int round;

	ncap = 0;
	pair_setup_keys(rails, 64, 0x42);
	tbp_tick(P[0].link, pnow);
	for (round = 0; round < 20; round++) {
		capture_from(0);
		pair_deliver_from(0, NULL, false);
		pair_deliver_from(1, NULL, false);
		pnow += 1000;
		tbp_tick(P[0].link, pnow);
		tbp_tick(P[1].link, pnow);
	}
	CHECK(tbp_link_state(P[0].link) == TBP_LINK_UP);
	CHECK(tbp_link_state(P[1].link) == TBP_LINK_UP);
}

static const struct pframe *captured(uint8_t opcode, uint32_t rail)
{
	uint32_t k;

	for (k = 0; k < ncap; k++)
		if (cap[k].data[5] == opcode && cap[k].rail == rail)
			return &cap[k];
	return NULL;
}

/*
 * A frame as an attacker builds it: everything visible on the wire is right (session tag,
 * rail id, a sequence number inside the window, checksum), the key is unknown. with_mac adds
 * a trailer with a guessed tag.
 */
static uint32_t forge_on(uint8_t *frame, uint32_t rail, uint8_t op, uint32_t payload_len,
			 bool with_mac)
{
	struct tbp_link *victim = P[1].link;
	struct tbp_hdr h;
	uint32_t len = TBP_HDR_LEN + payload_len;

	memset(&h, 0, sizeof(h));
	h.magic = TBP_MAGIC;
	h.version = TBP_PROTO_VERSION;
	h.opcode = op;
	h.rail = victim->rails[rail].peer_rail;
	h.session = victim->session;
	h.flags = TBP_F_PCSUM | (with_mac ? TBP_F_MAC : 0);
	if (op == TBP_W_WRITE) {
		h.flags |= TBP_F_SEQ | TBP_F_LAST;
		h.seq = victim->rcv_nxt;
		h.ack = victim->snd_nxt;
		h.dst_qpn = 11;
		h.src_qpn = 10;
		h.msn = victim->qps[0].rx_msn;
		h.rkey = 0x77;
		h.raddr = 0;
		h.msg_len = payload_len;
	} else {
		h.ack = P[0].link->snd_nxt; /* ACK aimed at side 0: "everything arrived" */
	}
	h.payload_len = (uint16_t)payload_len;
	memset(frame + TBP_HDR_LEN, 0xee, payload_len);
	tbp_hdr_encode(frame, &h);
	if (with_mac) {
		memset(frame + len, 0x5a, TBP_MAC_TRAILER); /* counter and a guessed tag */
		len += TBP_MAC_TRAILER;
	}
	return len;
}

static uint32_t forge(uint8_t *frame, uint8_t op, uint32_t payload_len, bool with_mac)
{
	return forge_on(frame, 0, op, payload_len, with_mac);
}

/* SipHash-2-4 reference vectors (key 00..0f, message 00..n-1, from the SipHash paper). */
static void test_siphash_vectors(void)
{
	uint64_t key[2] = { 0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull };
	uint8_t msg[64];
	uint32_t i;

	for (i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t)i;
	CHECK(tbp_siphash24(key, msg, 0) == 0x726fdb47dd0e0e31ull);
	CHECK(tbp_siphash24(key, msg, 15) == 0xa129ca6149be45e5ull);
	CHECK(tbp_siphash24(key, msg, 8) == 0x93f5f5799a932462ull);
	CHECK(tbp_siphash24(key, msg, 63) == 0x958a324ceb064572ull);
}

/* The frame tag depends on every bit, on the length (zero padding) and on the keys. */
static void test_frame_tag(void)
{
	static uint32_t nh[TBP_NH_WORDS], nh2[TBP_NH_WORDS];
	static uint8_t msg[TBP_MAX_FRAME];
	uint64_t key[2] = { 1, 2 }, t;
	uint32_t i, bit, collisions = 0;

	for (i = 0; i < TBP_NH_WORDS; i++)
		nh[i] = nh2[i] = i * 0x9e3779b9u;
	nh2[TBP_NH_WORDS / 2] ^= 1;
	for (i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t)(i * 13);
	msg[100] = 0;
	t = tbp_frame_tag(key, nh, msg, 1000);
	for (i = 0; i < 1000; i += 7) {
		for (bit = 0; bit < 8; bit += 3) {
			msg[i] ^= (uint8_t)(1u << bit);
			collisions += tbp_frame_tag(key, nh, msg, 1000) == t;
			msg[i] ^= (uint8_t)(1u << bit);
		}
	}
	CHECK(collisions == 0);
	CHECK(tbp_frame_tag(key, nh, msg, 100) != tbp_frame_tag(key, nh, msg, 101));
	CHECK(tbp_frame_tag(key, nh, msg, 9208) != tbp_frame_tag(key, nh2, msg, 9208));
	key[1] = 3;
	CHECK(tbp_frame_tag(key, nh, msg, 1000) != t);
}

/* Forged data and ack frames (right session, any tag) never write into an MR nor ack. */
static void test_forged_frame_rejected(void)
{
	static uint8_t frame[TBP_MAX_FRAME];
	struct tbp_stats before, after;
	uint32_t len, una;
	int with_mac;

	pair_up(1);
	for (with_mac = 0; with_mac < 2; with_mac++) {
		tbp_get_stats(P[1].link, &before);
		len = forge(frame, TBP_W_WRITE, 64, with_mac);
		tbp_rx(P[1].link, 0, frame, len);
		CHECK(!tbp_rx_authentic(P[1].link));
		tbp_get_stats(P[1].link, &after);
		CHECK(after.drop_mac == before.drop_mac + 1);
		CHECK(after.rx_accepted == before.rx_accepted);
		CHECK(P[1].mr[0] == 0 && P[1].mr[63] == 0);
	}
	/* A forged ack does not complete a message whose frames never arrived. */
	P[1].recvs_posted = 1;
	post(0, TBP_OP_SEND, 1, 0, 100, 0, 0, 0);
	una = P[0].link->snd_una;
	CHECK(P[0].link->snd_nxt != una);
	for (with_mac = 0; with_mac < 2; with_mac++) {
		len = forge(frame, TBP_W_ACK, 0, with_mac);
		tbp_rx(P[0].link, 0, frame, len);
	}
	tbp_get_stats(P[0].link, &after);
	CHECK(after.drop_mac == 2);
	CHECK(P[0].link->snd_una == una && P[0].ndone == 0);
	pair_run(NULL, 1000, 50);
	CHECK(P[0].ndone == 1 && P[0].done_status[0] == TBP_OK && P[1].nrc == 1);
}

/* Recorded frames played back later change nothing and are counted. */
static void test_replayed_frame_rejected(void)
{
	struct tbp_stats before, after;
	uint64_t last_rx;
	uint32_t k, n;

	pair_up(1);
	P[1].recvs_posted = 1;
	fill(P[0].local, 3000, 9);
	post(0, TBP_OP_SEND, 1, 0, 3000, 0, 0, 0);
	ncap = 0;
	capture_from(0);
	n = ncap;
	CHECK(n >= 1);
	pair_run(NULL, 1000, 50);
	CHECK(P[1].nrc == 1 && P[0].ndone == 1);
	/* Unsequenced frames too: a recorded keepalive must not keep a dead rail alive. */
	pnow += 20 * 1000000ull;
	tbp_tick(P[0].link, pnow);
	capture_from(0);
	CHECK(ncap > n);
	pair_deliver_from(0, NULL, false);
	P[1].nout = 0;
	pnow += 1000000;
	tbp_get_stats(P[1].link, &before);
	last_rx = P[1].link->rails[0].last_rx_ns;
	for (k = 0; k < ncap; k++)
		tbp_rx(P[1].link, cap[k].rail, cap[k].data, cap[k].len);
	tbp_get_stats(P[1].link, &after);
	CHECK(after.drop_replay == before.drop_replay + ncap);
	CHECK(after.rx_accepted == before.rx_accepted);
	CHECK(after.rx_duplicates == before.rx_duplicates);
	CHECK(P[1].nrc == 1);
	CHECK(P[1].link->rails[0].last_rx_ns == last_rx);
	CHECK(!tbp_rx_authentic(P[1].link));
	/* A frame reflected back to its sender fails: each direction has its own key. */
	tbp_get_stats(P[0].link, &before);
	tbp_rx(P[0].link, cap[0].rail, cap[0].data, cap[0].len);
	tbp_get_stats(P[0].link, &after);
	CHECK(after.drop_mac == before.drop_mac + 1);
}

/*
 * Recorded handshake frames: a HELLO from rail 0 played on rail 1 must not re-point rail 1;
 * a CONFIRM must not bring back a rail that went down; an old HELLO_ACK must not either.
 */
static void test_replayed_hello_rejected(void)
{
	const struct pframe *hello0, *confirm1;
	struct tbp_stats before, after;
	struct tbp_link *r;
	uint64_t last_rx;

	pair_up_captured(2);
	r = P[1].link;
	hello0 = captured(TBP_W_HELLO, 0);
	confirm1 = captured(TBP_W_HELLO_CONFIRM, 1);
	CHECK(hello0 && confirm1);
	if (!hello0 || !confirm1)
		return;
	pnow += 1000000;
	last_rx = r->rails[1].last_rx_ns;
	tbp_rx(r, 1, hello0->data, hello0->len);
	CHECK(!tbp_rx_authentic(r));
	CHECK(r->rails[1].peer_rail == 1);
	CHECK(r->rails[1].last_rx_ns == last_rx);
	P[1].nout = 0;
	/* Rail 1 goes down at the responder; its recorded CONFIRM must not bring it back. */
	CHECK(tbp_rail_down(r, 1) == 0);
	tbp_get_stats(r, &before);
	tbp_rx(r, 1, confirm1->data, confirm1->len);
	tbp_get_stats(r, &after);
	CHECK(r->rails[1].state != RAIL_UP);
	CHECK(after.drop_auth == before.drop_auth + 1);
	CHECK(!tbp_rx_authentic(r));
	/* The same at the initiator with the HELLO_ACK it got from rail 1. */
	{
		const struct pframe *ack1 = NULL;
		uint32_t k;

		/* Record the responder's answers in a fresh handshake of rail 1. */
		P[0].nout = 0;
		P[1].nout = 0;
		CHECK(tbp_rail_down(P[0].link, 1) == 0);
		pnow += 6000000;
		tbp_tick(P[0].link, pnow);
		pair_deliver_from(0, NULL, false);
		ncap = 0;
		capture_from(1);
		for (k = 0; k < ncap; k++)
			if (cap[k].data[5] == TBP_W_HELLO_ACK && cap[k].rail == 1)
				ack1 = &cap[k];
		CHECK(ack1 != NULL);
		pair_run(NULL, 1000, 20);
		CHECK(P[0].link->rails[1].state == RAIL_UP && r->rails[1].state == RAIL_UP);
		if (!ack1)
			return;
		CHECK(tbp_rail_down(P[0].link, 1) == 0);
		pnow += 6000000;
		tbp_tick(P[0].link, pnow); /* a new attempt with a new rail nonce */
		P[0].nout = 0;
		tbp_get_stats(P[0].link, &before);
		tbp_rx(P[0].link, 1, ack1->data, ack1->len);
		tbp_get_stats(P[0].link, &after);
		CHECK(P[0].link->rails[1].state != RAIL_UP);
		CHECK(after.drop_auth == before.drop_auth + 1);
		CHECK(P[0].nout == 0); /* no CONFIRM for a recorded answer */
	}
}

/* A round trip longer than hello_retry_ns: the HELLO is sent twice before any answer arrives,
 * and the rail still comes up at once on both ends (no wait for rail death). */
static void test_slow_handshake(void)
{
	pair_setup_keys(1, 64, 0x42);
	tbp_tick(P[0].link, pnow);
	pnow += 6000000;
	tbp_tick(P[0].link, pnow);
	CHECK(P[0].nout == 2);
	pair_deliver_from(0, NULL, false); /* both HELLOs: two answers */
	CHECK(P[1].nout == 2);
	pair_deliver_from(1, NULL, false); /* the first brings rail 0 up and is confirmed */
	pair_deliver_from(0, NULL, false);
	CHECK(tbp_link_state(P[0].link) == TBP_LINK_UP);
	CHECK(tbp_link_state(P[1].link) == TBP_LINK_UP);
	CHECK(P[1].link->st.drop_auth == 0);
}

/* Only fresh, authenticated frames may teach the glue the peer's address. */
static void test_authentic_verdict(void)
{
	static uint8_t frame[TBP_MAX_FRAME];
	uint32_t len, k, seen_auth = 0, seen = 0;

	pair_setup_keys(1, 64, 0x42);
	tbp_tick(P[0].link, pnow);
	/* HELLO: authentic MAC but nothing fresh from the responder in it. */
	CHECK(P[0].nout == 1);
	tbp_rx(P[1].link, 0, P[0].out[0].data, P[0].out[0].len);
	CHECK(!tbp_rx_authentic(P[1].link));
	P[0].nout = 0;
	/* HELLO_ACK echoes the initiator's fresh nonces. */
	CHECK(P[1].nout == 1);
	tbp_rx(P[0].link, 0, P[1].out[0].data, P[1].out[0].len);
	CHECK(tbp_rx_authentic(P[0].link));
	P[1].nout = 0;
	/* CONFIRM echoes the responder's. */
	CHECK(P[0].nout == 1);
	tbp_rx(P[1].link, 0, P[0].out[0].data, P[0].out[0].len);
	CHECK(tbp_rx_authentic(P[1].link));
	P[0].nout = 0;
	/* Data frames with a valid MAC and a new counter. */
	P[1].recvs_posted = 1;
	post(0, TBP_OP_SEND, 1, 0, 10, 0, 0, 0);
	for (k = 0; k < P[0].nout; k++) {
		tbp_rx(P[1].link, 0, P[0].out[k].data, P[0].out[k].len);
		seen_auth += tbp_rx_authentic(P[1].link);
		seen++;
	}
	CHECK(seen >= 1 && seen_auth == seen);
	len = forge(frame, TBP_W_WRITE, 8, true);
	tbp_rx(P[1].link, 0, frame, len);
	CHECK(!tbp_rx_authentic(P[1].link));
	/* Garbage never is. */
	memset(frame, 0, 100);
	tbp_rx(P[1].link, 0, frame, 100);
	CHECK(!tbp_rx_authentic(P[1].link));
}

/* MACs are compared with the constant-time helper, and it compares correctly. */
static void test_ct_compare(void)
{
	static uint8_t frame[TBP_MAX_FRAME];
	uint8_t a[32], b[32];
	uint32_t calls, len;
	const struct pframe *hello;

	memset(a, 7, sizeof(a));
	memcpy(b, a, sizeof(b));
	CHECK(tbp_ct_equal(a, b, 32));
	b[0] ^= 1;
	CHECK(!tbp_ct_equal(a, b, 32));
	b[0] ^= 1;
	b[31] ^= 0x80;
	CHECK(!tbp_ct_equal(a, b, 32));
	CHECK(tbp_ct_equal(a, b, 31));
	pair_up_captured(1);
	hello = captured(TBP_W_HELLO, 0);
	CHECK(hello != NULL);
	if (!hello)
		return;
	/* A HELLO with a wrong MAC: rejected through tbp_ct_equal. */
	memcpy(frame, hello->data, hello->len);
	frame[TBP_HDR_LEN + 80] ^= 1;
	tbp_hdr_encode(frame, &(struct tbp_hdr){ .magic = TBP_MAGIC, .version = TBP_PROTO_VERSION,
						 .opcode = TBP_W_HELLO, .flags = TBP_F_PCSUM,
						 .payload_len = TBP_HELLO_LEN });
	calls = tbp_ct_calls;
	tbp_rx(P[1].link, 0, frame, hello->len);
	CHECK(tbp_ct_calls > calls);
	CHECK(P[1].link->st.drop_auth == 1);
	/* A data frame with a wrong tag: the same. */
	len = forge(frame, TBP_W_WRITE, 8, true);
	calls = tbp_ct_calls;
	tbp_rx(P[1].link, 0, frame, len);
	CHECK(tbp_ct_calls == calls + 1);
	CHECK(P[1].link->st.drop_mac == 1);
}

/* The pairing key and the derived keys do not survive tbp_link_teardown in link memory. */
static void test_key_zeroed(void)
{
	uint64_t keys[2][4];
	int i;

	pair_up(1);
	for (i = 0; i < 2; i++) {
		struct tbp_link *l = P[i].link;
		size_t size = tbp_link_size(&l->cfg), off;
		const uint8_t *mem = P[i].mem;
		uint8_t pattern[16];

		memcpy(keys[i], l->auth.tx_key, 16);
		memcpy(keys[i] + 2, l->auth.rx_key, 16);
		CHECK(keys[i][0] || keys[i][1]);
		tbp_link_teardown(l);
		memset(pattern, 0x42, sizeof(pattern));
		for (off = 0; off + 16 <= size; off++) {
			if (!memcmp(mem + off, pattern, 16) || !memcmp(mem + off, keys[i], 16) ||
			    !memcmp(mem + off, keys[i] + 2, 16)) {
				printf("  key material at offset %zu of side %d\n", off, i);
				CHECK(0);
				break;
			}
		}
	}
}

static void count_hmac(void *ctx, const uint8_t *key, uint32_t key_len, const uint8_t *msg,
		       uint32_t msg_len, uint8_t out[32]);
static uint32_t hmac_calls;

static void count_hmac(void *ctx, const uint8_t *key, uint32_t key_len, const uint8_t *msg,
		       uint32_t msg_len, uint8_t out[32])
{
	hmac_calls++;
	p_hmac(ctx, key, key_len, msg, msg_len, out);
}

/* A flood of forged HELLOs costs a bounded number of HMACs and does not break the link. */
static void test_hello_flood_bounded(void)
{
	static uint8_t frame[TBP_HDR_LEN + TBP_HELLO_LEN];
	struct tbp_stats st;
	struct tbp_hdr h;
	uint32_t k;

	pair_up(1);
	P[1].link->env.hmac_sha256 = count_hmac;
	hmac_calls = 0;
	memset(&h, 0, sizeof(h));
	h.magic = TBP_MAGIC;
	h.version = TBP_PROTO_VERSION;
	h.opcode = TBP_W_HELLO;
	h.flags = TBP_F_PCSUM;
	h.payload_len = TBP_HELLO_LEN;
	for (k = 0; k < 10000; k++) {
		memset(frame + TBP_HDR_LEN, (int)k, TBP_HELLO_LEN);
		frame[TBP_HDR_LEN] = 1; /* version */
		frame[TBP_HDR_LEN + 1] = frame[TBP_HDR_LEN + 2] = frame[TBP_HDR_LEN + 3] = 0;
		tbp_hdr_encode(frame, &h);
		tbp_rx(P[1].link, 0, frame, sizeof(frame));
	}
	tbp_get_stats(P[1].link, &st);
	CHECK(hmac_calls <= TBP_HS_BUDGET);
	CHECK(st.drop_ratelimit + st.drop_auth == 10000);
	CHECK(st.drop_ratelimit >= 10000 - TBP_HS_BUDGET);
	CHECK(P[1].nout == 0); /* nothing answered */
	P[1].recvs_posted = 1;
	post(0, TBP_OP_SEND, 1, 0, 100, 0, 0, 0);
	pair_run(NULL, 1000, 50);
	CHECK(P[0].ndone == 1 && P[0].done_status[0] == TBP_OK && P[1].nrc == 1);
}

/* Either side asking is enough, and frames without the trailer are then refused. */
static void test_frame_mac_negotiated(void)
{
	static uint8_t frame[TBP_MAX_FRAME];
	struct tbp_hdr d;
	uint32_t len;

	pair_setup_keys(1, 64, 0x42);
	P[1].link->cfg.caps = 0; /* the responder does not ask */
	tbp_tick(P[0].link, pnow);
	pair_run(NULL, 1000, 20);
	CHECK(P[0].link->caps & TBP_CAP_FRAME_MAC);
	CHECK(P[1].link->caps & TBP_CAP_FRAME_MAC);
	len = forge(frame, TBP_W_WRITE, 8, true);
	CHECK(tbp_frame_decode(frame, len, TBP_MAX_FRAME, &d) == 0);
	CHECK(tbp_frame_decode(frame, len - 1, TBP_MAX_FRAME, &d) == TBP_DEC_SHORT);
	P[1].recvs_posted = 1;
	post(0, TBP_OP_SEND, 1, 0, 4000, 0, 0, 0);
	pair_run(NULL, 1000, 50);
	CHECK(P[0].ndone == 1 && P[0].done_status[0] == TBP_OK && P[1].nrc == 1);
	CHECK(P[1].rc[0].len == 4000);
}

static uint32_t bare_on[2], sealed_on[2];

static int count_sealed(const struct pframe *f)
{
	struct tbp_hdr h;

	if (f->rail < 2 && tbp_frame_decode(f->data, f->len, TBP_MAX_FRAME, &h) == 0 &&
	    (h.flags & TBP_F_SEQ)) {
		if (h.flags & (TBP_F_MAC | TBP_F_PCSUM))
			sealed_on[f->rail]++;
		else
			bare_on[f->rail]++;
	}
	return KEEP;
}

/*
 * A USB4 ring pair is a DMA rail: its frames carry neither MAC nor payload CRC. The
 * exemption belongs to the rail a frame arrives on, never to the frame: a bare frame on an
 * Ethernet rail is still a forgery, and a trailer on a DMA rail is still checked.
 */
static void test_dma_rail_frames(void)
{
	static uint8_t frame[TBP_MAX_FRAME];
	struct tbp_stats before, after;
	uint32_t len;

	p_dma_rails = 1u << 1;
	pair_up(2);
	p_dma_rails = 0;
	P[0].link->caps |= TBP_CAP_PAYLOAD_CSUM;
	P[1].link->caps |= TBP_CAP_PAYLOAD_CSUM;
	fill(P[0].local, 100000, 3);
	post(0, TBP_OP_RDMA_WRITE, 1, 0, 100000, 0x77, 0, 0);
	pair_run(count_sealed, 1000, 100);
	CHECK(P[0].ndone == 1 && P[0].done_status[0] == TBP_OK);
	CHECK(memcmp(P[1].mr, P[0].local, 100000) == 0);
	CHECK(bare_on[1] > 0 && sealed_on[1] == 0);
	CHECK(sealed_on[0] > 0 && bare_on[0] == 0);
	tbp_get_stats(P[1].link, &before);
	len = forge_on(frame, 0, TBP_W_WRITE, 64, false);
	tbp_rx(P[1].link, 0, frame, len);
	len = forge_on(frame, 1, TBP_W_WRITE, 64, true);
	tbp_rx(P[1].link, 1, frame, len);
	tbp_get_stats(P[1].link, &after);
	CHECK(after.drop_mac == before.drop_mac + 2);
	CHECK(after.rx_accepted == before.rx_accepted);
	CHECK(memcmp(P[1].mr, P[0].local, 64) == 0);
}

#define AUTH_TESTS                                                                         \
	{ "siphash_vectors", test_siphash_vectors },                                       \
	{ "frame_tag", test_frame_tag },                                                   \
	{ "forged_frame_rejected", test_forged_frame_rejected },                           \
	{ "replayed_frame_rejected", test_replayed_frame_rejected },                       \
	{ "replayed_hello_rejected", test_replayed_hello_rejected },                       \
	{ "slow_handshake", test_slow_handshake },                                         \
	{ "authentic_verdict", test_authentic_verdict },                                   \
	{ "ct_compare", test_ct_compare },                                                 \
	{ "key_zeroed", test_key_zeroed },                                                 \
	{ "hello_flood_bounded", test_hello_flood_bounded },                               \
	{ "frame_mac_negotiated", test_frame_mac_negotiated },                             \
	{ "dma_rail_frames", test_dma_rail_frames },
