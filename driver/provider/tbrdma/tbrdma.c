// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * libibverbs provider for the tbrdma kernel module. Completions are polled from rings the
 * module maps into the process (no system call); posts go through the kernel command
 * interface (ibv_cmd_post_send/post_recv), one system call per list of WRs.
 * This file holds the context, PD, MR and SRQ verbs; cq.c the CQs (with ibv_create_cq_ex),
 * qp.c the QPs and the post verbs, wr.c the ibv_wr_* API of ibv_create_qp_ex.
 *
 * Built inside an rdma-core source tree (see driver/build-provider.sh) so that it always
 * matches the libibverbs it is installed beside.
 */
#include <config.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "tbrdma.h"

/*
 * Maps a queue the kernel announced (tbrdma-abi.h): the ring, or NULL with errno set. An
 * empty map from a module that should map this queue means module and provider are of
 * different releases, the install mistake users meet most: it is named as such.
 */
void *tbrdma_map_queue(struct ibv_context *context, const struct tbrdma_queue_map *map,
		       size_t slot_size, const char *what)
{
	void *ring;

	if (!map->size) {
		fprintf(stderr, "tbrdma: the loaded tbrdma kernel module does not map %s into "
				"user space; load the module of the same tbrdma release as this "
				"provider\n", what);
		errno = EPROTO;
		return NULL;
	}
	if (!map->slots || (map->slots & (map->slots - 1)) ||
	    map->size < TBRDMA_QUEUE_SLOTS_OFFSET + (uint64_t)map->slots * slot_size) {
		errno = EPROTO;
		return NULL;
	}
	ring = mmap(NULL, map->size, PROT_READ | PROT_WRITE, MAP_SHARED, context->cmd_fd,
		    map->offset);
	return ring == MAP_FAILED ? NULL : ring;
}

int tbrdma_wq_map(struct tbrdma_wq *wq, struct ibv_context *context,
		  const struct tbrdma_queue_map *map, size_t slot_size, const char *what)
{
	void *ring = tbrdma_map_queue(context, map, slot_size, what);

	if (!ring)
		return errno;
	pthread_mutex_init(&wq->lock, NULL);
	wq->ring = ring;
	wq->ring_size = map->size;
	wq->hdr = ring;
	wq->slots = (uint8_t *)ring + TBRDMA_QUEUE_SLOTS_OFFSET;
	wq->mask = map->slots - 1;
	wq->producer = wq->hdr->producer;
	return 0;
}

/* acquire: the module's reads of the slots below consumer are done */
uint32_t tbrdma_wq_consumed(struct tbrdma_wq *wq)
{
	return atomic_load_explicit((_Atomic(uint32_t) *)&wq->hdr->consumer,
				    memory_order_acquire);
}

/* release: the slots are written before the module can see them */
void tbrdma_wq_publish(struct tbrdma_wq *wq)
{
	atomic_store_explicit((_Atomic(uint32_t) *)&wq->hdr->producer, wq->producer,
			      memory_order_release);
}

void tbrdma_wq_unmap(struct tbrdma_wq *wq)
{
	if (!wq->ring)
		return;
	munmap(wq->ring, wq->ring_size);
	pthread_mutex_destroy(&wq->lock);
	wq->ring = NULL;
}

struct tbrdma_device {
	struct verbs_device ibv_dev;
};

struct tbrdma_context {
	struct verbs_context ibv_ctx;
};

static int tbrdma_query_device(struct ibv_context *context,
			       const struct ibv_query_device_ex_input *input,
			       struct ibv_device_attr_ex *attr, size_t attr_size)
{
	struct ib_uverbs_ex_query_device_resp resp;
	size_t resp_size = sizeof(resp);
	int ret;

	ret = ibv_cmd_query_device_any(context, input, attr, attr_size, &resp, &resp_size);
	if (ret)
		return ret;
	snprintf(attr->orig_attr.fw_ver, sizeof(attr->orig_attr.fw_ver), "%llu",
		 (unsigned long long)resp.base.fw_ver);
	return 0;
}

static int tbrdma_query_port(struct ibv_context *context, uint8_t port,
			     struct ibv_port_attr *attr)
{
	struct ibv_query_port cmd;

	return ibv_cmd_query_port(context, port, attr, &cmd, sizeof(cmd));
}

static struct ibv_pd *tbrdma_alloc_pd(struct ibv_context *context)
{
	struct ib_uverbs_alloc_pd_resp resp;
	struct ibv_alloc_pd cmd;
	struct ibv_pd *pd;

	pd = calloc(1, sizeof(*pd));
	if (!pd)
		return NULL;
	if (ibv_cmd_alloc_pd(context, pd, &cmd, sizeof(cmd), &resp, sizeof(resp))) {
		free(pd);
		return NULL;
	}
	return pd;
}

static int tbrdma_dealloc_pd(struct ibv_pd *pd)
{
	int ret = ibv_cmd_dealloc_pd(pd);

	if (!ret)
		free(pd);
	return ret;
}

