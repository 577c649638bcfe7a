/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * tbrdma: a software RDMA device carried by the tbrdma protocol core (driver/proto) over
 * Ethernet rails (ethertype 0x88B5) and, on USB4 hardware, Thunderbolt XDomain rails.
 */
#ifndef TBRDMA_H
#define TBRDMA_H

#include <linux/configfs.h>
#include <linux/etherdevice.h>
#include <linux/hrtimer.h>
#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/netdevice.h>
#include <linux/spinlock.h>
#include <linux/workqueue.h>
#include <linux/xarray.h>
#include <rdma/ib_verbs.h>
#include <rdma/ib_umem.h>

#include "compat.h"
#include "tbp_module_config.h"
#include "tbrdma-abi.h"

#define TBRDMA_ETHERTYPE	0x88B5
#define TBRDMA_MAX_RAILS	8
#define TBRDMA_KEY_LEN		32
#define TBRDMA_MAX_SGE		8
#define TBRDMA_MAX_INLINE	256	/* bytes of IB_SEND_INLINE data per WR */
#define TBRDMA_MAX_QP		TBP_MODULE_MAX_QPS
#define TBRDMA_MAX_QP_WR	16384	/* as rxe; UCX ud_verbs asks for 4096 receives */
#define TBRDMA_MAX_CQE		16384
#define TBRDMA_MAX_CQ		4096
#define TBRDMA_MAX_MR		65536
#define TBRDMA_MAX_PD		4096
#define TBRDMA_MAX_SRQ		1024
#define TBRDMA_MAX_SRQ_WR	16384
/* WQEs a QP attached to an SRQ may hold taken from it at once (its private ring) */
#define TBRDMA_SRQ_QP_WQES	256
#define TBRDMA_MAX_MR_SIZE	(1ULL << 32)
#define TBRDMA_MAX_MSG_SIZE	(1U << 31)
#define TBRDMA_GSI_QPN		1
#define TBRDMA_FIRST_QPN	16
#define TBRDMA_MAX_QPN		0xffffff
/* GSI datagrams carry one MAD (IB_MGMT_MAD_SIZE); ib_mad's receive buffers are GRH + MAD. */
#define TBRDMA_GSI_MAX_MAD	256
#define TBRDMA_GSI_MIN_MAD	24	/* a MAD is at least its common header */
#define TBRDMA_GSI_SLOTS	16	/* datagrams the core may reassemble at once on QP1 */
#define TBRDMA_GSI_MAGIC	0x31475354	/* "TSG1" little-endian on the wire */
#define TBRDMA_MAX_AH		16384
/* Multicast attachments (ud.c): UD QPs of this device joined to a group, all groups. */
#define TBRDMA_MAX_MCAST_ATTACH	4096
#define TBRDMA_MAX_MCAST_QP_ATTACH 64	/* QPs per group */
/*
 * UD datagrams of every UD QP travel on one core QP pair per link, 2 <-> 2 (below the first
 * QPN a consumer gets), each behind a struct tbrdma_ud_hdr naming the QPs (ud.c).
 */
#define TBRDMA_UD_CHAN_QPN	2
#define TBRDMA_UD_MAGIC		0x31555354	/* "TSU1" little-endian on the wire */
#define TBRDMA_UD_MTU		4096		/* the port's active MTU (query_port) */
#define TBRDMA_UD_SLOTS		16		/* datagrams the core may reassemble at once */

/* A core receive handle: QPN, generation of the slot, slot index. Never 0 (QPN >= 1). */
#define TBRDMA_RECV_HANDLE(qpn, gen, slot) (((u64)(qpn) << 32) | ((u64)(gen) << 16) | (slot))

/* "tb:" + the peer host's UUID + "@" + the XDomain's name + "/" + the ring pair */
#define TBRDMA_RAIL_NAME_LEN	64

struct tbrdma_dev;
struct tbp_link;
struct crypto_shash;
struct tbrdma_tb_pair;

enum tbrdma_rail_kind {
	TBRDMA_RAIL_ETH,
	TBRDMA_RAIL_TB,
};

struct tbrdma_rail {
	struct tbrdma_dev *tdev;
	enum tbrdma_rail_kind kind;
	u8 id;
	bool in_use;
	struct net_device *netdev;		/* TBRDMA_RAIL_ETH */
	struct tbrdma_tb_pair *tb;		/* TBRDMA_RAIL_TB (holds a reference) */
	/* Embedded so the receive handler finds its rail without a global lookup. */
	struct packet_type ptype;
	/* Learned from frames the core authenticated as fresh; broadcast until then. */
	u8 peer_mac[ETH_ALEN];
	bool peer_mac_known;
	bool core_added;		/* tbp_rail_add() succeeded on the current link */
	u64 tx_frames, rx_frames, tx_busy;
};

struct tbrdma_pd {
	struct ib_pd ibpd;
};

struct tbrdma_mw {
	struct ib_mw ibmw;
	struct tbrdma_mr *win;		/* its entry in the key table, freed after RCU */
};

/* Address handles (ah.c): everything a datagram header needs, copied at creation. */
struct tbrdma_ah {
	struct ib_ah ibah;
	union ib_gid sgid;
	union ib_gid dgid;
	u32 flow_label;
	u8 traffic_class;
	u8 hop_limit;
	u8 sgid_index;		/* for query_ah */
	u8 sl;
	u8 static_rate;
	u8 dmac[ETH_ALEN];
};

