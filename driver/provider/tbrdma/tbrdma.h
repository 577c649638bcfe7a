/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * The provider's objects. CQs, send queues of RC/UC QPs and receive queues of QPs without
 * SRQ are rings the kernel module maps into the process (tbrdma-abi.h). These structs carry the
 * mapped rings, the capabilities that bound a post (so a bad WR is refused here before
 * libibverbs sizes a stack buffer from it), and the WRs an ibv_wr_* critical region has
 * built so far.
 */
#ifndef TBRDMA_PROVIDER_H
#define TBRDMA_PROVIDER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <infiniband/driver.h>
#include <infiniband/verbs.h>
#include <rdma/ib_user_verbs.h>

#include "tbrdma-abi.h"

struct tbrdma_cq {
	struct verbs_cq vcq;		/* ibv_cq and ibv_cq_ex at the same address */
	pthread_mutex_t lock;		/* start_poll..end_poll, poll_cq, clean, resize */
	void *ring;			/* the mapping: header, then slots */
	size_t ring_size;
	struct tbrdma_queue_hdr *hdr;
	struct ib_uverbs_wc *slots;
	uint32_t mask;			/* slots - 1 */
	uint32_t consumer;		/* ours; published to hdr->consumer as we consume */
	bool cur_valid;			/* slot consumer is the one the read_* accessors report */
};

/* One WR of an ibv_wr_* critical region; SGE and inline data are offsets until posting. */
struct tbrdma_wr {
	struct ibv_send_wr wr;		/* ATOMIC_WRITE: its 8 bytes in wr.atomic.compare_add */
	size_t sge_off;			/* into tbrdma_qp.wr_sge */
	size_t inline_off;		/* into tbrdma_qp.wr_inline, if is_inline */
	size_t inline_len;
	bool is_inline;
	uint64_t flush_len;		/* FLUSH */
	uint8_t flush_type, flush_level;
};

/*
 * A work queue the module maps (tbrdma-abi.h) and the provider fills: the send queue of an
 * RC or UC QP (sq.c), the receive queue of a QP without SRQ (rq.c).
 */
struct tbrdma_wq {
	pthread_mutex_t lock;		/* one poster at a time; slots are written under it */
	void *ring;			/* the mapping: header, then slots; NULL: not mapped */
	size_t ring_size;
	struct tbrdma_queue_hdr *hdr;
	void *slots;			/* struct tbrdma_sq_slot or struct tbrdma_rq_slot */
	uint32_t mask;			/* slots - 1 */
	uint32_t producer;		/* ours; published to hdr->producer */
};

struct tbrdma_qp {
	struct verbs_qp vqp;		/* libibverbs reads vqp.comp_mask on every QP */
	enum ibv_qp_type qp_type;
	uint32_t max_send_wr;
	uint32_t max_send_sge;
	uint32_t max_recv_sge;
	uint32_t max_inline;
	struct tbrdma_wq sq;		/* RC and UC; a UD QP posts by command (sq.ring NULL) */
	struct tbrdma_wq rq;		/* without SRQ; rq.ring NULL: posts go to the SRQ */

	/* ibv_wr_* state, only with IBV_QP_INIT_ATTR_SEND_OPS_FLAGS. */
	pthread_mutex_t wr_lock;	/* held from wr_start to wr_complete/wr_abort */
	int wr_err;			/* first error of the region: wr_complete posts nothing */
	struct tbrdma_wr *wr;
	size_t n_wr, cap_wr;
	struct ibv_sge *wr_sge;
	size_t n_sge, cap_sge;
	uint8_t *wr_inline;
	size_t n_inline, cap_inline;
};

struct tbrdma_srq {
	struct verbs_srq vsrq;
	uint32_t max_sge;
};

static inline struct tbrdma_cq *to_tcq(struct ibv_cq *ibcq)
{
	return container_of(ibcq, struct tbrdma_cq, vcq.cq);
}