static struct ibv_mr *tbrdma_reg_mr(struct ibv_pd *pd, void *addr, size_t length,
				    uint64_t hca_va, int access)
{
	struct ib_uverbs_reg_mr_resp resp;
	struct ibv_reg_mr cmd;
	struct verbs_mr *vmr;

	vmr = calloc(1, sizeof(*vmr));
	if (!vmr)
		return NULL;
	if (ibv_cmd_reg_mr(pd, addr, length, hca_va, access, vmr, &cmd, sizeof(cmd), &resp,
			   sizeof(resp))) {
		free(vmr);
		return NULL;
	}
	return &vmr->ibv_mr;
}

/* New PD and access in place (the kernel refuses new translation, as rxe does). */
static int tbrdma_rereg_mr(struct verbs_mr *vmr, int flags, struct ibv_pd *pd, void *addr,
			   size_t length, int access)
{
	struct ib_uverbs_rereg_mr_resp resp;
	struct ibv_rereg_mr cmd;

	return ibv_cmd_rereg_mr(vmr, flags, addr, length, (uintptr_t)addr, access, pd, &cmd,
				sizeof(cmd), &resp, sizeof(resp));
}

static int tbrdma_dereg_mr(struct verbs_mr *vmr)
{
	int ret = ibv_cmd_dereg_mr(vmr);

	if (!ret)
		free(vmr);
	return ret;
}

static int tbrdma_query_qp(struct ibv_qp *qp, struct ibv_qp_attr *attr, int attr_mask,
			   struct ibv_qp_init_attr *init_attr)
{
	struct ibv_query_qp cmd = {};

	return ibv_cmd_query_qp(qp, attr, attr_mask, init_attr, &cmd, sizeof(cmd));
}

/* SRQs live in the kernel like the other queues: every call is a command. */
static struct ibv_srq *tbrdma_create_srq(struct ibv_pd *pd, struct ibv_srq_init_attr *attr)
{
	struct ib_uverbs_create_srq_resp resp;
	struct ibv_create_srq cmd;
	struct tbrdma_srq *srq;

	srq = calloc(1, sizeof(*srq));
	if (!srq)
		return NULL;
	if (ibv_cmd_create_srq(pd, &srq->vsrq.srq, attr, &cmd, sizeof(cmd), &resp,
			       sizeof(resp))) {
		free(srq);
		return NULL;
	}
	srq->max_sge = attr->attr.max_sge;
	return &srq->vsrq.srq;
}

static int tbrdma_modify_srq(struct ibv_srq *srq, struct ibv_srq_attr *attr, int attr_mask)
{
	struct ibv_modify_srq cmd;

	return ibv_cmd_modify_srq(srq, attr, attr_mask, &cmd, sizeof(cmd));
}

static int tbrdma_query_srq(struct ibv_srq *srq, struct ibv_srq_attr *attr)
{
	struct ibv_query_srq cmd;

	return ibv_cmd_query_srq(srq, attr, &cmd, sizeof(cmd));
}

static int tbrdma_destroy_srq(struct ibv_srq *srq)
{
	int ret = ibv_cmd_destroy_srq(srq);

	if (!ret)
		free(to_tsrq(srq));
	return ret;
}

/* Memory windows: the kernel keeps them; binding is a BIND_MW WR on the QP (sq.c). */
static struct ibv_mw *tbrdma_alloc_mw(struct ibv_pd *pd, enum ibv_mw_type type)
{
	struct ib_uverbs_alloc_mw_resp resp = {};
	struct ibv_alloc_mw cmd = {};
	struct ibv_mw *mw = calloc(1, sizeof(*mw));

	if (!mw)
		return NULL;
	if (ibv_cmd_alloc_mw(pd, type, mw, &cmd, sizeof(cmd), &resp, sizeof(resp))) {
		free(mw);
		return NULL;
	}
	return mw;
}

static int tbrdma_dealloc_mw(struct ibv_mw *mw)
{
	int ret = ibv_cmd_dealloc_mw(mw);

	if (!ret)
		free(mw);
	return ret;
}

/*
 * ibv_bind_mw (type 1): a BIND_MW WR with the window's next key (rxe does the same); the
 * window carries that key from now on, and a consumer whose bind completes in error undoes
 * it, as the verbs API says.
 */
static int tbrdma_bind_mw(struct ibv_qp *qp, struct ibv_mw *mw, struct ibv_mw_bind *mw_bind)
{
	struct ibv_send_wr wr = {}, *bad;
	int ret;

	if (mw_bind->bind_info.mw_access_flags & IBV_ACCESS_ZERO_BASED)
		return EINVAL;
	wr.wr_id = mw_bind->wr_id;
	wr.opcode = IBV_WR_BIND_MW;
	wr.send_flags = mw_bind->send_flags;
	wr.bind_mw.mw = mw;
	wr.bind_mw.rkey = ibv_inc_rkey(mw->rkey);
	wr.bind_mw.bind_info = mw_bind->bind_info;
	ret = tbrdma_post_send(qp, &wr, &bad);
	if (!ret)
		mw->rkey = wr.bind_mw.rkey;
	return ret;
}