/*
 * Wire header in front of every GSI datagram; the datagram travels as a core SEND on the QP
 * pair 1 <-> 1 (the link has exactly one peer). The receiver validates every field and turns
 * it into the GRH a RoCEv2 device would deliver. Little-endian like the core's own header.
 */
struct tbrdma_gsi_hdr {
	__le32 magic;
	__le32 src_qpn;
	__le32 qkey;
	__le16 pkey;
	u8 traffic_class;
	u8 hop_limit;
	__le32 flow_label;
	u8 sgid[16];
	u8 dgid[16];
} __packed;

#define TBRDMA_GSI_DGRAM_MAX	(sizeof(struct tbrdma_gsi_hdr) + TBRDMA_GSI_MAX_MAD)

/*
 * Wire header in front of every UD datagram on the core QP pair TBRDMA_UD_CHAN_QPN (ud.c):
 * the QP1 header's fields plus the destination QPN, immediate data and flags. Little-endian.
 */
struct tbrdma_ud_hdr {
	__le32 magic;
	__le32 src_qpn;
	__le32 dst_qpn;
	__le32 qkey;
	__le32 imm;
	__le16 pkey;
	u8 traffic_class;
	u8 hop_limit;
	__le32 flow_label;
	u8 flags;		/* TBRDMA_UD_F_* */
	u8 reserved[3];		/* zero */
	u8 sgid[16];
	u8 dgid[16];
} __packed;

#define TBRDMA_UD_F_IMM		0x1
#define TBRDMA_UD_F_SOLICITED	0x2
#define TBRDMA_UD_DGRAM_MAX	(sizeof(struct tbrdma_ud_hdr) + TBRDMA_UD_MTU)

/* One datagram of the UD channel being reassembled by the core (owned by tdev->lock). */
struct tbrdma_ud_slot {
	bool busy;
	u16 generation;
	u8 data[TBRDMA_UD_DGRAM_MAX];
};

/*
 * Keys (verbs.c): a user or DMA MR has two random keys with bit 31 clear, each its own entry
 * of tdev->mrs. A fast-registration MR (IB_MR_TYPE_MEM_REG, mr.c) has lkey == rkey with bit
 * 31 set; its entry is at the key without the low 8 bits, which IB_WR_REG_MR may change
 * (ib_update_fast_reg_key), as rxe's index << 8 | key.
 */
#define TBRDMA_KEY_FAST		0x80000000U
#define TBRDMA_MAX_FR_PAGES	512	/* max_fast_reg_page_list_len, as rxe */
/*
 * uverbs' POLL_CQ copies wc_flags as they are, and user space's IBV_WC_WITH_INV is 1 << 3
 * (the kernel's IB_WC_WITH_INVALIDATE is 1 << 2, user space's IBV_WC_IP_CSUM_OK): a user
 * QP's receive gets the bit user space reads.
 */
#define TBRDMA_UVERBS_WC_WITH_INV	(1 << 3)

/* IBA 10.6.1.1 / rxe: a fast-registration MR is FREE until REG_MR makes it VALID. */
enum tbrdma_mr_state {
	TBRDMA_MR_VALID,
	TBRDMA_MR_FREE,
};

struct tbrdma_mr {
	struct ib_mr ibmr;
	/* post paths check SGEs without the device lock, under RCU */
	struct rcu_head rcu;
	struct tbrdma_pd *pd;
	struct ib_umem *umem;
	struct page **pages;
	unsigned long npages;
	u64 first_page_offset;		/* of iova into pages[0] (a window: of its start) */
	u64 iova;
	u64 length;
	int access;
	bool is_dma;
	/*
	 * The device's own keys: ib_update_fast_reg_key() changes ibmr's before the REG_MR WR
	 * that makes them real runs. Written under tdev->lock (REG_MR, invalidation).
	 */
	u32 lkey, rkey;
	u8 state;			/* enum tbrdma_mr_state */
	bool fast;			/* IB_MR_TYPE_MEM_REG */
	/* A memory window (mw.c): FREE until bound, then VALID over a range of `parent`,
	 * whose pages it borrows; a type 2 window serves only bound_qpn. */
	bool window;
	u8 window_type;			/* enum ib_mw_type */
	u32 bound_qpn;
	struct tbrdma_mr *parent;
	atomic_t num_mw;		/* windows bound to this MR: it stays registered */
	/*
	 * Fast registration: map_mr_sg fills fr_addrs (kernel addresses of fr_page_size pages,
	 * the device uses virtual DMA) and fr_mapped; REG_MR freezes the layout the copy paths
	 * read: fr_npages pages, fr_shift, fr_offset of iova into the first page.
	 */
	u64 *fr_addrs;
	u32 fr_max, fr_mapped, fr_npages;
	u32 fr_map_shift, fr_shift;
	u32 fr_offset;
};

/* A queue shared with user space (umap.c, tbrdma-abi.h). */
struct tbrdma_uqueue {
	struct rdma_user_mmap_entry *entry;	/* NULL: not mapped */
	struct tbrdma_queue_hdr *hdr;
	void *slots;
	u32 mask;				/* slots - 1 */
	struct tbrdma_queue_map map;		/* what the provider is told */
};

