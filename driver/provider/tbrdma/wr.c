// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * The ibv_wr_* post API. Between wr_start and wr_complete the builders collect ibv_send_wr
 * entries here; wr_complete posts them into the mapped send queue (sq.c, one doorbell), or
 * on a UD QP as one chain through the POST_SEND command (qp.c); wr_abort drops them. Inline data is copied when it is set, as the API promises,
 * into a buffer of the QP's own. The setters return nothing, so the first error of a
 * region is remembered and wr_complete reports it without posting anything.
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tbrdma.h"

/*
 * Room for want elements of size each in buf (capacity *cap): the buffer to use from now
 * on, or NULL with qp->wr_err set (buf is then still valid and unchanged).
 */
static void *grow(struct tbrdma_qp *qp, void *buf, size_t *cap, size_t want, size_t size)
{
	size_t n = *cap ? *cap : 8;
	void *p;

	if (want <= *cap)
		return buf;
	while (n < want)
		n *= 2;
	p = realloc(buf, n * size);
	if (!p) {
		qp->wr_err = ENOMEM;
		return NULL;
	}
	*cap = n;
	return p;
}

/* Starts a WR of the region; NULL once the region has failed. */
static struct ibv_send_wr *new_wr(struct ibv_qp_ex *ibqp, enum ibv_wr_opcode opcode)
{
	struct tbrdma_qp *qp = ex_to_tqp(ibqp);
	struct tbrdma_wr *w;

	if (qp->wr_err)
		return NULL;
	/* The send queue cannot take more than this in one go. */
	if (qp->n_wr >= qp->max_send_wr) {
		qp->wr_err = ENOMEM;
		return NULL;
	}
	w = grow(qp, qp->wr, &qp->cap_wr, qp->n_wr + 1, sizeof(*qp->wr));
	if (!w)
		return NULL;
	qp->wr = w;
	w = &qp->wr[qp->n_wr++];
	memset(w, 0, sizeof(*w));
	w->wr.wr_id = ibqp->wr_id;
	w->wr.send_flags = ibqp->wr_flags;
	w->wr.opcode = opcode;
	return &w->wr;
}

/* The WR the DATA setters apply to: the last one started. */
static struct tbrdma_wr *cur_wr(struct tbrdma_qp *qp)
{
	if (qp->wr_err)
		return NULL;
	if (!qp->n_wr) {
		qp->wr_err = EINVAL;
		return NULL;
	}
	return &qp->wr[qp->n_wr - 1];
}

static void wr_send(struct ibv_qp_ex *ibqp)
{
	new_wr(ibqp, IBV_WR_SEND);
}

static void wr_send_imm(struct ibv_qp_ex *ibqp, __be32 imm_data)
{
	struct ibv_send_wr *wr = new_wr(ibqp, IBV_WR_SEND_WITH_IMM);

	if (wr)
		wr->imm_data = imm_data;
}

/* The peer invalidates invalidate_rkey when the SEND arrives (the kernel carries it). */
static void wr_send_inv(struct ibv_qp_ex *ibqp, uint32_t invalidate_rkey)
{
	struct ibv_send_wr *wr = new_wr(ibqp, IBV_WR_SEND_WITH_INV);

	if (wr)
		wr->invalidate_rkey = invalidate_rkey;
}

static void set_rdma(struct ibv_send_wr *wr, uint32_t rkey, uint64_t remote_addr)
{
	wr->wr.rdma.rkey = rkey;
	wr->wr.rdma.remote_addr = remote_addr;
}

static void wr_rdma_write(struct ibv_qp_ex *ibqp, uint32_t rkey, uint64_t remote_addr)
{
	struct ibv_send_wr *wr = new_wr(ibqp, IBV_WR_RDMA_WRITE);

	if (wr)
		set_rdma(wr, rkey, remote_addr);
}

static void wr_rdma_write_imm(struct ibv_qp_ex *ibqp, uint32_t rkey, uint64_t remote_addr,
			      __be32 imm_data)
{
	struct ibv_send_wr *wr = new_wr(ibqp, IBV_WR_RDMA_WRITE_WITH_IMM);

	if (wr) {
		set_rdma(wr, rkey, remote_addr);
		wr->imm_data = imm_data;
	}
}

