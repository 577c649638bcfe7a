/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * tbp_internal.h - link state shared by the core's translation units.
 * Not part of the glue API: the kernel module must only use tbp.h.
 */
#ifndef TBP_INTERNAL_H
#define TBP_INTERNAL_H

#include "../include/tbp.h"

#define TBP_QPN_MASK 0xffffffu
#define TBP_STATUS_MAX 7u      /* highest status a MSG_ACK may carry */
#define TBP_MSG_LEN_LIMIT 0x80000000u
#define TBP_HELLO_LEN 96u
#define TBP_NONE 0xffffu       /* "no index" in 16-bit index fields */
#define TBP_MSN_HORIZON 0x100000u /* a message this far ahead of the next expected one is bogus */
#define TBP_FAST_RETX_GAP 3u   /* later frames acked on the same rail before a frame counts as lost */
#define TBP_SACK_BITS 64u
#define TBP_RAIL_NONCE_LEN 8u  /* per rail handshake attempt, on top of the link nonces */
/* Counters this far behind the newest one are replays; frames overtaken by that many on
 * other rails are lost instead and come back by retransmission (with a new counter). */
#define TBP_REPLAY_BITS 4096u
/* Handshake frames whose MAC one rail verifies per hello_retry_ns: bounds a forged flood. */
#define TBP_HS_BUDGET 16u
/* Sequence spaces start just below the 32-bit wrap so every test crosses it early. */
#define TBP_SEQ_START 0xffffff00u
#define TBP_MSN_START 0xfffffff0u

/* Messages the responder sends back (READ and atomic responses): they belong to no WR of
 * their QP and have their own attempt numbers. */
static inline bool tbp_is_resp(uint8_t op)
{
	return op == TBP_W_READ_RESP || op == TBP_W_ATOMIC_RESP;
}

/* Sequence arithmetic modulo 2^32. */
static inline int32_t seq_diff(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b);
}

/* Retry attempts are 16 bits on the wire (the status field of data frames). */
static inline int16_t attempt_diff(uint16_t a, uint16_t b)
{
	return (int16_t)(uint16_t)(a - b);
}

enum txslot_state {
	TX_FREE = 0,
	TX_QUEUED,   /* has a sequence number, waiting for a rail (first send or resend) */
	TX_INFLIGHT, /* sent, waiting for an ack */
	TX_ACKED,    /* acked, waiting for the window base to pass */
};

/* One sequenced frame of the send window. The frame bytes are rebuilt on every (re)send. */
struct tbp_txslot {
	uint8_t state;
	uint8_t op;           /* enum tbp_wire_op */
	uint8_t rail;
	uint8_t sent_once;
	uint8_t plan;         /* first copy cut for rail plan - 1, not sent yet (0: none) */
	uint16_t retx;        /* resends so far */
	uint16_t backoff;     /* timer expiries so far: its RTO doubles with each (a fast
			       * retransmit says the path works, so it does not back off) */
	uint16_t msg;         /* send message slot (data, READ_REQ, READ_RESP) */
	uint16_t attempt;     /* retry attempt the frame belongs to; a stale one goes out as NOP */
	uint16_t timed_out;   /* its retransmission timer expired (not a fast retransmit) */
	uint32_t payload_len;
	uint32_t frag_off;
	uint64_t sent_ns;     /* the latest transmission */
	uint64_t first_sent_ns;
	uint64_t rail_tx_no;  /* value of the rail's transmit counter when sent */
	/* MSG_ACK frames only */
	uint32_t ack_dst_qpn;
	uint32_t ack_src_qpn;
	uint32_t ack_msn;
	uint32_t ack_errs;
	uint16_t ack_status;
};

enum smsg_state { SM_FREE = 0, SM_ACTIVE };

