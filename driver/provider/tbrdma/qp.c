// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * Queue pairs and the post verbs. RC and UC QPs post sends through their mapped send queue
 * (sq.c), QPs without SRQ receives through their mapped receive queue (rq.c). UD sends and
 * SRQ receives use the kernel's POST_SEND/POST_RECV write command
 * (libibverbs' ibv_cmd_post_*), which builds the command on the stack from the WR chain as
 * given: a chain is checked against the QP's capabilities and handed over in bounded
 * slices first, so a bad num_sge or an endless chain is an error, not a stack overflow.
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tbrdma.h"

/* WRs per system call: bounds the command libibverbs builds on its stack. */
#define TBRDMA_POST_SLICE 64

static void init_qp(struct tbrdma_qp *qp, enum ibv_qp_type type, const struct ibv_qp_cap *cap)
{
	qp->qp_type = type;
	qp->max_send_wr = cap->max_send_wr;
	qp->max_send_sge = cap->max_send_sge;
	qp->max_recv_sge = cap->max_recv_sge;
	qp->max_inline = cap->max_inline_data;
}

struct tbrdma_create_qp_resp {
	struct ib_uverbs_create_qp_resp ibv_resp;
	struct tbrdma_qp_resp drv;
};

/*
 * After the create command: RC and UC QPs map their send queue, QPs without SRQ their
 * receive queue; a QP that cannot is destroyed again.
 */
static int finish_qp(struct tbrdma_qp *qp, struct ibv_context *context,
		     const struct tbrdma_create_qp_resp *resp, bool has_srq)
{
	int ret = 0;

	if (qp->qp_type == IBV_QPT_RC || qp->qp_type == IBV_QPT_UC)
		ret = tbrdma_wq_map(&qp->sq, context, &resp->drv.sq,
				    sizeof(struct tbrdma_sq_slot), "send queues");
	if (!ret && !has_srq)
		ret = tbrdma_wq_map(&qp->rq, context, &resp->drv.rq,
				    sizeof(struct tbrdma_rq_slot), "receive queues");
	if (ret) {
		tbrdma_wq_unmap(&qp->sq);
		ibv_cmd_destroy_qp(&qp->vqp.qp);
	}
	return ret;
}

struct ibv_qp *tbrdma_create_qp(struct ibv_pd *pd, struct ibv_qp_init_attr *attr)
{
	struct tbrdma_create_qp_resp resp = {};
	struct ibv_create_qp cmd;
	struct tbrdma_qp *qp;
	int ret;

	qp = calloc(1, sizeof(*qp));
	if (!qp)
		return NULL;
	if (ibv_cmd_create_qp(pd, &qp->vqp.qp, attr, &cmd, sizeof(cmd), &resp.ibv_resp,
			      sizeof(resp))) {
		free(qp);
		return NULL;
	}
	init_qp(qp, attr->qp_type, &attr->cap);
	ret = finish_qp(qp, pd->context, &resp, attr->srq);
	if (ret) {
		free(qp);
		errno = ret;
		return NULL;
	}
	return &qp->vqp.qp;
}

enum {
	/*
	 * What the kernel executes: RDMA READ, the 8-byte atomics, ATOMIC_WRITE and FLUSH on
	 * RC only; memory window binds and invalidation on RC and UC (type 2 windows: RC); the
	 * last four only through the mapped send queue. SENDs on UD (wr_set_ud_addr).
	 */
	TBRDMA_RC_SEND_OPS = IBV_QP_EX_WITH_SEND | IBV_QP_EX_WITH_SEND_WITH_IMM |
			     IBV_QP_EX_WITH_RDMA_WRITE | IBV_QP_EX_WITH_RDMA_WRITE_WITH_IMM |
			     IBV_QP_EX_WITH_RDMA_READ | IBV_QP_EX_WITH_ATOMIC_CMP_AND_SWP |
			     IBV_QP_EX_WITH_ATOMIC_FETCH_AND_ADD | IBV_QP_EX_WITH_SEND_WITH_INV |
			     IBV_QP_EX_WITH_ATOMIC_WRITE | IBV_QP_EX_WITH_FLUSH |
			     IBV_QP_EX_WITH_BIND_MW | IBV_QP_EX_WITH_LOCAL_INV,
	TBRDMA_UC_SEND_OPS = IBV_QP_EX_WITH_SEND | IBV_QP_EX_WITH_SEND_WITH_IMM |
			     IBV_QP_EX_WITH_RDMA_WRITE | IBV_QP_EX_WITH_RDMA_WRITE_WITH_IMM |
			     IBV_QP_EX_WITH_SEND_WITH_INV | IBV_QP_EX_WITH_BIND_MW |
			     IBV_QP_EX_WITH_LOCAL_INV,
	TBRDMA_UD_SEND_OPS = IBV_QP_EX_WITH_SEND | IBV_QP_EX_WITH_SEND_WITH_IMM,
	TBRDMA_QP_COMP_MASK = IBV_QP_INIT_ATTR_PD | IBV_QP_INIT_ATTR_CREATE_FLAGS |
			      IBV_QP_INIT_ATTR_SEND_OPS_FLAGS,
};

static int check_qp_init_attr(const struct ibv_qp_init_attr_ex *attr)
{
	uint64_t ops;

	if (attr->comp_mask & ~(uint32_t)TBRDMA_QP_COMP_MASK)
		return EOPNOTSUPP;
	if (!(attr->comp_mask & IBV_QP_INIT_ATTR_PD) || !attr->pd)
		return EINVAL;
	if ((attr->comp_mask & IBV_QP_INIT_ATTR_CREATE_FLAGS) && attr->create_flags)
		return EOPNOTSUPP;
	if (!(attr->comp_mask & IBV_QP_INIT_ATTR_SEND_OPS_FLAGS))
		return 0;
	switch (attr->qp_type) {
	case IBV_QPT_RC:
		ops = TBRDMA_RC_SEND_OPS;
		break;
	case IBV_QPT_UC:
		ops = TBRDMA_UC_SEND_OPS;
		break;
	case IBV_QPT_UD:
		ops = TBRDMA_UD_SEND_OPS;
		break;
	default:
		return EOPNOTSUPP;
	}
	return attr->send_ops_flags & ~ops ? EOPNOTSUPP : 0;
}

struct ibv_qp *tbrdma_create_qp_ex(struct ibv_context *context,
				   struct ibv_qp_init_attr_ex *attr)
{
	struct tbrdma_create_qp_resp resp = {};
	struct ibv_qp_init_attr_ex kattr;
	struct ibv_create_qp cmd;
	struct tbrdma_qp *qp;
	int ret;

	ret = check_qp_init_attr(attr);
	if (ret) {
		errno = ret;
		return NULL;
	}
	qp = calloc(1, sizeof(*qp));
	if (!qp)
		return NULL;
	/* create_flags is 0 (checked): the command that takes none has the same signature in
	 * every rdma-core this is built for. */
	kattr = *attr;
	kattr.comp_mask &= ~(uint32_t)IBV_QP_INIT_ATTR_CREATE_FLAGS;
	ret = ibv_cmd_create_qp_ex(context, &qp->vqp, &kattr, &cmd, sizeof(cmd), &resp.ibv_resp,
				   sizeof(resp));
	if (ret) {
		free(qp);
		errno = ret;
		return NULL;
	}
	attr->cap = kattr.cap;
	init_qp(qp, attr->qp_type, &attr->cap);
	ret = finish_qp(qp, context, &resp, attr->srq);
	if (ret) {
		free(qp);
		errno = ret;
		return NULL;
	}
	if (attr->comp_mask & IBV_QP_INIT_ATTR_SEND_OPS_FLAGS) {
		pthread_mutex_init(&qp->wr_lock, NULL);
		tbrdma_set_wr_ops(qp, attr->send_ops_flags);
		qp->vqp.comp_mask |= VERBS_QP_EX;
	}
	return &qp->vqp.qp;
}

/* No completion of a destroyed or reset QP may be polled: the mapped CQs are ours to clean. */
static void clean_cqs(struct ibv_qp *ibqp)
{
	tbrdma_cq_clean(ibqp->send_cq, ibqp->qp_num);
	if (ibqp->recv_cq != ibqp->send_cq)
		tbrdma_cq_clean(ibqp->recv_cq, ibqp->qp_num);
}

int tbrdma_modify_qp(struct ibv_qp *ibqp, struct ibv_qp_attr *attr, int attr_mask)
{
	struct ibv_modify_qp cmd = {};
	int ret = ibv_cmd_modify_qp(ibqp, attr, attr_mask, &cmd, sizeof(cmd));

	if (!ret && (attr_mask & IBV_QP_STATE) && attr->qp_state == IBV_QPS_RESET)
		clean_cqs(ibqp);
	return ret;
}

int tbrdma_destroy_qp(struct ibv_qp *ibqp)
{
	struct tbrdma_qp *qp = to_tqp(ibqp);
	int ret = ibv_cmd_destroy_qp(ibqp);

	if (ret)
		return ret;
	clean_cqs(ibqp);
	tbrdma_wq_unmap(&qp->sq);
	tbrdma_wq_unmap(&qp->rq);
	if (qp->vqp.comp_mask & VERBS_QP_EX) {
		tbrdma_free_wr_state(qp);
		pthread_mutex_destroy(&qp->wr_lock);
	}
	free(qp);
	return 0;
}

static bool sge_count_ok(int num_sge, uint32_t max_sge)
{
	return num_sge >= 0 && (uint32_t)num_sge <= max_sge;
}

/*
 * Posts wr in slices of at most TBRDMA_POST_SLICE WRs, each checked first: the kernel
 * takes a chain WR by WR and stops at the first bad one, and so does this, so the result
 * and *bad_wr are what one command for the whole chain would give.
 */
int tbrdma_post_send(struct ibv_qp *ibqp, struct ibv_send_wr *wr, struct ibv_send_wr **bad_wr)
{
	struct tbrdma_qp *qp = to_tqp(ibqp);
	struct ibv_send_wr slice[TBRDMA_POST_SLICE], *orig[TBRDMA_POST_SLICE], *bad;
	int n, i, ret;

	if (qp->sq.ring) {
		size_t refused;

		ret = tbrdma_sq_post(qp, wr, false, 0, &refused);
		if (ret) {
			for (*bad_wr = wr; refused--; )
				*bad_wr = (*bad_wr)->next;
		}
		return ret;
	}
	while (wr) {
		for (n = 0; wr && n < TBRDMA_POST_SLICE; n++, wr = wr->next) {
			/* libibverbs reads wr.ud.ah->handle for a UD QP without a NULL check */
			if (!sge_count_ok(wr->num_sge, qp->max_send_sge) ||
			    (qp->qp_type == IBV_QPT_UD && !wr->wr.ud.ah))
				break;
			slice[n] = *wr;
			slice[n].next = NULL;
			if (n)
				slice[n - 1].next = &slice[n];
			orig[n] = wr;
		}
		if (n) {
			bad = NULL;
			ret = ibv_cmd_post_send(ibqp, slice, &bad);
			if (ret) {
				for (i = 0; i < n && bad != &slice[i]; i++)
					;
				*bad_wr = orig[i < n ? i : 0];
				return ret;
			}
		}
		if (wr && n < TBRDMA_POST_SLICE) {
			*bad_wr = wr;
			return EINVAL;
		}
	}
	return 0;
}

static int post_recv_slices(struct ibv_qp *ibqp, struct ibv_srq *ibsrq, uint32_t max_sge,
			    struct ibv_recv_wr *wr, struct ibv_recv_wr **bad_wr)
{
	struct ibv_recv_wr slice[TBRDMA_POST_SLICE], *orig[TBRDMA_POST_SLICE], *bad;
	int n, i, ret;

	while (wr) {
		for (n = 0; wr && n < TBRDMA_POST_SLICE; n++, wr = wr->next) {
			if (!sge_count_ok(wr->num_sge, max_sge))
				break;
			slice[n] = *wr;
			slice[n].next = NULL;
			if (n)
				slice[n - 1].next = &slice[n];
			orig[n] = wr;
		}
		if (n) {
			bad = NULL;
			ret = ibqp ? ibv_cmd_post_recv(ibqp, slice, &bad) :
				     ibv_cmd_post_srq_recv(ibsrq, slice, &bad);
			if (ret) {
				for (i = 0; i < n && bad != &slice[i]; i++)
					;
				*bad_wr = orig[i < n ? i : 0];
				return ret;
			}
		}
		if (wr && n < TBRDMA_POST_SLICE) {
			*bad_wr = wr;
			return EINVAL;
		}
	}
	return 0;
}

int tbrdma_post_recv(struct ibv_qp *ibqp, struct ibv_recv_wr *wr, struct ibv_recv_wr **bad_wr)
{
	struct tbrdma_qp *qp = to_tqp(ibqp);

	if (qp->rq.ring)
		return tbrdma_rq_post(qp, wr, bad_wr);
	/* A QP on an SRQ reports max_recv_sge 0: its posts fail here as in the kernel. */
	return post_recv_slices(ibqp, NULL, qp->max_recv_sge, wr, bad_wr);
}

int tbrdma_post_srq_recv(struct ibv_srq *ibsrq, struct ibv_recv_wr *wr,
			 struct ibv_recv_wr **bad_wr)
{
	return post_recv_slices(NULL, ibsrq, to_tsrq(ibsrq)->max_sge, wr, bad_wr);
}
