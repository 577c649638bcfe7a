// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * Unit tests of the TBP core: codec, checksum, HMAC, configuration, and each state
 * machine driven frame by frame between two links.
 *   test_unit            run all
 *   test_unit --list     names, one per line
 *   test_unit NAME...    run the named tests
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/tbp_internal.h"
#include "../userspace/hmac_sha256.h"

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

/* ---- crypto and checksum vectors ---- */

static void hexdecode(const char *hex, uint8_t *out, size_t *len)
{
	size_t n = 0;

	while (hex[0] && hex[1]) {
		unsigned v;

		sscanf(hex, "%2x", &v);
		out[n++] = (uint8_t)v;
		hex += 2;
	}
	*len = n;
}

static void test_crc32c(void)
{
	CHECK(tbp_crc32c(0, "123456789", 9) == 0xe3069283u);
	CHECK(tbp_crc32c(0, "", 0) == 0);
	/* Incremental equals one-shot. */
	CHECK(tbp_crc32c(tbp_crc32c(0, "1234", 4), "56789", 5) == 0xe3069283u);
}

static void test_sha256(void)
{
	struct sha256_ctx c;
	uint8_t out[32], want[32];
	size_t n;

	sha256_init(&c);
	sha256_update(&c, "abc", 3);
	sha256_final(&c, out);
	hexdecode("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", want, &n);
	CHECK(memcmp(out, want, 32) == 0);
	sha256_init(&c);
	sha256_update(&c, "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56);
	sha256_final(&c, out);
	hexdecode("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1", want, &n);
	CHECK(memcmp(out, want, 32) == 0);
}

/* RFC 4231 test cases 1, 2, 3, 4, 6 and 7 (case 5 tests truncation, which TBP never uses). */
static void test_hmac_rfc4231(void)
{
	static const struct {
		const char *key, *data, *mac;
	} v[] = {
		{ "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "4869205468657265",
		  "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7" },
		{ "4a656665", "7768617420646f2079612077616e7420666f72206e6f7468696e673f",
		  "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843" },
		{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		  "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"
		  "dddddddddddddddddddddddddd",
		  "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe" },
		{ "0102030405060708090a0b0c0d0e0f10111213141516171819",
		  "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"
		  "cdcdcdcdcdcdcdcdcdcdcdcdcdcd",
		  "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b" },
		{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		  "54657374205573696e67204c6172676572205468616e20426c6f636b2d53697a65204b65"
		  "79202d2048617368204b6579204669727374",
		  "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54" },
		{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		  "5468697320697320612074657374207573696e672061206c6172676572207468616e2062"
		  "6c6f636b2d73697a65206b657920616e642061206c6172676572207468616e20626c6f63"
		  "6b2d73697a6520646174612e20546865206b6579206e6565647320746f20626520686173"
		  "686564206265666f7265206265696e6720757365642062792074686520484d414320616c"
		  "676f726974686d2e",
		  "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2" },
	};
	size_t i;

	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		uint8_t key[256], data[256], want[32], out[32];
		size_t kl, dl, ml;

		hexdecode(v[i].key, key, &kl);
		hexdecode(v[i].data, data, &dl);
		hexdecode(v[i].mac, want, &ml);
		hmac_sha256(key, kl, data, dl, out);
		if (memcmp(out, want, 32) != 0)
			printf("  RFC 4231 vector %zu mismatch\n", i);
		CHECK(memcmp(out, want, 32) == 0);
	}
}

/* ---- codec ---- */

static struct tbp_hdr sample_hdr(void)
{
	struct tbp_hdr h;

	memset(&h, 0, sizeof(h));
	h.magic = TBP_MAGIC;
	h.version = TBP_PROTO_VERSION;
	h.opcode = TBP_W_SEND_IMM;
	h.flags = TBP_F_SEQ | TBP_F_PCSUM;
	h.rail = 3;
	h.session = 0xdeadbeef;
	h.seq = 0xfffffff0u;
	h.ack = 0x12345678;
	h.ssn = 77;
	h.sack = 0x8000000000000001ull;
	h.dst_qpn = 0xabcdef;
	h.src_qpn = 0x123;
	h.msn = 99;
	h.rkey = 0x11223344;
	h.raddr = 0x0102030405060708ull;
	h.msg_len = 9000;
	h.frag_off = 4000;
	h.imm = 0xcafef00d;
	h.payload_len = 100;
	return h;
}