/* A message this side sends: a posted WR, or a READ response to the peer. */
struct tbp_smsg {
	uint8_t state;
	uint8_t op;            /* wire op: SEND, SEND_IMM, SEND_INV, WRITE, WRITE_IMM, READ_REQ, READ_RESP */
	uint8_t done;          /* outcome known (MSG_ACK / READ data / error) */
	uint8_t all_queued;    /* every fragment has a sequence number */
	uint16_t status;
	uint16_t qp;           /* QP slot; READ_RESP: the responder's QP slot */
	uint16_t next;         /* next in the QP's post-order list, or the sendq */
	uint16_t sendq_next;
	uint32_t msn;
	uint32_t ssn;
	uint32_t len;
	uint32_t imm;
	uint32_t rkey;
	uint32_t next_off;     /* next byte to put into a fragment */
	uint32_t frags_unacked;/* sequenced frames of this message not yet acked */
	uint32_t read_got;     /* RDMA_READ requester: response bytes placed */
	uint8_t read_seen;     /* at least one response fragment arrived */
	uint8_t orphan;        /* its QP was closed: finish the frames, report nothing */
	uint16_t attempt;      /* READ_RESP: current attempt; READ_REQ: response attempt accepted */
	uint8_t solicited;     /* every frame carries TBP_F_SOLICITED */
	uint64_t raddr;
	uint64_t wr_id;
	uint64_t local_buf;
	/* ATOMIC_REQ: the two operands (tbp_atomic_prepare); ATOMIC_RESP: [0] is the original
	 * value */
	uint64_t atomic[2];
};

enum rmsg_state { RM_FREE = 0, RM_PLACEHOLDER, RM_ACTIVE, RM_COMPLETE };

/* A message this side receives, being reassembled. */
struct tbp_rmsg {
	uint8_t state;
	uint8_t op;
	uint8_t claimed;       /* holds a receive WQE */
	uint8_t solicited;     /* its frames carried TBP_F_SOLICITED */
	uint16_t qp;
	uint16_t hnext;        /* hash chain / free list */
	uint16_t pad1;
	uint16_t status;
	uint32_t msn;
	uint32_t ssn;
	uint32_t len;
	uint32_t got;
	uint32_t imm;
	uint32_t rkey;
	uint32_t capacity;
	uint32_t placed;       /* bytes written to the target (for the rewound-bytes count) */
	uint64_t raddr;
	uint64_t recv_handle;
	uint64_t atomic[2];    /* ATOMIC_REQ operands (FLUSH: len, TBP_WR_FLUSH_* flags) */
};

enum qp_state { QP_FREE = 0, QP_OPEN, QP_ERROR, QP_CLOSED /* tombstone: hashed, slot reusable */ };

/*
 * FIFOs of QPs that need the link's attention, linked through tbp_qp.qnext[]: the link finds
 * them in O(1) instead of scanning its whole QP table (1024 slots in the module) per tick.
 */
enum tbp_qp_list {
	TBP_QL_ACK,     /* owes the peer a MSG_ACK */
	TBP_QL_STALLED, /* an in-order completion waits for a free resource */
	TBP_QL_COUNT
};

struct tbp_qp_fifo {
	uint16_t head, tail;   /* QP indexes, TBP_NONE when empty */
	uint32_t len;
};

