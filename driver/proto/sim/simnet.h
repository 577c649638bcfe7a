/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * simnet.h - deterministic single-process simulator: two TBP endpoints joined by
 * 1..4 simulated rails with loss, duplication, reordering, corruption, delay and
 * rail death. It drives a random verbs workload and checks every invariant listed
 * in docs/protocol.md ("What the simulator checks").
 */
#ifndef TBP_SIMNET_H
#define TBP_SIMNET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tbp.h"

struct sim_params {
	uint32_t rails;          /* 1..4 */
	uint32_t loss_ppm;       /* per frame, parts per million */
	uint32_t dup_ppm;
	uint32_t corrupt_ppm;
	uint64_t delay_ns;       /* one-way base delay */
	uint64_t jitter_ns;      /* uniform extra delay: reorders frames, also within a rail */
	bool fifo;               /* each rail delivers in send order (a USB4 ring, a cable):
				  * jitter spaces its frames but never reorders them */
	uint64_t rail_skew_ns;   /* rail r is r * rail_skew_ns slower: frames reorder between
				  * rails only (with fifo) */
	bool rail_death;         /* rails die and come back (never all at once) */
	bool blackout;           /* every rail dies for longer than link_dead_ns */
	bool rnr;                /* receivers post receive buffers late and sparsely */
	bool errors;             /* some WRs carry bad rkeys or overlong SENDs */
	bool pcsum;              /* negotiate the payload checksum capability */
	uint32_t dma_rails;      /* bit r: rail r is a DMA rail (TBP_RAIL_DMA), whose frames carry
				  * no MAC and no payload CRC; like a USB4 host interface's CRC
				  * check, it drops a frame the wire corrupted */
	uint32_t window;
	uint32_t max_msgs;
	uint32_t max_rx_msgs;
	uint32_t qps;            /* 1..4 */
	uint32_t messages;       /* WRs posted by each side */
	uint32_t max_len;        /* largest message */
	bool bulk;               /* message lengths uniform up to max_len (else mostly small) */
	uint32_t rail_queue;     /* frames a rail accepts before xmit says -EAGAIN */
	uint64_t time_limit_ns;  /* virtual time allowed before declaring a deadlock */
	/* Per-QP transport scenarios; each acts on QP `special` (the last one) unless noted.
	 * Times are virtual, from the start of the run. */
	uint64_t late_open_ns;   /* ep1 opens QP special only then; ep0 posts on it at once */
	uint64_t close_ns;       /* ep1 closes QP special then (only ep0 posts on it) */
	uint64_t rnr_release_ns; /* ep1 posts no receive on QP special before then */
	uint32_t rail_frame[4];  /* fixed max frame per rail (0: random) */
	uint64_t revive_ns;      /* rail 1 is silent until then */
	uint64_t bigrail_end_ns; /* then rail 0 (the big one) dies for good, or shrinks */
	bool bigrail_shrinks;    /* rail 0 is re-added with rail 1's frame size (MTU change) */
};

struct sim;

/* What the medium did to the sequenced frames and what the links resent, over both ends. */
struct sim_result {
	uint64_t seq_sent;       /* sequenced frames handed to the medium */
	uint64_t seq_lost;       /* ...that it dropped, or corrupted (the receiver drops them) */
	uint64_t seq_reordered;  /* delivered after a frame with a higher sequence number */
	uint64_t seq_far;        /* ...more than 64 behind it (past the header's bitmap) */
	uint64_t retransmits;    /* tbp_stats of both links */
	uint64_t retx_fast;
	uint64_t retx_timeouts;
	uint64_t retx_spurious;
	uint64_t rx_duplicates;  /* resends whose frame had arrived: wasted */
};

/* Fill p with a random configuration for the named mix; false if the mix is unknown. */
bool sim_params_for_mix(const char *mix, uint64_t seed, struct sim_params *p);
const char *const *sim_mix_names(void);

/* Run one simulation. Returns 0 on success; otherwise writes the reason into why. The
 * medium's and the links' counts are added to *res (may be NULL). */
int sim_run(const struct sim_params *p, uint64_t seed, char *why, size_t why_len,
	    bool verbose, struct sim_result *res);

#endif
