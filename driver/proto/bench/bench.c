// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * tbp_bench: send+receive throughput of the protocol core on one core.
 * Two links run in one thread joined by in-memory rails (a ring of frame slots per
 * direction, like an NHI descriptor ring); every frame is really built, copied into
 * the ring, validated, acked and placed. Prints frames/s for 4 KiB frames over 1, 2
 * and 4 rails, and messages/s for 64 B SENDs. Numbers are printed, never asserted.
 *   tbp_bench [--quick]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tbp.h"
#include "../userspace/hmac_sha256.h"
#include "tbp_module_config.h"

#define RING 128
#define BUF_SIZE (4u << 20)

struct ring {
	uint32_t head, tail;
	uint32_t len[RING];
	uint8_t (*slot)[4096];
};

struct bep {
	struct tbp_link *link;
	void *mem;
	uint8_t *buf;          /* local buffers and MR */
	struct ring tx[4];     /* frames this side sent on each rail */
	uint64_t sends_done, recvs_done;
	uint32_t recv_slot;
};

static struct bep B[2];
static uint64_t bnow;
/* false: only headers are copied, to show what the protocol itself costs per frame */
static bool copy_payload = true;
static bool frame_mac = true; /* TBP_CAP_FRAME_MAC, as on every real link */
/* Tables (window, QPs, messages in flight) as the kernel module allocates them */
static bool module_config;
/* Frames a receiver takes per tbp_tick (the glue ticks after each rail batch); 0: the bench
 * ticks both sides every 16 delivery rounds only */
static uint32_t rx_per_tick;
/* Rails are USB4 ring pairs (TBP_RAIL_DMA): no frame MAC, no payload CRC */
static bool dma_rails;
/* Data frames are built in the ring slot (frame_get/frame_commit), as the module's rails
 * do; false: built in the core's scratch buffer and copied into the slot by xmit */
static bool in_place = true;

static uint64_t cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The protocol clock is this process's CPU time: being descheduled on a shared machine
 * must not look like a slow network and fire retransmission timers. */
static uint64_t b_now(void *ctx)
{
	(void)ctx;
	return bnow;
}

static int b_xmit(void *ctx, uint32_t rail, const void *frame, uint32_t len)
{
	struct bep *e = ctx;
	struct ring *r = &e->tx[rail];

	if (r->head - r->tail == RING || len > 4096)
		return -EAGAIN;
	memcpy(r->slot[r->head % RING], frame, copy_payload || len <= 256 ? len : TBP_HDR_LEN);
	r->len[r->head % RING] = len;
	r->head++;
	return 0;
}

static void *b_frame_get(void *ctx, uint32_t rail, uint32_t len, void **token)
{
	struct ring *r = &((struct bep *)ctx)->tx[rail];

	if (r->head - r->tail == RING || len > 4096)
		return NULL;
	*token = r;
	return r->slot[r->head % RING];
}

static int b_frame_commit(void *ctx, uint32_t rail, void *token, uint32_t len)
{
	struct ring *r = token;

	(void)ctx;
	(void)rail;
	r->len[r->head % RING] = len;
	r->head++;
	return 0;
}

static void b_hmac(void *ctx, const uint8_t *key, uint32_t key_len, const uint8_t *msg,
		   uint32_t msg_len, uint8_t out[32])
{
	(void)ctx;
	hmac_sha256(key, key_len, msg, msg_len, out);
}

static void b_random(void *ctx, void *buf, uint32_t len)
{
	memset(buf, ctx == &B[0] ? 1 : 2, len);
}

static int b_mr_check(void *ctx, uint32_t qpn, uint32_t rkey, uint64_t addr, uint64_t len,
			uint32_t access)
{
	(void)ctx;
	(void)qpn;
	(void)rkey;
	(void)access;
	return addr + len <= BUF_SIZE ? 0 : TBP_ERR_REMOTE_ACCESS;
}

