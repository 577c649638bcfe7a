/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * pace.h - pacing of each rail's first copies (tbp_pace.c), between two links (pair.h).
 * Included by unit.c after pair.h.
 */

/* Give side 0's rail 0 a measured round trip and a congestion window, as acks would. */
static void pace_set_rail(uint64_t srtt, uint32_t cwnd)
{
	struct tbp_rail *rl = &P[0].link->rails[0];

	rl->srtt = srtt;
	rl->cwnd = cwnd;
	tbp_pace_update(P[0].link, rl);
}

static uint64_t pace_data_frames(void)
{
	struct tbp_stats st;

	tbp_get_stats(P[0].link, &st);
	return st.tx_data_frames;
}

/* Frames of this opcode side 0 has sent and the test has not delivered. */
static uint32_t pace_count_out(uint8_t opcode)
{
	uint32_t k, n = 0;

	for (k = 0; k < P[0].nout; k++)
		n += P[0].out[k].data[5] == opcode;
	return n;
}

/*
 * A rail whose window has room for 40 frames and whose round trip is 1 ms sends at
 * 1.25 * 40 / 1 ms: one frame per 20 us. A write of 40 frames leaves in a burst of 4 (the
 * default pace_burst), then one frame per 20 us, and tbp_tick asks to be called when the
 * next one is due, not at its keepalive or retransmission timers. Without pacing, all 40
 * leave at once.
 */
static void test_pace_spreads_window(void)
{
	uint64_t deadline, t0;
	struct tbp_stats st;

	pair_up(1);
	fill(P[0].local, 160000, 41);
	/* No round trip measured yet: not paced. */
	CHECK(P[0].link->rails[0].srtt == 0 && P[0].link->rails[0].pace_ivl == 0);
	pace_set_rail(1000000, 40);
	CHECK(P[0].link->rails[0].pace_ivl == 20000);
	t0 = pnow;
	post(0, TBP_OP_RDMA_WRITE, 1, 0, 160000, 0x77, 0, 0);
	CHECK(pace_data_frames() == 4);
	deadline = tbp_tick(P[0].link, pnow);
	CHECK(pace_data_frames() == 4);
	CHECK(deadline == t0 + 20000);
	pnow = deadline;
	deadline = tbp_tick(P[0].link, pnow);
	CHECK(pace_data_frames() == 5);
	CHECK(deadline == pnow + 20000);
	/* Late by two intervals: the clock lets the three frames due by now go together. */
	pnow += 60000;
	tbp_tick(P[0].link, pnow);
	CHECK(pace_data_frames() == 8);
	tbp_get_stats(P[0].link, &st);
	CHECK(st.pace_holds >= 2);
	/* The rest arrives (acks bring the rail's round trip down, and the rate up). */
	pair_run(NULL, 1000, 5000);
	CHECK(P[0].ndone == 1 && P[0].done_status[0] == TBP_OK);
	CHECK(memcmp(P[1].mr, P[0].local, 160000) == 0);
	printf("  burst 4, then 1 per 20 us; %llu pace holds\n",
	       (unsigned long long)st.pace_holds);
}

/*
 * The pacing clock never holds control frames or resends: with side 0's rail paced at one
 * frame per 2 ms and its clock 2 ms ahead after a burst, a frame from the peer is
 * answered by a standalone ACK and the peer's write by a MSG_ACK, each after the ack delay, and the burst's lost frame is resent when its timer expires (0.8 ms), all before the
 * clock lets one more data frame go.
 */