struct tbrdma_cq {
	struct ib_cq ibcq;
	spinlock_t lock;
	u32 capacity;
	/* A user CQ is a mapped ring of ib_uverbs_wc that the provider polls without a system
	 * call; a kernel CQ (or one of a provider that did not ask) is the ib_wc ring below. */
	struct tbrdma_uqueue uq;
	u32 uq_producer;			/* the kernel's own copy; user memory is not trusted */
	struct ib_wc *queue;
	u32 head;
	u32 count;
	u8 notify_flags;
	bool overflowed;
	struct work_struct notify_work;
	struct work_struct err_work;	/* IB_EVENT_CQ_ERR, outside every driver lock */
};

struct tbrdma_sge {
	u64 addr;
	u32 length;
	u32 lkey;
};

struct tbrdma_recv_wqe {
	u64 wr_id;
	bool done;
	u16 generation;		/* makes stale core handles to a reused slot harmless */
	u32 num_sge;
	u32 total_len;
	struct tbrdma_sge sge[TBRDMA_MAX_SGE];
};

/* One posted send WR; lives until the protocol core reports it done or it is flushed. */
struct tbrdma_send_wqe {
	struct list_head node;
	struct tbrdma_qp *qp;
	u64 wr_id;
	enum ib_wr_opcode opcode;
	bool signaled;
	bool fence;		/* IB_SEND_FENCE: waits for the QP's earlier READs */
	bool solicited;		/* IB_SEND_SOLICITED: the receiver's solicited event */
	u32 imm;
	u32 rkey;
	u64 raddr;
	u64 compare_add;	/* IB_WR_ATOMIC_*: compare (CMP_AND_SWP) or addend (FETCH_AND_ADD) */
	/* IB_WR_REG_MR (rkey: SEND_WITH_INV / LOCAL_INV's key); done with status (mr.c) */
	struct tbrdma_mr *reg_mr;
	u32 reg_key;
	int reg_access;
	enum ib_wc_status local_status;
	u64 swap;
	/* IB_WR_BIND_MW (mw.c) */
	struct {
		u32 mw_rkey, new_rkey, mr_lkey;
		int access;
		u64 addr, length;
	} bind;
	u32 core_flags;		/* TBP_WR_FLUSH_*: a FLUSH's placement types and level */
	u32 num_sge;
	u32 total_len;		/* FLUSH: bytes of the range */
	struct tbrdma_sge sge[TBRDMA_MAX_SGE];
	/*
	 * Bytes gathered when the WR was taken, read by the core instead of the SGEs: a GSI
	 * datagram (header + MAD) or the data of an IBV_SEND_INLINE WR (total_len bytes).
	 */
	u8 *gathered;
};

/* One datagram of QP1 being reassembled by the core (owned by tdev->lock). */
struct tbrdma_gsi_slot {
	bool busy;
	u16 generation;
	u8 data[TBRDMA_GSI_DGRAM_MAX];
};

/*
 * QP1 state. ib_mad posts sends with its send queue spinlock held and interrupts off, where
 * tdev->lock (a BH lock around dev_queue_xmit) must not be taken: posts only queue under
 * gsi->lock, and a work item hands sends to the core. Lock order: tdev->lock, then
 * gsi->lock.
 */
struct tbrdma_gsi {
	struct tbrdma_qp *qp;
	spinlock_t lock;		/* pending, pending_count, the QP's receive ring */
	struct list_head pending;	/* posted sends not yet handed to the core */
	u32 pending_count;
	struct work_struct work;
	struct tbrdma_gsi_slot slots[TBRDMA_GSI_SLOTS];
};

/* Async events of a QP waiting for its event work (bits of tbrdma_qp.pending_events) */
enum {
	TBRDMA_QP_EV_FATAL,		/* IB_EVENT_QP_FATAL */
	TBRDMA_QP_EV_LAST_WQE,		/* IB_EVENT_QP_LAST_WQE_REACHED (QPs of an SRQ) */
};

/* A shared receive queue (srq.c): posted WQEs, taken in order by the QPs attached to it. */
struct tbrdma_srq {
	struct ib_srq ibsrq;
	struct tbrdma_dev *tdev;
	spinlock_t lock;		/* the ring and the limit (IRQ-safe) */
	struct tbrdma_recv_wqe *ring;
	u32 capacity;
	u32 head, tail;			/* free-running; slot = index % capacity */
	u32 max_sge;
	u32 limit;			/* armed SRQ limit, 0 when not armed */
	struct work_struct limit_work;	/* IB_EVENT_SRQ_LIMIT_REACHED, outside driver locks */
};

/* Which core link carries an RC/UC QP's messages (loop.c). */
enum tbrdma_loop_side {
	TBRDMA_LOOP_NONE,	/* the cable's link: the destination is the peer host */
	TBRDMA_LOOP_LOW,	/* loop link 0: a QP of this device with a higher QPN */
	TBRDMA_LOOP_HIGH,	/* loop link 1: a QP of this device with a lower QPN */
	TBRDMA_LOOP_SELF,	/* connected to itself: open on both, posts on loop link 0 */
};