static void test_codec_roundtrip(void)
{
	uint8_t frame[TBP_HDR_LEN + 100];
	struct tbp_hdr h = sample_hdr(), d;
	uint32_t i;

	for (i = 0; i < 100; i++)
		frame[TBP_HDR_LEN + i] = (uint8_t)i;
	tbp_hdr_encode(frame, &h);
	CHECK(frame[0] == 'T' && frame[1] == 'B' && frame[2] == 'P' && frame[3] == '1');
	CHECK(tbp_frame_decode(frame, sizeof(frame), TBP_MAX_FRAME, &d) == 0);
	CHECK(memcmp(&h, &d, sizeof(h)) == 0);
}

static void test_codec_lengths(void)
{
	uint8_t frame[TBP_HDR_LEN + 100];
	struct tbp_hdr h = sample_hdr(), d;

	tbp_hdr_encode(frame, &h);
	CHECK(tbp_frame_decode(frame, TBP_HDR_LEN - 1, TBP_MAX_FRAME, &d) == TBP_DEC_SHORT);
	CHECK(tbp_frame_decode(frame, sizeof(frame) - 1, TBP_MAX_FRAME, &d) == TBP_DEC_SHORT);
	CHECK(tbp_frame_decode(frame, sizeof(frame), 150, &d) == TBP_DEC_FIELD);
	CHECK(tbp_frame_decode(frame, TBP_MAX_FRAME + 1, TBP_MAX_FRAME + 10, &d) == TBP_DEC_FIELD);
}

static void test_codec_checksum(void)
{
	uint8_t frame[TBP_HDR_LEN + 100];
	struct tbp_hdr h = sample_hdr(), d;
	uint32_t byte, bit;

	tbp_hdr_encode(frame, &h);
	/* Every single-bit error anywhere in the frame is caught (CRC32C, payload covered). */
	for (byte = 0; byte < sizeof(frame); byte++) {
		for (bit = 0; bit < 8; bit++) {
			frame[byte] ^= (uint8_t)(1u << bit);
			CHECK(tbp_frame_decode(frame, sizeof(frame), TBP_MAX_FRAME, &d) != 0);
			frame[byte] ^= (uint8_t)(1u << bit);
		}
	}
	/* Without TBP_F_PCSUM the payload is left to the rail's own CRC. */
	h.flags = TBP_F_SEQ;
	tbp_hdr_encode(frame, &h);
	frame[TBP_HDR_LEN + 5] ^= 1;
	CHECK(tbp_frame_decode(frame, sizeof(frame), TBP_MAX_FRAME, &d) == 0);
	frame[10] ^= 1;
	CHECK(tbp_frame_decode(frame, sizeof(frame), TBP_MAX_FRAME, &d) == TBP_DEC_CHECKSUM);
}

static int decode_mutated(void (*mutate)(struct tbp_hdr *))
{
	uint8_t frame[TBP_HDR_LEN + 200];
	struct tbp_hdr h = sample_hdr(), d;

	mutate(&h);
	memset(frame + TBP_HDR_LEN, 0, 200);
	tbp_hdr_encode(frame, &h);
	return tbp_frame_decode(frame, TBP_HDR_LEN + h.payload_len, TBP_MAX_FRAME, &d);
}

