/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * tbrdma-abi.h - what the kernel module and its provider share: the layout of the queues the
 * module maps into user space, and the driver data of the commands that create them. The
 * kernel module includes this file from here, so both sides always agree.
 */
#ifndef TBRDMA_ABI_H
#define TBRDMA_ABI_H

#include <linux/types.h>

/*
 * A mapped queue: this header, then `slots` slots (a power of two) from byte
 * TBRDMA_QUEUE_SLOTS_OFFSET. Each index counts up forever and names slot index % slots. The
 * side that fills slots alone writes `producer`; the side that empties them alone writes
 * `consumer`. Each index sits on its own cache line.
 */
struct tbrdma_queue_hdr {
	__u32 producer;
	__u32 pad0[15];
	__u32 consumer;
	__u32 pad1[15];
};

#define TBRDMA_QUEUE_SLOTS_OFFSET 128

/* Where a queue is: mmap(cmd_fd, offset, size) with MAP_SHARED. */
struct tbrdma_queue_map {
	__aligned_u64 offset;
	__u32 size;
	__u32 slots;
};

/*
 * create_cq and resize_cq: a CQ whose command carries room for this response is mapped.
 * Its slots are struct ib_uverbs_wc, filled by the kernel, emptied by the provider.
 */
struct tbrdma_cq_resp {
	struct tbrdma_queue_map cq;
};

#endif /* TBRDMA_ABI_H */
