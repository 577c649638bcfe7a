// SPDX-License-Identifier: GPL-2.0-only
/*
 * Userspace unit tests of driver/kernel/rail_tb_msg.c, the Thunderbolt rail's login messages
 * and receive-frame checks (the same source file the module compiles).
 *   tb_msg_test            run all
 *   tb_msg_test --list     names, one per line
 *   tb_msg_test NAME...    run the named tests
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rail_tb_msg.h"

static int failures;
static const char *current;

#define CHECK(cond)                                                                        \
	do {                                                                               \
		if (!(cond)) {                                                             \
			printf("  %s: %s:%d: CHECK(%s) failed\n", current, __FILE__, __LINE__,    \
			       #cond);                                                     \
			failures++;                                                        \
		}                                                                          \
	} while (0)

static const uint8_t proto[16] = { 0x7a, 0x6b, 0xb0, 0xeb, 0x2e, 0x6f, 0x47, 0x4a,
				   0xa7, 0x53, 0x68, 0xa7, 0x95, 0x52, 0x54, 0x1b };
static const uint8_t host_a[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };
static const uint8_t host_b[16] = { 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8,
				    0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf, 0xb0 };

/* A LOGIN from host a to host b over route 0x301. */
static struct tbrdma_tb_msg login_msg(void)
{
	struct tbrdma_tb_msg m;

	memset(&m, 0, sizeof(m));
	m.route = 0x301;
	m.sequence = 2;
	memcpy(m.initiator_uuid, host_a, 16);
	memcpy(m.target_uuid, host_b, 16);
	m.type = TBRDMA_TB_LOGIN;
	m.command_id = 77;
	m.version = TBRDMA_TB_MSG_VERSION;
	m.in_hopid = 8;
	m.max_frame = TBRDMA_TB_FRAME_SIZE;
	return m;
}

static void test_roundtrip(void)
{
	struct tbrdma_tb_msg m = login_msg(), d;
	uint32_t w[TBRDMA_TB_MSG_DWORDS];

	tbrdma_tb_msg_encode(&m, proto, w);
	CHECK(tbrdma_tb_msg_decode(w, sizeof(w), proto, &d) == 0);
	CHECK(d.route == m.route && d.sequence == 2 && d.type == TBRDMA_TB_LOGIN);
	CHECK(d.command_id == 77 && d.version == 1 && d.in_hopid == 8);
	CHECK(d.max_frame == 4096 && d.status == 0);
	CHECK(!memcmp(d.initiator_uuid, host_a, 16) && !memcmp(d.target_uuid, host_b, 16));
}

/* The layout is the wire format between two hosts: pin it. */
static void test_layout(void)
{
	struct tbrdma_tb_msg m = login_msg();
	uint32_t w[TBRDMA_TB_MSG_DWORDS];
	int i;

	m.route = 0x8000000500000301ull;
	m.status = 9;
	tbrdma_tb_msg_encode(&m, proto, w);
	CHECK(TBRDMA_TB_MSG_SIZE == 96);
	CHECK(w[0] == 0x80000005 && w[1] == 0x301);
	CHECK(w[2] == (21u | (2u << 27)));	/* 21 dwords follow the first three */
	CHECK(!memcmp(&w[3], proto, 16));
	CHECK(!memcmp(&w[7], host_a, 16) && !memcmp(&w[11], host_b, 16));
	CHECK(w[15] == TBRDMA_TB_LOGIN && w[16] == 77 && w[17] == 1);
	CHECK(w[18] == 8 && w[19] == 4096 && w[20] == 9);
	for (i = 21; i < TBRDMA_TB_MSG_DWORDS; i++)
		CHECK(w[i] == 0);
}

static void test_route_bit63_masked(void)
{
	struct tbrdma_tb_msg m = login_msg(), d;
	uint32_t w[TBRDMA_TB_MSG_DWORDS];

	tbrdma_tb_msg_encode(&m, proto, w);
	w[0] |= 0x80000000u;	/* set by the receiving router */
	CHECK(tbrdma_tb_msg_decode(w, sizeof(w), proto, &d) == 0);
	CHECK(d.route == 0x301);
	CHECK(tbrdma_tb_msg_for_us(&d, 0x301, host_b, host_a));
}