static void m_magic(struct tbp_hdr *h) { h->magic ^= 1; }
static void m_version(struct tbp_hdr *h) { h->version = TBP_PROTO_VERSION + 1; }
static void m_flags(struct tbp_hdr *h) { h->flags |= 0x80; }
static void m_reserved(struct tbp_hdr *h) { h->reserved = 1; }
static void m_rail(struct tbp_hdr *h) { h->rail = TBP_MAX_RAILS; }
static void m_dst_qpn(struct tbp_hdr *h) { h->dst_qpn = 0x1000000; }
static void m_src_qpn(struct tbp_hdr *h) { h->src_qpn = 0xffffffff; }
static void m_opcode(struct tbp_hdr *h) { h->opcode = 99; }
static void m_opcode0(struct tbp_hdr *h) { h->opcode = 0; }
static void m_frag_past_end(struct tbp_hdr *h) { h->frag_off = 8950; }
static void m_frag_wrap(struct tbp_hdr *h) { h->frag_off = 0xffffffc0u; }
static void m_msg_too_long(struct tbp_hdr *h) { h->msg_len = 0x80000001u; h->frag_off = 0; }
static void m_empty_frag(struct tbp_hdr *h) { h->payload_len = 0; }
static void m_unsequenced_data(struct tbp_hdr *h) { h->flags &= (uint8_t)~TBP_F_SEQ; }
static void m_status_on_keepalive(struct tbp_hdr *h)
{
	h->opcode = TBP_W_KEEPALIVE;
	h->flags = 0;
	h->payload_len = 0;
	h->status = 1;
}
/* Data frames carry their retry attempt in the status field: any value is valid. */
static void m_attempt_on_data(struct tbp_hdr *h) { h->status = 0xfffe; }
/* A valid NAK: RNR with a delay, NOT_READY and QP_ERROR without. */
static void m_nak(struct tbp_hdr *h)
{
	h->opcode = TBP_W_NAK;
	h->flags = 0;
	h->payload_len = 0;
	h->msg_len = 0;
	h->frag_off = 0;
	h->status = TBP_NAK_RNR;
	h->imm = TBP_NAK_MAX_DELAY_US;
	h->ssn = 0xffff;
}
static void m_nak_not_ready(struct tbp_hdr *h) { m_nak(h); h->status = TBP_NAK_NOT_READY; h->imm = 0; }
static void m_nak_qp_error(struct tbp_hdr *h) { m_nak(h); h->status = TBP_NAK_QP_ERROR; h->imm = 0; }
static void m_nak_code0(struct tbp_hdr *h) { m_nak(h); h->status = 0; }
static void m_nak_code4(struct tbp_hdr *h) { m_nak(h); h->status = 4; h->imm = 0; }
static void m_nak_delay(struct tbp_hdr *h) { m_nak(h); h->imm = TBP_NAK_MAX_DELAY_US + 1; }
static void m_nak_delay_not_rnr(struct tbp_hdr *h) { m_nak_not_ready(h); h->imm = 1; }
static void m_nak_attempt(struct tbp_hdr *h) { m_nak(h); h->ssn = 0x10000; }
static void m_nak_sequenced(struct tbp_hdr *h) { m_nak(h); h->flags = TBP_F_SEQ; }
static void m_nak_payload(struct tbp_hdr *h) { m_nak(h); h->payload_len = 4; }
static void m_nak_msg_len(struct tbp_hdr *h) { m_nak(h); h->msg_len = 1; }
static void m_ack_with_payload(struct tbp_hdr *h) { h->opcode = TBP_W_ACK; h->flags = 0; }
static void m_sequenced_ack(struct tbp_hdr *h)
{
	h->opcode = TBP_W_ACK;
	h->payload_len = 0;
}
static void m_hello_len(struct tbp_hdr *h) { h->opcode = TBP_W_HELLO; h->flags = 0; }
static void m_read_req_payload(struct tbp_hdr *h) { h->opcode = TBP_W_READ_REQ; h->frag_off = 0; }
static void m_msg_ack_status(struct tbp_hdr *h)
{
	h->opcode = TBP_W_MSG_ACK;
	h->payload_len = 0;
	h->status = 8;
}
static void m_ok_msg_ack(struct tbp_hdr *h)
{
	h->opcode = TBP_W_MSG_ACK;
	h->payload_len = 0;
	h->status = 7;
}
/* SE only on messages that consume a receive (sample_hdr is a SEND_IMM). */
static void m_solicited_send(struct tbp_hdr *h) { h->flags |= TBP_F_SOLICITED; }
static void m_solicited_write(struct tbp_hdr *h)
{
	h->flags |= TBP_F_SOLICITED;
	h->opcode = TBP_W_WRITE;
}
static void m_ok_empty_msg(struct tbp_hdr *h)
{
	h->msg_len = 0;
	h->frag_off = 0;
	h->payload_len = 0;
}

