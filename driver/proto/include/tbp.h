/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * tbp.h - public API of the tbrdma protocol core ("TBP").
 *
 * One struct tbp_link is the reliable connection between two hosts. It pools
 * 1..8 rails (a USB4 cable, a lane, an Ethernet port) behind one sequence
 * space and carries RC-style verbs messages between queue pairs.
 *
 * Rules for the caller (see docs/protocol.md, "Glue API"):
 *  - The core never allocates: the caller gives it tbp_link_size(cfg) bytes.
 *  - The core never locks or sleeps: calls on one link must be serialised by
 *    the caller (kernel: one spinlock per link). Env callbacks are invoked with
 *    that serialisation held and must not call back into the same link.
 *  - The core never reads a clock or touches hardware: everything goes through
 *    struct tbp_env.
 */
#ifndef TBP_H
#define TBP_H

#include "tbp_port.h"

/* 2: per-QP NAK frame, retry attempt in data frames, frame MAC, HELLO rail nonces;
 * 3: ATOMIC_REQ / ATOMIC_RESP frames (a version 2 peer would drop them as malformed and
 *    its link would stall, so the two refuse each other at the handshake instead);
 * 4: SEND_INV frames (SEND with Invalidate, the rkey in the header's rkey field); a
 *    version 3 peer would drop them as malformed, so again the handshake refuses it;
 * 5: ACK frames may carry SACK ranges (a payload); a version 4 peer would drop every such
 *    ACK as malformed, so the handshake refuses it too. */
#define TBP_PROTO_VERSION 5u
#define TBP_MAGIC 0x31504254u /* "TBP1" little-endian on the wire */
#define TBP_HDR_LEN 80u
#define TBP_MAX_RAILS 8u
#define TBP_MIN_FRAME 256u   /* smallest max_frame a rail may declare */
#define TBP_MAX_FRAME 9216u  /* jumbo Ethernet */
#define TBP_KEY_MAX 64u
#define TBP_NONCE_LEN 16u
#define TBP_MAC_LEN 32u
#define TBP_WINDOW_MAX 4096u /* largest tbp_config.window */

/* Verbs-visible message kinds accepted by tbp_post(). */
enum tbp_opcode {
	TBP_OP_SEND = 1,
	TBP_OP_SEND_WITH_IMM = 2,
	TBP_OP_RDMA_WRITE = 3,
	TBP_OP_RDMA_WRITE_WITH_IMM = 4,
	TBP_OP_RDMA_READ = 5,
	/* 8-byte atomics on an 8-byte aligned remote address (IBA 9.4.5); the original
	 * value is written to the first 8 bytes of the local buffer. */
	TBP_OP_ATOMIC_CMP_SWP = 6,
	TBP_OP_ATOMIC_FETCH_ADD = 7,
	/* A SEND whose receiver invalidates tbp_wr.rkey (IBA 9.4.1.1.4, "Send with
	 * Invalidate") before it reports the receive (env.invalidate). */
	TBP_OP_SEND_WITH_INV = 8,
	/* IBA ATOMIC WRITE (rxe IB_WR_ATOMIC_WRITE): compare_add holds the 8 bytes to store at
	 * the 8-byte aligned raddr (little-endian u64 of the bytes as they must appear there),
	 * len is 8; needs remote write access (not atomic access); local_buf is never touched. */
	TBP_OP_ATOMIC_WRITE = 9,
	/* IBA FLUSH (rxe IB_WR_FLUSH): completes once every earlier message of the QP was
	 * placed at the responder. len is the range from raddr (may be 0, carries no data),
	 * flags the placement type(s) TBP_WR_FLUSH_GLOBAL / _PERSISTENT (at least one) and
	 * optionally TBP_WR_FLUSH_MR for the whole MR. Nothing local is read or written. */
	TBP_OP_FLUSH = 10,
};

