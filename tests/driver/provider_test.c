// SPDX-License-Identifier: GPL-2.0-only
/*
 * Userspace unit test of the provider's own logic (driver/provider/tbrdma: cq.c, qp.c,
 * wr.c), compiled against an rdma-core tree's headers with ASan/UBSan. The kernel command
 * layer (libibverbs' ibv_cmd_*) is replaced by a recording fake: a CQ fed from an array, and
 * posts whose WR chains are copied out. What goes over the wire is the lab's job
 * (vm-tests/tbrdma_extverbs.py); this checks what the provider does around the system calls:
 * batches kept across end_poll, WR chains built by ibv_wr_*, inline data copied at the
 * setter, errors that post nothing, and posts refused before libibverbs sizes a command.
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tbrdma.h"

static int failures;

#define CHECK(cond)                                                                        \
	do {                                                                               \
		if (!(cond)) {                                                             \
			printf("%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);    \
			failures++;                                                        \
		}                                                                          \
	} while (0)

/* ---- the fake kernel ---- */

static struct ibv_wc kernel_cq[64];
static int kernel_head, kernel_count, kernel_polls, kernel_max_ne;

int ibv_cmd_poll_cq(struct ibv_cq *cq, int ne, struct ibv_wc *wc)
{
	int n = 0;

	kernel_polls++;
	if (ne > kernel_max_ne)
		kernel_max_ne = ne;
	while (n < ne && kernel_head < kernel_count)
		wc[n++] = kernel_cq[kernel_head++];
	return n;
}

int ibv_cmd_create_cq(struct ibv_context *context, int cqe, struct ibv_comp_channel *channel,
		      int comp_vector, struct ibv_cq *cq, struct ibv_create_cq *cmd,
		      size_t cmd_size, struct ib_uverbs_create_cq_resp *resp, size_t resp_size)
{
	cq->cqe = cqe;
	return 0;
}

#if IBVERBS_PABI_VERSION >= 59
int ibv_cmd_create_cq_ex(struct ibv_context *context, const struct ibv_cq_init_attr_ex *attr,
			 struct verbs_create_cq_prov_attr *prov_attr, struct verbs_cq *cq,
			 struct ibv_create_cq_ex *cmd, size_t cmd_size,
			 struct ib_uverbs_ex_create_cq_resp *resp, size_t resp_size,
			 uint32_t cmd_flags)
#else
int ibv_cmd_create_cq_ex(struct ibv_context *context, const struct ibv_cq_init_attr_ex *attr,
			 struct verbs_cq *cq, struct ibv_create_cq_ex *cmd, size_t cmd_size,
			 struct ib_uverbs_ex_create_cq_resp *resp, size_t resp_size,
			 uint32_t cmd_flags)
#endif
{
	cq->cq.cqe = attr->cqe;
	return 0;
}

int ibv_cmd_destroy_cq(struct ibv_cq *cq)
{
	return 0;
}

int ibv_cmd_create_qp(struct ibv_pd *pd, struct ibv_qp *qp, struct ibv_qp_init_attr *attr,
		      struct ibv_create_qp *cmd, size_t cmd_size,
		      struct ib_uverbs_create_qp_resp *resp, size_t resp_size)
{
	qp->qp_type = attr->qp_type;
	return 0;
}

static uint32_t create_qp_ex_mask;

int ibv_cmd_create_qp_ex(struct ibv_context *context, struct verbs_qp *qp,
			 struct ibv_qp_init_attr_ex *attr, struct ibv_create_qp *cmd,
			 size_t cmd_size, struct ib_uverbs_create_qp_resp *resp, size_t resp_size)
{
	create_qp_ex_mask = attr->comp_mask;
	qp->qp.qp_type = attr->qp_type;
	qp->comp_mask = 0;			/* as libibverbs' set_qp() does */
	attr->cap.max_inline_data = 256;	/* what the module reports */
	return 0;
}

int ibv_cmd_destroy_qp(struct ibv_qp *qp)
{
	return 0;
}

struct posted {
	enum ibv_wr_opcode opcode;
	uint64_t wr_id;
	unsigned int send_flags;
	int num_sge;
	uint32_t len;
	__be32 imm;
	uint32_t rkey;
	uint32_t invalidate_rkey;
	uint64_t remote_addr, compare_add, swap;
	struct ibv_ah *ah;
	uint32_t remote_qpn, remote_qkey;
	uint8_t inline_data[512];
};