struct tbp_qp {
	uint16_t hnext;        /* QPN hash chain */
	uint8_t used;          /* QP_OPEN or QP_ERROR: opened by the owner and not closed */
	uint8_t on_list;       /* bit (1 << enum tbp_qp_list) per FIFO the QP is on */
	uint8_t err_pending;   /* an error MSG_ACK waits for a sequence number */
	uint8_t ack_pending;   /* a cumulative MSG_ACK waits for a sequence number */
	uint32_t qpn;
	uint32_t rqpn;
	/* send side */
	uint32_t send_msn;     /* next MSN to assign */
	uint32_t send_ssn;     /* next SSN to assign */
	uint16_t head;         /* oldest outstanding posted WR */
	uint16_t tail;
	uint32_t peer_errs;    /* error MSG_ACKs 1..peer_errs all received */
	uint64_t err_bits;     /* bit i: error report peer_errs+1+i received */
	uint32_t ok_msn;       /* stashed cumulative ack: every MSN before ok_msn succeeded... */
	uint32_t ok_errs;      /* ...once peer_errs reaches this */
	uint8_t ok_valid;
	uint8_t state;         /* enum qp_state */
	uint16_t send_attempt; /* attempt number of our frames; bumped by every rewind */
	uint64_t hold_until;   /* do not start new fragments before this time (RNR, not ready) */
	uint64_t progress_ns;  /* last sign of life from the peer QP (ACK timer base) */
	uint64_t timeout_ns;   /* ACK timeout, 0 = infinite */
	uint64_t rnr_delay_ns; /* what our RNR NAKs ask the peer to wait */
	uint8_t retry_cnt, retries_left, rnr_retry, rnr_left;
	uint16_t rx_attempt;   /* attempt of the peer's frames we accept; older ones are stale */
	/* Retries the ACK timer took since the link last delivered one of our frames: the
	 * retry count is for timeouts without forward progress, so delivery gives them back.
	 * ("Not ready" NAKs also take retries; only the peer QP's answer returns those.) */
	uint8_t timer_retries;
	uint8_t pad3;
	uint32_t tseq;         /* order of tombstones: the oldest is reused first */
	/* receive side */
	uint32_t rx_msn;       /* next MSN to complete in order */
	uint32_t rx_ssn_claimed; /* next SSN that needs a receive WQE */
	uint32_t ack_msn;      /* cumulative MSG_ACK value to send (all < ack_msn handled) */
	uint32_t errs_sent;    /* errors reported so far */
	uint32_t err_msn;
	uint16_t err_status;
	uint16_t qnext[TBP_QL_COUNT]; /* next QP on each FIFO */
};

enum rail_state {
	RAIL_ABSENT = 0,
	RAIL_HELLO,    /* handshaking (new, or carrier lost and waiting to come back) */
	RAIL_UP,
};

struct tbp_rail {
	uint8_t state;
	uint8_t peer_rail;
	uint8_t busy;          /* xmit said full during this transmit round */
	uint8_t confirm_owed;  /* initiator: answer the next HELLO_ACK with CONFIRM */
	uint8_t rto_probe;     /* a timed-out frame was resent: the rail's other first copies
				* wait (retransmit_timers) until the peer answers */
	uint8_t dma;           /* TBP_RAIL_DMA: no frame MAC, no payload CRC on this rail */
	uint32_t weight;
	uint32_t max_frame;    /* ours, then min(ours, peer's) once up */
	uint32_t inflight;
	uint32_t planned;      /* first copies cut for this rail (sized for it), not sent yet */
	uint64_t tx_no;        /* frames sent on this rail */
	uint64_t acked_tx_no;  /* highest tx_no acked on this rail */
	uint64_t last_rx_ns;
	uint64_t last_tx_ns;
	uint64_t hello_ns;     /* last handshake frame sent */
	uint64_t probe_ns;     /* when the latest probe was requeued */
	uint64_t grace_until;  /* held first copies are not resent before this */
	/* Congestion window (tbp_link.c, rail_rtt_signal): data frames in flight allowed. */
	uint32_t cwnd;
	uint32_t cwnd_acc;     /* frames acked toward the next one-frame increase */
	uint8_t slow_start;    /* no reduction yet: grow by every frame acked */
	uint64_t min_rtt;      /* smallest round trip of this rail's first copies ... */
	uint64_t min_rtt_ns;   /* ... measured since then (refreshed every TBP_MIN_RTT_WINDOW_NS) */
	uint64_t cwnd_hold_until; /* one reduction per round trip */
	uint64_t sig_sent_ns;  /* newest first copy the ack being processed covered here */
	uint32_t sig_frames;   /* ... and how many of this rail's frames it covered */
	/* Pacing (tbp_pace.c): first copies leave no faster than one per pace_ivl. */
	uint64_t srtt;         /* smoothed round trip of this rail's signals (0: none yet) */
	uint64_t pace_ivl;     /* ns between paced frames (0: not paced) */
	uint64_t pace_slack;   /* how far the clock may trail the present (a burst) */
	uint64_t pace_ns;      /* the rail's pacing clock: when its next paced frame is due */
};