static inline struct tbrdma_cq *ex_to_tcq(struct ibv_cq_ex *ibcq)
{
	return container_of(ibcq, struct tbrdma_cq, vcq.cq_ex);
}

static inline struct tbrdma_qp *to_tqp(struct ibv_qp *ibqp)
{
	return container_of(ibqp, struct tbrdma_qp, vqp.qp);
}

static inline struct tbrdma_qp *ex_to_tqp(struct ibv_qp_ex *ibqp)
{
	return container_of(ibqp, struct tbrdma_qp, vqp.qp_ex);
}

static inline struct tbrdma_srq *to_tsrq(struct ibv_srq *ibsrq)
{
	return container_of(ibsrq, struct tbrdma_srq, vsrq.srq);
}

/* tbrdma.c */
void *tbrdma_map_queue(struct ibv_context *context, const struct tbrdma_queue_map *map,
		       size_t slot_size, const char *what);
int tbrdma_wq_map(struct tbrdma_wq *wq, struct ibv_context *context,
		  const struct tbrdma_queue_map *map, size_t slot_size, const char *what);
void tbrdma_wq_unmap(struct tbrdma_wq *wq);
uint32_t tbrdma_wq_consumed(struct tbrdma_wq *wq);
void tbrdma_wq_publish(struct tbrdma_wq *wq);

/* ah.c */
struct ibv_ah *tbrdma_create_ah(struct ibv_pd *pd, struct ibv_ah_attr *attr);
int tbrdma_destroy_ah(struct ibv_ah *ah);

/* cq.c */
struct ibv_cq *tbrdma_create_cq(struct ibv_context *context, int cqe,
				struct ibv_comp_channel *channel, int comp_vector);
struct ibv_cq_ex *tbrdma_create_cq_ex(struct ibv_context *context,
				      struct ibv_cq_init_attr_ex *attr);
int tbrdma_poll_cq(struct ibv_cq *ibcq, int ne, struct ibv_wc *wc);
int tbrdma_resize_cq(struct ibv_cq *ibcq, int cqe);
int tbrdma_destroy_cq(struct ibv_cq *ibcq);
void tbrdma_cq_clean(struct ibv_cq *ibcq, uint32_t qp_num);

/* qp.c */
struct ibv_qp *tbrdma_create_qp(struct ibv_pd *pd, struct ibv_qp_init_attr *attr);
struct ibv_qp *tbrdma_create_qp_ex(struct ibv_context *context,
				   struct ibv_qp_init_attr_ex *attr);
int tbrdma_destroy_qp(struct ibv_qp *ibqp);
int tbrdma_modify_qp(struct ibv_qp *ibqp, struct ibv_qp_attr *attr, int attr_mask);
int tbrdma_post_send(struct ibv_qp *ibqp, struct ibv_send_wr *wr,
		     struct ibv_send_wr **bad_wr);
int tbrdma_post_recv(struct ibv_qp *ibqp, struct ibv_recv_wr *wr,
		     struct ibv_recv_wr **bad_wr);
int tbrdma_post_srq_recv(struct ibv_srq *ibsrq, struct ibv_recv_wr *wr,
			 struct ibv_recv_wr **bad_wr);

/* sq.c */
/* Posts the WRs of list, or the n WRs of the ibv_wr_* region when region is set, through
 * the ring; on error *bad is the index of the WR refused: it and the later ones are not
 * posted. */
int tbrdma_sq_post(struct tbrdma_qp *qp, struct ibv_send_wr *list, bool region, size_t n,
		   size_t *bad);

/* rq.c */
int tbrdma_rq_post(struct tbrdma_qp *qp, struct ibv_recv_wr *wr, struct ibv_recv_wr **bad_wr);

/* wr.c */
void tbrdma_set_wr_ops(struct tbrdma_qp *qp, uint64_t send_ops_flags);
void tbrdma_free_wr_state(struct tbrdma_qp *qp);

#endif