static struct posted posted[256];
static int n_posted, send_calls, recv_calls;

int ibv_cmd_post_send(struct ibv_qp *qp, struct ibv_send_wr *wr, struct ibv_send_wr **bad_wr)
{
	send_calls++;
	for (; wr; wr = wr->next) {
		struct posted *p = &posted[n_posted++ % 256];
		int i;

		memset(p, 0, sizeof(*p));
		p->opcode = wr->opcode;
		p->wr_id = wr->wr_id;
		p->send_flags = wr->send_flags;
		p->num_sge = wr->num_sge;
		p->imm = wr->imm_data;
		if (wr->opcode == IBV_WR_SEND_WITH_INV)
			p->invalidate_rkey = wr->invalidate_rkey;
		if (qp->qp_type == IBV_QPT_UD) {
			p->ah = wr->wr.ud.ah;
			p->remote_qpn = wr->wr.ud.remote_qpn;
			p->remote_qkey = wr->wr.ud.remote_qkey;
		} else if (wr->opcode == IBV_WR_ATOMIC_CMP_AND_SWP ||
		    wr->opcode == IBV_WR_ATOMIC_FETCH_AND_ADD) {
			p->rkey = wr->wr.atomic.rkey;
			p->remote_addr = wr->wr.atomic.remote_addr;
			p->compare_add = wr->wr.atomic.compare_add;
			p->swap = wr->wr.atomic.swap;
		}
		for (i = 0; i < wr->num_sge; i++) {
			/* the kernel reads inline bytes during the command: they must be there */
			if ((wr->send_flags & IBV_SEND_INLINE) &&
			    p->len + wr->sg_list[i].length <= sizeof(p->inline_data))
				memcpy(p->inline_data + p->len,
				       (void *)(uintptr_t)wr->sg_list[i].addr,
				       wr->sg_list[i].length);
			p->len += wr->sg_list[i].length;
		}
	}
	return 0;
}

int ibv_cmd_post_recv(struct ibv_qp *qp, struct ibv_recv_wr *wr, struct ibv_recv_wr **bad_wr)
{
	recv_calls++;
	return 0;
}

int ibv_cmd_post_srq_recv(struct ibv_srq *srq, struct ibv_recv_wr *wr,
			  struct ibv_recv_wr **bad_wr)
{
	recv_calls++;
	return 0;
}

/* ---- tests ---- */

static void feed(int n)
{
	int i;

	for (i = 0; i < n; i++) {
		kernel_cq[i] = (struct ibv_wc){ .wr_id = i, .byte_len = 10 * i,
						.opcode = IBV_WC_RECV, .qp_num = 7,
						.src_qp = 9, .wc_flags = IBV_WC_WITH_IMM,
						.imm_data = htobe32(i) };
	}
	kernel_head = 0;
	kernel_count = n;
}