struct tbrdma_qp {
	struct ib_qp ibqp;
	struct tbrdma_dev *tdev;
	struct mutex state_mutex;	/* serialises modify_qp/destroy against each other */
	enum ib_qp_state state;
	u32 dest_qpn;
	bool av_is_own;			/* the address vector names a GID of this device */
	u8 loop_side;			/* enum tbrdma_loop_side, chosen at RTR */
	u32 qkey;
	/* what modify_qp was given, for query_qp (ah_attr without its sgid_attr reference) */
	struct ib_qp_attr attr;
	bool sq_sig_all;
	bool is_user;			/* inline SGE addresses are user addresses */
	u32 max_send_wr, max_recv_wr, max_send_sge, max_recv_sge;
	/*
	 * Send queue, under sq_lock (IRQ-safe: a post may run with interrupts off; the core's
	 * callbacks take it inside tdev->lock). send_outstanding: WRs the core owns, in post
	 * order; send_waiting: posted WRs the core has no room for yet (or fenced), handed over
	 * in order by the device's backlog. send_count counts both.
	 */
	spinlock_t sq_lock;
	/* The mapped send queue of a user RC/UC QP (sq.c): slots below sq_taken were taken. */
	struct tbrdma_uqueue sq_ring;
	struct mutex sq_ring_mutex;	/* one doorbell at a time */
	/* The mapped receive queue of a user QP without SRQ (rq.c), read under rq_lock. */
	struct tbrdma_uqueue rq_ring;
	u32 sq_taken;
	struct list_head send_outstanding;
	struct list_head send_waiting;
	u32 send_count;
	u32 reads_in_core;		/* READs and atomics the core owns (IB_SEND_FENCE waits
					 * for 0; at most max_rd_atomic, atomic.c) */
	struct list_head backlog_node;	/* on tdev->backlog, under tdev->backlog_lock */
	/* rq_head <= rq_claim <= rq_tail, free-running; slot = index % rq_capacity */
	spinlock_t rq_lock;		/* the receive ring of an RC/UC QP (IRQ-safe) */
	struct tbrdma_recv_wqe *rq;
	struct tbrdma_srq *srq;		/* with an SRQ, rq holds only WQEs taken from it */
	u32 rq_capacity;
	u32 rq_head, rq_claim, rq_tail;
	u64 stat_flushed;
	/* destroy or RESET: flushed work is dropped, not completed (its CQEs are purged) */
	bool discard;
	struct list_head pending_error_node;
	/* async events, delivered from a work item, never under a driver lock */
	struct work_struct event_work;
	unsigned long pending_events;	/* TBRDMA_QP_EV_* bits */
	struct tbrdma_gsi *gsi;		/* QP1 only */
};

/*
 * Loopback (loop.c): QPs connected to QPs of this device run over a pair of core links joined
 * in memory, so they get exactly the transport of QPs across the cable. Frames one link sends
 * wait in the other's queue for a work item (a core may not be re-entered from its callbacks).
 */
struct tbrdma_loop {
	struct tbp_link *link[2];
	void *mem[2];
	size_t mem_size;
	bool ready;			/* both links built */
	bool dirty;			/* work was given to a loop link: tick it now */
	u64 deadline;			/* when the loop links want their next tick */
	struct list_head queue[2];	/* frames for link[i], under tdev->lock */
	u32 queued[2];
	unsigned int next_side;		/* fairness between the two queues */
	struct work_struct rx_work;
	struct work_struct rebuild_work;
	u64 stat_frames, stat_busy;
};

struct tbrdma_ucontext {
	struct ib_ucontext ibuc;
};

struct tbrdma_dev {
	struct ib_device ibdev;
	struct list_head list;		/* on the module's device list, for the netdev notifier */

	/* serialises every protocol-core call and everything its callbacks touch */
	spinlock_t lock;
	struct tbp_link *link;
	void *link_mem;
	size_t link_mem_size;
	bool link_ready;
	bool core_link_up;
	bool in_tick;			/* inside tbp_tick(): rail-down events are silence */
	bool port_state_dirty;
	bool dying;
	bool in_after_core_call;
	struct list_head pending_errors;	/* QPs to move to error after a core call */
	/* QPs with WRs in send_waiting; under backlog_lock (IRQ-safe), inside tdev->lock */
	spinlock_t backlog_lock;
	struct list_head backlog;
	struct work_struct kick_work;	/* hands the backlog over for posts made with IRQs off */
	struct work_struct port_work;	/* port events, dispatched outside tdev->lock */
	/* objects, for the advertised limits and the leak check (configfs "objects") */
	atomic_t n_pd, n_cq, n_qp, n_mr, n_wqe, n_srq, n_ah;

	struct hrtimer tick_timer;
	u64 armed_deadline;
	u64 stat_orphan_completions;
	u64 stat_rx_no_link;
	u64 stat_rx_batches;	/* received frames reach the core in batches: one tick each */
	u64 stat_rx_linearized;	/* Ethernet frames copied into one buffer first (rail_eth.c) */
	/* Post commands of user QPs (a doorbell counts): the mapped queues need few. */
	atomic64_t stat_user_post_send, stat_user_post_recv;
	u32 rx_batch_frames;	/* frames of the batch in progress */
	u64 stat_gsi_sent;
	u64 stat_gsi_received;
	u64 stat_gsi_dropped;
	/* UD QPs (ud.c), under tdev->lock */
	struct tbrdma_ud_slot *ud_slots;	/* TBRDMA_UD_SLOTS */
	struct list_head ud_inflight;	/* datagrams the core owns, in hand-over order */
	u64 stat_ud_sent, stat_ud_received, stat_ud_dropped, stat_ud_qkey_dropped;
	u64 stat_ud_loopback, stat_ud_oversize, stat_ud_lost;
	struct list_head mcast;		/* struct tbrdma_mcast_attach, under tdev->lock */
	u32 n_mcast;