/* Handshake state of one rail (tbp_hello.c). */
struct tbp_rail_hs {
	uint8_t hn_mine[TBP_RAIL_NONCE_LEN];  /* initiator: this attempt's rail nonce; responder: the pending answer's */
	uint8_t hn_peer[TBP_RAIL_NONCE_LEN];  /* responder: rail nonce of the HELLO being answered */
	uint8_t pend_nonce[TBP_NONCE_LEN];    /* responder: link nonce of that HELLO */
	uint8_t pending;                      /* responder: an answered HELLO waits for its CONFIRM */
	uint8_t peer_rail;                    /* responder: that HELLO's rail id */
	uint16_t budget;                      /* handshake MACs verified in the current period */
	uint64_t budget_start;
};

/* NH key words: one per 4 bytes of the longest frame, plus the Toeplitz shift of the 2nd pass. */
#define TBP_NH_WORDS (TBP_MAX_FRAME / 4 + 4)

/* Frame authentication and handshake freshness (tbp_auth.c, tbp_hello.c). Wiped on teardown. */
struct tbp_auth {
	uint64_t tx_key[2];     /* SipHash key (final PRF) of frames we send */
	uint64_t rx_key[2];     /* ... and of frames the peer sends */
	uint32_t tx_nh[TBP_NH_WORDS]; /* NH hash keys, per direction */
	uint32_t rx_nh[TBP_NH_WORDS];
	uint64_t tx_ctr;        /* last frame counter used */
	uint64_t rx_top;        /* highest authentic counter received */
	uint64_t rx_bits[TBP_REPLAY_BITS / 64]; /* bit c % TBP_REPLAY_BITS: counter c seen */
	uint8_t keyed;          /* keys derived (peer known) */
	uint8_t rx_authentic;   /* verdict of the last tbp_rx call */
	struct tbp_rail_hs hs[TBP_MAX_RAILS];
};

struct tbp_link {
	struct tbp_config cfg;
	struct tbp_env env;
	struct tbp_stats st;
	uint32_t state;
	uint32_t caps;          /* negotiated */
	uint32_t session;
	uint8_t have_peer;
	uint8_t nonce[TBP_NONCE_LEN];
	uint8_t peer_nonce[TBP_NONCE_LEN];
	uint64_t now;
	uint64_t down_since;
	/* send window */
	uint32_t snd_una;
	uint32_t snd_nxt;
	uint32_t queued;        /* slots in TX_QUEUED */
	uint32_t q_first;       /* no slot below this sequence number is TX_QUEUED */
	uint32_t win_mask;
	uint64_t srtt;
	uint64_t rttvar;
	uint64_t rto;
	/* A timeout that an ack then proved wrong (the frame was only late) sets a floor under
	 * the RTO: the delay that fooled it, plus a quarter. It holds for a second after the
	 * last such timeout and then halves every second (tbp_rtt_sample). */
	uint64_t rto_floor;
	uint64_t rto_floor_ns;
	uint64_t rtx_next;      /* earliest retransmission timer: 0 unknown, ~0 none */
	uint64_t rnr_next;      /* earliest end of a QP's hold, 0 none */
	uint64_t qp_timer_next; /* no QP's ACK timer expires before this (~0: none armed) */
	uint32_t tomb_seq;
	/* receive window */
	uint32_t rcv_nxt;
	uint32_t ack_owed;
	uint32_t rx_ooo;        /* frames received beyond rcv_nxt (sack needed) */
	uint64_t ack_deadline;  /* 0: none */
	uint32_t rcv_hi;        /* one past the highest sequence number received */
	uint32_t sack_owed;     /* frames received past the bitmap since the last SACK ranges */
	uint64_t hole_ns;       /* since when the cumulative ack is held by its current hole */
	uint64_t last_sack_tx_ns; /* last ACK that carried SACK ranges */
	/* message layer */
	uint16_t sendq_head;
	uint16_t sendq_tail;
	struct tbp_qp_fifo qlist[TBP_QL_COUNT];
	uint16_t smsg_free;     /* free lists */
	uint16_t rmsg_free;
	uint64_t last_ack_tx_ns;/* last frame that carried our cumulative ack */
	uint32_t smsgs_used;
	uint32_t rmsgs_used;
	struct tbp_rail rails[TBP_MAX_RAILS];
	/* tables, carved out of the caller's memory */
	struct tbp_txslot *tx;
	uint64_t *rx_bits;
	struct tbp_smsg *smsgs;
	struct tbp_rmsg *rmsgs;
	struct tbp_qp *qps;
	uint16_t *rbuckets;     /* hash of reassembly slots by (QP, MSN) or (QP, SSN) */
	uint32_t rbucket_mask;
	uint16_t *qbuckets;     /* hash of open QPs by QPN */
	uint32_t qbucket_mask;
	uint32_t open_qps;
	uint32_t rmsg_slots;    /* max_rx_msgs + max_qps */
	uint8_t *scratch;       /* one frame being built */
	struct tbp_auth auth;
};