static void test_cq_ex(void)
{
	struct ibv_cq_init_attr_ex attr = { .cqe = 64, .wc_flags = IBV_WC_EX_WITH_BYTE_LEN };
	struct ibv_poll_cq_attr poll_attr = {};
	struct ibv_wc wc[8];
	struct ibv_cq_ex *cq;
	uint64_t next = 0;
	int i, ret;

	attr.wc_flags |= IBV_WC_EX_WITH_COMPLETION_TIMESTAMP;
	CHECK(!tbrdma_create_cq_ex(NULL, &attr) && errno == EOPNOTSUPP);
	attr.wc_flags = IBV_WC_EX_WITH_BYTE_LEN;
	attr.comp_mask = IBV_CQ_INIT_ATTR_MASK_FLAGS;
	attr.flags = IBV_CREATE_CQ_ATTR_IGNORE_OVERRUN;
	CHECK(!tbrdma_create_cq_ex(NULL, &attr) && errno == EOPNOTSUPP);
	attr.flags = IBV_CREATE_CQ_ATTR_SINGLE_THREADED;
	cq = tbrdma_create_cq_ex(NULL, &attr);
	CHECK(cq != NULL);
	if (!cq)
		return;
	CHECK(cq->start_poll(cq, &poll_attr) == ENOENT);

	feed(40);
	/* one completion per region: the rest of each fetched batch waits, in order */
	for (i = 0; i < 10; i++, next++) {
		CHECK(cq->start_poll(cq, &poll_attr) == 0);
		CHECK(cq->wr_id == next && cq->status == IBV_WC_SUCCESS);
		CHECK(cq->read_byte_len(cq) == 10 * next && cq->read_qp_num(cq) == 7);
		CHECK(cq->read_src_qp(cq) == 9 && cq->read_opcode(cq) == IBV_WC_RECV);
		CHECK(be32toh(cq->read_imm_data(cq)) == next);
		CHECK(cq->read_wc_flags(cq) == IBV_WC_WITH_IMM);
		cq->end_poll(cq);
	}
	CHECK(kernel_polls == 2);		/* 1 (empty) + one batch of 16 */
	/* ibv_poll_cq on the same CQ returns the fetched ones first */
	CHECK(tbrdma_poll_cq(ibv_cq_ex_to_cq(cq), 8, wc) == 8);
	for (i = 0; i < 8; i++, next++)
		CHECK(wc[i].wr_id == next);
	/* and next_poll carries on across batches until the CQ is empty */
	CHECK(cq->start_poll(cq, &poll_attr) == 0);
	do {
		CHECK(cq->wr_id == next);
		next++;
	} while ((ret = cq->next_poll(cq)) == 0);
	CHECK(ret == ENOENT);
	cq->end_poll(cq);
	CHECK(next == 40);
	CHECK(cq->start_poll(cq, &poll_attr) == ENOENT);
	/* a huge ne is never passed on: libibverbs sizes its reply from it in an int */
	feed(3);
	CHECK(tbrdma_poll_cq(ibv_cq_ex_to_cq(cq), 1 << 28, wc) == 3);
	CHECK(kernel_max_ne <= 64);
	CHECK(tbrdma_destroy_cq(ibv_cq_ex_to_cq(cq)) == 0);
}

static struct ibv_pd pd;

static struct ibv_qp_ex *qp_ex_of(struct ibv_qp *qp)
{
	return &container_of(qp, struct verbs_qp, qp)->qp_ex;
}

static struct ibv_qp_ex *make_typed_qp_ex(enum ibv_qp_type type, uint64_t ops)
{
	struct ibv_qp_init_attr_ex attr = {
		.qp_type = type, .pd = &pd,
		.comp_mask = IBV_QP_INIT_ATTR_PD | IBV_QP_INIT_ATTR_SEND_OPS_FLAGS |
			     IBV_QP_INIT_ATTR_CREATE_FLAGS,
		.send_ops_flags = ops,
		.cap = { .max_send_wr = 128, .max_send_sge = 2, .max_recv_sge = 2 },
	};
	struct ibv_qp *qp = tbrdma_create_qp_ex(NULL, &attr);

	return qp ? qp_ex_of(qp) : NULL;
}

static struct ibv_qp_ex *make_qp_ex(uint64_t ops)
{
	return make_typed_qp_ex(IBV_QPT_RC, ops);
}

static void test_qp_ex_refusals(void)
{
	struct ibv_qp_init_attr_ex attr = {
		.qp_type = IBV_QPT_RC, .pd = &pd,
		.comp_mask = IBV_QP_INIT_ATTR_PD | IBV_QP_INIT_ATTR_SEND_OPS_FLAGS,
		.cap = { .max_send_wr = 8, .max_send_sge = 1 },
	};
	static const uint64_t refused[] = {
		IBV_QP_EX_WITH_BIND_MW, IBV_QP_EX_WITH_LOCAL_INV, IBV_QP_EX_WITH_TSO,
	};
	size_t i;

	for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		attr.send_ops_flags = IBV_QP_EX_WITH_SEND | refused[i];
		CHECK(!tbrdma_create_qp_ex(NULL, &attr) && errno == EOPNOTSUPP);
	}
	attr.qp_type = IBV_QPT_UC;
	attr.send_ops_flags = IBV_QP_EX_WITH_RDMA_READ;
	CHECK(!tbrdma_create_qp_ex(NULL, &attr) && errno == EOPNOTSUPP);
	/* atomics are RC only */
	attr.send_ops_flags = IBV_QP_EX_WITH_ATOMIC_FETCH_AND_ADD;
	CHECK(!tbrdma_create_qp_ex(NULL, &attr) && errno == EOPNOTSUPP);
	/* UD sends only */
	attr.qp_type = IBV_QPT_UD;
	attr.send_ops_flags = IBV_QP_EX_WITH_SEND | IBV_QP_EX_WITH_RDMA_WRITE;
	CHECK(!tbrdma_create_qp_ex(NULL, &attr) && errno == EOPNOTSUPP);
	attr.qp_type = IBV_QPT_RC;
	attr.comp_mask |= IBV_QP_INIT_ATTR_CREATE_FLAGS;
	attr.create_flags = IBV_QP_CREATE_SCATTER_FCS;
	CHECK(!tbrdma_create_qp_ex(NULL, &attr) && errno == EOPNOTSUPP);
}