	struct mutex rail_mutex;	/* rails, key and role changes (may sleep) */
	struct tbrdma_rail rails[TBRDMA_MAX_RAILS];
	struct net_device *port_netdev;	/* the port's (GIDs); may outlive its rail */
	u32 rail_weight;
	u8 key[TBRDMA_KEY_LEN];
	u32 key_len;
	bool key_set;
	u8 key_id[8];
	u32 role;			/* enum tbp_role */
	struct work_struct relink_work;
	struct crypto_shash *hmac;

	struct xarray qps;		/* qpn -> tbrdma_qp */
	u32 next_qpn;
	struct xarray mrs;		/* lkey and rkey -> tbrdma_mr */

	enum ib_port_state port_state;
	struct tbrdma_loop loop;

	struct config_group cfs_group;
	bool cfs_registered;
};

static inline struct tbrdma_dev *to_tdev(struct ib_device *ibdev)
{
	return container_of(ibdev, struct tbrdma_dev, ibdev);
}

static inline struct tbrdma_pd *to_tpd(struct ib_pd *pd)
{
	return container_of(pd, struct tbrdma_pd, ibpd);
}

static inline struct tbrdma_ah *to_tah(struct ib_ah *ah)
{
	return container_of(ah, struct tbrdma_ah, ibah);
}

static inline struct tbrdma_mr *to_tmr(struct ib_mr *mr)
{
	return container_of(mr, struct tbrdma_mr, ibmr);
}

static inline struct tbrdma_cq *to_tcq(struct ib_cq *cq)
{
	return container_of(cq, struct tbrdma_cq, ibcq);
}

static inline struct tbrdma_qp *to_tqp(struct ib_qp *qp)
{
	return container_of(qp, struct tbrdma_qp, ibqp);
}

static inline struct tbrdma_srq *to_tsrq(struct ib_srq *srq)
{
	return container_of(srq, struct tbrdma_srq, ibsrq);
}

/* main.c */
extern const struct ib_device_ops tbrdma_dev_ops;
void tbrdma_dealloc_driver(struct ib_device *ibdev);
struct tbrdma_dev *tbrdma_find_device(const char *name);
int tbrdma_add_rail(struct tbrdma_dev *tdev, struct net_device *ndev);
int tbrdma_add_tb_rail(struct tbrdma_dev *tdev, struct tbrdma_tb_pair *pair);
int tbrdma_remove_rail(struct tbrdma_dev *tdev, const char *name);
void tbrdma_tb_rail_event(struct tbrdma_tb_pair *pair, bool gone);
int tbrdma_set_key(struct tbrdma_dev *tdev, const u8 *key, size_t len);
void tbrdma_update_port_state(struct tbrdma_dev *tdev);


/* mw.c */
static inline struct tbrdma_mw *to_tmw(struct ib_mw *mw)
{
	return container_of(mw, struct tbrdma_mw, ibmw);
}
int tbrdma_alloc_mw(struct ib_mw *ibmw, struct ib_udata *udata);
int tbrdma_dealloc_mw(struct ib_mw *ibmw);
int tbrdma_bind_mw(struct tbrdma_qp *qp, const struct tbrdma_send_wqe *wqe);
int tbrdma_invalidate_mw(struct tbrdma_mr *win, struct tbrdma_qp *qp);

/* sq.c */
int tbrdma_sq_ring_create(struct tbrdma_qp *qp, enum ib_qp_type type, struct ib_udata *udata);
void tbrdma_sq_ring_destroy(struct tbrdma_qp *qp);
int tbrdma_sq_ring_drain(struct tbrdma_qp *qp);

/* rq.c */
bool tbrdma_rq_ring_wanted(const struct tbrdma_qp *qp, enum ib_qp_type type,
			   struct ib_udata *udata);
int tbrdma_rq_ring_create(struct tbrdma_qp *qp, struct ib_udata *udata);
void tbrdma_rq_ring_destroy(struct tbrdma_qp *qp);
void tbrdma_rq_ring_pull(struct tbrdma_qp *qp);
void tbrdma_rq_ring_retired(struct tbrdma_qp *qp);
void tbrdma_rq_ring_set_error(struct tbrdma_qp *qp, bool error);
bool tbrdma_rq_refill(struct tbrdma_qp *qp);

/* umap.c */
int tbrdma_uqueue_create(struct tbrdma_uqueue *q, struct ib_udata *udata, u32 min_slots,
			 size_t slot_size);
void tbrdma_uqueue_destroy(struct tbrdma_uqueue *q);
int tbrdma_mmap(struct ib_ucontext *uctx, struct vm_area_struct *vma);
void tbrdma_mmap_free(struct rdma_user_mmap_entry *rdma_entry);

/* cq.c */
int tbrdma_create_cq(struct ib_cq *ibcq, const struct ib_cq_init_attr *attr,
		     TBRDMA_CREATE_CQ_LAST_ARG);
int tbrdma_destroy_cq(struct ib_cq *ibcq, struct ib_udata *udata);
int tbrdma_resize_cq(struct ib_cq *ibcq, tbrdma_cqe_t cqe, struct ib_udata *udata);
int tbrdma_poll_cq(struct ib_cq *ibcq, int num_entries, struct ib_wc *wc);
int tbrdma_req_notify_cq(struct ib_cq *ibcq, enum ib_cq_notify_flags flags);
bool tbrdma_cq_push(struct tbrdma_cq *cq, const struct ib_wc *wc, bool solicited);
void tbrdma_cq_purge(struct tbrdma_cq *cq, struct tbrdma_qp *qp);
void tbrdma_qp_complete(struct tbrdma_qp *qp, bool send, const struct ib_wc *wc);
void tbrdma_qp_complete_solicited(struct tbrdma_qp *qp, const struct ib_wc *wc);
void tbrdma_rq_complete(struct tbrdma_qp *qp, struct tbrdma_recv_wqe *wqe,
			const struct ib_wc *wc, bool solicited);