/* Completion status (0 = success). Maps 1:1 onto ib_wc_status in the kernel glue. */
enum tbp_status {
	TBP_OK = 0,
	TBP_ERR_REMOTE_ACCESS = 1,   /* IB_WC_REM_ACCESS_ERR */
	TBP_ERR_REMOTE_INVALID = 2,  /* IB_WC_REM_INV_REQ_ERR */
	TBP_ERR_REMOTE_OP = 3,       /* IB_WC_REM_OP_ERR (peer failed to place data) */
	TBP_ERR_LOCAL_LENGTH = 4,    /* IB_WC_LOC_LEN_ERR (recv buffer too small) */
	TBP_ERR_LOCAL_PROTECTION = 5,/* IB_WC_LOC_PROT_ERR (local copy callback failed) */
	TBP_ERR_LINK_DOWN = 6,       /* IB_WC_RETRY_EXC_ERR (every rail gone) */
	TBP_ERR_FLUSHED = 7,         /* IB_WC_WR_FLUSH_ERR (QP closed / link torn down) */
	TBP_ERR_RETRY_EXC = 8,       /* IB_WC_RETRY_EXC_ERR (peer QP not ready / silent past retry_cnt) */
	TBP_ERR_RNR_RETRY_EXC = 9,   /* IB_WC_RNR_RETRY_EXC_ERR (receiver not ready past rnr_retry) */
};

enum tbp_role { TBP_ROLE_INITIATOR = 0, TBP_ROLE_RESPONDER = 1 };

enum tbp_link_state {
	TBP_LINK_HANDSHAKE = 0, /* no rail authenticated yet */
	TBP_LINK_UP = 1,        /* at least one rail up */
	TBP_LINK_DEGRADED = 2,  /* was up, every rail down, still inside link_dead_ns */
	TBP_LINK_FAILED = 3,    /* terminal: re-init the link to reconnect */
};

/*
 * Per-QP transport attributes, IBA encodings (ib_qp_attr): timeout 0..31 (4.096 us * 2^timeout
 * without any answer from the peer QP counts one retry; 0 = infinite), retry_cnt 0..7,
 * rnr_retry 0..7 (7 = infinite), min_rnr_timer 0..31 (the RNR timer table: how long the
 * peer waits after this QP answered receiver-not-ready). tbp_qp_open starts with timeout 14,
 * retry_cnt 7, rnr_retry 7 and, until set, the link's rnr_backoff_ns as the RNR timer.
 */
struct tbp_qp_attr {
	uint8_t timeout;
	uint8_t retry_cnt;
	uint8_t rnr_retry;
	uint8_t min_rnr_timer;
};

/* Events reported through tbp_env.event. */
enum tbp_event {
	TBP_EV_LINK_UP = 1,
	TBP_EV_LINK_FAILED = 2,
	TBP_EV_RAIL_UP = 3,
	TBP_EV_RAIL_DOWN = 4,
};

/* Remote access rights checked by tbp_env.mr_check. */
#define TBP_ACCESS_REMOTE_WRITE 0x1u
#define TBP_ACCESS_REMOTE_READ 0x2u
#define TBP_ACCESS_REMOTE_ATOMIC 0x4u
/* FLUSH of the matching placement type (IB_ACCESS_FLUSH_GLOBAL / _PERSISTENT). A FLUSH of
 * the whole MR (TBP_WR_FLUSH_MR) is checked with len 0: only the key and its rights. */
#define TBP_ACCESS_FLUSH_GLOBAL 0x8u
#define TBP_ACCESS_FLUSH_PERSISTENT 0x10u

/* Where a copy callback reads or writes. */
enum tbp_buf_kind {
	TBP_BUF_LOCAL = 1, /* tbp_wr.local_buf of a posted WR; addr = that handle */
	TBP_BUF_RECV = 2,  /* a receive WQE claimed by recv_claim; addr = its handle */
	TBP_BUF_MR = 3,    /* local memory region named by the peer: rkey + addr */
};

struct tbp_buf {
	uint32_t kind;  /* enum tbp_buf_kind */
	uint32_t rkey;  /* TBP_BUF_MR only */
	uint64_t addr;  /* handle (LOCAL/RECV) or remote virtual address (MR) */
};