static inline uint32_t tbp_qhash(const struct tbp_link *l, uint32_t qpn)
{
	uint32_t x = qpn * 0x9e3779b1u;

	return (x ^ (x >> 16)) & l->qbucket_mask;
}

static inline uint16_t tbp_qp_index(const struct tbp_link *l, const struct tbp_qp *qp)
{
	return (uint16_t)(qp - l->qps);
}

/* tbp_link.c */
uint32_t tbp_rails_up(const struct tbp_link *l);
/* The link is beyond repair: fail its messages with status and tell the owner. */
void tbp_link_fail(struct tbp_link *l, uint32_t status);
void tbp_rail_came_up(struct tbp_link *l, uint32_t r);
void tbp_rtt_sample(struct tbp_link *l, uint64_t rtt);

/* tbp_pace.c */
/* Forget the rail's round trip and rate (it came up again): no pacing until a sample. */
void tbp_pace_reset(struct tbp_rail *rl);
/* A round-trip signal of rail rl (rail_rtt_signal) arrived. */
void tbp_pace_rtt(struct tbp_rail *rl, uint64_t rtt);
/* Recompute the rail's interval after its cwnd or round trip changed. */
void tbp_pace_update(const struct tbp_link *l, struct tbp_rail *rl);
/* A frame left on rl: a paced one, or a resend that is never held but takes its turn. */
void tbp_pace_sent(const struct tbp_link *l, struct tbp_rail *rl);
/* The earliest time a rail that pacing alone holds back may send again, if before deadline. */
uint64_t tbp_pace_deadline(const struct tbp_link *l, uint64_t deadline);

/* When the rail's next paced frame is due: its clock, or (after a pause) now less the
 * slack, so that an idle rail may send a burst but not more. */
static inline uint64_t tbp_pace_base(const struct tbp_link *l, const struct tbp_rail *rl)
{
	return rl->pace_ns + rl->pace_slack >= l->now ? rl->pace_ns : l->now - rl->pace_slack;
}

/* The pacing clock lets rail rl send one more frame now, after the planned ones. Inline: the
 * scheduler asks it of every rail for every frame. */
static inline bool tbp_pace_allows(const struct tbp_link *l, const struct tbp_rail *rl,
				   uint32_t planned)
{
	return !rl->pace_ivl || tbp_pace_base(l, rl) + planned * rl->pace_ivl <= l->now;
}