static void wr_rdma_read(struct ibv_qp_ex *ibqp, uint32_t rkey, uint64_t remote_addr)
{
	struct ibv_send_wr *wr = new_wr(ibqp, IBV_WR_RDMA_READ);

	if (wr)
		set_rdma(wr, rkey, remote_addr);
}

static void set_atomic(struct ibv_send_wr *wr, uint32_t rkey, uint64_t remote_addr,
		       uint64_t compare_add, uint64_t swap)
{
	wr->wr.atomic.rkey = rkey;
	wr->wr.atomic.remote_addr = remote_addr;
	wr->wr.atomic.compare_add = compare_add;
	wr->wr.atomic.swap = swap;
}

/* The original value lands in the WR's one 8-byte SGE (the kernel checks it). */
static void wr_atomic_cmp_swp(struct ibv_qp_ex *ibqp, uint32_t rkey, uint64_t remote_addr,
			      uint64_t compare, uint64_t swap)
{
	struct ibv_send_wr *wr = new_wr(ibqp, IBV_WR_ATOMIC_CMP_AND_SWP);

	if (wr)
		set_atomic(wr, rkey, remote_addr, compare, swap);
}

static void wr_bind_mw(struct ibv_qp_ex *ibqp, struct ibv_mw *mw, uint32_t rkey,
		       const struct ibv_mw_bind_info *bind_info)
{
	struct ibv_send_wr *wr = new_wr(ibqp, IBV_WR_BIND_MW);

	if (!wr)
		return;
	wr->bind_mw.mw = mw;
	wr->bind_mw.rkey = rkey;
	wr->bind_mw.bind_info = *bind_info;
}

static void wr_local_inv(struct ibv_qp_ex *ibqp, uint32_t invalidate_rkey)
{
	struct ibv_send_wr *wr = new_wr(ibqp, IBV_WR_LOCAL_INV);

	if (wr)
		wr->invalidate_rkey = invalidate_rkey;
}

/* The 8 bytes are taken now, as the API promises; they travel in the atomic's operand. */
static void wr_atomic_write(struct ibv_qp_ex *ibqp, uint32_t rkey, uint64_t remote_addr,
			    const void *atomic_wr)
{
	struct ibv_send_wr *wr = new_wr(ibqp, IBV_WR_ATOMIC_WRITE);

	if (!wr)
		return;
	wr->wr.atomic.rkey = rkey;
	wr->wr.atomic.remote_addr = remote_addr;
	memcpy(&wr->wr.atomic.compare_add, atomic_wr, 8);
}

static void wr_flush(struct ibv_qp_ex *ibqp, uint32_t rkey, uint64_t remote_addr, size_t len,
		     uint8_t type, uint8_t level)
{
	struct tbrdma_qp *qp = ex_to_tqp(ibqp);
	struct ibv_send_wr *wr = new_wr(ibqp, IBV_WR_FLUSH);
	struct tbrdma_wr *w;

	if (!wr)
		return;
	w = &qp->wr[qp->n_wr - 1];
	wr->wr.rdma.rkey = rkey;
	wr->wr.rdma.remote_addr = remote_addr;
	w->flush_len = len;
	w->flush_type = type;
	w->flush_level = level;
}

static void wr_atomic_fetch_add(struct ibv_qp_ex *ibqp, uint32_t rkey, uint64_t remote_addr,
				uint64_t add)
{
	struct ibv_send_wr *wr = new_wr(ibqp, IBV_WR_ATOMIC_FETCH_AND_ADD);

	if (wr)
		set_atomic(wr, rkey, remote_addr, add, 0);
}

/* The address of a UD QP's current WR; libibverbs' post reads the AH's handle. */
static void wr_set_ud_addr(struct ibv_qp_ex *ibqp, struct ibv_ah *ah, uint32_t remote_qpn,
			   uint32_t remote_qkey)
{
	struct tbrdma_wr *w = cur_wr(ex_to_tqp(ibqp));

	if (!w)
		return;
	w->wr.wr.ud.ah = ah;
	w->wr.wr.ud.remote_qpn = remote_qpn;
	w->wr.wr.ud.remote_qkey = remote_qkey;
}

