// SPDX-License-Identifier: GPL-2.0-only
/*
 * Userspace unit test of the provider's own logic (driver/provider/tbrdma), compiled against
 * an rdma-core tree's headers with ASan/UBSan. libibverbs' ibv_cmd_* layer is replaced by a
 * fake of the kernel module that keeps its queues as driver/kernel does: CQs, the send
 * queues of RC/UC QPs and the receive queues of QPs without SRQ are rings in a memfd standing
 * for the command fd, announced in the create commands' driver data (umap.c). The test
 * writes completions into CQ rings as kernel/cq.c does; the send doorbell (POST_SEND without
 * WRs) takes slots as kernel/sq.c does and records them; receives complete or are flushed
 * from their ring as kernel/rq.c does. UD sends and SRQ receives go by command and are
 * recorded. What goes over the wire is the lab's job (vm-tests/tbrdma_extverbs.py); this
 * checks what the provider does with the rings and around the system calls.
 */
#define _GNU_SOURCE
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tbrdma.h"

static int failures;

#define CHECK(cond)                                                                        \
	do {                                                                               \
		if (!(cond)) {                                                             \
			printf("%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);    \
			failures++;                                                        \
		}                                                                          \
	} while (0)

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* ---- the fake kernel module ---- */

/*
 * tbrdma.c is linked for tbrdma_map_queue; the commands of its context, PD, MR, SRQ, MW and
 * AH verbs are not under test and trap if ever reached.
 */
void verbs_register_driver(const struct verbs_device_ops *ops) {}
#define TRAP(f) ".globl " #f "\n" #f ": ud2\n"
__asm__(".pushsection .text\n" TRAP(_verbs_init_and_alloc_context) TRAP(verbs_set_ops)
	TRAP(verbs_uninit_context) TRAP(ibv_cmd_get_context) TRAP(ibv_cmd_query_device_any)
	TRAP(ibv_cmd_query_port) TRAP(ibv_cmd_alloc_pd) TRAP(ibv_cmd_dealloc_pd)
	TRAP(ibv_cmd_reg_mr) TRAP(ibv_cmd_rereg_mr) TRAP(ibv_cmd_dereg_mr) TRAP(ibv_cmd_query_qp)
	TRAP(ibv_cmd_create_srq) TRAP(ibv_cmd_modify_srq) TRAP(ibv_cmd_query_srq)
	TRAP(ibv_cmd_destroy_srq) TRAP(ibv_cmd_alloc_mw) TRAP(ibv_cmd_dealloc_mw)
	TRAP(ibv_cmd_attach_mcast) TRAP(ibv_cmd_detach_mcast) TRAP(ibv_cmd_req_notify_cq)
	TRAP(ibv_cmd_create_ah) TRAP(ibv_cmd_destroy_ah) ".popsection\n");

/* The command fd's mmap space: every mapped queue is a page-aligned piece of it. */
#define MMAP_SPACE (32u << 20)
static struct ibv_context ctx;
static struct ibv_pd pd = { .context = &ctx };
static size_t mmap_next, page;

/*
 * A mapped queue as the module holds it (umap.c): the buffer, through the module's own
 * mapping, and the index it keeps to itself (a CQ's uq_producer, an SQ's sq_taken, an RQ's
 * rq_head).
 */
struct kqueue {
	const void *owner;		/* the ibv_cq, the ibv_qp, or RQ_OF(ibv_qp); NULL: free */
	void *buf;
	size_t size;
	struct tbrdma_queue_hdr *hdr;
	void *slots;
	uint32_t mask;
	uint32_t capacity;		/* CQ: the cqe asked for; a full CQ is counted on it */
	uint32_t index;
};

#define RQ_OF(qp) ((const char *)(qp) + 1)
static struct kqueue kq[64];
static bool old_module;			/* answers without maps, as before the rings */
static uint32_t first_index;		/* a new CQ's indices, as after that many completions */
static int destroys;			/* ibv_cmd_destroy_qp/cq calls */

static struct kqueue *kq_of(const void *owner)
{
	size_t i;

	for (i = 0; i < N_OF(kq); i++)
		if (kq[i].owner == owner)
			return &kq[i];
	return NULL;
}

/* tbrdma_uqueue_create: a zeroed buffer of a power-of-two number of slots. */
static struct kqueue *kq_create(const void *owner, uint32_t min_slots, size_t slot_size,
				struct tbrdma_queue_map *map)
{
	struct kqueue *k = kq_of(NULL);
	uint32_t slots = 1;
	size_t size;

	while (slots < min_slots)
		slots <<= 1;
	size = (TBRDMA_QUEUE_SLOTS_OFFSET + (size_t)slots * slot_size + page - 1) / page * page;
	if (!k || mmap_next + size > MMAP_SPACE)
		return NULL;
	k->buf = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, ctx.cmd_fd, mmap_next);
	if (k->buf == MAP_FAILED)
		return NULL;
	*k = (struct kqueue){ .owner = owner, .buf = k->buf, .size = size, .hdr = k->buf,
			      .slots = (uint8_t *)k->buf + TBRDMA_QUEUE_SLOTS_OFFSET,
			      .mask = slots - 1, .capacity = min_slots };
	*map = (struct tbrdma_queue_map){ .offset = mmap_next, .size = size, .slots = slots };
	mmap_next += size + page;	/* a gap: a ring mapped at a wrong offset reads zeroes */
	return k;
}

static void kq_destroy(const void *owner)
{
	struct kqueue *k = kq_of(owner);

	if (owner && k) {
		munmap(k->buf, k->size);
		memset(k, 0, sizeof(*k));
	}
}

/* kernel/cq.c create_cq: the provider asks for a mapped CQ by leaving room for the answer. */
static int fake_create_cq(struct ibv_cq *cq, int cqe, void *drv, size_t drv_len)
{
	struct tbrdma_cq_resp r = {};
	struct kqueue *k;

	cq->context = &ctx;
	cq->cqe = cqe;
	if (old_module || drv_len < sizeof(r))
		return 0;
	k = kq_create(cq, cqe, sizeof(struct ib_uverbs_wc), &r.cq);
	if (!k)
		return ENOMEM;
	k->index = k->hdr->producer = k->hdr->consumer = first_index;
	memcpy(drv, &r, sizeof(r));
	return 0;
}

int ibv_cmd_create_cq(struct ibv_context *context, int cqe, struct ibv_comp_channel *channel,
		      int comp_vector, struct ibv_cq *cq, struct ibv_create_cq *cmd,
		      size_t cmd_size, struct ib_uverbs_create_cq_resp *resp, size_t resp_size)
{
	return fake_create_cq(cq, cqe, resp + 1, resp_size - sizeof(*resp));
}

/* rdma-core 59 added the provider-attribute argument */
#if IBVERBS_PABI_VERSION >= 59
#define PROV_ATTR struct verbs_create_cq_prov_attr *prov_attr,
#else
#define PROV_ATTR
#endif
int ibv_cmd_create_cq_ex(struct ibv_context *context, const struct ibv_cq_init_attr_ex *attr,
			 PROV_ATTR struct verbs_cq *cq, struct ibv_create_cq_ex *cmd,
			 size_t cmd_size, struct ib_uverbs_ex_create_cq_resp *resp,
			 size_t resp_size, uint32_t cmd_flags)
{
	return fake_create_cq(&cq->cq, attr->cqe, resp + 1, resp_size - sizeof(*resp));
}

/* kernel/cq.c resize_mapped: a new ring with what the provider has not consumed. */
int ibv_cmd_resize_cq(struct ibv_cq *cq, int cqe, struct ibv_resize_cq *cmd, size_t cmd_size,
		      struct ib_uverbs_resize_cq_resp *resp, size_t resp_size)
{
	struct kqueue old = *kq_of(cq), *k;
	struct tbrdma_cq_resp r = {};
	uint32_t pending = old.index - __atomic_load_n(&old.hdr->consumer, __ATOMIC_ACQUIRE);
	uint32_t i;

	if (pending > old.capacity)
		pending = old.capacity;
	if (resp_size < sizeof(*resp) + sizeof(r) || pending > (uint32_t)cqe)
		return EINVAL;
	kq_of(cq)->owner = NULL;
	k = kq_create(cq, cqe, sizeof(struct ib_uverbs_wc), &r.cq);
	for (i = 0; i < pending; i++)
		((struct ib_uverbs_wc *)k->slots)[i] =
			((struct ib_uverbs_wc *)old.slots)[(old.index - pending + i) & old.mask];
	k->index = pending;
	__atomic_store_n(&k->hdr->producer, pending, __ATOMIC_RELEASE);
	munmap(old.buf, old.size);
	cq->cqe = cqe;
	memcpy(resp + 1, &r, sizeof(r));
	return 0;
}

int ibv_cmd_destroy_cq(struct ibv_cq *cq)
{
	destroys++;
	kq_destroy(cq);
	return 0;
}

/* A completion whose every field follows from id, so a misplaced or stale one shows. */
static struct ib_uverbs_wc mkwc(uint64_t id, uint32_t qpn)
{
	return (struct ib_uverbs_wc){
		.wr_id = id, .status = id % 4 == 3 ? IBV_WC_REM_ACCESS_ERR : IBV_WC_SUCCESS,
		.opcode = id % 2 ? IBV_WC_RECV_RDMA_WITH_IMM : IBV_WC_RECV,
		.vendor_err = id + 1, .byte_len = 10 * id, .ex.imm_data = htobe32(id),
		.qp_num = qpn, .src_qp = id + 2,
		.wc_flags = IBV_WC_WITH_IMM | (id % 2 ? IBV_WC_GRH : 0),
		.pkey_index = id & 0xff, .slid = id + 3, .sl = id & 15,
		.dlid_path_bits = id & 0x7f, .port_num = 1,
	};
}

/* tbrdma_cq_push + uq_write on a mapped CQ: false is an overrun. */
static bool kput(struct ibv_cq *cq, const struct ib_uverbs_wc *wc)
{
	struct kqueue *k = kq_of(cq);

	if (k->index - __atomic_load_n(&k->hdr->consumer, __ATOMIC_ACQUIRE) >= k->capacity)
		return false;
	((struct ib_uverbs_wc *)k->slots)[k->index & k->mask] = *wc;
	__atomic_store_n(&k->hdr->producer, ++k->index, __ATOMIC_RELEASE);
	return true;
}

static bool kpush(struct ibv_cq *cq, uint64_t id, uint32_t qpn)
{
	struct ib_uverbs_wc wc = mkwc(id, qpn);

	return kput(cq, &wc);
}

/* What the kernel counts as queued on a CQ. */
static uint32_t kpending(struct ibv_cq *cq)
{
	return kq_of(cq)->index - kq_of(cq)->hdr->consumer;
}

static uint32_t next_qpn = 17, create_qp_ex_mask;

/* kernel/qp.c create_qp: caps as it reports them, the rings of sq.c and rq.c. */
static int fake_create_qp(struct ibv_qp *qp, struct ibv_qp_init_attr_ex *attr, void *drv,
			  size_t drv_len)
{
	struct tbrdma_qp_resp r = {};
	struct ibv_qp_cap *cap = &attr->cap;

	qp->send_cq = attr->send_cq;		/* as libibverbs' set_qp */
	qp->recv_cq = attr->recv_cq;
	qp->state = IBV_QPS_RESET;
	qp->qp_type = attr->qp_type;
	qp->qp_num = next_qpn++;
	cap->max_send_wr = cap->max_send_wr ? cap->max_send_wr : 1;
	cap->max_send_sge = cap->max_send_sge ? cap->max_send_sge : 1;
	cap->max_recv_wr = attr->srq ? 0 : cap->max_recv_wr ? cap->max_recv_wr : 1;
	cap->max_recv_sge = attr->srq ? 0 : cap->max_recv_sge ? cap->max_recv_sge : 1;
	cap->max_inline_data = 256;
	if (old_module || drv_len < sizeof(r))
		return 0;
	if ((attr->qp_type == IBV_QPT_RC || attr->qp_type == IBV_QPT_UC) &&
	    !kq_create(qp, cap->max_send_wr, sizeof(struct tbrdma_sq_slot), &r.sq))
		return ENOMEM;
	if (!attr->srq) {
		if (!kq_create(RQ_OF(qp), cap->max_recv_wr, sizeof(struct tbrdma_rq_slot), &r.rq))
			return ENOMEM;
		cap->max_recv_wr = r.rq.slots;	/* kernel/rq.c reports the ring's size */
	}
	memcpy(drv, &r, sizeof(r));
	return 0;
}

int ibv_cmd_create_qp(struct ibv_pd *pd, struct ibv_qp *qp, struct ibv_qp_init_attr *attr,
		      struct ibv_create_qp *cmd, size_t cmd_size,
		      struct ib_uverbs_create_qp_resp *resp, size_t resp_size)
{
	struct ibv_qp_init_attr_ex ex = {
		.qp_type = attr->qp_type, .pd = pd, .send_cq = attr->send_cq,
		.recv_cq = attr->recv_cq, .srq = attr->srq, .cap = attr->cap,
	};
	int ret = fake_create_qp(qp, &ex, resp + 1, resp_size - sizeof(*resp));

	attr->cap = ex.cap;
	return ret;
}

int ibv_cmd_create_qp_ex(struct ibv_context *context, struct verbs_qp *qp,
			 struct ibv_qp_init_attr_ex *attr, struct ibv_create_qp *cmd,
			 size_t cmd_size, struct ib_uverbs_create_qp_resp *resp, size_t resp_size)
{
	create_qp_ex_mask = attr->comp_mask;
	qp->comp_mask = 0;
	return fake_create_qp(&qp->qp, attr, resp + 1, resp_size - sizeof(*resp));
}

int ibv_cmd_destroy_qp(struct ibv_qp *qp)
{
	destroys++;
	kq_destroy(qp);
	kq_destroy(RQ_OF(qp));
	return 0;
}

int ibv_cmd_modify_qp(struct ibv_qp *qp, struct ibv_qp_attr *attr, int attr_mask,
		      struct ibv_modify_qp *cmd, size_t cmd_size)
{
	return 0;
}

/*
 * The send doorbell (kernel/sq.c tbrdma_sq_ring_drain): takes the produced slots in order
 * into took[]. refuse_at: the slot of the next doorbell (0: its first) refused with
 * refuse_err, as build_from_slot or a full kernel send queue does; state_err: the QP's
 * state refuses the doorbell before any slot is looked at.
 */
static struct tbrdma_sq_slot took[320];
static int n_took, doorbells, refuse_at = -1, refuse_err, state_err;

static int sq_doorbell(struct kqueue *k)
{
	uint32_t producer;
	int err = 0, n = 0;

	doorbells++;
	if (state_err)
		return state_err;
	producer = __atomic_load_n(&k->hdr->producer, __ATOMIC_ACQUIRE);
	if (producer - k->index > k->mask + 1)
		err = EINVAL;
	for (; !err && k->index != producer; n++, k->index++) {
		if (n == refuse_at) {
			err = refuse_err;
			refuse_at = -1;
			break;
		}
		if (n_took < (int)N_OF(took))
			took[n_took] = ((struct tbrdma_sq_slot *)k->slots)[k->index & k->mask];
		n_took++;
	}
	__atomic_store_n(&k->hdr->consumer, k->index, __ATOMIC_RELEASE);
	return err;
}

/*
 * kernel/rq.c: the next n posted receives complete with status (messages landing, or the
 * flush of a QP in error) on the QP's receive CQ, and their slots are handed back.
 */
static int krecv(struct ibv_qp *qp, int n, enum ibv_wc_status status)
{
	struct kqueue *k = kq_of(RQ_OF(qp));
	uint32_t producer = __atomic_load_n(&k->hdr->producer, __ATOMIC_ACQUIRE);
	int done;

	for (done = 0; done < n && k->index != producer; done++, k->index++) {
		struct tbrdma_rq_slot *s = (struct tbrdma_rq_slot *)k->slots + (k->index & k->mask);
		struct ib_uverbs_wc wc = { .wr_id = s->wr_id, .status = status,
					   .opcode = IBV_WC_RECV, .qp_num = qp->qp_num };

		CHECK(kput(qp->recv_cq, &wc));
	}
	__atomic_store_n(&k->hdr->consumer, k->index, __ATOMIC_RELEASE);
	return done;
}

/* kernel/qp.c tbrdma_qp_to_error: the flag first, then the flush of what is posted. */
static void kerror(struct ibv_qp *qp)
{
	kq_of(RQ_OF(qp))->hdr->flags = TBRDMA_QUEUE_ERROR;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	krecv(qp, 1 << 30, IBV_WC_WR_FLUSH_ERR);
}

/* WRs a POST_SEND command carried (UD; RC and UC must use the ring). */
static struct posted {
	struct ibv_send_wr wr;
	uint32_t len, ah_handle;
	uint8_t data[512];		/* inline data, read during the command */
} posted[256];
static int n_posted, send_calls, recv_calls;

int ibv_cmd_post_send(struct ibv_qp *qp, struct ibv_send_wr *wr, struct ibv_send_wr **bad_wr)
{
	if (!wr && kq_of(qp)) {
		int err = sq_doorbell(kq_of(qp));

		if (err)
			*bad_wr = NULL;		/* as libibverbs: no WR of the command was bad */
		return err;
	}
	for (send_calls++; wr; wr = wr->next) {
		struct posted *p = &posted[n_posted++ % 256];
		int i;

		*p = (struct posted){ .wr = *wr };
		if (qp->qp_type == IBV_QPT_UD)
			p->ah_handle = wr->wr.ud.ah->handle;	/* as libibverbs reads it */
		for (i = 0; i < wr->num_sge; p->len += wr->sg_list[i++].length)
			if ((wr->send_flags & IBV_SEND_INLINE) &&
			    p->len + wr->sg_list[i].length <= sizeof(p->data))
				memcpy(p->data + p->len, (void *)(uintptr_t)wr->sg_list[i].addr,
				       wr->sg_list[i].length);
	}
	return 0;
}

/* kernel/qp.c post_recv: a mapped QP takes no WRs by command; none is its doorbell. */
int ibv_cmd_post_recv(struct ibv_qp *qp, struct ibv_recv_wr *wr, struct ibv_recv_wr **bad_wr)
{
	struct kqueue *k = kq_of(RQ_OF(qp));

	recv_calls++;
	if (k && wr) {
		*bad_wr = wr;
		return EINVAL;
	}
	if (k && (k->hdr->flags & TBRDMA_QUEUE_ERROR))
		krecv(qp, 1 << 30, IBV_WC_WR_FLUSH_ERR);
	return 0;
}

int ibv_cmd_post_srq_recv(struct ibv_srq *srq, struct ibv_recv_wr *wr,
			  struct ibv_recv_wr **bad_wr)
{
	recv_calls++;
	return 0;
}

/* ---- completion queues ---- */

static bool wc_ok(const struct ibv_wc *wc, uint64_t id, uint32_t qpn)
{
	struct ib_uverbs_wc u = mkwc(id, qpn);

	return wc->wr_id == id && wc->status == u.status && wc->opcode == u.opcode &&
	       wc->vendor_err == u.vendor_err && wc->byte_len == u.byte_len &&
	       wc->imm_data == u.ex.imm_data && wc->qp_num == qpn && wc->src_qp == u.src_qp &&
	       wc->wc_flags == u.wc_flags && wc->pkey_index == u.pkey_index &&
	       wc->slid == u.slid && wc->sl == u.sl && wc->dlid_path_bits == u.dlid_path_bits;
}

static bool ex_ok(struct ibv_cq_ex *cq, uint64_t id, uint32_t qpn)
{
	struct ib_uverbs_wc u = mkwc(id, qpn);

	return cq->wr_id == id && cq->status == u.status && cq->read_opcode(cq) == u.opcode &&
	       cq->read_vendor_err(cq) == u.vendor_err &&
	       cq->read_byte_len(cq) == u.byte_len && cq->read_imm_data(cq) == u.ex.imm_data &&
	       cq->read_qp_num(cq) == qpn && cq->read_src_qp(cq) == u.src_qp &&
	       cq->read_wc_flags(cq) == u.wc_flags && cq->read_slid(cq) == u.slid &&
	       cq->read_sl(cq) == u.sl && cq->read_dlid_path_bits(cq) == u.dlid_path_bits;
}

/* ibv_poll_cq: order, every field, wrap of slots and of the 32-bit indices, overrun. */
static void test_poll_cq(void)
{
	struct ibv_wc wc[8];
	struct ibv_cq *cq;
	uint64_t id = 0, next = 0;
	int round, i, n;

	first_index = UINT32_MAX - 1;
	cq = tbrdma_create_cq(&ctx, 4, NULL, 0);
	first_index = 0;
	CHECK(cq && kq_of(cq) && kq_of(cq)->mask == 3);
	if (!cq || !kq_of(cq))
		return;
	CHECK(tbrdma_poll_cq(cq, 8, wc) == 0 && tbrdma_poll_cq(cq, -1, wc) == -1);
	for (round = 0; round < 6; round++) {
		for (i = 0; i < 1 + round % 4; i++)
			CHECK(kpush(cq, id++, 7));
		while ((n = tbrdma_poll_cq(cq, 2, wc)) > 0)
			for (i = 0; i < n; i++)
				CHECK(wc_ok(&wc[i], next++, 7));
		/* what was polled is handed back: the kernel sees an empty CQ */
		CHECK(n == 0 && next == id && kpending(cq) == 0);
	}
	/* a full CQ overruns in the kernel until the provider consumes one */
	for (i = 0; i < 4; i++)
		CHECK(kpush(cq, id++, 7));
	CHECK(!kpush(cq, 99, 7));
	CHECK(tbrdma_poll_cq(cq, 1, wc) == 1 && wc_ok(&wc[0], next++, 7));
	CHECK(kpush(cq, id++, 7) && !kpush(cq, 99, 7));
	CHECK(tbrdma_poll_cq(cq, 1 << 28, wc) == 4);
	for (i = 0; i < 4; i++)
		CHECK(wc_ok(&wc[i], next++, 7));
	CHECK(tbrdma_destroy_cq(cq) == 0);
}

/* start_poll/next_poll/end_poll: one completion per region, or a walk to the end. */
static void test_cq_ex(void)
{
	struct ibv_cq_init_attr_ex attr = { .cqe = 8, .wc_flags = IBV_WC_EX_WITH_BYTE_LEN };
	struct ibv_poll_cq_attr pa = {}, bad_pa = { .comp_mask = 1 };
	struct ibv_cq_ex *cq = tbrdma_create_cq_ex(&ctx, &attr);
	struct ibv_cq *base;
	struct ibv_wc wc[1];
	uint64_t id = 0, next = 0;
	int i, ret;

	CHECK(cq != NULL);
	if (!cq)
		return;
	base = ibv_cq_ex_to_cq(cq);
	CHECK(cq->start_poll(cq, &pa) == ENOENT && cq->start_poll(cq, &bad_pa) == EINVAL);
	for (i = 0; i < 6; i++)
		CHECK(kpush(base, id++, 5));
	for (i = 0; i < 3; i++) {
		CHECK(cq->start_poll(cq, &pa) == 0 && ex_ok(cq, next++, 5));
		cq->end_poll(cq);
		CHECK(kq_of(base)->hdr->consumer == next);
	}
	/* ibv_poll_cq carries on where the region stopped */
	CHECK(tbrdma_poll_cq(base, 1, wc) == 1 && wc_ok(&wc[0], next++, 5));
	/* next_poll walks to the end, over what the kernel adds meanwhile and the ring's end */
	CHECK(cq->start_poll(cq, &pa) == 0 && ex_ok(cq, next++, 5));
	for (i = 0; i < 5; i++)
		CHECK(kpush(base, id++, 5));
	while ((ret = cq->next_poll(cq)) == 0)
		CHECK(ex_ok(cq, next++, 5));
	CHECK(ret == ENOENT && next == id);
	cq->end_poll(cq);
	CHECK(kpending(base) == 0 && cq->start_poll(cq, &pa) == ENOENT);
	CHECK(tbrdma_destroy_cq(base) == 0);
}

/* Resizing keeps the unpolled completions in order, in a new ring that takes more. */
static void test_cq_resize(void)
{
	struct ibv_cq *cq = tbrdma_create_cq(&ctx, 4, NULL, 0);
	struct ibv_wc wc[8];
	uint64_t id = 0, next = 0;
	int i, n;

	CHECK(cq && kq_of(cq));
	if (!cq || !kq_of(cq))
		return;
	for (i = 0; i < 4; i++)
		CHECK(kpush(cq, id++, 3));
	CHECK(tbrdma_poll_cq(cq, 1, wc) == 1 && wc_ok(&wc[0], next++, 3));
	/* 3 queued do not fit in 2: refused, the old ring still serves */
	CHECK(tbrdma_resize_cq(cq, 2) == EINVAL);
	CHECK(tbrdma_poll_cq(cq, 1, wc) == 1 && wc_ok(&wc[0], next++, 3));
	CHECK(tbrdma_resize_cq(cq, 16) == 0);
	for (i = 0; i < 12; i++)
		CHECK(kpush(cq, id++, 3));
	while ((n = tbrdma_poll_cq(cq, 8, wc)) > 0)
		for (i = 0; i < n; i++)
			CHECK(wc_ok(&wc[i], next++, 3));
	CHECK(next == id && kpending(cq) == 0 && tbrdma_destroy_cq(cq) == 0);
}

static struct ibv_qp *make_qp(enum ibv_qp_type type, uint64_t ops, uint32_t max_wr,
			      struct ibv_cq *scq, struct ibv_cq *rcq)
{
	struct ibv_qp_init_attr_ex attr = {
		.qp_type = type, .pd = &pd, .send_cq = scq, .recv_cq = rcq,
		.comp_mask = IBV_QP_INIT_ATTR_PD | IBV_QP_INIT_ATTR_CREATE_FLAGS |
			     (ops ? IBV_QP_INIT_ATTR_SEND_OPS_FLAGS : 0),
		.send_ops_flags = ops,
		.cap = { .max_send_wr = max_wr, .max_recv_wr = max_wr, .max_send_sge = 2,
			 .max_recv_sge = 2 },
	};

	struct ibv_qp *qp = tbrdma_create_qp_ex(&ctx, &attr);

	/* as ibv_modify_qp records it after the command */
	if (qp)
		qp->state = IBV_QPS_RTS;
	return qp;
}

static struct ibv_qp_ex *qx_of(struct ibv_qp *qp)
{
	return qp ? &container_of(qp, struct verbs_qp, qp)->qp_ex : NULL;
}

/* A destroyed or reset QP's completions leave the mapped CQs; the others keep their order. */
static void test_cq_clean(void)
{
	struct ibv_cq *scq = tbrdma_create_cq(&ctx, 8, NULL, 0);
	struct ibv_cq *rcq = tbrdma_create_cq(&ctx, 8, NULL, 0);
	struct ibv_qp *a = make_qp(IBV_QPT_UD, 0, 8, scq, rcq);
	struct ibv_qp *b = make_qp(IBV_QPT_RC, 0, 8, scq, scq);
	struct ibv_qp_attr qa = { .qp_state = IBV_QPS_RTS };
	struct ibv_wc wc[8];
	uint32_t an, bn;
	uint64_t id;

	CHECK(scq && rcq && a && b);
	if (!scq || !rcq || !a || !b)
		return;
	an = a->qp_num;
	bn = b->qp_num;
	/* 5 polled first, so the 7 that follow straddle the end of the 8 slots */
	for (id = 0; id < 5; id++)
		CHECK(kpush(scq, id, bn));
	CHECK(tbrdma_poll_cq(scq, 8, wc) == 5);
	for (id = 10; id < 17; id++)
		CHECK(kpush(scq, id, id % 3 ? an : bn));
	for (id = 20; id < 23; id++)
		CHECK(kpush(rcq, id, an));
	CHECK(tbrdma_modify_qp(a, &qa, IBV_QP_STATE) == 0 && kpending(scq) == 7);
	/* a's go from both its CQs; the kernel writes behind what is left */
	CHECK(tbrdma_destroy_qp(a) == 0);
	CHECK(kpending(scq) == 2 && kpending(rcq) == 0 && kpush(scq, 30, bn));
	CHECK(tbrdma_poll_cq(scq, 8, wc) == 3 && wc_ok(&wc[0], 12, bn) && wc_ok(&wc[1], 15, bn) &&
	      wc_ok(&wc[2], 30, bn));
	CHECK(tbrdma_poll_cq(rcq, 8, wc) == 0);
	/* RESET cleans too */
	CHECK(kpush(scq, 40, bn) && kpush(scq, 41, bn));
	qa.qp_state = IBV_QPS_RESET;
	CHECK(tbrdma_modify_qp(b, &qa, IBV_QP_STATE) == 0 && kpending(scq) == 0);
	CHECK(tbrdma_poll_cq(scq, 8, wc) == 0 && tbrdma_destroy_qp(b) == 0);
	CHECK(tbrdma_destroy_cq(scq) == 0 && tbrdma_destroy_cq(rcq) == 0);
}

/* ---- creation ---- */

static void test_create(void)
{
	struct ibv_cq_init_attr_ex cattr = { .cqe = 5,
					     .wc_flags = IBV_WC_EX_WITH_COMPLETION_TIMESTAMP };
	struct ibv_qp_init_attr_ex attr = {
		.pd = &pd, .comp_mask = IBV_QP_INIT_ATTR_PD | IBV_QP_INIT_ATTR_SEND_OPS_FLAGS,
		.cap = { .max_send_wr = 5, .max_recv_wr = 3 },
	};
	static const struct { enum ibv_qp_type type; uint64_t op; } refused[] = {
		{ IBV_QPT_RC, IBV_QP_EX_WITH_TSO }, { IBV_QPT_UC, IBV_QP_EX_WITH_RDMA_READ },
		{ IBV_QPT_UC, IBV_QP_EX_WITH_ATOMIC_WRITE }, { IBV_QPT_UC, IBV_QP_EX_WITH_FLUSH },
		{ IBV_QPT_UD, IBV_QP_EX_WITH_RDMA_WRITE }, { IBV_QPT_UD, IBV_QP_EX_WITH_BIND_MW },
	};
	struct tbrdma_srq srq = { .max_sge = 2 };
	struct ibv_qp_init_attr plain = { .qp_type = IBV_QPT_UD, .cap = { .max_send_wr = 4 } };
	struct ibv_cq_ex *cq;
	struct ibv_qp *qp;
	size_t i;

	/* ib_uverbs_wc has no timestamp; an overrun is never ignored */
	CHECK(!tbrdma_create_cq_ex(&ctx, &cattr) && errno == EOPNOTSUPP);
	cattr.wc_flags = IBV_WC_EX_WITH_BYTE_LEN;
	cattr.comp_mask = IBV_CQ_INIT_ATTR_MASK_FLAGS;
	cattr.flags = IBV_CREATE_CQ_ATTR_IGNORE_OVERRUN;
	CHECK(!tbrdma_create_cq_ex(&ctx, &cattr) && errno == EOPNOTSUPP);
	cattr.flags = IBV_CREATE_CQ_ATTR_SINGLE_THREADED;
	for (i = 0; i < N_OF(refused); i++) {
		attr.qp_type = refused[i].type;
		attr.send_ops_flags = IBV_QP_EX_WITH_SEND | refused[i].op;
		CHECK(!tbrdma_create_qp_ex(&ctx, &attr) && errno == EOPNOTSUPP);
	}
	attr.qp_type = IBV_QPT_RC;
	attr.send_ops_flags = IBV_QP_EX_WITH_SEND;
	attr.comp_mask |= IBV_QP_INIT_ATTR_CREATE_FLAGS;
	attr.create_flags = IBV_QP_CREATE_SCATTER_FCS;
	CHECK(!tbrdma_create_qp_ex(&ctx, &attr) && errno == EOPNOTSUPP);
	/* no flag set: accepted, and not passed on */
	attr.create_flags = 0;
	qp = tbrdma_create_qp_ex(&ctx, &attr);
	CHECK(qp && !(create_qp_ex_mask & IBV_QP_INIT_ATTR_CREATE_FLAGS));
	/* the commands leave room for the maps: 8 CQEs for 5, 8 send and 4 receive slots */
	CHECK(qp && kq_of(qp) && kq_of(qp)->mask == 7 && kq_of(RQ_OF(qp)) &&
	      kq_of(RQ_OF(qp))->mask == 3 && tbrdma_destroy_qp(qp) == 0);
	cq = tbrdma_create_cq_ex(&ctx, &cattr);
	CHECK(cq && kq_of(cq) && kq_of(cq)->mask == 7 &&
	      tbrdma_destroy_cq(ibv_cq_ex_to_cq(cq)) == 0);
	/* a module without maps: refused, and destroyed again; a UD QP on an SRQ maps nothing */
	old_module = true;
	destroys = 0;
	CHECK(!tbrdma_create_cq_ex(&ctx, &cattr) && errno == EPROTO && destroys == 1);
	CHECK(!tbrdma_create_cq(&ctx, 4, NULL, 0) && errno == EPROTO && destroys == 2);
	CHECK(!tbrdma_create_qp_ex(&ctx, &attr) && errno == EPROTO && destroys == 3);
	CHECK(!tbrdma_create_qp(&pd, &plain) && errno == EPROTO && destroys == 4);
	plain.srq = &srq.vsrq.srq;
	qp = tbrdma_create_qp(&pd, &plain);
	CHECK(qp && tbrdma_destroy_qp(qp) == 0);
	old_module = false;
}

/* ---- the send queue ---- */

/* Links w[0..n) into a list with wr_ids id, id + 1, ... */
static struct ibv_send_wr *link_wrs(struct ibv_send_wr *w, int n, uint64_t id)
{
	int i;

	for (i = 0; i < n; i++) {
		w[i].wr_id = id + i;
		w[i].next = i + 1 < n ? &w[i + 1] : NULL;
	}
	return w;
}

/* Taken slot i is want: the whole header (so no field is stale), then its SGEs or data. */
static bool slot_is(int i, const struct tbrdma_sq_slot *want)
{
	const struct tbrdma_sq_slot *s = &took[i];

	if (i >= n_took || memcmp(s, want, offsetof(struct tbrdma_sq_slot, sge)) ||
	    s->num_sge > TBRDMA_SQ_MAX_SGE || s->inline_len > TBRDMA_SQ_MAX_INLINE)
		return false;
	if (s->send_flags & IBV_SEND_INLINE)
		return !memcmp(s->inline_data, want->inline_data, s->inline_len);
	return !memcmp(s->sge, want->sge, s->num_sge * sizeof(s->sge[0]));
}

/* ibv_post_send on RC: one doorbell per list, each WR in its slot. */
static void test_post_send(void)
{
	struct ibv_qp_init_attr attr = { .qp_type = IBV_QPT_RC,
					 .cap = { .max_send_wr = 16, .max_send_sge = 2 } };
	struct ibv_qp *qp = tbrdma_create_qp(&pd, &attr);
	struct kqueue *k = qp ? kq_of(qp) : NULL;
	struct ibv_mr mr = { .lkey = 0x77 };
	struct ibv_mw mw = { .rkey = 0x500 };
	static uint8_t a[100], b[60];
	struct ibv_sge sg[2] = { { (uintptr_t)a, 100, 1 }, { (uintptr_t)b, 60, 2 } };
	struct ibv_send_wr wr[16] = {
		{ .opcode = IBV_WR_SEND, .send_flags = IBV_SEND_FENCE | IBV_SEND_SOLICITED,
		  .num_sge = 2 },
		{ .opcode = IBV_WR_SEND_WITH_IMM, .imm_data = htobe32(0x1234), .num_sge = 1 },
		{ .opcode = IBV_WR_SEND_WITH_INV, .invalidate_rkey = 0x4321, .num_sge = 2 },
		{ .opcode = IBV_WR_RDMA_WRITE, .send_flags = IBV_SEND_INLINE, .num_sge = 2,
		  .wr.rdma = { 0x1000, 5 } },
		{ .opcode = IBV_WR_RDMA_WRITE_WITH_IMM, .imm_data = htobe32(9), .num_sge = 1,
		  .wr.rdma = { 0x2000, 6 } },
		{ .opcode = IBV_WR_RDMA_READ, .num_sge = 1, .wr.rdma = { 0x3000, 7 } },
		{ .opcode = IBV_WR_ATOMIC_CMP_AND_SWP, .num_sge = 1,
		  .wr.atomic = { 0x4000, 11, 22, 8 } },
		{ .opcode = IBV_WR_ATOMIC_FETCH_AND_ADD, .num_sge = 1,
		  .wr.atomic = { 0x4008, 5, 0, 8 } },
		{ .opcode = IBV_WR_BIND_MW,
		  .bind_mw = { &mw, 0x501, { &mr, 0x5000, 4096, IBV_ACCESS_REMOTE_WRITE } } },
		{ .opcode = IBV_WR_LOCAL_INV, .invalidate_rkey = 0x501 },
	};
	/* what each slot carries besides wr_id, opcode, flags and data */
	struct tbrdma_sq_slot want[10] = {
		[1] = { .ex = htobe32(0x1234) },
		[2] = { .ex = 0x4321 },
		[3] = { .rkey = 5, .remote_addr = 0x1000, .inline_len = 160 },
		[4] = { .ex = htobe32(9), .rkey = 6, .remote_addr = 0x2000 },
		[5] = { .rkey = 7, .remote_addr = 0x3000 },
		[6] = { .rkey = 8, .remote_addr = 0x4000, .compare_add = 11, .swap = 22 },
		[7] = { .rkey = 8, .remote_addr = 0x4008, .compare_add = 5 },
		/* the window's current key, its new one, the range, the MR and the access */
		[8] = { .ex = 0x500, .rkey = 0x501, .remote_addr = 0x5000, .length = 4096,
			.bind_mr_lkey = 0x77, .bind_access = IBV_ACCESS_REMOTE_WRITE },
		[9] = { .ex = 0x501 },
	};
	struct ibv_send_wr *bad;
	int i;

	CHECK(k && attr.cap.max_inline_data == 256);
	if (!k)
		return;
	/* a plain QP is a verbs_qp too: ibv_qp_to_qp_ex reads its comp_mask */
	CHECK(!(container_of(qp, struct verbs_qp, qp)->comp_mask & VERBS_QP_EX));
	memset(a, 'a', sizeof(a));
	memset(b, 'b', sizeof(b));
	for (i = 0; i < 10; i++) {
		wr[i].sg_list = sg;
		wr[i].send_flags |= IBV_SEND_SIGNALED;
		want[i].wr_id = 100 + i;
		want[i].opcode = wr[i].opcode;
		want[i].send_flags = wr[i].send_flags;
		want[i].num_sge = i == 3 ? 0 : wr[i].num_sge;
		want[i].sge[0] = (struct tbrdma_sq_sge){ (uintptr_t)a, 100, 1 };
		want[i].sge[1] = (struct tbrdma_sq_sge){ (uintptr_t)b, 60, 2 };
	}
	/* inline: the SGEs' bytes gathered into the slot */
	memcpy(want[3].inline_data, a, 100);
	memcpy(want[3].inline_data + 100, b, 60);
	n_took = doorbells = n_posted = 0;
	CHECK(tbrdma_post_send(qp, link_wrs(wr, 10, 100), &bad) == 0);
	CHECK(doorbells == 1 && n_took == 10 && n_posted == 0);
	CHECK(k->hdr->producer == 10 && k->hdr->consumer == 10);
	for (i = 0; i < 10; i++)
		CHECK(slot_is(i, &want[i]));
	/* 16 bare WRs wrap the ring over every slot used above: nothing of those stays */
	memset(wr, 0, sizeof(wr));
	n_took = doorbells = 0;
	CHECK(tbrdma_post_send(qp, link_wrs(wr, 16, 200), &bad) == 0);
	CHECK(doorbells == 1 && n_took == 16);
	for (i = 0; i < 16; i++)
		CHECK(slot_is(i, &(struct tbrdma_sq_slot){ .wr_id = 200 + i }));
	/* an empty list rings nothing */
	CHECK(tbrdma_post_send(qp, NULL, &bad) == 0 && doorbells == 1);
	CHECK(tbrdma_destroy_qp(qp) == 0);
}

/* Refusals by the provider and by the kernel: the right errno and bad_wr, nothing lost. */
static void test_post_send_errors(void)
{
	struct ibv_qp_init_attr attr = { .qp_type = IBV_QPT_RC,
					 .cap = { .max_send_wr = 256, .max_send_sge = 2 } };
	struct ibv_qp *qp = tbrdma_create_qp(&pd, &attr);
	struct kqueue *k = qp ? kq_of(qp) : NULL;
	static struct ibv_send_wr chain[300];
	static uint8_t big[300];
	struct ibv_sge sg[2] = { { (uintptr_t)big, 200, 1 }, { (uintptr_t)big + 200, 57, 1 } };
	struct ibv_send_wr one[4] = {
		{ .num_sge = -1 },
		{ .opcode = IBV_WR_RDMA_WRITE, .send_flags = IBV_SEND_INLINE, .sg_list = sg,
		  .num_sge = 2 },	/* 257 bytes inline */
		{ .opcode = IBV_WR_ATOMIC_WRITE },	/* ATOMIC_WRITE and FLUSH: ibv_wr_* only */
		{ .opcode = IBV_WR_FLUSH },
	}, *bad;
	int i;

	CHECK(k != NULL);
	if (!k)
		return;
	link_wrs(chain, 300, 0);
	n_took = doorbells = n_posted = 0;
	/* refused here: the kernel never hears of them */
	for (i = 0; i < 4; i++) {
		bad = NULL;
		CHECK(tbrdma_post_send(qp, &one[i], &bad) == EINVAL && bad == &one[i]);
	}
	CHECK(doorbells == 0 && k->hdr->producer == 0);
	/* a bad WR in a list: the ones before it are posted, it is bad_wr */
	chain[150].num_sge = 3;
	CHECK(tbrdma_post_send(qp, chain, &bad) == EINVAL && bad == &chain[150]);
	CHECK(doorbells == 1 && n_took == 150 && took[149].wr_id == 149 && n_posted == 0);
	chain[150].num_sge = 0;
	/* the kernel refuses slot 2 (its send queue is full): that WR is bad_wr, and it and the
	 * later slots are taken back, so the next post fills them anew */
	n_took = doorbells = 0;
	chain[4].next = NULL;
	refuse_at = 2;
	refuse_err = ENOMEM;
	CHECK(tbrdma_post_send(qp, chain, &bad) == ENOMEM && bad == &chain[2] && n_took == 2);
	CHECK(k->hdr->producer == k->hdr->consumer);
	chain[6].next = NULL;
	CHECK(tbrdma_post_send(qp, &chain[5], &bad) == 0 && n_took == 4);
	CHECK(took[2].wr_id == 5 && took[3].wr_id == 6);
	/* the QP's state refuses the doorbell: nothing is taken, the first WR is bad */
	chain[8].next = NULL;
	state_err = EINVAL;
	CHECK(tbrdma_post_send(qp, &chain[7], &bad) == EINVAL && bad == &chain[7] && n_took == 4);
	state_err = 0;
	CHECK(k->hdr->producer == k->hdr->consumer);
	/* a list longer than the ring: what fits is posted, the first that does not is bad */
	n_took = doorbells = 0;
	CHECK(tbrdma_post_send(qp, link_wrs(chain, 300, 0), &bad) == ENOMEM &&
	      bad == &chain[256]);
	CHECK(doorbells == 1 && n_took == 256 && took[255].wr_id == 255);
	CHECK(tbrdma_destroy_qp(qp) == 0);
}

/* ---- the receive queue ---- */

static bool rslot_is(const struct tbrdma_rq_slot *s, const struct ibv_recv_wr *wr)
{
	int i;

	if (s->wr_id != wr->wr_id || s->num_sge != (uint32_t)wr->num_sge)
		return false;
	for (i = 0; i < wr->num_sge; i++)
		if (s->sge[i].addr != wr->sg_list[i].addr ||
		    s->sge[i].length != wr->sg_list[i].length ||
		    s->sge[i].lkey != wr->sg_list[i].lkey)
			return false;
	return true;
}

/* Receives go into the ring without a system call, unless the kernel flagged an error. */
static void test_post_recv(void)
{
	struct ibv_cq *cq = tbrdma_create_cq(&ctx, 16, NULL, 0);
	struct ibv_qp *qp = make_qp(IBV_QPT_UC, 0, 4, cq, cq);
	struct kqueue *k = qp ? kq_of(RQ_OF(qp)) : NULL;
	struct tbrdma_srq srq = { .max_sge = 2 };
	struct ibv_sge sg[3] = { { 0x1000, 10, 1 }, { 0x2000, 20, 2 }, { 0x3000, 30, 3 } };
	struct ibv_recv_wr w[6], *bad;
	/* the completions, in order: six received, two flushed in the error state */
	static const uint64_t ids[] = { 50, 51, 52, 53, 54, 55, 50, 52 };
	struct ibv_wc wc[8];
	struct tbrdma_rq_slot *s;
	int i;

	CHECK(k && k->mask == 3 && kq_of(qp));		/* UC: both rings */
	if (!k)
		return;
	s = k->slots;
	for (i = 0; i < 6; i++)
		w[i] = (struct ibv_recv_wr){ .wr_id = 50 + i, .next = i < 5 ? &w[i + 1] : NULL,
					     .sg_list = &sg[i % 2], .num_sge = 1 + i % 2 };
	recv_calls = 0;
	/* RESET takes no receive (C10-97.2.1) */
	qp->state = IBV_QPS_RESET;
	CHECK(tbrdma_post_recv(qp, w, &bad) == EINVAL && bad == w && k->hdr->producer == 0);
	qp->state = IBV_QPS_RTS;
	/* a full ring: what fits is posted, the first that does not is bad_wr */
	CHECK(tbrdma_post_recv(qp, w, &bad) == ENOMEM && bad == &w[4]);
	CHECK(recv_calls == 0 && k->hdr->producer == 4);
	for (i = 0; i < 4; i++)
		CHECK(rslot_is(&s[i], &w[i]));
	/* two complete: their slots take the next two, across the ring's end */
	CHECK(krecv(qp, 2, IBV_WC_SUCCESS) == 2);
	CHECK(tbrdma_post_recv(qp, &w[4], &bad) == 0 && k->hdr->producer == 6);
	CHECK(rslot_is(&s[0], &w[4]) && rslot_is(&s[1], &w[5]));
	CHECK(krecv(qp, 4, IBV_WC_SUCCESS) == 4);
	/* too many SGEs: the WRs before it are posted, it is bad_wr */
	w[1].sg_list = sg;
	w[1].num_sge = 3;
	CHECK(tbrdma_post_recv(qp, w, &bad) == EINVAL && bad == &w[1] && k->hdr->producer == 7);
	CHECK(recv_calls == 0);
	/* the kernel flags the error and flushes; a post that sees the flag rings the doorbell,
	 * so its receive is flushed too */
	kerror(qp);
	w[2].next = NULL;
	CHECK(tbrdma_post_recv(qp, &w[2], &bad) == 0 && recv_calls == 1);
	CHECK(k->hdr->consumer == 8 && k->hdr->producer == 8);
	CHECK(tbrdma_poll_cq(cq, 8, wc) == 8);
	for (i = 0; i < 8; i++)
		CHECK(wc[i].wr_id == ids[i] && wc[i].qp_num == qp->qp_num &&
		      wc[i].status == (i < 6 ? IBV_WC_SUCCESS : IBV_WC_WR_FLUSH_ERR));
	CHECK(tbrdma_destroy_qp(qp) == 0 && tbrdma_destroy_cq(cq) == 0);
	/* an SRQ's receives go by command, refused before libibverbs sizes it from num_sge */
	w[0].next = NULL;
	w[0].num_sge = 1 << 20;
	recv_calls = 0;
	CHECK(tbrdma_post_srq_recv(&srq.vsrq.srq, w, &bad) == EINVAL && bad == w && !recv_calls);
	w[0].num_sge = 2;
	CHECK(tbrdma_post_srq_recv(&srq.vsrq.srq, w, &bad) == 0 && recv_calls == 1);
}

/* ---- the ibv_wr_* API ---- */

/* Sets the wr_id of the WR about to be started. */
static struct ibv_qp_ex *at(struct ibv_qp_ex *qx, uint64_t wr_id)
{
	qx->wr_id = wr_id;
	return qx;
}

/* Many WRs: the region's SGE and inline buffers grow and move while it is built. */
static void test_wr_chain(void)
{
	struct ibv_qp *qp = make_qp(IBV_QPT_RC, IBV_QP_EX_WITH_SEND | IBV_QP_EX_WITH_RDMA_WRITE |
					      IBV_QP_EX_WITH_RDMA_READ, 128, NULL, NULL);
	struct ibv_qp_ex *qx = qx_of(qp);
	uint8_t buf[64], src[300];
	struct ibv_sge sg[2] = { { (uintptr_t)buf, 10, 1 }, { (uintptr_t)buf + 10, 20, 1 } };
	int i;

	CHECK(qx != NULL);
	if (!qx)
		return;
	memset(src, 'a', sizeof(src));
	n_took = doorbells = n_posted = 0;
	qx->wr_start(qx);
	qx->wr_flags = IBV_SEND_SIGNALED;
	for (i = 0; i < 100; i++) {
		if (i % 3 == 0) {
			qx->wr_send(at(qx, 1000 + i));
			qx->wr_set_sge_list(qx, 2, sg);
		} else if (i % 3 == 1) {
			qx->wr_rdma_write(at(qx, 1000 + i), 5, 0x1000 + i);
			src[0] = 'A' + i % 26;
			qx->wr_set_inline_data(qx, src, 200);
			src[0] = '?';		/* copied at the setter: this must not be sent */
		} else {
			qx->wr_rdma_read(at(qx, 1000 + i), 6, 0x2000 + i);
			qx->wr_set_sge(qx, 1, (uintptr_t)buf, 30);
		}
	}
	/* an SGE setter makes a WR started with IBV_SEND_INLINE an SGE WR */
	qx->wr_flags = IBV_SEND_INLINE;
	qx->wr_send(at(qx, 1100));
	qx->wr_set_sge(qx, 1, (uintptr_t)buf, 4);
	CHECK(qx->wr_complete(qx) == 0);
	CHECK(doorbells == 1 && n_took == 101 && n_posted == 0);
	for (i = 0; i < 100; i++) {
		const struct tbrdma_sq_slot *t = &took[i];

		CHECK(t->wr_id == (uint64_t)(1000 + i) && (t->send_flags & IBV_SEND_SIGNALED));
		if (i % 3 == 0)
			CHECK(t->opcode == IBV_WR_SEND && t->num_sge == 2 && t->inline_len == 0 &&
			      t->sge[1].addr == (uintptr_t)buf + 10 && t->sge[1].length == 20);
		else if (i % 3 == 1)
			CHECK(t->opcode == IBV_WR_RDMA_WRITE && t->remote_addr == 0x1000 + i &&
			      (t->send_flags & IBV_SEND_INLINE) && t->num_sge == 0 &&
			      t->inline_len == 200 && t->inline_data[0] == 'A' + i % 26 &&
			      t->inline_data[199] == 'a');
		else
			CHECK(t->opcode == IBV_WR_RDMA_READ && t->remote_addr == 0x2000 + i &&
			      t->rkey == 6 && t->num_sge == 1 && t->sge[0].length == 30);
	}
	CHECK(slot_is(100, &(struct tbrdma_sq_slot){ .wr_id = 1100, .opcode = IBV_WR_SEND,
						       .num_sge = 1,
						       .sge = { { (uintptr_t)buf, 4, 1 } } }));
	CHECK(tbrdma_destroy_qp(qp) == 0);
}

/* The other RC operations, with what each slot must carry; a refusal by the kernel. */
static void test_wr_ops(void)
{
	struct ibv_qp *qp = make_qp(IBV_QPT_RC, IBV_QP_EX_WITH_SEND_WITH_IMM |
				    IBV_QP_EX_WITH_SEND_WITH_INV | IBV_QP_EX_WITH_RDMA_WRITE_WITH_IMM |
				    IBV_QP_EX_WITH_ATOMIC_CMP_AND_SWP |
				    IBV_QP_EX_WITH_ATOMIC_FETCH_AND_ADD | IBV_QP_EX_WITH_BIND_MW |
				    IBV_QP_EX_WITH_LOCAL_INV | IBV_QP_EX_WITH_ATOMIC_WRITE |
				    IBV_QP_EX_WITH_FLUSH, 16, NULL, NULL);
	struct ibv_qp_ex *qx = qx_of(qp);
	struct ibv_mr mr = { .lkey = 0x66 };
	struct ibv_mw mw = { .rkey = 0x700 };
	struct ibv_mw_bind_info bi = { &mr, 0x9000, 512, IBV_ACCESS_REMOTE_READ };
	uint8_t aw[8] = { 1, 2, 3, 4, 5, 6, 7, 8 }, buf[16];
	/* in the ABI's own numbers for ATOMIC_WRITE and FLUSH, which must be libibverbs' */
	struct tbrdma_sq_slot want[9] = {
		{ .opcode = IBV_WR_SEND_WITH_IMM, .ex = htobe32(0xabc), .num_sge = 1 },
		{ .opcode = IBV_WR_SEND_WITH_INV, .ex = 0x12345678, .num_sge = 1 },
		{ .opcode = IBV_WR_RDMA_WRITE_WITH_IMM, .ex = htobe32(0xdef), .rkey = 4,
		  .remote_addr = 0x1000, .num_sge = 1 },
		{ .opcode = IBV_WR_ATOMIC_CMP_AND_SWP, .rkey = 9, .remote_addr = 0x2000,
		  .compare_add = 11, .swap = 22, .num_sge = 1 },
		{ .opcode = IBV_WR_ATOMIC_FETCH_AND_ADD, .rkey = 9, .remote_addr = 0x2008,
		  .compare_add = 5, .num_sge = 1 },
		{ .opcode = IBV_WR_BIND_MW, .ex = 0x700, .rkey = 0x701, .remote_addr = 0x9000,
		  .length = 512, .bind_mr_lkey = 0x66, .bind_access = IBV_ACCESS_REMOTE_READ },
		{ .opcode = IBV_WR_LOCAL_INV, .ex = 0x701 },
		{ .opcode = TBRDMA_SQ_WR_ATOMIC_WRITE, .rkey = 10, .remote_addr = 0x3000 },
		{ .opcode = TBRDMA_SQ_WR_FLUSH, .rkey = 11, .remote_addr = 0x4000, .length = 4096,
		  .flush_type = TBRDMA_SQ_FLUSH_GLOBAL | TBRDMA_SQ_FLUSH_PERSISTENT,
		  .flush_level = TBRDMA_SQ_FLUSH_MR },
	};
	int i;

	CHECK(qx && qx->wr_bind_mw && qx->wr_local_inv && qx->wr_atomic_write && qx->wr_flush);
	if (!qx || !qx->wr_bind_mw || !qx->wr_local_inv || !qx->wr_atomic_write || !qx->wr_flush)
		return;
	memcpy(&want[7].compare_add, aw, 8);	/* ATOMIC_WRITE's 8 bytes as given */
	for (i = 0; i < 9; i++) {
		want[i].wr_id = i + 1;
		want[i].send_flags = IBV_SEND_SIGNALED;
		want[i].sge[0] = (struct tbrdma_sq_sge){ (uintptr_t)buf, 16, 3 };
	}
	n_took = doorbells = 0;
	qx->wr_start(qx);
	qx->wr_flags = IBV_SEND_SIGNALED;
	qx->wr_send_imm(at(qx, 1), htobe32(0xabc));
	qx->wr_set_sge(qx, 3, (uintptr_t)buf, 16);
	qx->wr_send_inv(at(qx, 2), 0x12345678);
	qx->wr_set_sge(qx, 3, (uintptr_t)buf, 16);
	qx->wr_rdma_write_imm(at(qx, 3), 4, 0x1000, htobe32(0xdef));
	qx->wr_set_sge(qx, 3, (uintptr_t)buf, 16);
	qx->wr_atomic_cmp_swp(at(qx, 4), 9, 0x2000, 11, 22);
	qx->wr_set_sge(qx, 3, (uintptr_t)buf, 16);
	qx->wr_atomic_fetch_add(at(qx, 5), 9, 0x2008, 5);
	qx->wr_set_sge(qx, 3, (uintptr_t)buf, 16);
	qx->wr_bind_mw(at(qx, 6), &mw, 0x701, &bi);
	qx->wr_local_inv(at(qx, 7), 0x701);
	qx->wr_atomic_write(at(qx, 8), 10, 0x3000, aw);
	aw[0] = 99;			/* taken at the call: this must not be sent */
	qx->wr_flush(at(qx, 9), 11, 0x4000, 4096, IBV_FLUSH_GLOBAL | IBV_FLUSH_PERSISTENT,
		     IBV_FLUSH_MR);
	CHECK(qx->wr_complete(qx) == 0 && doorbells == 1 && n_took == 9);
	for (i = 0; i < 9; i++)
		CHECK(slot_is(i, &want[i]));
	/* the kernel refuses the region's second WR: wr_complete says so, and the refused
	 * slots are taken back for the next region */
	refuse_at = 1;
	refuse_err = EINVAL;
	qx->wr_start(qx);
	for (i = 0; i < 3; i++)
		qx->wr_local_inv(at(qx, 20 + i), i);
	CHECK(qx->wr_complete(qx) == EINVAL && n_took == 10 && took[9].wr_id == 20);
	qx->wr_start(qx);
	qx->wr_local_inv(at(qx, 30), 4);
	CHECK(qx->wr_complete(qx) == 0 && n_took == 11 && took[10].wr_id == 30);
	CHECK(tbrdma_destroy_qp(qp) == 0);
}

/* A region with an error posts nothing; the QP works on afterwards. */
static void test_wr_errors_post_nothing(void)
{
	struct ibv_qp *qp = make_qp(IBV_QPT_RC, IBV_QP_EX_WITH_SEND | IBV_QP_EX_WITH_SEND_WITH_IMM |
				    IBV_QP_EX_WITH_RDMA_READ | IBV_QP_EX_WITH_ATOMIC_FETCH_AND_ADD,
				    128, NULL, NULL);
	struct ibv_qp_ex *qx = qx_of(qp);
	struct ibv_sge sg[3] = {};
	uint8_t src[300] = {}, more[64];
	struct ibv_data_buf list[2] = { { src, 100 }, { more, 56 } };
	struct tbrdma_sq_slot w = { .opcode = IBV_WR_SEND_WITH_IMM, .ex = htobe32(7),
				    .send_flags = IBV_SEND_INLINE, .inline_len = 156 };
	int i;

	CHECK(qx != NULL);
	if (!qx)
		return;
	n_took = doorbells = 0;
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
	qx->wr_atomic_fetch_add(qx, 9, 0x2008, 5);
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
	CHECK(doorbells == 0 && n_took == 0 && kq_of(qp)->hdr->producer == 0);
	/* an inline list is one contiguous copy, taken at the setter */
	memset(more, 'b', sizeof(more));
	memset(w.inline_data + 100, 'b', 56);
	qx->wr_start(qx);
	qx->wr_send_imm(qx, htobe32(7));
	qx->wr_set_inline_data_list(qx, 2, list);
	memset(more, 0, sizeof(more));
	CHECK(qx->wr_complete(qx) == 0 && n_took == 1 && slot_is(0, &w));
	CHECK(tbrdma_destroy_qp(qp) == 0);
}

/*
 * UD sends go by command: ibv_post_send lists in checked slices, ibv_wr_set_ud_addr giving
 * each WR its own AH, QPN and Q_Key.
 */
static void test_ud(void)
{
	struct ibv_cq *cq = tbrdma_create_cq(&ctx, 4, NULL, 0);
	struct ibv_qp *qp = make_qp(IBV_QPT_UD, IBV_QP_EX_WITH_SEND | IBV_QP_EX_WITH_SEND_WITH_IMM,
				    256, cq, cq);
	struct ibv_qp_ex *qx = qx_of(qp);
	static struct ibv_send_wr chain[200];
	struct ibv_ah ah[2] = { { .handle = 42 }, { .handle = 43 } };
	struct ibv_send_wr *bad = NULL;
	uint8_t buf[16], src[40];
	int i;

	CHECK(qx && !kq_of(qp) && qx->wr_set_ud_addr && !qx->wr_rdma_write);
	if (!qx || !qx->wr_set_ud_addr)
		return;
	for (i = 0; i < 200; i++)
		chain[i].wr.ud.ah = &ah[0];
	chain[150].num_sge = 3;
	n_posted = send_calls = doorbells = 0;
	CHECK(tbrdma_post_send(qp, link_wrs(chain, 200, 0), &bad) == EINVAL && bad == &chain[150]);
	CHECK(n_posted == 150 && send_calls == 3 && posted[149].wr.wr_id == 149 && !doorbells);
	/* libibverbs reads the AH's handle: a missing AH is refused before */
	chain[150].num_sge = 0;
	chain[151].wr.ud.ah = NULL;
	n_posted = send_calls = 0;
	CHECK(tbrdma_post_send(qp, &chain[150], &bad) == EINVAL && bad == &chain[151]);
	CHECK(n_posted == 1 && posted[0].ah_handle == 42);
	memset(src, 'u', sizeof(src));
	n_posted = send_calls = 0;
	qx->wr_start(qx);
	qx->wr_send(at(qx, 1));
	qx->wr_set_ud_addr(qx, &ah[0], 77, 0x1111);
	qx->wr_set_sge(qx, 1, (uintptr_t)buf, 16);
	qx->wr_send_imm(at(qx, 2), htobe32(5));
	qx->wr_set_ud_addr(qx, &ah[1], 78, 0x2222);
	qx->wr_set_inline_data(qx, src, 40);
	src[0] = '?';			/* copied at the setter */
	CHECK(qx->wr_complete(qx) == 0 && n_posted == 2 && send_calls == 1 && !doorbells);
	CHECK(posted[0].ah_handle == 42 && posted[0].wr.wr.ud.remote_qpn == 77 &&
	      posted[0].wr.wr.ud.remote_qkey == 0x1111 && posted[0].wr.opcode == IBV_WR_SEND &&
	      posted[0].wr.wr_id == 1 && posted[0].len == 16);
	CHECK(posted[1].ah_handle == 43 && posted[1].wr.wr.ud.remote_qpn == 78 &&
	      posted[1].wr.wr.ud.remote_qkey == 0x2222 &&
	      posted[1].wr.opcode == IBV_WR_SEND_WITH_IMM && posted[1].wr.imm_data == htobe32(5) &&
	      (posted[1].wr.send_flags & IBV_SEND_INLINE) && posted[1].len == 40 &&
	      posted[1].data[0] == 'u');
	CHECK(tbrdma_destroy_qp(qp) == 0 && tbrdma_destroy_cq(cq) == 0);
}

int main(void)
{
	/* unbuffered: a leak report ends the process before stdio would flush */
	setvbuf(stdout, NULL, _IONBF, 0);
	page = sysconf(_SC_PAGESIZE);
	mmap_next = page;
	ctx.cmd_fd = memfd_create("tbrdma-cmd-fd", 0);
	if (ctx.cmd_fd < 0 || ftruncate(ctx.cmd_fd, MMAP_SPACE)) {
		perror("memfd");
		return 1;
	}
	test_create();
	test_poll_cq();
	test_cq_ex();
	test_cq_resize();
	test_cq_clean();
	test_post_send();
	test_post_send_errors();
	test_post_recv();
	test_wr_chain();
	test_wr_ops();
	test_wr_errors_post_nothing();
	test_ud();
	printf("%s: %d failure(s)\n", failures ? "FAIL" : "ok", failures);
	return failures ? 1 : 0;
}