/* tbp_hello.c */
void tbp_send_hello(struct tbp_link *l, uint32_t rail, uint8_t op);
void tbp_rx_hello(struct tbp_link *l, uint32_t rail, const struct tbp_hdr *h, const uint8_t *p);
/* Payload of a frame cut for rail r (room for the MAC trailer kept: it may be resent on a
 * MACed rail). */
uint32_t tbp_rail_payload(const struct tbp_link *l, uint32_t r);
/* The rail the next first copy is cut for, counted as planned there; TBP_MAX_RAILS when no
 * rail's congestion window has room (nothing is cut until acks make some). */
uint32_t tbp_plan_rail(struct tbp_link *l);
int tbp_seq_alloc(struct tbp_link *l, uint8_t op, uint16_t msg, uint32_t off, uint32_t plen,
		  struct tbp_txslot **out);
void tbp_push(struct tbp_link *l);
void tbp_send_unsequenced(struct tbp_link *l, uint32_t rail, uint8_t op, uint32_t dst_qpn,
			  uint32_t src_qpn);
/* Unsequenced per-QP NAK (see enum tbp_nak). */
void tbp_send_nak(struct tbp_link *l, uint32_t dst_qpn, uint32_t src_qpn, uint32_t msn,
		  uint16_t code, uint16_t attempt, uint32_t delay_us);
/* True when the peer should hear our ack now (rate limit of ACK and MSG_ACK frames). */
bool tbp_ack_due(const struct tbp_link *l);
void tbp_msg_init(struct tbp_link *l);

/* tbp_atomic.c (also ATOMIC_WRITE and FLUSH, which travel as ATOMIC_REQ / ATOMIC_RESP) */
/* Requester: flags and length of a WR whose wire op is ATOMIC_REQ are acceptable. */
bool tbp_atomic_wr_valid(const struct tbp_wr *wr);
/* Requester: the request's wire length, kind (imm) and operands from the WR. */
void tbp_atomic_prepare(struct tbp_smsg *m, const struct tbp_wr *wr);
/* Responder: the request's only frame arrived as the new message r: take its operands, run
 * the verbs checks (access, bounds, alignment) into r->status and mark r complete. */
void tbp_atomic_rx_req(struct tbp_link *l, const struct tbp_qp *qp, struct tbp_rmsg *r,
		       const uint8_t *payload);
/* Responder, in MSN order: execute r once and queue its response. False: no slot (stall). */
bool tbp_atomic_respond(struct tbp_link *l, struct tbp_qp *qp, struct tbp_rmsg *r);
/* Requester: the original value arrived. */
void tbp_atomic_rx_resp(struct tbp_link *l, struct tbp_qp *qp, const struct tbp_hdr *h,
			const uint8_t *payload);
void tbp_atomic_put(uint8_t *p, const uint64_t *v, uint32_t n);
void tbp_atomic_get(const uint8_t *p, uint64_t *v, uint32_t n);

/* tbp_qp.c */
void tbp_qp_arm_timer(struct tbp_link *l, const struct tbp_qp *qp);
/* Append qp to a FIFO unless it is on it already. */
void tbp_qlist_add(struct tbp_link *l, enum tbp_qp_list q, struct tbp_qp *qp);
/* The oldest QP on a FIFO, or NULL. */
struct tbp_qp *tbp_qlist_first(struct tbp_link *l, enum tbp_qp_list q);
/* Take qp off a FIFO if it is on it: O(1) at the head, a walk elsewhere (QP close only). */
void tbp_qlist_remove(struct tbp_link *l, enum tbp_qp_list q, struct tbp_qp *qp);
void tbp_qlist_clear(struct tbp_link *l, enum tbp_qp_list q);

/* tbp_auth.c */
/* Compare n bytes in time independent of their contents; true when equal. */
bool tbp_ct_equal(const void *a, const void *b, uint32_t n);
uint64_t tbp_siphash24(const uint64_t key[2], const uint8_t *msg, uint32_t len);
/* Trailer bytes on every frame this link sends after the handshake. */
uint32_t tbp_auth_overhead(const struct tbp_link *l);
/* frame holds a frame of len bytes whose last tbp_auth_overhead() bytes are free: fill in
 * the counter and tag. */