static void test_wr_chain(void)
{
	struct ibv_qp_ex *qx = make_qp_ex(IBV_QP_EX_WITH_SEND | IBV_QP_EX_WITH_RDMA_WRITE |
					  IBV_QP_EX_WITH_RDMA_READ);
	uint8_t buf[64], src[300];
	struct ibv_sge sg[2] = { { (uintptr_t)buf, 10, 1 }, { (uintptr_t)buf + 10, 20, 1 } };
	int i;

	CHECK(qx != NULL);
	if (!qx)
		return;
	/* CREATE_FLAGS with no flag set is accepted and not passed on */
	CHECK(!(create_qp_ex_mask & IBV_QP_INIT_ATTR_CREATE_FLAGS));
	memset(src, 'a', sizeof(src));
	n_posted = send_calls = 0;
	qx->wr_start(qx);
	for (i = 0; i < 100; i++) {
		qx->wr_id = 1000 + i;
		qx->wr_flags = IBV_SEND_SIGNALED;
		if (i % 3 == 0) {
			qx->wr_send(qx);
			qx->wr_set_sge_list(qx, 2, sg);
		} else if (i % 3 == 1) {
			qx->wr_rdma_write(qx, 5, 0x1000);
			src[0] = 'A' + i % 26;
			qx->wr_set_inline_data(qx, src, 200);
			src[0] = '?';		/* copied at the setter: this must not be sent */
		} else {
			qx->wr_rdma_read(qx, 5, 0x1000);
			qx->wr_set_sge(qx, 1, (uintptr_t)buf, 30);
		}
	}
	CHECK(qx->wr_complete(qx) == 0);
	CHECK(n_posted == 100 && send_calls == 2);	/* slices of 64 */
	for (i = 0; i < 100 && i < n_posted; i++) {
		CHECK(posted[i].wr_id == (uint64_t)(1000 + i));
		CHECK(posted[i].send_flags & IBV_SEND_SIGNALED);
		if (i % 3 == 1) {
			CHECK(posted[i].opcode == IBV_WR_RDMA_WRITE);
			CHECK((posted[i].send_flags & IBV_SEND_INLINE) && posted[i].len == 200);
			CHECK(posted[i].inline_data[0] == 'A' + i % 26);
			CHECK(posted[i].inline_data[199] == 'a');
		} else {
			CHECK(!(posted[i].send_flags & IBV_SEND_INLINE) && posted[i].len == 30);
		}
	}
	CHECK(tbrdma_destroy_qp(&qx->qp_base) == 0);
}

/* ibv_wr_set_ud_addr: each UD WR carries its own AH, QPN and Q_Key to the post. */
static void test_wr_ud(void)
{
	struct ibv_qp_ex *qx = make_typed_qp_ex(IBV_QPT_UD, IBV_QP_EX_WITH_SEND |
						IBV_QP_EX_WITH_SEND_WITH_IMM);
	struct ibv_ah ah[2] = {};
	uint8_t buf[16];

	CHECK(qx != NULL && qx->wr_set_ud_addr != NULL && qx->wr_rdma_write == NULL);
	if (!qx || !qx->wr_set_ud_addr)
		return;
	n_posted = send_calls = 0;
	qx->wr_start(qx);
	qx->wr_id = 1;
	qx->wr_send(qx);
	qx->wr_set_ud_addr(qx, &ah[0], 77, 0x1111);
	qx->wr_set_sge(qx, 1, (uintptr_t)buf, 16);
	qx->wr_id = 2;
	qx->wr_send_imm(qx, htobe32(5));
	qx->wr_set_ud_addr(qx, &ah[1], 78, 0x2222);
	qx->wr_set_sge(qx, 1, (uintptr_t)buf, 8);
	CHECK(qx->wr_complete(qx) == 0);
	CHECK(n_posted == 2 && send_calls == 1);
	CHECK(posted[0].ah == &ah[0] && posted[0].remote_qpn == 77 &&
	      posted[0].remote_qkey == 0x1111 && posted[0].opcode == IBV_WR_SEND);
	CHECK(posted[1].ah == &ah[1] && posted[1].remote_qpn == 78 &&
	      posted[1].remote_qkey == 0x2222 && posted[1].opcode == IBV_WR_SEND_WITH_IMM &&
	      posted[1].imm == htobe32(5));
	CHECK(tbrdma_destroy_qp(&qx->qp_base) == 0);
}