/* Replaces the current WR's data with num_sge SGEs (a DATA setter is called once per WR). */
static void set_sges(struct tbrdma_qp *qp, size_t num_sge, const struct ibv_sge *sg_list)
{
	struct tbrdma_wr *w = cur_wr(qp);
	struct ibv_sge *sge;

	if (!w)
		return;
	if (num_sge > qp->max_send_sge) {
		qp->wr_err = EINVAL;
		return;
	}
	sge = grow(qp, qp->wr_sge, &qp->cap_sge, qp->n_sge + num_sge, sizeof(*qp->wr_sge));
	if (!sge)
		return;
	qp->wr_sge = sge;
	w->is_inline = false;
	w->wr.send_flags &= ~(unsigned int)IBV_SEND_INLINE;
	w->sge_off = qp->n_sge;
	w->wr.num_sge = num_sge;
	if (num_sge)
		memcpy(&qp->wr_sge[qp->n_sge], sg_list, num_sge * sizeof(*sg_list));
	qp->n_sge += num_sge;
}

static void wr_set_sge(struct ibv_qp_ex *ibqp, uint32_t lkey, uint64_t addr, uint32_t length)
{
	struct ibv_sge sge = { .addr = addr, .length = length, .lkey = lkey };

	/* A zero-length buffer is a zero-length message, as in rxe. */
	set_sges(ex_to_tqp(ibqp), length ? 1 : 0, &sge);
}

static void wr_set_sge_list(struct ibv_qp_ex *ibqp, size_t num_sge,
			    const struct ibv_sge *sg_list)
{
	set_sges(ex_to_tqp(ibqp), num_sge, sg_list);
}

static void set_inline(struct tbrdma_qp *qp, size_t num_buf, const struct ibv_data_buf *bufs)
{
	struct tbrdma_wr *w = cur_wr(qp);
	size_t total = 0, i;
	uint8_t *data;

	if (!w)
		return;
	/* IBV_SEND_INLINE carries data out; a READ or an atomic has nothing to carry. */
	if (w->wr.opcode == IBV_WR_RDMA_READ || w->wr.opcode == IBV_WR_ATOMIC_CMP_AND_SWP ||
	    w->wr.opcode == IBV_WR_ATOMIC_FETCH_AND_ADD) {
		qp->wr_err = EINVAL;
		return;
	}
	for (i = 0; i < num_buf; i++) {
		if (bufs[i].length > qp->max_inline - total) {
			qp->wr_err = ENOSPC;
			return;
		}
		total += bufs[i].length;
	}
	data = grow(qp, qp->wr_inline, &qp->cap_inline, qp->n_inline + total, 1);
	if (!data)
		return;
	qp->wr_inline = data;
	w->is_inline = true;
	w->inline_off = qp->n_inline;
	w->inline_len = total;
	for (i = 0; i < num_buf; i++) {
		memcpy(&qp->wr_inline[qp->n_inline], bufs[i].addr, bufs[i].length);
		qp->n_inline += bufs[i].length;
	}
}

static void wr_set_inline_data(struct ibv_qp_ex *ibqp, void *addr, size_t length)
{
	struct ibv_data_buf buf = { .addr = addr, .length = length };

	set_inline(ex_to_tqp(ibqp), 1, &buf);
}

static void wr_set_inline_data_list(struct ibv_qp_ex *ibqp, size_t num_buf,
				    const struct ibv_data_buf *buf_list)
{
	set_inline(ex_to_tqp(ibqp), num_buf, buf_list);
}

static void reset_region(struct tbrdma_qp *qp)
{
	qp->wr_err = 0;
	qp->n_wr = 0;
	qp->n_sge = 0;
	qp->n_inline = 0;
}

static void wr_start(struct ibv_qp_ex *ibqp)
{
	struct tbrdma_qp *qp = ex_to_tqp(ibqp);

	pthread_mutex_lock(&qp->wr_lock);
	reset_region(qp);
}