static void test_sequence_two_bits(void)
{
	struct tbrdma_tb_msg m = login_msg(), d;
	uint32_t w[TBRDMA_TB_MSG_DWORDS];

	m.sequence = 5;
	tbrdma_tb_msg_encode(&m, proto, w);
	CHECK((w[2] & 0x3f) == 21);
	CHECK(tbrdma_tb_msg_decode(w, sizeof(w), proto, &d) == 0 && d.sequence == 1);
}

static void test_decode_rejects(void)
{
	struct tbrdma_tb_msg m = login_msg(), d;
	uint32_t w[TBRDMA_TB_MSG_DWORDS], bad[TBRDMA_TB_MSG_DWORDS];
	uint8_t other[16];

	tbrdma_tb_msg_encode(&m, proto, w);
	CHECK(tbrdma_tb_msg_decode(NULL, sizeof(w), proto, &d) == -EBADMSG);
	CHECK(tbrdma_tb_msg_decode(w, 0, proto, &d) == -EBADMSG);
	CHECK(tbrdma_tb_msg_decode(w, sizeof(w) - 1, proto, &d) == -EBADMSG);
	CHECK(tbrdma_tb_msg_decode(w, 12 + 16, proto, &d) == -EBADMSG);	/* header + UUID */

	memcpy(bad, w, sizeof(w));
	bad[2] = (bad[2] & ~0x3fu) | 20;
	CHECK(tbrdma_tb_msg_decode(bad, sizeof(bad), proto, &d) == -EBADMSG);

	memcpy(other, proto, 16);
	other[15] ^= 1;
	CHECK(tbrdma_tb_msg_decode(w, sizeof(w), other, &d) == -EPROTO);

	memcpy(bad, w, sizeof(w));
	bad[15] = 0;
	CHECK(tbrdma_tb_msg_decode(bad, sizeof(bad), proto, &d) == -EPROTO);
	bad[15] = 5;
	CHECK(tbrdma_tb_msg_decode(bad, sizeof(bad), proto, &d) == -EPROTO);
	bad[15] = 0xffffffffu;
	CHECK(tbrdma_tb_msg_decode(bad, sizeof(bad), proto, &d) == -EPROTO);

	memcpy(bad, w, sizeof(w));
	bad[17] = 2;
	CHECK(tbrdma_tb_msg_decode(bad, sizeof(bad), proto, &d) == -EPROTONOSUPPORT);
	bad[17] = 0;
	CHECK(tbrdma_tb_msg_decode(bad, sizeof(bad), proto, &d) == -EPROTONOSUPPORT);
}

/* A control frame longer than ours (padding, a later revision) decodes; unaligned too. */
static void test_decode_longer_and_unaligned(void)
{
	struct tbrdma_tb_msg m = login_msg(), d;
	uint32_t w[TBRDMA_TB_MSG_DWORDS];
	uint8_t raw[TBRDMA_TB_MSG_SIZE + 9];

	tbrdma_tb_msg_encode(&m, proto, w);
	memset(raw, 0xee, sizeof(raw));
	memcpy(raw + 1, w, sizeof(w));
	CHECK(tbrdma_tb_msg_decode(raw + 1, sizeof(raw) - 1, proto, &d) == 0);
	CHECK(d.in_hopid == 8 && d.command_id == 77);
}

/* The ring pair index travels in dword 21; a one-pair sender's zero there means pair 0. */
static void test_pair_index(void)
{
	struct tbrdma_tb_msg m = login_msg(), d;
	uint32_t w[TBRDMA_TB_MSG_DWORDS];

	m.pair = 3;
	tbrdma_tb_msg_encode(&m, proto, w);
	CHECK(w[21] == 3);
	CHECK(tbrdma_tb_msg_decode(w, sizeof(w), proto, &d) == 0 && d.pair == 3);
	w[21] = 0;
	CHECK(tbrdma_tb_msg_decode(w, sizeof(w), proto, &d) == 0 && d.pair == 0);
}

