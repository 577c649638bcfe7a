// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * Completion queues. The ring is in the kernel and is read with the POLL_CQ write command;
 * the extended poll API (ibv_start_poll/ibv_next_poll/ibv_end_poll) fetches a batch per
 * system call and serves the read_* accessors from it. Completions fetched but not yet
 * consumed when end_poll runs stay here, in order, for the next start_poll or poll_cq.
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tbrdma.h"

static struct tbrdma_cq *alloc_cq(void)
{
	struct tbrdma_cq *cq = calloc(1, sizeof(*cq));

	if (cq)
		pthread_mutex_init(&cq->lock, NULL);
	return cq;
}

static void free_cq(struct tbrdma_cq *cq)
{
	pthread_mutex_destroy(&cq->lock);
	free(cq);
}

struct ibv_cq *tbrdma_create_cq(struct ibv_context *context, int cqe,
				struct ibv_comp_channel *channel, int comp_vector)
{
	struct ib_uverbs_create_cq_resp resp;
	struct ibv_create_cq cmd;
	struct tbrdma_cq *cq;

	cq = alloc_cq();
	if (!cq)
		return NULL;
	if (ibv_cmd_create_cq(context, cqe, channel, comp_vector, &cq->vcq.cq, &cmd, sizeof(cmd),
			      &resp, sizeof(resp))) {
		free_cq(cq);
		return NULL;
	}
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

/* Fetched completions first (they are older), then the kernel's. */
int tbrdma_poll_cq(struct ibv_cq *ibcq, int ne, struct ibv_wc *wc)
{
	struct tbrdma_cq *cq = to_tcq(ibcq);
	int n = 0, ret;

	if (ne < 0)
		return -1;
	pthread_mutex_lock(&cq->lock);
	while (n < ne && cq->count) {
		wc[n++] = cq->wc[cq->head++];
		cq->count--;
	}
	if (n < ne) {
		/*
		 * libibverbs sizes its reply buffer in an int from ne: ask for no more than the
		 * CQ can hold, so a huge ne cannot wrap that size.
		 */
		ret = ibv_cmd_poll_cq(ibcq, ne - n < ibcq->cqe ? ne - n : ibcq->cqe, wc + n);
		if (ret < 0 && !n)
			n = ret;
		else if (ret > 0)
			n += ret;
	}
	pthread_mutex_unlock(&cq->lock);
	return n;
}

/* Refills the batch from the kernel: 0, ENOENT if the CQ is empty, or an errno. */
static int fetch_batch(struct tbrdma_cq *cq)
{
	int ret = ibv_cmd_poll_cq(&cq->vcq.cq, TBRDMA_POLL_BATCH, cq->wc);

	cq->head = 0;
	cq->count = ret > 0 ? ret : 0;
	if (ret < 0)
		return errno ? errno : EIO;
	return ret ? 0 : ENOENT;
}

static void show_current(struct tbrdma_cq *cq)
{
	cq->cur_valid = true;
	cq->vcq.cq_ex.status = cq->wc[cq->head].status;
	cq->vcq.cq_ex.wr_id = cq->wc[cq->head].wr_id;
}

/* On any nonzero return the caller must not call end_poll, so the lock is released. */
static int cq_start_poll(struct ibv_cq_ex *ibcq, struct ibv_poll_cq_attr *attr)
{
	struct tbrdma_cq *cq = ex_to_tcq(ibcq);
	int ret;

	if (attr && attr->comp_mask)
		return EINVAL;
	pthread_mutex_lock(&cq->lock);
	if (!cq->count) {
		ret = fetch_batch(cq);
		if (ret) {
			pthread_mutex_unlock(&cq->lock);
			return ret;
		}
	}
	show_current(cq);
	return 0;
}

static int cq_next_poll(struct ibv_cq_ex *ibcq)
{
	struct tbrdma_cq *cq = ex_to_tcq(ibcq);
	int ret;

	if (cq->cur_valid) {
		cq->head++;
		cq->count--;
		cq->cur_valid = false;
	}
	if (!cq->count) {
		ret = fetch_batch(cq);
		if (ret)
			return ret;
	}
	show_current(cq);
	return 0;
}

static void cq_end_poll(struct ibv_cq_ex *ibcq)
{
	struct tbrdma_cq *cq = ex_to_tcq(ibcq);

	if (cq->cur_valid) {
		cq->head++;
		cq->count--;
		cq->cur_valid = false;
	}
	pthread_mutex_unlock(&cq->lock);
}

static inline const struct ibv_wc *cur_wc(struct ibv_cq_ex *ibcq)
{
	struct tbrdma_cq *cq = ex_to_tcq(ibcq);

	return &cq->wc[cq->head];
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
	return cur_wc(ibcq)->imm_data;
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
	/* A hint the provider may ignore; the lock costs nothing next to the system call. */
	TBRDMA_SUP_CQ_FLAGS = IBV_CREATE_CQ_ATTR_SINGLE_THREADED,
};

struct ibv_cq_ex *tbrdma_create_cq_ex(struct ibv_context *context,
				      struct ibv_cq_init_attr_ex *attr)
{
	struct ib_uverbs_ex_create_cq_resp resp;
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
	ret = ibv_cmd_create_cq_ex(context, attr, NULL, &cq->vcq, &cmd, sizeof(cmd), &resp,
				   sizeof(resp), 0);
#else
	ret = ibv_cmd_create_cq_ex(context, attr, &cq->vcq, &cmd, sizeof(cmd), &resp,
				   sizeof(resp), 0);
#endif
	if (ret) {
		free_cq(cq);
		errno = ret;
		return NULL;
	}
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