struct tbp_recv_completion {
	uint32_t qpn;        /* local QP that received */
	uint32_t src_qpn;    /* the peer's QP */
	uint64_t recv_handle;/* from recv_claim; 0 for RDMA_WRITE_WITH_IMM without a claim */
	uint32_t len;        /* bytes placed (0 for WRITE_WITH_IMM) */
	uint32_t imm;        /* valid when has_imm */
	uint8_t opcode;      /* enum tbp_opcode: SEND, SEND_WITH_IMM, SEND_WITH_INV or
			      * RDMA_WRITE_WITH_IMM */
	uint8_t has_imm;
	uint16_t status;     /* enum tbp_status */
	uint8_t solicited;   /* the sender posted it with TBP_WR_SOLICITED */
	uint8_t reserved[3];
	uint32_t invalidate_rkey; /* SEND_WITH_INV: the rkey env.invalidate was asked to
				   * invalidate (status says whether it was) */
};

/*
 * Environment callbacks. ctx is passed back unchanged. All are required.
 * Copy callbacks return 0 or a positive enum tbp_status explaining the failure.
 */
struct tbp_env {
	void *ctx;
	/* Monotonic time in nanoseconds. */
	uint64_t (*now_ns)(void *ctx);
	/*
	 * Queue one frame on a rail. The frame buffer belongs to the core and is
	 * reused after return, so copy it. Return 0, or -EAGAIN / -ENOBUFS when the
	 * rail's queue is full (the core tries another rail or retries later), or
	 * any other negative errno if the rail is broken (treated like -EAGAIN).
	 */
	int (*xmit)(void *ctx, uint32_t rail, const void *frame, uint32_t len);
	/*
	 * Optional, both or neither: sequenced (data) frames are then built in place, in the
	 * buffer they leave from (an skb, a ring slot), which saves xmit's copy. frame_get returns
	 * a buffer of at least len bytes for a frame on rail, or NULL when the rail's queue is
	 * full (as xmit's -EAGAIN). Every buffer got is passed to frame_commit exactly once, with
	 * *token and the frame's final length (<= len), before the next frame_get; it returns 0
	 * or a negative errno as xmit does (the buffer is then the glue's to free, and the core
	 * builds the frame anew for the next rail it tries). Other frames still go by xmit.
	 */
	void *(*frame_get)(void *ctx, uint32_t rail, uint32_t len, void **token);
	int (*frame_commit)(void *ctx, uint32_t rail, void *token, uint32_t len);
	/* HMAC-SHA256(key, msg) into out[32]. Only used during the handshake. */
	void (*hmac_sha256)(void *ctx, const uint8_t *key, uint32_t key_len,
			    const uint8_t *msg, uint32_t msg_len, uint8_t out[32]);
	/* Unpredictable bytes (handshake nonces). */
	void (*random_bytes)(void *ctx, void *buf, uint32_t len);
	/*
	 * Check that [addr, addr+len) of the MR named by rkey may be accessed by the
	 * peer with `access` (TBP_ACCESS_*) through the local QP qpn (whose protection
	 * domain must own the MR). Return 0, TBP_ERR_REMOTE_ACCESS or
	 * TBP_ERR_REMOTE_INVALID. Called once per incoming WRITE/READ/atomic/FLUSH message
	 * (a whole-MR FLUSH passes len 0: only the key and its rights are to be checked).
	 */
	int (*mr_check)(void *ctx, uint32_t qpn, uint32_t rkey, uint64_t addr, uint64_t len,
			uint32_t access);
	/* Copy len bytes at byte offset off of buf into dst (SEND/WRITE source, READ response source). */
	int (*buf_read)(void *ctx, const struct tbp_buf *buf, uint64_t off, void *dst, uint32_t len);
	/* Copy len bytes from src to byte offset off of buf (placement of SEND/WRITE/READ data). */
	int (*buf_write)(void *ctx, const struct tbp_buf *buf, uint64_t off, const void *src,
			 uint32_t len);
	/*
	 * Pop the next posted receive WQE of local QP qpn. Return 0 and fill
	 * *handle / *capacity, or -EAGAIN when none is posted (the core then
	 * answers receiver-not-ready and the peer retries).
	 */
	int (*recv_claim)(void *ctx, uint32_t qpn, uint64_t *handle, uint32_t *capacity);
	/* A posted WR finished (in per-QP post order). status: enum tbp_status. */
	void (*send_done)(void *ctx, uint32_t qpn, uint64_t wr_id, uint32_t status);
	/* A SEND / SEND_WITH_IMM / SEND_WITH_INV / WRITE_WITH_IMM arrived (in per-QP message
	 * order). */
	void (*recv_done)(void *ctx, const struct tbp_recv_completion *c);
	/* Link and rail state changes (enum tbp_event); rail is 0 for link events. */
	void (*event)(void *ctx, uint32_t event, uint32_t rail);
	/*
	 * Execute one atomic (opcode TBP_OP_ATOMIC_*) on the 8 bytes at buf (TBP_BUF_MR, already
	 * passed mr_check and 8-byte aligned), atomically with respect to every other atomic of
	 * this host, and return the value before it in *orig. Return 0 or an enum tbp_status.
	 * TBP_OP_ATOMIC_WRITE stores compare_add with one aligned 64-bit store (swap is 0 and
	 * *orig is ignored).
	 * Called exactly once per atomic the peer posted, in the QP's message order. Optional:
	 * NULL answers every atomic and ATOMIC_WRITE with TBP_ERR_REMOTE_INVALID (FLUSH never
	 * calls it).
	 */
	int (*atomic)(void *ctx, const struct tbp_buf *buf, uint32_t opcode, uint64_t compare_add,
		      uint64_t swap, uint64_t *orig);
	/*
	 * Invalidate rkey (an MR or MW the local QP qpn's protection domain owns) for a
	 * SEND_WITH_INV the peer posted. Called exactly once per such message whose data was
	 * placed, in the QP's message order, just before recv_done reports it. Return 0 or an
	 * enum tbp_status (TBP_ERR_REMOTE_INVALID for a key that cannot be invalidated): the
	 * receive and the sender's WR then complete with that error. Optional: NULL answers
	 * every SEND_WITH_INV with TBP_ERR_REMOTE_INVALID.
	 */
	int (*invalidate)(void *ctx, uint32_t qpn, uint32_t rkey);
};