static void test_codec_field_rules(void)
{
	CHECK(decode_mutated(m_magic) == TBP_DEC_MAGIC);
	CHECK(decode_mutated(m_version) == TBP_DEC_MAGIC);
	CHECK(decode_mutated(m_flags) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_reserved) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_rail) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_dst_qpn) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_src_qpn) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_opcode) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_opcode0) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_frag_past_end) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_frag_wrap) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_msg_too_long) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_empty_frag) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_unsequenced_data) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_status_on_keepalive) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_attempt_on_data) == 0);
	CHECK(decode_mutated(m_ack_with_payload) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_sequenced_ack) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_hello_len) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_read_req_payload) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_msg_ack_status) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_ok_msg_ack) == 0);
	CHECK(decode_mutated(m_ok_empty_msg) == 0);
	CHECK(decode_mutated(m_solicited_send) == 0);
	CHECK(decode_mutated(m_solicited_write) == TBP_DEC_FIELD);
}

static void test_codec_nak_rules(void)
{
	CHECK(decode_mutated(m_nak) == 0);
	CHECK(decode_mutated(m_nak_not_ready) == 0);
	CHECK(decode_mutated(m_nak_qp_error) == 0);
	CHECK(decode_mutated(m_nak_code0) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_nak_code4) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_nak_delay) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_nak_delay_not_rnr) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_nak_attempt) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_nak_sequenced) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_nak_payload) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_nak_msg_len) == TBP_DEC_FIELD);
}

/* A version 4 peer (no SACK ranges) is refused like any other version. */
static void m_version_4(struct tbp_hdr *h) { h->version = 4; }

/* An ACK frame carrying n ranges (raw le16 pairs), validated as a whole frame. */
static int decode_ack(const uint16_t *pairs, uint32_t n, uint8_t opcode, uint8_t flags)
{
	uint8_t frame[TBP_HDR_LEN + 4 * 40];
	struct tbp_hdr h, d;
	uint32_t i;

	memset(&h, 0, sizeof(h));
	h.magic = TBP_MAGIC;
	h.version = TBP_PROTO_VERSION;
	h.opcode = opcode;
	h.flags = flags;
	h.ack = 0xfffffff0u;
	h.sack = 0x5;
	h.payload_len = (uint16_t)(4 * n);
	for (i = 0; i < 2 * n; i++) {
		frame[TBP_HDR_LEN + 2 * i] = (uint8_t)pairs[i];
		frame[TBP_HDR_LEN + 2 * i + 1] = (uint8_t)(pairs[i] >> 8);
	}
	tbp_hdr_encode(frame, &h);
	return tbp_frame_decode(frame, TBP_HDR_LEN + h.payload_len, TBP_MAX_FRAME, &d);
}