/* ibv_wr_atomic_*: opcode, rkey, address and operands reach the post; no inline data. */
static void test_wr_atomics(void)
{
	struct ibv_qp_ex *qx = make_qp_ex(IBV_QP_EX_WITH_ATOMIC_CMP_AND_SWP |
					  IBV_QP_EX_WITH_ATOMIC_FETCH_AND_ADD);
	uint64_t result[2];

	CHECK(qx != NULL && qx->wr_atomic_cmp_swp && qx->wr_atomic_fetch_add);
	if (!qx)
		return;
	n_posted = send_calls = 0;
	qx->wr_start(qx);
	qx->wr_id = 1;
	qx->wr_flags = IBV_SEND_SIGNALED;
	qx->wr_atomic_cmp_swp(qx, 9, 0x2000, 11, 22);
	qx->wr_set_sge(qx, 3, (uintptr_t)&result[0], 8);
	qx->wr_id = 2;
	qx->wr_atomic_fetch_add(qx, 9, 0x2008, 5);
	qx->wr_set_sge(qx, 3, (uintptr_t)&result[1], 8);
	CHECK(qx->wr_complete(qx) == 0);
	CHECK(n_posted == 2);
	CHECK(posted[0].opcode == IBV_WR_ATOMIC_CMP_AND_SWP && posted[0].rkey == 9 &&
	      posted[0].remote_addr == 0x2000 && posted[0].compare_add == 11 &&
	      posted[0].swap == 22 && posted[0].len == 8 && posted[0].wr_id == 1);
	CHECK(posted[1].opcode == IBV_WR_ATOMIC_FETCH_AND_ADD && posted[1].rkey == 9 &&
	      posted[1].remote_addr == 0x2008 && posted[1].compare_add == 5 &&
	      posted[1].len == 8 && posted[1].wr_id == 2);
	n_posted = 0;
	qx->wr_start(qx);
	qx->wr_atomic_fetch_add(qx, 9, 0x2008, 5);
	qx->wr_set_inline_data(qx, result, 8);
	CHECK(qx->wr_complete(qx) == EINVAL && n_posted == 0);
	CHECK(tbrdma_destroy_qp(&qx->qp_base) == 0);
}

/* ibv_wr_send_inv: a SEND_WITH_INV carrying the key, with its data (RC and UC). */
static void test_wr_send_inv(void)
{
	struct ibv_qp_ex *qx = make_qp_ex(IBV_QP_EX_WITH_SEND | IBV_QP_EX_WITH_SEND_WITH_INV);
	uint8_t buf[16];

	CHECK(qx != NULL && qx->wr_send_inv);
	if (!qx)
		return;
	n_posted = send_calls = 0;
	qx->wr_start(qx);
	qx->wr_id = 5;
	qx->wr_flags = IBV_SEND_SIGNALED;
	qx->wr_send_inv(qx, 0x12345678);
	qx->wr_set_sge(qx, 1, (uintptr_t)buf, sizeof(buf));
	qx->wr_send(qx);
	CHECK(qx->wr_complete(qx) == 0);
	CHECK(n_posted == 2 && send_calls == 1);
	CHECK(posted[0].opcode == IBV_WR_SEND_WITH_INV && posted[0].wr_id == 5 &&
	      posted[0].invalidate_rkey == 0x12345678 && posted[0].len == sizeof(buf));
	CHECK(posted[1].opcode == IBV_WR_SEND && posted[1].invalidate_rkey == 0);
	CHECK(tbrdma_destroy_qp(&qx->qp_base) == 0);
}