static void test_for_us(void)
{
	struct tbrdma_tb_msg m = login_msg();

	/* Host b receives host a's login over its own route 0x301. */
	CHECK(tbrdma_tb_msg_for_us(&m, 0x301, host_b, host_a));
	CHECK(tbrdma_tb_msg_for_us(&m, 0x8000000000000301ull, host_b, host_a));
	CHECK(!tbrdma_tb_msg_for_us(&m, 0x302, host_b, host_a));
	CHECK(!tbrdma_tb_msg_for_us(&m, 0x301, host_a, host_b));	/* roles swapped */
	CHECK(!tbrdma_tb_msg_for_us(&m, 0x301, host_b, host_b));
	CHECK(!tbrdma_tb_msg_for_us(&m, 0x301, NULL, host_a));
	CHECK(!tbrdma_tb_msg_for_us(&m, 0x301, host_b, NULL));
}

static void test_check_peer_hopid(void)
{
	struct tbrdma_tb_msg m = login_msg();

	m.in_hopid = 7;
	CHECK(tbrdma_tb_check_peer(&m, 31) == -EINVAL);	/* reserved HopIDs */
	m.in_hopid = 0;
	CHECK(tbrdma_tb_check_peer(&m, 31) == -EINVAL);
	m.in_hopid = 8;
	CHECK(tbrdma_tb_check_peer(&m, 31) == 0);
	m.in_hopid = 31;
	CHECK(tbrdma_tb_check_peer(&m, 31) == 0);
	m.in_hopid = 32;
	CHECK(tbrdma_tb_check_peer(&m, 31) == -EINVAL);	/* beyond the peer's adapter */
	m.in_hopid = 0x80000008u;
	CHECK(tbrdma_tb_check_peer(&m, 31) == -EINVAL);
	m.in_hopid = 8;
	CHECK(tbrdma_tb_check_peer(&m, 0) == -EINVAL);	/* max HopID unknown */
}

static void test_check_peer_frame_and_type(void)
{
	struct tbrdma_tb_msg m = login_msg();

	m.max_frame = 255;
	CHECK(tbrdma_tb_check_peer(&m, 31) == -EINVAL);
	m.max_frame = 256;
	CHECK(tbrdma_tb_check_peer(&m, 31) == 0);
	m.max_frame = 4097;
	CHECK(tbrdma_tb_check_peer(&m, 31) == -EINVAL);
	m.max_frame = 0;
	CHECK(tbrdma_tb_check_peer(&m, 31) == -EINVAL);
	m.max_frame = 4096;
	m.type = TBRDMA_TB_LOGIN_RESPONSE;
	CHECK(tbrdma_tb_check_peer(&m, 31) == 0);
	m.status = TBRDMA_TB_STATUS_REFUSED;
	CHECK(tbrdma_tb_check_peer(&m, 31) == -EINVAL);
	m.status = 0;
	m.type = TBRDMA_TB_LOGOUT;
	CHECK(tbrdma_tb_check_peer(&m, 31) == -EINVAL);
	m.type = TBRDMA_TB_LOGOUT_RESPONSE;
	CHECK(tbrdma_tb_check_peer(&m, 31) == -EINVAL);
}

static void test_rx_frame_len(void)
{
	CHECK(tbrdma_tb_rx_frame_len(0, false, false, 4096) == 4096);
	CHECK(tbrdma_tb_rx_frame_len(1, false, false, 4096) == 1);
	CHECK(tbrdma_tb_rx_frame_len(300, false, false, 4096) == 300);
	CHECK(tbrdma_tb_rx_frame_len(4095, false, false, 4096) == 4095);
	CHECK(tbrdma_tb_rx_frame_len(300, true, false, 4096) == -EILSEQ);
	CHECK(tbrdma_tb_rx_frame_len(300, false, true, 4096) == -EOVERFLOW);
	CHECK(tbrdma_tb_rx_frame_len(0x1000, false, false, 4096) == -EOVERFLOW);
	CHECK(tbrdma_tb_rx_frame_len(0xffffffffu, false, false, 4096) == -EOVERFLOW);
	CHECK(tbrdma_tb_rx_frame_len(0, false, false, 2048) == -EOVERFLOW);
	CHECK(tbrdma_tb_rx_frame_len(2049, false, false, 2048) == -EOVERFLOW);
}