struct tbp_config {
	uint32_t role;          /* enum tbp_role; exactly one side is the initiator */
	uint32_t window;        /* frames in flight per link; power of two, 16..4096 */
	uint32_t max_msgs;      /* posted WRs + READ responses per link, 2..65534; 1/4 is kept for READ responses */
	uint32_t max_rx_msgs;   /* inbound messages reassembled ahead of each QP's next one; +max_qps < 65535 */
	uint32_t max_qps;       /* QPs open on this link, 1..65534 */
	uint32_t max_msg_len;   /* largest message accepted or posted, <= 2^31 */
	uint32_t caps;          /* TBP_CAP_* this side asks for */
	uint32_t key_len;       /* 16..TBP_KEY_MAX bytes of pairing key */
	uint8_t key[TBP_KEY_MAX];
	uint64_t rto_min_ns;    /* retransmission timeout clamp */
	uint64_t rto_max_ns;
	uint64_t ack_delay_ns;  /* max delay of a standalone ACK */
	uint64_t keepalive_ns;  /* idle interval before a rail sends a keepalive */
	uint64_t rail_dead_ns;  /* silence after which a rail is declared down */
	uint64_t link_dead_ns;  /* time with no rail up after which the link fails */
	uint64_t hello_retry_ns;/* handshake retransmission interval */
	uint64_t rnr_backoff_ns;/* RNR timer of QPs whose min_rnr_timer was never set */
	/* Pacing of each rail's first copies (docs/protocol.md, "Pacing"): a rail sends at
	 * pace_gain_pct / 100 * cwnd / its smoothed RTT, in bursts of up to pace_burst frames.
	 * pace_gain_pct 0: no pacing (pace_burst is then ignored); else 100..1000, and
	 * pace_burst 1..TBP_WINDOW_MAX. */
	uint32_t pace_gain_pct;
	uint32_t pace_burst;
};

/* Capabilities negotiated in HELLO; the link uses the union of both sides' requests. */
#define TBP_CAP_PAYLOAD_CSUM 0x1u /* checksum covers payload too (rails without a link CRC) */
/*
 * Every frame after the handshake carries a frame counter and a SipHash-2-4 tag keyed per
 * direction from the handshake (docs/protocol.md, "Frame authentication"), so a third host on
 * a shared segment can neither forge nor replay frames. On by default.
 */
#define TBP_CAP_FRAME_MAC 0x2u

