// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * Completion queues. The kernel writes completions (struct ib_uverbs_wc) into a ring it maps
 * into this process (tbrdma-abi.h); polling reads the ring and never enters the kernel, as
 * with rxe. Arming (ibv_req_notify_cq), resizing and destroying are commands.
 */
#include <config.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "tbrdma.h"

struct tbrdma_create_cq_resp {
	struct ib_uverbs_create_cq_resp ibv_resp;
	struct tbrdma_cq_resp drv;
};

struct tbrdma_create_cq_ex_resp {
	struct ib_uverbs_ex_create_cq_resp ibv_resp;
	struct tbrdma_cq_resp drv;
};

struct tbrdma_resize_cq_resp {
	struct ib_uverbs_resize_cq_resp ibv_resp;
	struct tbrdma_cq_resp drv;
};

static struct tbrdma_cq *alloc_cq(void)
{
	struct tbrdma_cq *cq = calloc(1, sizeof(*cq));

	if (cq)
		pthread_mutex_init(&cq->lock, NULL);
	return cq;
}

static void free_cq(struct tbrdma_cq *cq)
{
	if (cq->ring)
		munmap(cq->ring, cq->ring_size);
	pthread_mutex_destroy(&cq->lock);
	free(cq);
}

/* Maps the ring the kernel announced; 0 or an errno. */
static int map_ring(struct tbrdma_cq *cq, struct ibv_context *context,
		    const struct tbrdma_queue_map *map)
{
	void *ring = tbrdma_map_queue(context, map, sizeof(struct ib_uverbs_wc), "CQs");

	if (!ring)
		return errno;
	cq->ring = ring;
	cq->ring_size = map->size;
	cq->hdr = ring;
	cq->slots = (struct ib_uverbs_wc *)((uint8_t *)ring + TBRDMA_QUEUE_SLOTS_OFFSET);
	cq->mask = map->slots - 1;
	cq->consumer = cq->hdr->consumer;
	return 0;
}

/* After the create command: maps the CQ's ring, or destroys the CQ again (errno set). */
static bool map_new_ring(struct tbrdma_cq *cq, struct ibv_context *context,
			 const struct tbrdma_queue_map *map)
{
	int ret = map_ring(cq, context, map);

	if (!ret)
		return true;
	ibv_cmd_destroy_cq(&cq->vcq.cq);
	free_cq(cq);
	errno = ret;
	return false;
}

static uint32_t produced(struct tbrdma_cq *cq)
{
	/* acquire: the slots below the index are written before we read them */
	return atomic_load_explicit((_Atomic(uint32_t) *)&cq->hdr->producer,
				    memory_order_acquire);
}

/* Hands consumed slots back to the kernel. */
static void publish_consumer(struct tbrdma_cq *cq)
{
	atomic_store_explicit((_Atomic(uint32_t) *)&cq->hdr->consumer, cq->consumer,
			      memory_order_release);
}

static struct ib_uverbs_wc *slot(struct tbrdma_cq *cq, uint32_t index)
{
	return &cq->slots[index & cq->mask];
}

struct ibv_cq *tbrdma_create_cq(struct ibv_context *context, int cqe,
				struct ibv_comp_channel *channel, int comp_vector)
{
	struct tbrdma_create_cq_resp resp = {};
	struct ibv_create_cq cmd;
	struct tbrdma_cq *cq;

	cq = alloc_cq();
	if (!cq)
		return NULL;
	if (ibv_cmd_create_cq(context, cqe, channel, comp_vector, &cq->vcq.cq, &cmd, sizeof(cmd),
			      &resp.ibv_resp, sizeof(resp))) {
		free_cq(cq);
		return NULL;
	}
	if (!map_new_ring(cq, context, &resp.drv.cq))
		return NULL;
	return &cq->vcq.cq;
}

int tbrdma_destroy_cq(struct ibv_cq *ibcq)
{
	struct tbrdma_cq *cq = to_tcq(ibcq);
	int ret = ibv_cmd_destroy_cq(ibcq);

	if (!ret)
		free_cq(cq);
	return ret;
}

/* Keeps every queued completion (or fails); the kernel moves them to a new ring. */
int tbrdma_resize_cq(struct ibv_cq *ibcq, int cqe)
{
	struct tbrdma_cq *cq = to_tcq(ibcq);
	struct tbrdma_resize_cq_resp resp = {};
	struct ibv_resize_cq cmd;
	void *old = cq->ring;
	size_t old_size = cq->ring_size;
	int ret;

	pthread_mutex_lock(&cq->lock);
	/* The kernel copies what it has not seen consumed: tell it everything we consumed. */
	publish_consumer(cq);
	ret = ibv_cmd_resize_cq(ibcq, cqe, &cmd, sizeof(cmd), &resp.ibv_resp, sizeof(resp));
	if (!ret) {
		ret = map_ring(cq, ibcq->context, &resp.drv.cq);
		if (!ret)
			munmap(old, old_size);
		else
			cq->ring = NULL; /* the kernel already dropped the old ring: unusable */
	}
	pthread_mutex_unlock(&cq->lock);
	return ret;
}