void tbp_auth_seal(struct tbp_link *l, uint8_t *frame, uint32_t len);
/* The 64-bit tag of msg[0, len) (header, payload, counter) under one direction's keys. */
uint64_t tbp_frame_tag(const uint64_t prf_key[2], const uint32_t *nh_key, const uint8_t *msg,
		       uint32_t len);
/* NH of a message given in pieces, then the tag (tbp_frame_tag in steps). */
struct tbp_nh {
	const uint32_t *k;  /* key words of the next 8-byte block */
	uint64_t a, b;      /* the two NH sums */
	uint32_t len;       /* bytes taken */
	uint8_t part[8];    /* the first len % 8 bytes of the next block */
};
void tbp_nh_init(struct tbp_nh *s, const uint32_t *nh_key);
void tbp_nh_update(struct tbp_nh *s, const uint8_t *p, uint32_t n);
/* ctr: the message's last 8 bytes (the frame counter). */
uint64_t tbp_nh_tag(struct tbp_nh *s, const uint64_t prf_key[2], const uint8_t ctr[8]);
struct tbp_rxf;
/* Check a decoded non-handshake frame; false (counted) when it is forged or replayed. */
bool tbp_auth_rx(struct tbp_link *l, bool dma_rail, const struct tbp_rxf *f,
		 const struct tbp_hdr *h);
/* Both direction keys from the pairing key and both link nonces. */
void tbp_auth_derive(struct tbp_link *l, const uint8_t *nonce_i, const uint8_t *nonce_r);
/* Zero n bytes so that the compiler cannot drop the stores. */
void tbp_auth_wipe_buf(void *p, size_t n);
/* Overwrite every secret the link holds (pairing key, derived keys, nonces). */
void tbp_auth_wipe(struct tbp_link *l);
#ifdef TBP_TEST_HOOKS
extern uint32_t tbp_ct_calls; /* unit tests: proves MACs are compared by tbp_ct_equal */
#endif

/* tbp_frags.c: a received frame in the pieces it arrived in (tbp_rx_frags) */
#define TBP_RX_SMALL 128u /* largest control payload: SACK ranges (HELLO 96, atomics 16) */
struct tbp_rxf {
	const struct tbp_rx_frag *frag;
	uint32_t nfrag;
	uint32_t len;           /* bytes in all pieces; TBP_MAX_FRAME + 1 for anything longer */
	const uint8_t *hdr;     /* the header in one piece (in place or in hbuf); NULL: short */
	/* Set by tbp_rxf_decode: the payload in one piece (in place, or a control payload in
	 * pbuf), or NULL for a data payload spread over pieces (tbp_rxf_write_payload). */
	const uint8_t *payload;
	uint8_t hbuf[TBP_HDR_LEN];
	uint8_t pbuf[TBP_RX_SMALL];
};
/* A walk over bytes [off, off + len) of a frame, one piece at a time. */
struct tbp_rxf_pos {
	uint32_t i;    /* piece */
	size_t skip;   /* bytes of piece i before the walk's next byte */
	uint32_t left; /* bytes still to walk */
};
/* Total length and header of the frame frag[0..nfrag). */
void tbp_rxf_init(struct tbp_rxf *f, const struct tbp_rx_frag *frag, uint32_t nfrag);
void tbp_rxf_seek(const struct tbp_rxf *f, uint32_t off, uint32_t len, struct tbp_rxf_pos *pos);
/* The next piece of the walk and its length in *n, or NULL at its end. */
const uint8_t *tbp_rxf_next(const struct tbp_rxf *f, struct tbp_rxf_pos *pos, uint32_t *n);
/* Bytes [off, off + len) where they are when they lie in one piece, else NULL. */
const uint8_t *tbp_rxf_span(const struct tbp_rxf *f, uint32_t off, uint32_t len);
/* Gather bytes [off, off + len) into dst (small things only: headers, trailers). */
void tbp_rxf_copy(const struct tbp_rxf *f, uint32_t off, void *dst, uint32_t len);
uint32_t tbp_rxf_crc32c(uint32_t crc, const struct tbp_rxf *f, uint32_t off, uint32_t len);
/* Place the first len bytes of the frame's payload at byte off of buf: buf_write's result. */
int tbp_rxf_write_payload(struct tbp_link *l, const struct tbp_buf *buf, uint64_t off,
			  const struct tbp_rxf *f, uint32_t len);