/* Counters; all monotonic except rails_up / rtt. Exposed by the kernel as rdma statistics. */
struct tbp_stats {
	uint64_t tx_frames;         /* every frame handed to xmit successfully */
	uint64_t rx_frames;         /* every frame given to tbp_rx */
	uint64_t tx_data_frames;    /* sequenced frames, first transmission */
	uint64_t retransmits;       /* sequenced frames sent again */
	uint64_t rail_failovers;    /* frames moved off a rail that went down */
	uint64_t rx_accepted;       /* sequenced frames accepted exactly once */
	uint64_t rx_duplicates;     /* sequenced frames already seen (dropped) */
	uint64_t tx_acks;           /* standalone ACK frames */
	uint64_t tx_keepalives;
	uint64_t xmit_busy;         /* xmit returned -EAGAIN/-ENOBUFS */
	uint64_t msgs_posted;
	uint64_t msgs_completed;
	uint64_t msgs_received;
	uint64_t rnr_naks_sent;
	uint64_t rnr_naks_received;
	uint64_t drop_short;        /* shorter than a header or than header+payload */
	uint64_t drop_magic;        /* wrong magic or version */
	uint64_t drop_checksum;
	uint64_t drop_field;        /* a field out of range (opcode, length, offset, ...) */
	uint64_t drop_session;      /* session tag of another link instance */
	uint64_t drop_rail;         /* frame on a rail not added / not up */
	uint64_t drop_window;       /* sequence outside the receive window */
	uint64_t drop_auth;         /* handshake MAC or nonce mismatch */
	uint64_t drop_state;        /* frame not valid in the current link state */
	uint64_t drop_no_qp;        /* unknown destination QP or wrong source QP */
	uint64_t drop_no_slot;      /* no reassembly slot free; the peer retransmits */
	uint64_t drop_rnr;          /* refused: no receive posted; the peer retransmits */
	uint64_t drop_bad_msg;      /* fragment inconsistent with its message */
	uint32_t rails_up;
	uint32_t link_state;        /* enum tbp_link_state */
	uint64_t srtt_ns;           /* smoothed RTT over all rails */
	uint64_t rttvar_ns;
	uint64_t rto_ns;
	uint64_t retx_timeouts;     /* frames resent because their timer expired */
	uint64_t retx_fast;         /* frames resent because later frames on their rail were acked */
	uint64_t retx_spurious;     /* resent frames whose first copy had arrived: the ack came
				     * back sooner after the resend than half a round trip */
	/* per-QP transport (version 2) */
	uint64_t naks_not_ready_sent;  /* messages to a QP that is not open (yet) */
	uint64_t naks_qp_error_sent;   /* messages to a closed QP or one in error */
	uint64_t naks_not_ready_received;
	uint64_t naks_qp_error_received;
	uint64_t qp_rewinds;        /* a QP resent its unfinished messages (NAK, timer, re-cut) */
	uint64_t qp_timeouts;       /* the QP's ACK timer expired */
	uint64_t rx_stale;          /* frames of an abandoned attempt (dropped, acked) */
	uint64_t rx_rewound_bytes;  /* bytes placed by attempts that were abandoned */
	uint64_t recuts;            /* frames too big for every rail still up, resent smaller */
	uint64_t retry_exc;         /* WRs failed with TBP_ERR_RETRY_EXC */
	uint64_t rnr_retry_exc;     /* WRs failed with TBP_ERR_RNR_RETRY_EXC */
	uint64_t drop_mac;          /* frame MAC missing or wrong (forged or corrupted) */
	uint64_t drop_replay;       /* authentic frame counter already seen or too old (replayed) */
	uint64_t drop_ratelimit;    /* handshake frames over the per-rail verification budget */
	uint64_t cwnd_reductions;   /* a rail's congestion window shrank (queueing delay, timeout) */
	uint32_t cwnd[TBP_MAX_RAILS]; /* frames each rail may have in flight now */
	/* version 5 */
	uint64_t drop_sack;         /* ACK frames whose SACK ranges reach past what this side
				     * sent: the ranges are ignored (malformed ones: drop_field) */
	uint64_t tx_sack_ranges;    /* standalone ACKs that carried SACK ranges */
	uint64_t pace_holds;        /* a data frame that a rail's congestion window had room for
				     * waited for the rail's pacing clock (once per transmit round) */
};