static void copy_wc(struct ibv_wc *wc, const struct ib_uverbs_wc *u)
{
	/* as libibverbs' ibv_cmd_poll_cq converts the kernel's answer */
	wc->wr_id = u->wr_id;
	wc->status = u->status;
	wc->opcode = u->opcode;
	wc->vendor_err = u->vendor_err;
	wc->byte_len = u->byte_len;
	wc->imm_data = u->ex.imm_data;
	wc->qp_num = u->qp_num;
	wc->src_qp = u->src_qp;
	wc->wc_flags = u->wc_flags;
	wc->pkey_index = u->pkey_index;
	wc->slid = u->slid;
	wc->sl = u->sl;
	wc->dlid_path_bits = u->dlid_path_bits;
}

int tbrdma_poll_cq(struct ibv_cq *ibcq, int ne, struct ibv_wc *wc)
{
	struct tbrdma_cq *cq = to_tcq(ibcq);
	uint32_t end;
	int n = 0;

	if (ne < 0)
		return -1;
	pthread_mutex_lock(&cq->lock);
	end = produced(cq);
	while (n < ne && cq->consumer != end)
		copy_wc(&wc[n++], slot(cq, cq->consumer++));
	if (n)
		publish_consumer(cq);
	pthread_mutex_unlock(&cq->lock);
	return n;
}

/*
 * Drops qp_num's completions (its QP was destroyed or reset; the kernel adds none after the
 * command returns). The others keep their order and move up toward the producer, so the
 * kernel, which only writes at the producer index, can go on filling the ring meanwhile.
 */
void tbrdma_cq_clean(struct ibv_cq *ibcq, uint32_t qp_num)
{
	struct tbrdma_cq *cq;
	uint32_t i, kept;

	if (!ibcq)
		return;
	cq = to_tcq(ibcq);
	pthread_mutex_lock(&cq->lock);
	i = kept = produced(cq);
	while (i != cq->consumer) {
		i--;
		if (slot(cq, i)->qp_num == qp_num)
			continue;
		kept--;
		if (kept != i)
			*slot(cq, kept) = *slot(cq, i);
	}
	cq->consumer = kept;
	publish_consumer(cq);
	pthread_mutex_unlock(&cq->lock);
}

static void show_current(struct tbrdma_cq *cq)
{
	const struct ib_uverbs_wc *u = slot(cq, cq->consumer);

	cq->cur_valid = true;
	cq->vcq.cq_ex.status = u->status;
	cq->vcq.cq_ex.wr_id = u->wr_id;
}

/* On any nonzero return the caller must not call end_poll, so the lock is released. */
static int cq_start_poll(struct ibv_cq_ex *ibcq, struct ibv_poll_cq_attr *attr)
{
	struct tbrdma_cq *cq = ex_to_tcq(ibcq);

	if (attr && attr->comp_mask)
		return EINVAL;
	pthread_mutex_lock(&cq->lock);
	if (cq->consumer == produced(cq)) {
		pthread_mutex_unlock(&cq->lock);
		return ENOENT;
	}
	show_current(cq);
	return 0;
}

static int cq_next_poll(struct ibv_cq_ex *ibcq)
{
	struct tbrdma_cq *cq = ex_to_tcq(ibcq);

	if (cq->cur_valid) {
		cq->consumer++;
		publish_consumer(cq);
		cq->cur_valid = false;
	}
	if (cq->consumer == produced(cq))
		return ENOENT;
	show_current(cq);
	return 0;
}

static void cq_end_poll(struct ibv_cq_ex *ibcq)
{
	struct tbrdma_cq *cq = ex_to_tcq(ibcq);

	if (cq->cur_valid) {
		cq->consumer++;
		publish_consumer(cq);
		cq->cur_valid = false;
	}
	pthread_mutex_unlock(&cq->lock);
}

static inline const struct ib_uverbs_wc *cur_wc(struct ibv_cq_ex *ibcq)
{
	struct tbrdma_cq *cq = ex_to_tcq(ibcq);

	return slot(cq, cq->consumer);
}

static enum ibv_wc_opcode cq_read_opcode(struct ibv_cq_ex *ibcq)
{
	return cur_wc(ibcq)->opcode;
}

static uint32_t cq_read_vendor_err(struct ibv_cq_ex *ibcq)
{
	return cur_wc(ibcq)->vendor_err;
}

static uint32_t cq_read_byte_len(struct ibv_cq_ex *ibcq)
{
	return cur_wc(ibcq)->byte_len;
}

static __be32 cq_read_imm_data(struct ibv_cq_ex *ibcq)
{
	return cur_wc(ibcq)->ex.imm_data;
}