static const struct verbs_context_ops tbrdma_ctx_ops;

static void tbrdma_free_context(struct ibv_context *ibctx)
{
	struct tbrdma_context *ctx = container_of(ibctx, struct tbrdma_context, ibv_ctx.context);

	verbs_uninit_context(&ctx->ibv_ctx);
	free(ctx);
}

static const struct verbs_context_ops tbrdma_ctx_ops = {
	.query_device_ex = tbrdma_query_device,
	.query_port = tbrdma_query_port,
	.alloc_mw = tbrdma_alloc_mw,
	.alloc_pd = tbrdma_alloc_pd,
	.bind_mw = tbrdma_bind_mw,
	.dealloc_mw = tbrdma_dealloc_mw,
	.attach_mcast = ibv_cmd_attach_mcast,
	.dealloc_pd = tbrdma_dealloc_pd,
	.detach_mcast = ibv_cmd_detach_mcast,
	.reg_mr = tbrdma_reg_mr,
	.dereg_mr = tbrdma_dereg_mr,
	.rereg_mr = tbrdma_rereg_mr,
	.create_ah = tbrdma_create_ah,
	.create_cq = tbrdma_create_cq,
	.create_cq_ex = tbrdma_create_cq_ex,
	.poll_cq = tbrdma_poll_cq,
	.req_notify_cq = ibv_cmd_req_notify_cq,
	.resize_cq = tbrdma_resize_cq,
	.destroy_ah = tbrdma_destroy_ah,
	.destroy_cq = tbrdma_destroy_cq,
	.create_qp = tbrdma_create_qp,
	.create_qp_ex = tbrdma_create_qp_ex,
	.create_srq = tbrdma_create_srq,
	.query_qp = tbrdma_query_qp,
	.query_srq = tbrdma_query_srq,
	.modify_qp = tbrdma_modify_qp,
	.modify_srq = tbrdma_modify_srq,
	.destroy_qp = tbrdma_destroy_qp,
	.destroy_srq = tbrdma_destroy_srq,
	.post_send = tbrdma_post_send,
	.post_recv = tbrdma_post_recv,
	.post_srq_recv = tbrdma_post_srq_recv,
	.free_context = tbrdma_free_context,
};

static struct verbs_context *tbrdma_alloc_context(struct ibv_device *ibdev, int cmd_fd,
						  void *private_data)
{
	struct ib_uverbs_get_context_resp resp;
	struct ibv_get_context cmd;
	struct tbrdma_context *ctx;
	int ret;

	/* The module registers with RDMA_DRIVER_UNKNOWN: no driver id of its own in the ABI. */
	ctx = verbs_init_and_alloc_context(ibdev, cmd_fd, ctx, ibv_ctx, RDMA_DRIVER_UNKNOWN);
	if (!ctx)
		return NULL;
	/* rdma-core 57 (provider ABI 57) added a file-descriptor array argument. */
#if IBVERBS_PABI_VERSION >= 57
	ret = ibv_cmd_get_context(&ctx->ibv_ctx, &cmd, sizeof(cmd), NULL, &resp, sizeof(resp));
#else
	ret = ibv_cmd_get_context(&ctx->ibv_ctx, &cmd, sizeof(cmd), &resp, sizeof(resp));
#endif
	if (ret) {
		verbs_uninit_context(&ctx->ibv_ctx);
		free(ctx);
		return NULL;
	}
	verbs_set_ops(&ctx->ibv_ctx, &tbrdma_ctx_ops);
	return &ctx->ibv_ctx;
}

static struct verbs_device *tbrdma_device_alloc(struct verbs_sysfs_dev *sysfs_dev)
{
	struct tbrdma_device *dev = calloc(1, sizeof(*dev));

	return dev ? &dev->ibv_dev : NULL;
}

static void tbrdma_uninit_device(struct verbs_device *verbs_device)
{
	free(container_of(verbs_device, struct tbrdma_device, ibv_dev));
}

/* Devices are matched by name: `rdma link add tbrdmaN type tbrdma ...` (tbctl's naming). */
static const struct verbs_match_ent tbrdma_match_table[] = {
	VERBS_NAME_MATCH("tbrdma", NULL),
	{},
};

static const struct verbs_device_ops tbrdma_dev_ops = {
	.name = "tbrdma",
	.match_min_abi_version = 1,
	.match_max_abi_version = 1,
	.match_table = tbrdma_match_table,
	.alloc_device = tbrdma_device_alloc,
	.uninit_device = tbrdma_uninit_device,
	.alloc_context = tbrdma_alloc_context,
};
PROVIDER_DRIVER(tbrdma, tbrdma_dev_ops);