/* A work request. Local data is reached only through buf_read/buf_write(TBP_BUF_LOCAL). */
struct tbp_wr {
	uint32_t opcode;     /* enum tbp_opcode */
	uint32_t qpn;        /* local QP (opened with tbp_qp_open) */
	uint64_t wr_id;      /* returned in send_done */
	uint64_t local_buf;  /* opaque handle of the local SGE list */
	uint32_t len;        /* bytes; ATOMIC_*: 8 (the original value's destination);
			      * FLUSH: bytes of the range (not bounded by max_msg_len) */
	uint32_t imm;        /* *_WITH_IMM */
	uint32_t rkey;       /* RDMA_WRITE*, RDMA_READ, ATOMIC_*, FLUSH; SEND_WITH_INV: the key
			      * the peer invalidates */
	uint32_t flags;      /* TBP_WR_* */
	uint64_t raddr;      /* RDMA_WRITE*, RDMA_READ, ATOMIC_*, FLUSH */
	uint64_t compare_add;/* ATOMIC_CMP_SWP: compare; ATOMIC_FETCH_ADD: addend;
			      * ATOMIC_WRITE: the value stored */
	uint64_t swap;       /* ATOMIC_CMP_SWP */
};
/* Work request flags. */
#define TBP_WR_SOLICITED 0x1u /* SEND*, RDMA_WRITE_WITH_IMM: the receiver's solicited event */
/* FLUSH only (any other opcode: -EINVAL): the placement type(s), at least one... */
#define TBP_WR_FLUSH_GLOBAL 0x2u
#define TBP_WR_FLUSH_PERSISTENT 0x4u
/* ...and the level: the whole MR named by rkey instead of raddr..raddr+len. */
#define TBP_WR_FLUSH_MR 0x8u

struct tbp_link;

/* Fill cfg with defaults (role initiator, no key); the caller then sets role and key. */
void tbp_config_default(struct tbp_config *cfg);
/* Bytes of memory a link with this config needs (0 if cfg is invalid). 8-byte aligned memory. */
size_t tbp_link_size(const struct tbp_config *cfg);
/* Initialise a link in mem. Returns 0 or -EINVAL. The env is copied. */
int tbp_link_init(struct tbp_link **out, void *mem, size_t mem_len,
		  const struct tbp_config *cfg, const struct tbp_env *env);
/* Complete everything outstanding with TBP_ERR_FLUSHED; after this only tbp_link_init is valid. */
void tbp_link_teardown(struct tbp_link *link);

/* Rails. max_frame: largest frame the rail carries (TBP_MIN_FRAME..TBP_MAX_FRAME). */
int tbp_rail_add(struct tbp_link *link, uint32_t rail, uint32_t weight, uint32_t max_frame,
		 uint32_t flags);
/*
 * tbp_rail_add flags. A DMA rail is a point-to-point DMA path between the two hosts (a USB4
 * ring pair): its host interface checks each frame's CRC and no third host can put frames
 * on it, so its frames carry neither the frame MAC nor the payload CRC, whatever the link
 * negotiated for its shared rails (both cost a pass over every payload byte). Frames that
 * do carry them are still checked. Both ends of a cable see the same kind of rail.
 */
#define TBP_RAIL_DMA 0x1u
/* Carrier lost: in-flight frames move to the survivors; the rail re-handshakes when it returns. */
int tbp_rail_down(struct tbp_link *link, uint32_t rail);
int tbp_rail_remove(struct tbp_link *link, uint32_t rail);

/* Queue pairs: the receive side only accepts messages for open QPs from their peer QP. */
int tbp_qp_open(struct tbp_link *link, uint32_t qpn, uint32_t remote_qpn);
/* Outstanding WRs of qpn complete with TBP_ERR_FLUSHED. The QPN is remembered as closed
 * (while its table slot is not needed) so the peer's messages to it get an error NAK. */
int tbp_qp_close(struct tbp_link *link, uint32_t qpn);
/* Set the transport attributes of an open QP. Returns 0, -ENOENT or -EINVAL (out of range). */
int tbp_qp_set_attr(struct tbp_link *link, uint32_t qpn, const struct tbp_qp_attr *attr);
/* IBA encodings in nanoseconds: local ACK timeout (0 = infinite -> 0) and the RNR timer table. */
uint64_t tbp_ack_timeout_ns(uint32_t timeout);
uint64_t tbp_rnr_timer_ns(uint32_t min_rnr_timer);