/* qp.c */
int tbrdma_create_qp(struct ib_qp *ibqp, struct ib_qp_init_attr *init, struct ib_udata *udata);
int tbrdma_modify_qp(struct ib_qp *ibqp, struct ib_qp_attr *attr, int mask,
		     struct ib_udata *udata);
int tbrdma_query_qp(struct ib_qp *ibqp, struct ib_qp_attr *attr, int mask,
		    struct ib_qp_init_attr *init);
int tbrdma_destroy_qp(struct ib_qp *ibqp, struct ib_udata *udata);
int tbrdma_build_send(struct tbrdma_qp *qp, const struct ib_send_wr *wr, bool user_addrs,
		      struct tbrdma_send_wqe **out);
int tbrdma_send_state_check(struct tbrdma_qp *qp);
int tbrdma_queue_send(struct tbrdma_qp *qp, struct tbrdma_send_wqe *wqe);
void tbrdma_kick_sends(struct tbrdma_qp *qp);
int tbrdma_post_send(struct ib_qp *ibqp, const struct ib_send_wr *wr,
		     const struct ib_send_wr **bad_wr);
int tbrdma_post_recv(struct ib_qp *ibqp, const struct ib_recv_wr *wr,
		     const struct ib_recv_wr **bad_wr);
void tbrdma_qp_to_error(struct tbrdma_qp *qp, bool fatal);
struct tbrdma_send_wqe *tbrdma_alloc_send_wqe(struct tbrdma_dev *tdev, size_t size, gfp_t gfp);
void tbrdma_free_send_wqe(struct tbrdma_dev *tdev, struct tbrdma_send_wqe *wqe);
int tbrdma_take_sges(struct tbrdma_dev *tdev, struct ib_pd *pd, const struct ib_sge *src,
		     int num_sge, struct tbrdma_sge *dst, u32 *total, bool for_write_into);

/* srq.c */
int tbrdma_create_srq(struct ib_srq *ibsrq, struct ib_srq_init_attr *init,
		      struct ib_udata *udata);
int tbrdma_destroy_srq(struct ib_srq *ibsrq, struct ib_udata *udata);
int tbrdma_modify_srq(struct ib_srq *ibsrq, struct ib_srq_attr *attr,
		      enum ib_srq_attr_mask mask, struct ib_udata *udata);
int tbrdma_query_srq(struct ib_srq *ibsrq, struct ib_srq_attr *attr);
int tbrdma_post_srq_recv(struct ib_srq *ibsrq, const struct ib_recv_wr *wr,
			 const struct ib_recv_wr **bad_wr);
bool tbrdma_srq_refill(struct tbrdma_qp *qp);

/* verbs.c */
static inline unsigned long tbrdma_key_index(u32 key)
{
	return (key & TBRDMA_KEY_FAST) ? key & ~0xffU : key;
}
int tbrdma_mr_count_get(struct tbrdma_dev *tdev);
struct tbrdma_mr *tbrdma_lookup_mr_post(struct tbrdma_dev *tdev, u32 key);
bool tbrdma_mr_range_ok(const struct tbrdma_mr *mr, u64 iova, u64 len);
int tbrdma_copy_sges(struct tbrdma_dev *tdev, const struct tbrdma_sge *sge, u32 num_sge,
		     u64 offset, void *buf, u32 len, bool to_mr);
int tbrdma_mr_copy(struct tbrdma_mr *mr, u64 iova, void *buf, u32 len, bool to_mr);

/* mr.c: fast registration (kernel ULPs), local operations and invalidation */
struct ib_mr *tbrdma_alloc_mr(struct ib_pd *ibpd, enum ib_mr_type type, u32 max_num_sg);
int tbrdma_map_mr_sg(struct ib_mr *ibmr, struct scatterlist *sg, int sg_nents,
		     unsigned int *sg_offset);
void tbrdma_free_fast_mr(struct tbrdma_mr *mr);
void *tbrdma_fr_kaddr(const struct tbrdma_mr *mr, u64 iova, u32 *avail);
int tbrdma_invalidate_key(struct tbrdma_qp *qp, u32 key, bool remote);
static inline bool tbrdma_wr_is_local(enum ib_wr_opcode op)
{
	return op == IB_WR_REG_MR || op == IB_WR_LOCAL_INV || op == IB_WR_BIND_MW;
}
void tbrdma_run_local_op(struct tbrdma_send_wqe *wqe);
int tbrdma_env_invalidate(void *ctx, uint32_t qpn, uint32_t rkey);
int tbrdma_frmr_test_store(struct tbrdma_dev *tdev, const char *cmd);
ssize_t tbrdma_frmr_test_show(struct tbrdma_dev *tdev, char *page);
void tbrdma_complete_local_ops(struct tbrdma_qp *qp);

/* atomic.c */
struct tbp_buf;
static inline bool tbrdma_wr_is_atomic(enum ib_wr_opcode op)
{
	return op == IB_WR_ATOMIC_CMP_AND_SWP || op == IB_WR_ATOMIC_FETCH_AND_ADD;
}

/* Work requests that hold a responder resource of the peer: READs and atomics. */
/* WRs the responder answers (a READ response, an atomic's or a FLUSH's acknowledgement):
 * each holds one of its responder resources (max_rd_atomic). */