/* SACK ranges round-trip through the codec, most of them in the smallest frame. */
static void test_codec_sack_ranges(void)
{
	struct tbp_sack_range r[TBP_SACK_MAX_RANGES], d[TBP_SACK_MAX_RANGES];
	uint8_t payload[TBP_SACK_MAX_RANGES * TBP_SACK_RANGE_LEN];
	uint16_t pairs[2 * TBP_SACK_MAX_RANGES];
	uint32_t i, len;

	for (i = 0; i < TBP_SACK_MAX_RANGES; i++) {
		r[i].off = (uint16_t)(1 + 100 * i);
		r[i].len = (uint16_t)(1 + i);
		pairs[2 * i] = r[i].off;
		pairs[2 * i + 1] = r[i].len;
	}
	len = tbp_sack_encode(payload, r, TBP_SACK_MAX_RANGES);
	CHECK(len == TBP_SACK_MAX_RANGES * TBP_SACK_RANGE_LEN);
	CHECK(TBP_HDR_LEN + len + TBP_MAC_TRAILER <= TBP_MIN_FRAME);
	CHECK(payload[0] == 1 && payload[1] == 0 && payload[2] == 1 && payload[4] == 101);
	CHECK(tbp_sack_decode(payload, len, d) == (int)TBP_SACK_MAX_RANGES);
	CHECK(memcmp(r, d, sizeof(r)) == 0);
	CHECK(tbp_sack_decode(payload, len, NULL) == (int)TBP_SACK_MAX_RANGES);
	CHECK(tbp_sack_decode(payload, 0, d) == 0);
	CHECK(decode_ack(pairs, TBP_SACK_MAX_RANGES, TBP_W_ACK, 0) == 0);
	CHECK(decode_ack(pairs, 0, TBP_W_ACK, 0) == 0);
	/* The last frame of the largest window, and a run up to it. */
	CHECK(decode_ack((const uint16_t[]){ 4095, 1 }, 1, TBP_W_ACK, 0) == 0);
	CHECK(decode_ack((const uint16_t[]){ 1, 4095 }, 1, TBP_W_ACK, 0) == 0);
	/* Ranges only on ACK frames, which stay unsequenced. */
	CHECK(decode_ack(pairs, 1, TBP_W_KEEPALIVE, 0) == TBP_DEC_FIELD);
	CHECK(decode_ack(pairs, 1, TBP_W_ACK, TBP_F_SEQ) == TBP_DEC_FIELD);
	CHECK(decode_mutated(m_version_4) == TBP_DEC_MAGIC);
}

/* Each way a range payload can be malformed refuses the whole frame. */
static void test_codec_sack_malformed(void)
{
	static const struct {
		const char *what;
		uint16_t pairs[6];
		uint32_t n;
	} bad[] = {
		{ "zero length", { 1, 0 }, 1 },
		{ "offset 0 (the ack itself)", { 0, 3 }, 1 },
		{ "overlapping", { 10, 5, 12, 4 }, 2 },
		{ "adjacent (one run split in two)", { 10, 5, 15, 4 }, 2 },
		{ "unsorted", { 30, 2, 10, 2 }, 2 },
		{ "duplicate", { 10, 2, 10, 2 }, 2 },
		{ "beyond the largest window", { 4000, 97 }, 1 },
		{ "offset past any window", { 0xffff, 1 }, 1 },
		{ "length wraps 16 bits", { 1, 0xffff }, 1 },
		{ "third range bad", { 1, 1, 3, 1, 5, 0 }, 3 },
	};
	uint16_t many[2 * (TBP_SACK_MAX_RANGES + 1)];
	uint8_t odd[6] = { 1, 0, 1, 0, 9, 0 };
	uint32_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = decode_ack(bad[i].pairs, bad[i].n, TBP_W_ACK, 0);

		if (rc != TBP_DEC_FIELD)
			printf("  accepted: %s\n", bad[i].what);
		CHECK(rc == TBP_DEC_FIELD);
	}
	/* One range too many, in the frame and in the codec alone. */
	for (i = 0; i <= TBP_SACK_MAX_RANGES; i++) {
		many[2 * i] = (uint16_t)(1 + 3 * i);
		many[2 * i + 1] = 1;
	}
	CHECK(decode_ack(many, TBP_SACK_MAX_RANGES, TBP_W_ACK, 0) == 0);
	CHECK(decode_ack(many, TBP_SACK_MAX_RANGES + 1, TBP_W_ACK, 0) == TBP_DEC_FIELD);
	{
		uint8_t p[(TBP_SACK_MAX_RANGES + 1) * TBP_SACK_RANGE_LEN];
		struct tbp_sack_range r[TBP_SACK_MAX_RANGES];

		for (i = 0; i < 2 * (TBP_SACK_MAX_RANGES + 1); i++) {
			p[2 * i] = (uint8_t)many[i];
			p[2 * i + 1] = (uint8_t)(many[i] >> 8);
		}
		CHECK(tbp_sack_decode(p, sizeof(p), r) == TBP_DEC_FIELD);
		/* A payload that is not a whole number of ranges. */
		CHECK(tbp_sack_decode(odd, sizeof(odd), r) == TBP_DEC_FIELD);
	}
	{
		uint8_t frame[TBP_HDR_LEN + 6];
		struct tbp_hdr h, d;

		memset(&h, 0, sizeof(h));
		h.magic = TBP_MAGIC;
		h.version = TBP_PROTO_VERSION;
		h.opcode = TBP_W_ACK;
		h.payload_len = sizeof(odd);
		memcpy(frame + TBP_HDR_LEN, odd, sizeof(odd));
		tbp_hdr_encode(frame, &h);
		CHECK(tbp_frame_decode(frame, sizeof(frame), TBP_MAX_FRAME, &d) == TBP_DEC_FIELD);
	}
}