/* Post one WR. Returns 0, -ENOBUFS (max_msgs reached), -ENOENT (QP not open),
 * -EINVAL (bad opcode/length/flags, FLUSH without a placement type), -ENOTCONN (link failed), -EPIPE (the QP failed with a
 * transport error and is in the error state until closed). */
int tbp_post(struct tbp_link *link, const struct tbp_wr *wr);

/* Every received frame. Invalid frames are counted in stats and dropped. */
void tbp_rx(struct tbp_link *link, uint32_t rail, const void *frame, uint32_t len);
/* One piece of a received frame. */
struct tbp_rx_frag {
	const void *data;
	size_t len;
};
/*
 * A received frame that arrived in pieces (a nonlinear skb: its linear part, then its page
 * fragments): the frame is frags[0] followed by frags[1] ... frags[nfrags - 1], any of them
 * may be empty and none is assumed to hold the whole header. The data payload goes from the
 * pieces straight to its destination (one buf_write per piece it spans); only the header,
 * the MAC trailer and the small payloads of control frames are gathered when they straddle
 * pieces. tbp_rx is the one-piece case. The pieces are only read, during the call.
 */
void tbp_rx_frags(struct tbp_link *link, uint32_t rail, const struct tbp_rx_frag *frags,
		  uint32_t nfrags);
/*
 * True when the frame of the last tbp_rx call was proven to be the peer's and fresh (a frame
 * MAC with an unseen counter, or a handshake answer bound to our current nonces). Only such
 * a frame may teach the glue the peer's link-layer address.
 */
bool tbp_rx_authentic(const struct tbp_link *link);
/* Run timers and transmit what the window allows. Returns the absolute time (ns)
 * at which tbp_tick must be called again at the latest. */
uint64_t tbp_tick(struct tbp_link *link, uint64_t now_ns);

void tbp_get_stats(const struct tbp_link *link, struct tbp_stats *out);
uint32_t tbp_link_state(const struct tbp_link *link);
/* True when nothing is queued, in flight or being reassembled (used by tests). */
bool tbp_link_idle(const struct tbp_link *link);

/* ---- Wire codec (used by the core; public for tests and fuzzers) ---- */

/* Frame opcodes on the wire. */
enum tbp_wire_op {
	TBP_W_HELLO = 1,
	TBP_W_HELLO_ACK = 2,
	TBP_W_HELLO_CONFIRM = 3,
	TBP_W_KEEPALIVE = 4,
	TBP_W_ACK = 5,  /* payload: 0..TBP_SACK_MAX_RANGES SACK ranges (version 5) */
	TBP_W_NAK = 6,  /* per-QP negative ack, unsequenced; status = enum tbp_nak */
	TBP_W_NOP = 7, /* sequenced filler: a sequence number whose frame could not be built */
	TBP_W_SEND = 16,
	TBP_W_SEND_IMM = 17,
	TBP_W_WRITE = 18,
	TBP_W_WRITE_IMM = 19,
	TBP_W_READ_REQ = 20,
	TBP_W_READ_RESP = 21,
	TBP_W_MSG_ACK = 22,
	TBP_W_ATOMIC_REQ = 23,  /* imm: TBP_OP_ATOMIC_* or TBP_OP_FLUSH; payload: two le64
				 * operands (compare_add, swap; ATOMIC_WRITE: value, 0;
				 * FLUSH: len, TBP_WR_FLUSH_* flags) */
	TBP_W_ATOMIC_RESP = 24, /* payload: the original value (le64; 0 for ATOMIC_WRITE, FLUSH) */
	TBP_W_SEND_INV = 25,    /* a SEND; rkey: the key the receiver invalidates (version 4) */
};
#define TBP_ATOMIC_REQ_LEN 16u
#define TBP_ATOMIC_LEN 8u