static uint32_t cq_read_qp_num(struct ibv_cq_ex *ibcq)
{
	return cur_wc(ibcq)->qp_num;
}

static uint32_t cq_read_src_qp(struct ibv_cq_ex *ibcq)
{
	return cur_wc(ibcq)->src_qp;
}

static unsigned int cq_read_wc_flags(struct ibv_cq_ex *ibcq)
{
	return cur_wc(ibcq)->wc_flags;
}

static uint32_t cq_read_slid(struct ibv_cq_ex *ibcq)
{
	return cur_wc(ibcq)->slid;
}

static uint8_t cq_read_sl(struct ibv_cq_ex *ibcq)
{
	return cur_wc(ibcq)->sl;
}

static uint8_t cq_read_dlid_path_bits(struct ibv_cq_ex *ibcq)
{
	return cur_wc(ibcq)->dlid_path_bits;
}

/*
 * Everything the kernel's struct ib_uverbs_wc carries. It has no timestamp: a time taken
 * here would be when the poll ran, not when the work completed, so the completion
 * timestamps are refused rather than faked; CVLAN, flow tag and tag matching do not exist
 * on this device.
 */
enum {
	TBRDMA_SUP_WC_FLAGS = IBV_WC_EX_WITH_BYTE_LEN | IBV_WC_EX_WITH_IMM |
			      IBV_WC_EX_WITH_QP_NUM | IBV_WC_EX_WITH_SRC_QP |
			      IBV_WC_EX_WITH_SLID | IBV_WC_EX_WITH_SL |
			      IBV_WC_EX_WITH_DLID_PATH_BITS,
	/* A hint the provider may ignore. */
	TBRDMA_SUP_CQ_FLAGS = IBV_CREATE_CQ_ATTR_SINGLE_THREADED,
};

struct ibv_cq_ex *tbrdma_create_cq_ex(struct ibv_context *context,
				      struct ibv_cq_init_attr_ex *attr)
{
	struct tbrdma_create_cq_ex_resp resp = {};
	struct ibv_create_cq_ex cmd;
	struct tbrdma_cq *cq;
	int ret;

	if (attr->wc_flags & ~(uint64_t)TBRDMA_SUP_WC_FLAGS) {
		errno = EOPNOTSUPP;
		return NULL;
	}
	/* No parent domains here, so IBV_CQ_INIT_ATTR_MASK_PD has nothing to refer to. */
	if (attr->comp_mask & ~(uint32_t)IBV_CQ_INIT_ATTR_MASK_FLAGS) {
		errno = EOPNOTSUPP;
		return NULL;
	}
	if ((attr->comp_mask & IBV_CQ_INIT_ATTR_MASK_FLAGS) &&
	    (attr->flags & ~(uint32_t)TBRDMA_SUP_CQ_FLAGS)) {
		errno = EOPNOTSUPP;
		return NULL;
	}
	cq = alloc_cq();
	if (!cq)
		return NULL;
	memset(&cmd, 0, sizeof(cmd));
	/* rdma-core 59 (provider ABI 59) added the provider-attribute argument. */
#if IBVERBS_PABI_VERSION >= 59
	ret = ibv_cmd_create_cq_ex(context, attr, NULL, &cq->vcq, &cmd, sizeof(cmd),
				   &resp.ibv_resp, sizeof(resp), 0);
#else
	ret = ibv_cmd_create_cq_ex(context, attr, &cq->vcq, &cmd, sizeof(cmd), &resp.ibv_resp,
				   sizeof(resp), 0);
#endif
	if (ret) {
		free_cq(cq);
		errno = ret;
		return NULL;
	}
	if (!map_new_ring(cq, context, &resp.drv.cq))
		return NULL;
	cq->vcq.cq_ex.start_poll = cq_start_poll;
	cq->vcq.cq_ex.next_poll = cq_next_poll;
	cq->vcq.cq_ex.end_poll = cq_end_poll;
	cq->vcq.cq_ex.read_opcode = cq_read_opcode;
	cq->vcq.cq_ex.read_vendor_err = cq_read_vendor_err;
	cq->vcq.cq_ex.read_wc_flags = cq_read_wc_flags;
	/* All of them, requested or not: a stray read returns real data, never jumps to NULL. */
	cq->vcq.cq_ex.read_byte_len = cq_read_byte_len;
	cq->vcq.cq_ex.read_imm_data = cq_read_imm_data;
	cq->vcq.cq_ex.read_qp_num = cq_read_qp_num;
	cq->vcq.cq_ex.read_src_qp = cq_read_src_qp;
	cq->vcq.cq_ex.read_slid = cq_read_slid;
	cq->vcq.cq_ex.read_sl = cq_read_sl;
	cq->vcq.cq_ex.read_dlid_path_bits = cq_read_dlid_path_bits;
	return &cq->vcq.cq_ex;
}
