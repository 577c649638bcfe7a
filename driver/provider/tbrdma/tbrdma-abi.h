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
	__u32 flags;			/* TBRDMA_QUEUE_*, written by the consumer side */
	__u32 pad1[14];
};

/*
 * Receive queue: the QP is in the error state. The kernel sets it before it flushes; a
 * provider that sees it after publishing a post rings the doorbell (a POST_RECV command
 * without WRs) so that the new receives are flushed too.
 */
#define TBRDMA_QUEUE_ERROR 0x1

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

/*
 * create_qp: a user RC or UC QP whose command leaves room for this response posts its send
 * WRs into a mapped ring of struct tbrdma_sq_slot (the provider fills slots and advances
 * producer; the kernel takes them, advancing consumer, when a POST_SEND command with no WRs
 * rings the doorbell, and stops at the first slot it refuses). UD QPs post sends by command.
 *
 * A user RC, UC or UD QP without an SRQ posts receives into a mapped ring of struct
 * tbrdma_rq_slot with no system call: the kernel takes slots when messages arrive and
 * advances consumer as receives complete (a full ring is producer - consumer == slots).
 * An empty map (size 0) means the queue posts by command.
 */
struct tbrdma_qp_resp {
	struct tbrdma_queue_map sq;
	struct tbrdma_queue_map rq;
};

/*
 * Numbers of the slot fields that not every supported kernel's uapi names (they are
 * uverbs' IB_UVERBS_WR_FLUSH/ATOMIC_WRITE and IB_UVERBS_FLUSH_* since 6.2, and
 * libibverbs' IBV_WR_FLUSH/ATOMIC_WRITE and IBV_FLUSH_*).
 */
#define TBRDMA_SQ_WR_FLUSH 14
#define TBRDMA_SQ_WR_ATOMIC_WRITE 15
#define TBRDMA_SQ_FLUSH_GLOBAL 0x1
#define TBRDMA_SQ_FLUSH_PERSISTENT 0x2
#define TBRDMA_SQ_FLUSH_RANGE 0
#define TBRDMA_SQ_FLUSH_MR 1

#define TBRDMA_SQ_MAX_SGE 8
#define TBRDMA_SQ_MAX_INLINE 256

struct tbrdma_sq_sge {
	__aligned_u64 addr;
	__u32 length;
	__u32 lkey;
};

/* One send WR, as ibv_send_wr carries it plus what only the ibv_wr_* API can express. */
struct tbrdma_sq_slot {
	__aligned_u64 wr_id;
	__u32 opcode;			/* IBV_WR_* (the kernel's IB_WR_* share the numbers) */
	__u32 send_flags;		/* IBV_SEND_FENCE, _SIGNALED, _SOLICITED, _INLINE */
	__u32 num_sge;			/* SGEs in sge[]; 0 with IBV_SEND_INLINE */
	__u32 inline_len;		/* IBV_SEND_INLINE: bytes in inline_data[] */
	__u32 ex;			/* imm_data (as posted, big-endian) or invalidate_rkey */
	__u32 rkey;
	__aligned_u64 remote_addr;
	__aligned_u64 compare_add;	/* ATOMIC_*: compare or add; ATOMIC_WRITE: the 8 bytes */
	__aligned_u64 swap;
	__aligned_u64 length;		/* FLUSH: bytes of the range; BIND_MW: of the window */
	__u32 bind_mr_lkey;		/* BIND_MW (remote_addr: start; rkey: the new key;
					 * ex: the window's current key) */
	__u32 bind_access;		/* BIND_MW: IBV_ACCESS_REMOTE_* of the window */
	__u8 flush_type;		/* FLUSH: IBV_FLUSH_GLOBAL | IBV_FLUSH_PERSISTENT */
	__u8 flush_level;		/* FLUSH: IBV_FLUSH_RANGE or IBV_FLUSH_MR */
	__u8 reserved[54];
	union {
		struct tbrdma_sq_sge sge[TBRDMA_SQ_MAX_SGE];
		__u8 inline_data[TBRDMA_SQ_MAX_INLINE];
	};
	__u8 pad[128];			/* a slot is 512 bytes */
};

/* One receive WR. */
struct tbrdma_rq_slot {
	__aligned_u64 wr_id;
	__u32 num_sge;
	__u32 reserved;
	struct tbrdma_sq_sge sge[TBRDMA_SQ_MAX_SGE];
};

#endif /* TBRDMA_ABI_H */