/*
 * SACK ranges, the payload of an ACK frame: runs of frames received above the header's
 * cumulative ack, lowest first, each a le16 offset from ack and a le16 length (this core
 * sends the runs past its 64-bit sack bitmap, ack + 65 on). Every run is non-empty, above
 * ack, apart from the one before it by at least one missing frame, and inside the largest
 * window. 32 of them take 128 bytes: an ACK still fits the smallest rail frame
 * (TBP_MIN_FRAME) with its MAC trailer.
 */
#define TBP_SACK_RANGE_LEN 4u
#define TBP_SACK_MAX_RANGES 32u
struct tbp_sack_range {
	uint16_t off; /* first frame of the run: ack + off */
	uint16_t len; /* frames in the run */
};

/* NAK codes (status field of a NAK frame). */
enum tbp_nak {
	TBP_NAK_RNR = 1,       /* no receive posted: resend after imm microseconds */
	TBP_NAK_NOT_READY = 2, /* no such QP open (yet): resend after the sender's ACK timeout */
	TBP_NAK_QP_ERROR = 3,  /* the QP was closed or is in error: IB_WC_REM_OP_ERR */
};
#define TBP_NAK_MAX_DELAY_US 655360u /* largest RNR timer (IBA code 0) */

/* Header flags. */
#define TBP_F_SEQ 0x01u      /* seq is valid: the frame is reliable and must be acked */
#define TBP_F_PCSUM 0x02u    /* checksum covers the payload as well as the header */
#define TBP_F_LAST 0x04u     /* last fragment of a message (informational) */
#define TBP_F_MAC 0x08u      /* a TBP_MAC_TRAILER-byte trailer (counter, tag) follows the payload */
#define TBP_F_SOLICITED 0x10u /* SEND*, WRITE_IMM: the sender asked for a solicited event (IBA SE) */
#define TBP_F_ALL 0x1fu
#define TBP_MAC_TRAILER 16u  /* u64 frame counter + u64 SipHash-2-4 tag */

struct tbp_hdr {
	uint32_t magic;
	uint8_t version;
	uint8_t opcode;
	uint8_t flags;
	uint8_t rail;
	uint32_t session;
	uint32_t seq;
	uint32_t ack;      /* next sequence expected by the sender of this frame */
	uint32_t ssn;      /* per-QP receive-consuming message number (SEND*) */
	uint64_t sack;     /* bit i: seq ack+1+i was received */
	uint32_t dst_qpn;
	uint32_t src_qpn;
	uint32_t msn;      /* per-QP message sequence number */
	uint32_t rkey;
	uint64_t raddr;
	uint32_t msg_len;
	uint32_t frag_off;
	uint32_t imm;
	uint16_t payload_len;
	uint16_t status;   /* MSG_ACK status, NAK code, data frames: retry attempt; else zero */
	uint32_t csum;
	uint32_t reserved; /* must be zero */
};

/* Frame decode results (negative) used as drop reasons. */
enum tbp_decode_err {
	TBP_DEC_SHORT = -1,
	TBP_DEC_MAGIC = -2,
	TBP_DEC_CHECKSUM = -3,
	TBP_DEC_FIELD = -4,
};

/* CRC32C (Castagnoli), reflected, init/final xor 0xffffffff; crc = previous value (0 to start). */
uint32_t tbp_crc32c(uint32_t crc, const void *data, size_t len);
/* Write hdr into frame[0..TBP_HDR_LEN) and set hdr->csum. The payload must already be at
 * frame + TBP_HDR_LEN (it is covered by the checksum when TBP_F_PCSUM is set). */
void tbp_hdr_encode(void *frame, struct tbp_hdr *hdr);
/* Parse and validate a frame of len bytes; max_frame bounds the length. 0 or enum tbp_decode_err. */
int tbp_frame_decode(const void *frame, uint32_t len, uint32_t max_frame, struct tbp_hdr *hdr);
/* Write n (<= TBP_SACK_MAX_RANGES) ranges to payload; returns the bytes written. */
uint32_t tbp_sack_encode(void *payload, const struct tbp_sack_range *r, uint32_t n);
/* Parse and validate the len-byte range payload of an ACK into r (may be NULL: validate only).
 * Returns the number of ranges or TBP_DEC_FIELD. */
int tbp_sack_decode(const void *payload, uint32_t len, struct tbp_sack_range *r);

#endif /* TBP_H */