static void test_wr_errors_post_nothing(void)
{
	struct ibv_qp_ex *qx = make_qp_ex(IBV_QP_EX_WITH_SEND | IBV_QP_EX_WITH_SEND_WITH_IMM |
					  IBV_QP_EX_WITH_RDMA_READ);
	struct ibv_sge sg[3] = {};
	uint8_t src[300] = {}, more[64];
	struct ibv_data_buf list[2] = { { src, 100 }, { more, 56 } };
	int i;

	CHECK(qx != NULL);
	if (!qx)
		return;
	send_calls = n_posted = 0;
	qx->wr_start(qx);
	qx->wr_send(qx);
	qx->wr_set_sge(qx, 1, 0, 8);
	qx->wr_send(qx);
	qx->wr_set_inline_data(qx, src, 257);
	CHECK(qx->wr_complete(qx) == ENOSPC);
	qx->wr_start(qx);
	qx->wr_send(qx);
	qx->wr_set_sge_list(qx, 3, sg);
	CHECK(qx->wr_complete(qx) == EINVAL);
	qx->wr_start(qx);
	qx->wr_set_sge(qx, 1, 0, 8);		/* no WR to apply to */
	CHECK(qx->wr_complete(qx) == EINVAL);
	qx->wr_start(qx);
	qx->wr_rdma_read(qx, 1, 2);
	qx->wr_set_inline_data(qx, src, 8);
	CHECK(qx->wr_complete(qx) == EINVAL);
	qx->wr_start(qx);
	for (i = 0; i < 129; i++)
		qx->wr_send(qx);
	CHECK(qx->wr_complete(qx) == ENOMEM);
	qx->wr_start(qx);
	qx->wr_send(qx);
	qx->wr_abort(qx);
	qx->wr_start(qx);
	CHECK(qx->wr_complete(qx) == 0);
	CHECK(send_calls == 0 && n_posted == 0);
	/* the QP still works; an inline list is one contiguous copy */
	memset(more, 'b', sizeof(more));
	qx->wr_start(qx);
	qx->wr_send_imm(qx, htobe32(7));
	qx->wr_set_inline_data_list(qx, 2, list);
	memset(more, 0, sizeof(more));
	CHECK(qx->wr_complete(qx) == 0);
	CHECK(n_posted == 1 && posted[0].opcode == IBV_WR_SEND_WITH_IMM);
	CHECK(posted[0].len == 156 && posted[0].inline_data[100] == 'b');
	CHECK(posted[0].imm == htobe32(7));
	CHECK(tbrdma_destroy_qp(&qx->qp_base) == 0);
}

/* libibverbs' ibv_cmd_post_* would size a stack buffer from these: refused before. */
static void test_post_checks(void)
{
	struct ibv_qp_init_attr attr = { .qp_type = IBV_QPT_RC,
					 .cap = { .max_send_wr = 256, .max_send_sge = 2,
						  .max_recv_sge = 2 } };
	struct ibv_qp *qp = tbrdma_create_qp(&pd, &attr);
	struct ibv_send_wr chain[200], one = { .num_sge = -1 }, *bad = NULL;
	struct ibv_recv_wr rwr = { .num_sge = 1 << 20 }, *rbad = NULL;
	int i;

	CHECK(qp != NULL);
	if (!qp)
		return;
	/* a plain QP is a verbs_qp too: ibv_qp_to_qp_ex reads its comp_mask */
	CHECK(!(container_of(qp, struct verbs_qp, qp)->comp_mask & VERBS_QP_EX));
	send_calls = n_posted = 0;
	CHECK(tbrdma_post_send(qp, &one, &bad) == EINVAL && bad == &one && send_calls == 0);
	memset(chain, 0, sizeof(chain));
	for (i = 0; i < 200; i++) {
		chain[i].next = i < 199 ? &chain[i + 1] : NULL;
		chain[i].wr_id = i;
	}
	chain[150].num_sge = 3;
	CHECK(tbrdma_post_send(qp, chain, &bad) == EINVAL && bad == &chain[150]);
	CHECK(n_posted == 150 && send_calls == 3 && posted[149].wr_id == 149);
	recv_calls = 0;
	CHECK(tbrdma_post_recv(qp, &rwr, &rbad) == EINVAL && rbad == &rwr && recv_calls == 0);
	rwr.num_sge = 2;
	CHECK(tbrdma_post_recv(qp, &rwr, &rbad) == 0 && recv_calls == 1);
	CHECK(tbrdma_destroy_qp(qp) == 0);
}

int main(void)
{
	test_cq_ex();
	test_qp_ex_refusals();
	test_wr_chain();
	test_wr_atomics();
	test_wr_send_inv();
	test_wr_ud();
	test_wr_errors_post_nothing();
	test_post_checks();
	printf("%s: %d failure(s)\n", failures ? "FAIL" : "ok", failures);
	return failures ? 1 : 0;
}
