// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * tbp_sim: run the simulator for one mix over a range of seeds.
 *   tbp_sim --mix loss --seed 17          one run (the repro command)
 *   tbp_sim --mix loss --seeds 0:200      a sweep; stops at the first failure
 * A sweep that passes also prints what the medium lost and reordered and what the links
 * resent for it, summed over the seeds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "simnet.h"

static int usage(void)
{
	const char *const *m;

	fprintf(stderr, "usage: tbp_sim --list | --mix NAME (--seed N | --seeds A:B) [-v]\nmixes:");
	for (m = sim_mix_names(); *m; m++)
		fprintf(stderr, " %s", *m);
	fprintf(stderr, "\n");
	return 2;
}

static double pct(uint64_t part, uint64_t whole)
{
	return whole ? 100.0 * (double)part / (double)whole : 0.0;
}

static void print_medium(const struct sim_result *r)
{
	printf("  medium: %llu sequenced frames, %llu lost (%.2f%%), %.1f%% reordered (%.1f%% by "
	       "more than 64) | retransmits %llu (fast %llu, timeouts %llu; spurious timeouts %llu, "
	       "duplicates at the receiver %llu)",
	       (unsigned long long)r->seq_sent, (unsigned long long)r->seq_lost,
	       pct(r->seq_lost, r->seq_sent), pct(r->seq_reordered, r->seq_sent),
	       pct(r->seq_far, r->seq_sent), (unsigned long long)r->retransmits,
	       (unsigned long long)r->retx_fast, (unsigned long long)r->retx_timeouts,
	       (unsigned long long)r->retx_spurious, (unsigned long long)r->rx_duplicates);
	if (r->seq_lost)
		printf(": %.2f per frame lost", (double)r->retransmits / (double)r->seq_lost);
	printf("\n");
}

int main(int argc, char **argv)
{
	const char *mix = NULL, *self = argv[0];
	unsigned long long first = 0, last = 0, seed;
	bool verbose = false, have_seed = false;
	static char why[8192];
	struct sim_result res;
	int i;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--mix") && i + 1 < argc) {
			mix = argv[++i];
		} else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
			first = last = strtoull(argv[++i], NULL, 0);
			have_seed = true;
		} else if (!strcmp(argv[i], "--seeds") && i + 1 < argc) {
			char *colon;

			first = strtoull(argv[++i], &colon, 0);
			if (*colon != ':')
				return usage();
			last = strtoull(colon + 1, NULL, 0) - 1;
			have_seed = true;
		} else if (!strcmp(argv[i], "--list")) {
			const char *const *m;

			for (m = sim_mix_names(); *m; m++)
				printf("%s\n", *m);
			return 0;
		} else if (!strcmp(argv[i], "-v")) {
			verbose = true;
		} else {
			return usage();
		}
	}
	if (!mix || !have_seed || last < first)
		return usage();
	memset(&res, 0, sizeof(res));
	for (seed = first; seed <= last; seed++) {
		struct sim_params p;

		if (!sim_params_for_mix(mix, seed, &p))
			return usage();
		if (sim_run(&p, seed, why, sizeof(why), verbose, &res)) {
			printf("FAIL mix=%s seed=%llu: %s\n", mix, seed, why);
			printf("params: rails=%u loss=%u dup=%u corrupt=%u delay=%llu jitter=%llu "
			       "window=%u msgs=%u rx_msgs=%u qps=%u messages=%u max_len=%u "
			       "queue=%u pcsum=%d\n", p.rails, p.loss_ppm, p.dup_ppm,
			       p.corrupt_ppm, (unsigned long long)p.delay_ns,
			       (unsigned long long)p.jitter_ns, p.window, p.max_msgs,
			       p.max_rx_msgs, p.qps, p.messages, p.max_len, p.rail_queue, p.pcsum);
			printf("repro: %s --mix %s --seed %llu -v\n", self, mix, seed);
			return 1;
		}
	}
	printf("ok mix=%s seeds=%llu..%llu\n", mix, first, last);
	print_medium(&res);
	return 0;
}