static inline bool tbrdma_wr_is_rd_atomic(enum ib_wr_opcode op)
{
	return op == IB_WR_RDMA_READ || tbrdma_wr_is_atomic(op) ||
	       op == TBRDMA_WR_ATOMIC_WRITE || op == TBRDMA_WR_FLUSH;
}
int tbrdma_env_atomic(void *ctx, const struct tbp_buf *buf, uint32_t opcode, uint64_t compare_add,
		      uint64_t swap, uint64_t *orig);
bool tbrdma_rd_atomic_full(const struct tbrdma_qp *qp);
struct ib_mr *tbrdma_rereg_user_mr(struct ib_mr *ibmr, int flags, u64 start, u64 length,
				   u64 iova, int access, struct ib_pd *ibpd,
				   struct ib_udata *udata);
struct tbrdma_mr *tbrdma_lookup_mr(struct tbrdma_dev *tdev, u32 key, bool remote);
int tbrdma_check_sges(struct tbrdma_qp *qp, const struct tbrdma_sge *sge, u32 num_sge,
		      bool for_write_into);

/* ah.c: address handles (kernel and user) */
bool tbrdma_gid_is_own(struct tbrdma_dev *tdev, const u8 *raw);
int tbrdma_create_ah(struct ib_ah *ibah, struct rdma_ah_init_attr *init, struct ib_udata *udata);
int tbrdma_query_ah(struct ib_ah *ibah, struct rdma_ah_attr *attr);
int tbrdma_destroy_ah(struct ib_ah *ibah, u32 flags);

/* ud.c: UD QPs on the datagram channel, and datagrams to QPs of this device */
int tbrdma_ud_init(struct tbrdma_dev *tdev);
void tbrdma_ud_fini(struct tbrdma_dev *tdev);
int tbrdma_ud_build_send(struct tbrdma_qp *qp, const struct ib_send_wr *wr,
			 struct tbrdma_send_wqe **out);
enum tbrdma_ud_route {
	TBRDMA_UD_WIRE,		/* hand wqe (header + payload gathered) to the core */
	TBRDMA_UD_DONE,		/* delivered locally, dropped (over MTU) or failed: complete it */
};
enum tbrdma_ud_route tbrdma_ud_prepare(struct tbrdma_send_wqe *wqe, enum ib_wc_status *status);
void tbrdma_ud_detach(struct tbrdma_send_wqe *wqe);
void tbrdma_ud_complete(struct tbrdma_qp *qp, u64 wr_id, bool signaled,
			enum ib_wc_status status);
void tbrdma_ud_chan_done(struct tbrdma_dev *tdev, u64 wr_id, u32 status_ok);
void tbrdma_ud_reset_slots(struct tbrdma_dev *tdev);
int tbrdma_ud_slot_claim(struct tbrdma_dev *tdev, u64 *handle, u32 *capacity);
u8 *tbrdma_ud_slot_buf(struct tbrdma_dev *tdev, u64 handle);
void tbrdma_ud_slot_done(struct tbrdma_dev *tdev, u64 handle, u32 src_qpn, u32 len, bool ok);
int tbrdma_attach_mcast(struct ib_qp *ibqp, union ib_gid *gid, u16 lid);
int tbrdma_detach_mcast(struct ib_qp *ibqp, union ib_gid *gid, u16 lid);
void tbrdma_mcast_detach_qp(struct tbrdma_qp *qp);

/* gsi.c: QP1 (MADs for ib_cm / rdma_cm) */
int tbrdma_dgram_grh(struct tbrdma_dev *tdev, const u8 *sgid_raw, const u8 *dgid_raw,
		     u8 traffic_class, u8 hop_limit, u32 flow_label, u16 pkey, u32 payload_len,
		     bool mcast, union rdma_network_hdr *grh);
int tbrdma_gsi_create(struct tbrdma_qp *qp);
void tbrdma_gsi_destroy(struct tbrdma_qp *qp);
int tbrdma_gsi_post_send(struct tbrdma_qp *qp, const struct ib_send_wr *wr,
			 const struct ib_send_wr **bad_wr);
int tbrdma_gsi_post_recv(struct tbrdma_qp *qp, const struct ib_recv_wr *wr,
			 const struct ib_recv_wr **bad_wr);
void tbrdma_gsi_flush_pending(struct tbrdma_qp *qp);
void tbrdma_gsi_flush_recvs(struct tbrdma_qp *qp);
void tbrdma_gsi_kick(struct tbrdma_qp *qp);
int tbrdma_gsi_slot_claim(struct tbrdma_qp *qp, u64 *handle, u32 *capacity);
u8 *tbrdma_gsi_slot_buf(struct tbrdma_qp *qp, u64 handle);
void tbrdma_gsi_slot_done(struct tbrdma_qp *qp, u64 handle, u32 src_qpn, u32 len, bool ok);
void tbrdma_gsi_reset_slots(struct tbrdma_qp *qp);

/* rail_eth.c */
int tbrdma_eth_rail_start(struct tbrdma_rail *rail);
void tbrdma_eth_rail_stop(struct tbrdma_rail *rail);
int tbrdma_eth_xmit(struct tbrdma_rail *rail, const void *frame, size_t len);
void *tbrdma_eth_frame_get(struct tbrdma_rail *rail, size_t len, struct sk_buff **token);
int tbrdma_eth_frame_commit(struct tbrdma_rail *rail, struct sk_buff *skb, size_t len);

