/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * tbp_module_config.h - the link configuration the kernel module runs the core with.
 *
 * Shared with the core benchmark so that its "kernel module configuration" rows measure
 * the tables the module really allocates, not a friendlier setup.
 */
#ifndef TBP_MODULE_CONFIG_H
#define TBP_MODULE_CONFIG_H

#define TBP_MODULE_MAX_QPS		1024	/* QP table of one link (TBRDMA_MAX_QP) */
#define TBP_MODULE_MAX_OUTSTANDING	1024	/* default of the max_outstanding parameter */
/*
 * Send window in frames: 4 MiB of 4 KiB frames in flight per link, so that two USB4 cables
 * (80 Gb/s) stay busy over a 400 us round trip. The per-rail congestion window keeps a
 * rail's queue short, and SACK ranges (protocol version 5) keep what arrived beyond the
 * 64-frame bitmap from being resent.
 */
#define TBP_MODULE_WINDOW		1024
/*
 * Frames the Ethernet rail hands to the core per tick: the stack delivers received
 * frames in lists of up to net.core.gro_normal_batch (default 8) and the rail ticks the
 * core once per list.
 */
#define TBP_MODULE_RX_BATCH		8
/*
 * Pacing burst of a rail (tbp_config.pace_burst): frames one tick may send back to back once
 * the rail's pacing clock allows. The core's 4 suits its own 5 us ticks; the module's soft
 * hrtimer and its receive lists come later on a loaded host, and 16 frames of 4 KiB (64 KiB)
 * still fit many times in a USB4 ring of 512 frames or a NIC queue of 1000.
 */
#define TBP_MODULE_PACE_BURST		16

#endif /* TBP_MODULE_CONFIG_H */