/* Links the collected WRs now that their buffers no longer move, and posts them. */
static int wr_complete(struct ibv_qp_ex *ibqp)
{
	struct tbrdma_qp *qp = ex_to_tqp(ibqp);
	struct ibv_send_wr *bad;
	struct ibv_sge *inl = NULL;
	size_t i, n_inl = 0;
	int ret = qp->wr_err;

	if (ret || !qp->n_wr)
		goto out;
	if (qp->sq.ring) {
		size_t refused;

		ret = tbrdma_sq_post(qp, NULL, true, qp->n_wr, &refused);
		goto out;
	}
	for (i = 0; i < qp->n_wr; i++)
		n_inl += qp->wr[i].is_inline;
	/* An inline WR's data is one SGE over its copy; the kernel copies it in the post. */
	if (n_inl) {
		inl = calloc(n_inl, sizeof(*inl));
		if (!inl) {
			ret = ENOMEM;
			goto out;
		}
	}
	n_inl = 0;
	for (i = 0; i < qp->n_wr; i++) {
		struct tbrdma_wr *w = &qp->wr[i];

		if (w->is_inline) {
			inl[n_inl].addr = (uintptr_t)&qp->wr_inline[w->inline_off];
			inl[n_inl].length = w->inline_len;
			w->wr.sg_list = &inl[n_inl];
			w->wr.num_sge = w->inline_len ? 1 : 0;
			w->wr.send_flags |= IBV_SEND_INLINE;
			n_inl++;
		} else {
			w->wr.sg_list = w->wr.num_sge ? &qp->wr_sge[w->sge_off] : NULL;
		}
		w->wr.next = i + 1 < qp->n_wr ? &qp->wr[i + 1].wr : NULL;
	}
	ret = tbrdma_post_send(&qp->vqp.qp, &qp->wr[0].wr, &bad);
	free(inl);
out:
	reset_region(qp);
	pthread_mutex_unlock(&qp->wr_lock);
	return ret;
}

static void wr_abort(struct ibv_qp_ex *ibqp)
{
	struct tbrdma_qp *qp = ex_to_tqp(ibqp);

	reset_region(qp);
	pthread_mutex_unlock(&qp->wr_lock);
}

void tbrdma_set_wr_ops(struct tbrdma_qp *qp, uint64_t send_ops_flags)
{
	struct ibv_qp_ex *q = &qp->vqp.qp_ex;

	if (send_ops_flags & IBV_QP_EX_WITH_SEND)
		q->wr_send = wr_send;
	if (send_ops_flags & IBV_QP_EX_WITH_SEND_WITH_IMM)
		q->wr_send_imm = wr_send_imm;
	if (send_ops_flags & IBV_QP_EX_WITH_SEND_WITH_INV)
		q->wr_send_inv = wr_send_inv;
	if (send_ops_flags & IBV_QP_EX_WITH_RDMA_WRITE)
		q->wr_rdma_write = wr_rdma_write;
	if (send_ops_flags & IBV_QP_EX_WITH_RDMA_WRITE_WITH_IMM)
		q->wr_rdma_write_imm = wr_rdma_write_imm;
	if (send_ops_flags & IBV_QP_EX_WITH_RDMA_READ)
		q->wr_rdma_read = wr_rdma_read;
	if (send_ops_flags & IBV_QP_EX_WITH_ATOMIC_CMP_AND_SWP)
		q->wr_atomic_cmp_swp = wr_atomic_cmp_swp;
	if (send_ops_flags & IBV_QP_EX_WITH_ATOMIC_FETCH_AND_ADD)
		q->wr_atomic_fetch_add = wr_atomic_fetch_add;
	if (send_ops_flags & IBV_QP_EX_WITH_BIND_MW)
		q->wr_bind_mw = wr_bind_mw;
	if (send_ops_flags & IBV_QP_EX_WITH_LOCAL_INV)
		q->wr_local_inv = wr_local_inv;
	if (send_ops_flags & IBV_QP_EX_WITH_ATOMIC_WRITE)
		q->wr_atomic_write = wr_atomic_write;
	if (send_ops_flags & IBV_QP_EX_WITH_FLUSH)
		q->wr_flush = wr_flush;
	if (qp->qp_type == IBV_QPT_UD)
		q->wr_set_ud_addr = wr_set_ud_addr;
	q->wr_set_sge = wr_set_sge;
	q->wr_set_sge_list = wr_set_sge_list;
	q->wr_set_inline_data = wr_set_inline_data;
	q->wr_set_inline_data_list = wr_set_inline_data_list;
	q->wr_start = wr_start;
	q->wr_complete = wr_complete;
	q->wr_abort = wr_abort;
}

void tbrdma_free_wr_state(struct tbrdma_qp *qp)
{
	free(qp->wr);
	free(qp->wr_sge);
	free(qp->wr_inline);
}