/* rail_tb.c, rail_tb_nhi.c */
int tbrdma_tb_init(void);
void tbrdma_tb_exit(void);
int tbrdma_tb_nhi_init(void);
void tbrdma_tb_nhi_exit(void);
int tbrdma_tb_add_rail(struct tbrdma_dev *tdev, const char *name);
int tbrdma_tb_remove_rail(struct tbrdma_dev *tdev, const char *name);
bool tbrdma_tb_covers(const char *name, const struct tbrdma_rail *rail);
void tbrdma_tb_forget_device(struct tbrdma_dev *tdev);
int tbrdma_tb_rail_start(struct tbrdma_rail *rail);
void tbrdma_tb_rail_stop(struct tbrdma_rail *rail);
int tbrdma_tb_xmit(struct tbrdma_rail *rail, const void *frame, size_t len);
void *tbrdma_tb_frame_get(struct tbrdma_rail *rail, size_t len, void **token);
int tbrdma_tb_frame_commit(struct tbrdma_rail *rail, void *token, size_t len);
int tbrdma_tb_describe(const struct tbrdma_rail *rail, char *buf, size_t size);
bool tbrdma_tb_running(const struct tbrdma_rail *rail);
u32 tbrdma_tb_max_frame(const struct tbrdma_rail *rail);
const char *tbrdma_tb_name(const struct tbrdma_rail *rail);
u32 tbrdma_tb_mbps(const struct tbrdma_rail *rail);
void tbrdma_tb_rail_silent(struct tbrdma_tb_pair *pair);

/*
 * What glue.c and configfs.c ask of a rail, by kind. "Running" is what the core may be
 * given the rail on: an up netdev, or a Thunderbolt service whose DMA paths are enabled.
 */
static inline bool tbrdma_rail_running(const struct tbrdma_rail *rail)
{
	if (rail->kind == TBRDMA_RAIL_TB)
		return tbrdma_tb_running(rail);
	return netif_running(rail->netdev);
}

static inline u32 tbrdma_rail_mtu(const struct tbrdma_rail *rail)
{
	if (rail->kind == TBRDMA_RAIL_TB)
		return tbrdma_tb_max_frame(rail);
	return rail->netdev->mtu;
}

static inline const char *tbrdma_rail_name(const struct tbrdma_rail *rail)
{
	if (rail->kind == TBRDMA_RAIL_TB)
		return tbrdma_tb_name(rail);
	return rail->netdev->name;
}

/* loop.c: QPs of this device connected to each other */
int tbrdma_loop_create(struct tbrdma_dev *tdev);
void tbrdma_loop_destroy(struct tbrdma_dev *tdev);
u64 tbrdma_loop_tick(struct tbrdma_dev *tdev, u64 now);
unsigned int tbrdma_loop_links(struct tbrdma_qp *qp, struct tbp_link *links[2]);

/* configfs.c */
int tbrdma_configfs_init(void);
void tbrdma_configfs_exit(void);
int tbrdma_configfs_add_device(struct tbrdma_dev *tdev);
void tbrdma_configfs_remove_device(struct tbrdma_dev *tdev);

/* glue.c (and loop.c for the loopback links): the files that talk to the protocol core */
int tbrdma_link_create(struct tbrdma_dev *tdev);
void tbrdma_link_destroy(struct tbrdma_dev *tdev);
int tbrdma_link_rail_add(struct tbrdma_dev *tdev, struct tbrdma_rail *rail);
void tbrdma_link_rail_down(struct tbrdma_dev *tdev, struct tbrdma_rail *rail, bool remove);
void tbrdma_link_rx_begin(struct tbrdma_dev *tdev);
bool tbrdma_link_rx_one(struct tbrdma_rail *rail, const void *frame, size_t len);
struct tbp_rx_frag;
bool tbrdma_link_rx_frags(struct tbrdma_rail *rail, const struct tbp_rx_frag *frags,
			  unsigned int nfrags);
void tbrdma_link_rx_end(struct tbrdma_dev *tdev);
bool tbrdma_link_rx(struct tbrdma_rail *rail, const void *frame, size_t len);
void tbrdma_link_push_backlog(struct tbrdma_dev *tdev);
void tbrdma_backlog_add(struct tbrdma_qp *qp);
void tbrdma_backlog_del(struct tbrdma_qp *qp);
void tbrdma_after_core_call(struct tbrdma_dev *tdev);
int tbrdma_link_post_gsi(struct tbrdma_qp *qp, struct tbrdma_send_wqe *wqe);
void tbrdma_link_cancel_qp(struct tbrdma_qp *qp);
void tbrdma_defer_qp_error(struct tbrdma_qp *qp);
int tbrdma_link_open_qp(struct tbrdma_qp *qp);
void tbrdma_link_qp_attr(struct tbrdma_qp *qp);
void tbrdma_link_kick(struct tbrdma_dev *tdev);
void tbrdma_link_tick_locked(struct tbrdma_dev *tdev);
struct tbp_env;
struct tbp_config;
void tbrdma_core_env(struct tbrdma_dev *tdev, struct tbp_env *env);
void tbrdma_core_timing(struct tbp_config *cfg);
bool tbrdma_link_is_up(struct tbrdma_dev *tdev);
int tbrdma_link_fill_stats(struct tbrdma_dev *tdev, struct rdma_hw_stats *stats);
extern const struct rdma_stat_desc tbrdma_stat_descs[];
extern const unsigned int tbrdma_num_stats;

#endif
