// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * tbp_pace.c - pacing of each rail's first copies.
 *
 * The congestion window bounds how many frames a rail has in flight, not how fast they
 * leave: a rail whose window opens (an ack of many frames, a stall that ends) would hand
 * its queue up to cwnd frames back to back, and a shallow queue (a USB4 ring of 512 frames,
 * a NIC's qdisc) overflows or reorders them. So a rail's first copies leave no faster than
 * pace_gain_pct / 100 * cwnd / srtt, its window spread over its own smoothed round trip
 * with some headroom (a gain above 1 lets the window, not the clock, be what limits a rail
 * that keeps up). The clock may fall behind the present by a few intervals only, so a rail
 * that was idle sends at most a burst before the rate applies again.
 *
 * Not paced, and never held here: resends (a loaded host must not delay the repair of a
 * loss by the rate that loss itself made it measure), and every control frame (standalone
 * ACKs, NAKs, handshakes, keepalives and MSG_ACKs, which are small and which the peer's
 * timers wait for). A resend still takes its turn on the clock, so the frames after it
 * yield to it and the rail's rate stays what the window allows.
 */
#include "tbp_internal.h"

void tbp_pace_reset(struct tbp_rail *rl)
{
	rl->srtt = 0;
	rl->pace_ivl = 0;
	rl->pace_slack = 0;
	rl->pace_ns = 0;
}

/*
 * A sample counts for at most twice the rail's smoothed round trip: the ack that ends a stall
 * of the host (a descheduled guest, a busy softirq) measures the stall, not the rail, and
 * taken whole it would pace the rail at a fraction of its rate for dozens of round trips.
 * A queue that really grows still raises srtt by up to an eighth per ack.
 */
void tbp_pace_rtt(struct tbp_rail *rl, uint64_t rtt)
{
	/* 0 means "no sample yet": a round trip within one clock tick is 1 ns. */
	if (!rtt)
		rtt = 1;
	if (!rl->srtt) {
		rl->srtt = rtt;
		return;
	}
	if (rtt > 2 * rl->srtt)
		rtt = 2 * rl->srtt;
	rl->srtt = (7 * rl->srtt + rtt) / 8;
}

/*
 * How far the clock may trail the present: a burst's worth of intervals, and at least the
 * time tbp_tick may sleep between two calls (it never asks to be woken sooner than
 * ack_delay_ns / 4 from now), or a rail faster than that could send only a burst per tick
 * and would run slower than its rate.
 */
static uint64_t pace_slack(const struct tbp_link *l, const struct tbp_rail *rl)
{
	uint64_t burst = (uint64_t)(l->cfg.pace_burst - 1) * rl->pace_ivl;
	uint64_t tick = l->cfg.ack_delay_ns / 4 + 1;

	return burst > tick ? burst : tick;
}

void tbp_pace_update(const struct tbp_link *l, struct tbp_rail *rl)
{
	uint64_t den = (uint64_t)l->cfg.pace_gain_pct * rl->cwnd;

	/* Before the first sample the rate is unknown: the window alone limits the rail. A rate
	 * beyond one frame per nanosecond is no limit either (an interval of 0). */
	rl->pace_ivl = den && rl->srtt ? rl->srtt * 100 / den : 0;
	rl->pace_slack = pace_slack(l, rl);
}

void tbp_pace_sent(const struct tbp_link *l, struct tbp_rail *rl)
{
	if (rl->pace_ivl)
		rl->pace_ns = tbp_pace_base(l, rl) + rl->pace_ivl;
}

/*
 * A rail that has room in its window, is paced and whose clock is ahead of now gets its
 * wake-up from here; one whose window is full waits for acks (tbp_rx) instead. Only while
 * something waits to be sent: messages not cut yet or frames queued in the window.
 */
uint64_t tbp_pace_deadline(const struct tbp_link *l, uint64_t deadline)
{
	uint32_t r;

	if (!l->queued && l->sendq_head == TBP_NONE)
		return deadline;
	for (r = 0; r < TBP_MAX_RAILS; r++) {
		const struct tbp_rail *rl = &l->rails[r];
		uint64_t due;

		if (rl->state != RAIL_UP || !rl->pace_ivl || rl->inflight + rl->planned >= rl->cwnd)
			continue;
		due = tbp_pace_base(l, rl) + rl->planned * rl->pace_ivl;
		if (due > l->now && due < deadline)
			deadline = due;
	}
	return deadline;
}