static int b_read(void *ctx, const struct tbp_buf *b, uint64_t off, void *dst, uint32_t len)
{
	struct bep *e = ctx;

	if (copy_payload)
		memcpy(dst, e->buf + ((b->addr + off) & (BUF_SIZE - 1)), len);
	return 0;
}

static int b_write(void *ctx, const struct tbp_buf *b, uint64_t off, const void *src, uint32_t len)
{
	struct bep *e = ctx;

	if (copy_payload)
		memcpy(e->buf + ((b->addr + off) & (BUF_SIZE - 1)), src, len);
	return 0;
}

static int b_claim(void *ctx, uint32_t qpn, uint64_t *handle, uint32_t *cap)
{
	struct bep *e = ctx;

	(void)qpn;
	*handle = (uint64_t)(e->recv_slot++ % 1024) * 4096;
	*cap = 4096;
	return 0;
}

static void b_send_done(void *ctx, uint32_t qpn, uint64_t wr_id, uint32_t status)
{
	struct bep *e = ctx;

	(void)qpn;
	(void)wr_id;
	if (status) {
		fprintf(stderr, "bench: WR failed with status %u\n", status);
		exit(1);
	}
	e->sends_done++;
}

static void b_recv_done(void *ctx, const struct tbp_recv_completion *c)
{
	struct bep *e = ctx;

	(void)c;
	e->recvs_done++;
}

static void b_event(void *ctx, uint32_t ev, uint32_t rail)
{
	(void)ctx;
	(void)ev;
	(void)rail;
}

static void setup(uint32_t rails, bool pcsum)
{
	int i;
	uint32_t r;

	bnow = cpu_ns();
	for (i = 0; i < 2; i++) {
		struct bep *e = &B[i];
		struct tbp_config cfg;
		struct tbp_env env = {
			.ctx = e, .now_ns = b_now, .xmit = b_xmit, .hmac_sha256 = b_hmac,
			.random_bytes = b_random, .mr_check = b_mr_check, .buf_read = b_read,
			.buf_write = b_write, .recv_claim = b_claim, .send_done = b_send_done,
			.recv_done = b_recv_done, .event = b_event,
			.frame_get = in_place ? b_frame_get : NULL,
			.frame_commit = in_place ? b_frame_commit : NULL,
		};
		size_t size;

		free(e->mem);
		for (r = 0; r < 4; r++)
			free(e->tx[r].slot);
		if (!e->buf)
			e->buf = calloc(1, BUF_SIZE);
		memset(e->tx, 0, sizeof(e->tx));
		for (r = 0; r < 4; r++)
			e->tx[r].slot = malloc((size_t)RING * 4096);
		e->sends_done = e->recvs_done = 0;
		tbp_config_default(&cfg);
		cfg.role = i ? TBP_ROLE_RESPONDER : TBP_ROLE_INITIATOR;
		if (module_config) {
			cfg.window = TBP_MODULE_WINDOW;
			cfg.max_msgs = TBP_MODULE_MAX_OUTSTANDING;
			cfg.max_rx_msgs = TBP_MODULE_MAX_OUTSTANDING;
			cfg.max_qps = TBP_MODULE_MAX_QPS;
		} else {
			cfg.window = 1024;
			cfg.max_msgs = 1024;
			cfg.max_rx_msgs = 1024;
			cfg.max_qps = 4;
		}
		/* The MAC reads every payload byte: off where payload copies are elided. */
		cfg.caps = (pcsum ? TBP_CAP_PAYLOAD_CSUM : 0) |
			   (copy_payload && frame_mac ? TBP_CAP_FRAME_MAC : 0);
		cfg.key_len = 32;
		memset(cfg.key, 9, 32);
		size = tbp_link_size(&cfg);
		e->mem = aligned_alloc(64, (size + 63) & ~(size_t)63);
		if (!e->mem || tbp_link_init(&e->link, e->mem, size, &cfg, &env))
			exit(1);
		for (r = 0; r < rails; r++)
			tbp_rail_add(e->link, r, 1, 4096, dma_rails ? TBP_RAIL_DMA : 0);
		tbp_qp_open(e->link, 1 + (uint32_t)i, 2 - (uint32_t)i);
	}
}

