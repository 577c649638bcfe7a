/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * cc.h - congestion control per rail (tbp_link.c): between two links (pair.h) joined by a
 * rail that drains at a fixed rate from a queue deeper than the round trip needs, as a
 * netdev's qdisc is. Included by unit.c after pair.h.
 */

/* Frames side 0 has handed to the rail and the rail has not carried yet: out[head..nout). */
static uint32_t rail_head;

/* The rail carries the oldest waiting frame of side 0. */
static void rail_carry_one(void)
{
	struct pframe *f = &P[0].out[rail_head++];

	tbp_rx(P[1].link, f->rail, f->data, f->len);
	if (rail_head == P[0].nout) {
		rail_head = P[0].nout = 0;
	} else if (rail_head >= PQ_MAX / 2) {
		memmove(P[0].out, P[0].out + rail_head,
			(P[0].nout - rail_head) * sizeof(struct pframe));
		P[0].nout -= rail_head;
		rail_head = 0;
	}
}

/*
 * 1024 frames of writes over one rail that carries a frame every 10 us and would queue
 * them all (the send window is 1024): the congestion window keeps the rail's queue near
 * what the round trip needs, the rail never waits for the sender once it is going, and no
 * frame times out. Without it the whole window waits in the queue, 10 ms at the back,
 * against an RTO learned from the frames in front.
 */
static void test_rail_queue_bounded(void)
{
	uint32_t k, steps = 0, idle = 0, deepest = 0;
	struct tbp_stats st;

	pair_setup_keys(1, 1024, 0x42);
	tbp_tick(P[0].link, pnow);
	pair_run(NULL, 1000, 20);
	CHECK(tbp_link_state(P[0].link) == TBP_LINK_UP);
	fill(P[0].local, P_MEM, 31);
	for (k = 0; k < 16; k++)
		post(0, TBP_OP_RDMA_WRITE, k, 0, P_MEM, 0x77, 0, 0);
	rail_head = 0;
	while (steps++ < 100000 && P[0].ndone < 16) {
		if (P[0].nout - rail_head > deepest)
			deepest = P[0].nout - rail_head;
		if (P[0].nout > rail_head)
			rail_carry_one();
		else
			idle++;
		pair_deliver_from(1, NULL, false);	/* acks come back at once */
		pnow += 10000;
		tbp_tick(P[0].link, pnow);
		tbp_tick(P[1].link, pnow);
	}
	tbp_get_stats(P[0].link, &st);
	CHECK(P[0].ndone == 16 && P[0].done_status[15] == TBP_OK);
	CHECK(memcmp(P[1].mr, P[0].local, P_MEM) == 0);
	CHECK(st.retransmits == 0);
	CHECK(deepest <= 64);
	CHECK(idle <= steps / 20);
	printf("  deepest rail queue %u frames, rail idle %u of %u steps, %llu retransmits, "
	       "cwnd %u, %llu reductions\n", deepest, idle, steps,
	       (unsigned long long)st.retransmits, st.cwnd[0],
	       (unsigned long long)st.cwnd_reductions);
}

#define CC_TESTS                                                                           \
	{ "rail_queue_bounded", test_rail_queue_bounded },