/* tbp_wire.c: tbp_frame_decode of f; also sets f->payload. */
int tbp_rxf_decode(struct tbp_rxf *f, uint32_t max_frame, struct tbp_hdr *h);

/* tbp_msg.c */
struct tbp_smsg *tbp_smsg_alloc(struct tbp_link *l);
/* The posted WR of qp with this MSN, or NULL. */
struct tbp_smsg *tbp_find_posted(struct tbp_link *l, struct tbp_qp *qp, uint32_t msn);
/* Report the QP's finished WRs in post order. */
void tbp_sender_complete(struct tbp_link *l, struct tbp_qp *qp);
void tbp_sendq_append(struct tbp_link *l, struct tbp_smsg *m);
/* Unlinks the messages drop(m, qi) picks from the send queue; the rest keep their order. */
void tbp_sendq_drop(struct tbp_link *l, bool (*drop)(const struct tbp_smsg *m, uint16_t qi),
		    uint16_t qi);
void tbp_smsg_free(struct tbp_link *l, struct tbp_smsg *m);
void tbp_rmsg_free(struct tbp_link *l, struct tbp_rmsg *r);
/* An open QP (used), or NULL. */
struct tbp_qp *tbp_qp_find(struct tbp_link *l, uint32_t qpn);
/* Any hashed QP: open, in error, or a closed tombstone. */
struct tbp_qp *tbp_qp_lookup(struct tbp_link *l, uint32_t qpn);
/* Fill the header fields of a sequenced frame and write its payload at payload; returns 0
 * when it must go out as a NOP (the local copy failed: the message is then completed with an
 * error; or its message is gone). */
uint32_t tbp_build_seq_frame(struct tbp_link *l, struct tbp_txslot *s, struct tbp_hdr *h,
			     uint8_t *payload);
void tbp_msg_frame_acked(struct tbp_link *l, struct tbp_txslot *s);
/* Returns true if the frame is accepted (counts as received), false if refused. */
bool tbp_msg_rx(struct tbp_link *l, const struct tbp_hdr *h, const struct tbp_rxf *f);
void tbp_msg_nak(struct tbp_link *l, const struct tbp_hdr *h);
/* The slot's fragment fits no rail that is up: send it as NOP, resend its bytes smaller. */
void tbp_msg_recut(struct tbp_link *l, struct tbp_txslot *s);
/* Resend every unfinished message of qp (from msn on, if from_msn); hold it until hold_ns. */
void tbp_qp_rewind(struct tbp_link *l, struct tbp_qp *qp, bool from_msn, uint32_t msn,
		   uint64_t hold_ns);
/* A transport error: the first unfinished WR completes with status, the rest flush. */
void tbp_qp_fail(struct tbp_link *l, struct tbp_qp *qp, uint32_t status);
/* Run the QPs' ACK timers; returns the next deadline. */
uint64_t tbp_msg_qp_timers(struct tbp_link *l, uint64_t deadline);
/* Give sequence numbers to control frames and new fragments while the window allows. */
void tbp_msg_fill_window(struct tbp_link *l);
void tbp_msg_retry_stalled(struct tbp_link *l);
void tbp_msg_fail_all(struct tbp_link *l, uint32_t status);
uint64_t tbp_msg_next_deadline(struct tbp_link *l, uint64_t deadline);

#endif /* TBP_INTERNAL_H */