/* Deliver what both sides queued, a bounded batch per rail so rails interleave. */
static uint64_t deliver(uint32_t rails)
{
	uint64_t moved = 0;
	int i;
	uint32_t r;

	for (i = 0; i < 2; i++) {
		for (r = 0; r < rails; r++) {
			struct ring *q = &B[i].tx[r];
			uint32_t n = 0;

			while (q->tail != q->head && n++ < 64) {
				tbp_rx(B[1 - i].link, r, q->slot[q->tail % RING], q->len[q->tail % RING]);
				q->tail++;
				moved++;
				if (rx_per_tick && (n % rx_per_tick == 0 || q->tail == q->head))
					tbp_tick(B[1 - i].link, bnow);
			}
		}
	}
	return moved;
}

static void handshake(uint32_t rails)
{
	int k;

	for (k = 0; k < 10 && tbp_link_state(B[1].link) != TBP_LINK_UP; k++) {
		tbp_tick(B[0].link, bnow);
		tbp_tick(B[1].link, bnow);
		deliver(rails);
	}
	if (tbp_link_state(B[0].link) != TBP_LINK_UP) {
		fprintf(stderr, "bench: handshake failed\n");
		exit(1);
	}
}

struct result {
	double per_sec;
	double frames_per_sec;
	double gbit;
	uint64_t retransmits;
};

/* Stream messages of msg_len from side 0 to side 1 for about seconds of CPU time. */
static struct result run(uint32_t rails, uint32_t opcode, uint32_t msg_len, double seconds,
			 bool pcsum)
{
	struct tbp_stats st0, st1;
	struct result res;
	uint64_t c0, c1, iter = 0, posted = 0, budget = (uint64_t)(seconds * 1e9);
	struct tbp_wr wr;

	setup(rails, pcsum);
	handshake(rails);
	memset(&wr, 0, sizeof(wr));
	wr.opcode = opcode;
	wr.qpn = 1;
	wr.len = msg_len;
	wr.rkey = 1;
	c0 = cpu_ns();
	for (;;) {
		while (posted - B[0].sends_done < 256) {
			wr.wr_id = posted;
			wr.local_buf = (posted % 64) * 65536;
			wr.raddr = (posted % 8) * 262144;
			if (tbp_post(B[0].link, &wr))
				break;
			posted++;
		}
		deliver(rails);
		bnow = cpu_ns();
		if ((++iter & 15) == 0) {
			tbp_tick(B[0].link, bnow);
			tbp_tick(B[1].link, bnow);
			if (cpu_ns() - c0 >= budget)
				break;
		}
	}
	c1 = cpu_ns();
	tbp_get_stats(B[0].link, &st0);
	tbp_get_stats(B[1].link, &st1);
	res.per_sec = (double)B[0].sends_done / ((double)(c1 - c0) / 1e9);
	res.frames_per_sec = (double)st0.tx_data_frames / ((double)(c1 - c0) / 1e9);
	res.gbit = res.per_sec * msg_len * 8 / 1e9;
	res.retransmits = st0.retransmits + st1.retransmits;
	if (getenv("BENCH_DEBUG"))
		fprintf(stderr, "dbg: fast %llu timeouts %llu dup %llu win %llu noslot %llu rnr %llu busy %llu failover %llu rto %llu srtt %llu\n", (unsigned long long)st0.retx_fast, (unsigned long long)st0.retx_timeouts, (unsigned long long)st1.rx_duplicates, (unsigned long long)st1.drop_window, (unsigned long long)st1.drop_no_slot, (unsigned long long)st1.drop_rnr, (unsigned long long)st0.xmit_busy, (unsigned long long)st0.rail_failovers, (unsigned long long)st0.rto_ns, (unsigned long long)st0.srtt_ns);
	return res;
}