/* IBA encodings: local ACK timeout 4.096 us * 2^n (0 = infinite) and the RNR timer table. */
static void test_iba_timer_encodings(void)
{
	CHECK(tbp_ack_timeout_ns(0) == 0);
	CHECK(tbp_ack_timeout_ns(1) == 8192);
	CHECK(tbp_ack_timeout_ns(14) == 67108864);
	CHECK(tbp_rnr_timer_ns(0) == 655360000ull);
	CHECK(tbp_rnr_timer_ns(1) == 10000);
	CHECK(tbp_rnr_timer_ns(12) == 640000);
	CHECK(tbp_rnr_timer_ns(14) == 1280000);
	CHECK(tbp_rnr_timer_ns(31) == 491520000ull);
}

static void test_config_validation(void)
{
	struct tbp_config c;

	tbp_config_default(&c);
	CHECK(tbp_link_size(&c) == 0); /* no key yet */
	c.key_len = 32;
	CHECK(tbp_link_size(&c) > 0);
	c.window = 100;
	CHECK(tbp_link_size(&c) == 0);
	c.window = 8192;
	CHECK(tbp_link_size(&c) == 0);
	c.window = 256;
	c.max_msgs = 1;
	CHECK(tbp_link_size(&c) == 0);
	c.max_msgs = 256;
	c.rail_dead_ns = c.keepalive_ns;
	CHECK(tbp_link_size(&c) == 0);
	tbp_config_default(&c);
	c.key_len = 8;
	CHECK(tbp_link_size(&c) == 0);
}

#include "pair.h"
#include "auth.h"
#include "atomic.h"
#include "inv.h"
#include "cc.h"
#include "frags.h"
#include "pace.h"

static const struct {
	const char *name;
	void (*fn)(void);
} tests[] = {
	{ "crc32c", test_crc32c },
	{ "sha256", test_sha256 },
	{ "hmac_rfc4231", test_hmac_rfc4231 },
	{ "codec_roundtrip", test_codec_roundtrip },
	{ "codec_lengths", test_codec_lengths },
	{ "codec_checksum", test_codec_checksum },
	{ "codec_field_rules", test_codec_field_rules },
	{ "codec_nak_rules", test_codec_nak_rules },
	{ "codec_sack_ranges", test_codec_sack_ranges },
	{ "codec_sack_malformed", test_codec_sack_malformed },
	{ "iba_timer_encodings", test_iba_timer_encodings },
	{ "config_validation", test_config_validation },
	PAIR_TESTS
	AUTH_TESTS
	ATOMIC_TESTS
	INV_TESTS
	CC_TESTS
	FRAGS_TESTS
	PACE_TESTS
};

int main(int argc, char **argv)
{
	size_t i, ran = 0;
	int a;

	if (argc == 2 && !strcmp(argv[1], "--list")) {
		for (i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
			printf("%s\n", tests[i].name);
		return 0;
	}
	for (i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		bool wanted = argc == 1;
		int before = failures;

		for (a = 1; a < argc; a++)
			wanted |= !strcmp(argv[a], tests[i].name);
		if (!wanted)
			continue;
		current = tests[i].name;
		tests[i].fn();
		ran++;
		printf("%s %s\n", failures == before ? "PASS" : "FAIL", tests[i].name);
	}
	if (!ran) {
		printf("no test matched\n");
		return 2;
	}
	printf("%zu tests, %d failed checks\n", ran, failures);
	return failures ? 1 : 0;
}