static void test_pace_spares_control_and_resends(void)
{
	struct tbp_stats st;
	uint64_t t0, acks;

	pair_up(1);
	fill(P[0].local, 160000, 42);
	fill(P[1].local, 6000, 43);
	pace_set_rail(100000000, 40);
	CHECK(P[0].link->rails[0].pace_ivl == 2000000);
	/* An idle rail's clock trails by up to 3 intervals: let the link be older than that. */
	pnow += 8000000;
	tbp_tick(P[0].link, pnow);
	tbp_tick(P[1].link, pnow);
	pair_run(NULL, 1000, 10);
	t0 = pnow;
	post(0, TBP_OP_RDMA_WRITE, 1, 0, 160000, 0x77, 0, 0);
	CHECK(pace_data_frames() == 4);
	P[0].nout = 0; /* the burst is lost */
	/* The peer (not paced: no round trip measured) writes one frame, delivered twice. */
	tbp_get_stats(P[0].link, &st);
	acks = st.tx_acks;
	post(1, TBP_OP_RDMA_WRITE, 2, 0, 6000, 0x77, 0, 0);
	CHECK(P[1].nout == 2);
	/* Its first frame: acked by a standalone ACK once the ack delay is over. */
	tbp_rx(P[0].link, P[1].out[0].rail, P[1].out[0].data, P[1].out[0].len);
	pnow += 30000;
	tbp_tick(P[0].link, pnow);
	tbp_get_stats(P[0].link, &st);
	CHECK(st.tx_acks == acks + 1);
	CHECK(pace_count_out(TBP_W_ACK) == 1);
	/* The last one completes the write: its MSG_ACK leaves once the ack delay is over. */
	tbp_rx(P[0].link, P[1].out[1].rail, P[1].out[1].data, P[1].out[1].len);
	P[1].nout = 0;
	pnow += 30000;
	tbp_tick(P[0].link, pnow);
	CHECK(pace_count_out(TBP_W_MSG_ACK) == 1);
	CHECK(pace_count_out(TBP_W_WRITE) == 0);
	CHECK(pace_data_frames() == 5); /* the MSG_ACK is sequenced too */
	P[0].nout = 0;
	while (pnow < t0 + 1500000) {
		pnow += 50000;
		tbp_tick(P[0].link, pnow);
	}
	tbp_get_stats(P[0].link, &st);
	CHECK(st.retransmits >= 1);
	CHECK(st.tx_data_frames == 5);
	CHECK(pace_count_out(TBP_W_WRITE) == st.retransmits);
	printf("  at +1.5 ms: %llu resends, %llu data frames, clock due at +%llu us\n",
	       (unsigned long long)st.retransmits, (unsigned long long)st.tx_data_frames,
	       (unsigned long long)(P[0].link->rails[0].pace_ns - t0) / 1000);
	/* Everything still arrives. */
	pair_run(NULL, 100000, 2000);
	CHECK(P[0].ndone == 1 && P[0].done_status[0] == TBP_OK);
	CHECK(memcmp(P[1].mr, P[0].local, 160000) == 0);
}

/* Pacing is off with pace_gain_pct 0; otherwise the gain and the burst must make sense. */
static void test_pace_config(void)
{
	struct tbp_config c;

	tbp_config_default(&c);
	c.key_len = 32;
	CHECK(c.pace_gain_pct == 125 && c.pace_burst == 4);
	CHECK(tbp_link_size(&c) > 0);
	c.pace_gain_pct = 99;
	CHECK(tbp_link_size(&c) == 0);
	c.pace_gain_pct = 1001;
	CHECK(tbp_link_size(&c) == 0);
	c.pace_gain_pct = 200;
	c.pace_burst = 0;
	CHECK(tbp_link_size(&c) == 0);
	c.pace_gain_pct = 0;
	CHECK(tbp_link_size(&c) > 0);
	/* Off: a link with a measured round trip still sends its whole window at once. */
	pair_up(1);
	P[0].link->cfg.pace_gain_pct = 0;
	pace_set_rail(1000000, 40);
	CHECK(P[0].link->rails[0].pace_ivl == 0);
	post(0, TBP_OP_RDMA_WRITE, 1, 0, 160000, 0x77, 0, 0);
	CHECK(pace_data_frames() == 40);
	pair_run(NULL, 1000, 100);
	CHECK(P[0].ndone == 1 && P[0].done_status[0] == TBP_OK);
}

#define PACE_TESTS                                                                         \
	{ "pace_spreads_window", test_pace_spreads_window },                                 \
	{ "pace_spares_control_and_resends", test_pace_spares_control_and_resends },         \
	{ "pace_config", test_pace_config },