static void print_row(const char *name, const struct result *r)
{
	printf("%-44s %14.0f %14.0f %10.2f %8llu\n", name, r->frames_per_sec, r->per_sec, r->gbit,
	       (unsigned long long)r->retransmits);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	double secs = argc > 1 && !strcmp(argv[1], "--quick") ? 0.4 : 2.0;
	static const uint32_t rails[] = { 1, 2, 4 };
	struct result r;
	size_t i;

	printf("TBP core benchmark: one core runs both endpoints (send + receive), in-memory rails,\n"
	       "real copies (local buffer -> frame built in the 128-frame rail ring's slot -> MR),\n"
	       "%.1f s CPU per row\n\n", secs);
	printf("%-44s %14s %14s %10s %8s\n", "workload", "frames/s/core", "msgs/s/core", "Gb/s",
	       "retx");
	for (i = 0; i < 3; i++) {
		char name[64];

		snprintf(name, sizeof(name), "RDMA WRITE 1 MiB, 4 KiB frames, %u rail%s", rails[i],
			 rails[i] > 1 ? "s" : "");
		r = run(rails[i], TBP_OP_RDMA_WRITE, 1u << 20, secs, false);
		print_row(name, &r);
	}
	frame_mac = false;
	r = run(1, TBP_OP_RDMA_WRITE, 1u << 20, secs, false);
	print_row("same, 1 rail, without the frame MAC", &r);
	in_place = false;
	r = run(1, TBP_OP_RDMA_WRITE, 1u << 20, secs, false);
	print_row("same, built in scratch, copied by xmit", &r);
	in_place = true;
	frame_mac = true;
	copy_payload = false;
	r = run(4, TBP_OP_RDMA_WRITE, 1u << 20, secs, false);
	print_row("same, 4 rails, payload copies elided", &r);
	copy_payload = true;
	r = run(4, TBP_OP_RDMA_WRITE, 1u << 20, secs, true);
	print_row("same, 4 rails, software payload CRC32C", &r);
	r = run(1, TBP_OP_SEND, 64, secs, false);
	print_row("SEND 64 B, 1 rail", &r);
	r = run(4, TBP_OP_SEND, 64, secs, false);
	print_row("SEND 64 B, 4 rails", &r);

	printf("\nkernel module configuration: window %u, %u QPs, %u WRs in flight, "
	       "MAC and payload CRC on Ethernet rails\n",
	       TBP_MODULE_WINDOW, TBP_MODULE_MAX_QPS, TBP_MODULE_MAX_OUTSTANDING);
	module_config = true;
	rx_per_tick = 1;
	r = run(1, TBP_OP_RDMA_WRITE, 1u << 20, secs, false);
	print_row("WRITE 1 MiB, 1 rail, tick per frame", &r);
	rx_per_tick = TBP_MODULE_RX_BATCH;
	r = run(1, TBP_OP_RDMA_WRITE, 1u << 20, secs, false);
	print_row("same, tick per 8-frame receive list", &r);
	r = run(4, TBP_OP_RDMA_WRITE, 1u << 20, secs, false);
	print_row("same, 4 rails", &r);
	dma_rails = true;
	r = run(1, TBP_OP_RDMA_WRITE, 1u << 20, secs, true);
	print_row("same, 1 USB4 (DMA) rail: no MAC, no CRC", &r);
	r = run(4, TBP_OP_RDMA_WRITE, 1u << 20, secs, true);
	print_row("same, 4 USB4 (DMA) rails", &r);
	dma_rails = false;
	copy_payload = false;
	r = run(4, TBP_OP_RDMA_WRITE, 1u << 20, secs, false);
	print_row("same, 4 rails, payload copies elided", &r);
	printf("\ntarget: >= 5,000,000 frames/s/core (80 Gb/s of 4 KiB frames needs 2,440,000)\n");
	return 0;
}