/*
 * Random input: decode never reads past the buffer (ASan) and whatever passes both decode
 * and check_peer is inside the bounds the driver relies on.
 */
static void test_random_input(void)
{
	uint32_t w[TBRDMA_TB_MSG_DWORDS];
	uint64_t x = 0x9e3779b97f4a7c15ull;
	unsigned int passed = 0;
	int iter, i;

	for (iter = 0; iter < 300000; iter++) {
		struct tbrdma_tb_msg d;
		size_t size;
		uint8_t *copy;

		for (i = 0; i < TBRDMA_TB_MSG_DWORDS; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			w[i] = (uint32_t)x;
		}
		/* Make a good share structurally valid so the later checks are reached. */
		if (iter & 1) {
			w[2] = (w[2] & ~0x3fu) | 21;
			memcpy(&w[3], proto, 16);
			w[15] = 1 + (w[15] & 3);
			w[17] = (w[17] & 8) ? 1 : w[17];
			w[18] &= 0x3f;
			w[19] &= 0x1fff;
		}
		size = (size_t)(x % (TBRDMA_TB_MSG_SIZE + 8));
		copy = malloc(size ? size : 1);
		memcpy(copy, w, size < sizeof(w) ? size : sizeof(w));
		if (tbrdma_tb_msg_decode(copy, size, proto, &d) == 0) {
			CHECK(size >= TBRDMA_TB_MSG_SIZE);
			CHECK(d.type >= 1 && d.type <= 4 && d.version == 1 && d.sequence < 4);
			CHECK(!(d.route >> 63));
			if (tbrdma_tb_check_peer(&d, 31) == 0) {
				CHECK(d.in_hopid >= 8 && d.in_hopid <= 31);
				CHECK(d.max_frame >= 256 && d.max_frame <= 4096);
				passed++;
			}
		}
		free(copy);
	}
	CHECK(passed > 100);
}

static const struct {
	const char *name;
	void (*fn)(void);
} tests[] = {
	{ "roundtrip", test_roundtrip },
	{ "layout", test_layout },
	{ "route_bit63_masked", test_route_bit63_masked },
	{ "sequence_two_bits", test_sequence_two_bits },
	{ "decode_rejects", test_decode_rejects },
	{ "decode_longer_and_unaligned", test_decode_longer_and_unaligned },
	{ "for_us", test_for_us },
	{ "pair_index", test_pair_index },
	{ "check_peer_hopid", test_check_peer_hopid },
	{ "check_peer_frame_and_type", test_check_peer_frame_and_type },
	{ "rx_frame_len", test_rx_frame_len },
	{ "random_input", test_random_input },
};

static int run(size_t i)
{
	int before = failures;

	current = tests[i].name;
	tests[i].fn();
	printf("%s %s\n", failures == before ? "PASS" : "FAIL", tests[i].name);
	return failures == before;
}

int main(int argc, char **argv)
{
	size_t i;
	int a;

	if (argc == 2 && !strcmp(argv[1], "--list")) {
		for (i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
			printf("%s\n", tests[i].name);
		return 0;
	}
	if (argc == 1) {
		for (i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
			run(i);
		return failures ? 1 : 0;
	}
	for (a = 1; a < argc; a++) {
		for (i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
			if (!strcmp(argv[a], tests[i].name))
				break;
		if (i == sizeof(tests) / sizeof(tests[0])) {
			printf("unknown test %s\n", argv[a]);
			return 2;
		}
		run(i);
	}
	return failures ? 1 : 0;
}
