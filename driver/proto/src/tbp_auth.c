// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * tbp_auth.c - per-frame authentication (docs/protocol.md, "Frame authentication").
 *
 * Once the handshake has run, every frame a link sends carries a trailer: a 64-bit frame
 * counter (per direction, never reused within a session) and a 64-bit tag over header,
 * payload and counter, keyed with the sender's direction keys. The receiver checks the tag
 * before the frame can touch any state and refuses a counter it has seen or that lies more
 * than TBP_REPLAY_BITS behind the newest one.
 *
 * The tag is hash-then-PRF, as in UMAC (Black et al., RFC 4418): the frame is compressed by
 * two Toeplitz-shifted NH passes (2^-32-almost-universal each for equal lengths, so 2^-64
 * together), and SipHash-2-4 of (counter, length, both NH sums) is the tag. NH costs two
 * 32x32->64 multiplies per 8 bytes per pass, several times less than SipHash over the whole
 * frame, and needs no tables, vector units or floating point: the same code runs in the
 * kernel and in userspace.
 */
#include "tbp_internal.h"

#ifdef TBP_TEST_HOOKS
uint32_t tbp_ct_calls;
#endif

bool tbp_ct_equal(const void *a, const void *b, uint32_t n)
{
	const volatile uint8_t *x = a, *y = b;
	uint8_t diff = 0;
	uint32_t i;

#ifdef TBP_TEST_HOOKS
	tbp_ct_calls++;
#endif
	/* Every byte is read whatever the others hold: the time says nothing about the tag. */
	for (i = 0; i < n; i++)
		diff |= (uint8_t)(x[i] ^ y[i]);
	return diff == 0;
}

static uint64_t rotl(uint64_t x, unsigned int b)
{
	return (x << b) | (x >> (64 - b));
}

static uint64_t le64(const uint8_t *p)
{
	uint64_t v;

	/* One unaligned load where the host is little-endian: the MAC runs over every byte. */
	__builtin_memcpy(&v, p, sizeof(v)); /* inlined even with -ffreestanding */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	return v;
}

static void put_le64(uint8_t *p, uint64_t v)
{
	int i;

	for (i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

#define SIPROUND                                                                           \
	do {                                                                               \
		v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32);                  \
		v2 += v3; v3 = rotl(v3, 16); v3 ^= v2;                                     \
		v0 += v3; v3 = rotl(v3, 21); v3 ^= v0;                                     \
		v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32);                  \
	} while (0)

/* SipHash-2-4 (Aumasson, Bernstein 2012), 128-bit key, 64-bit output. */
uint64_t tbp_siphash24(const uint64_t key[2], const uint8_t *msg, uint32_t len)
{
	uint64_t v0 = 0x736f6d6570736575ull ^ key[0];
	uint64_t v1 = 0x646f72616e646f6dull ^ key[1];
	uint64_t v2 = 0x6c7967656e657261ull ^ key[0];
	uint64_t v3 = 0x7465646279746573ull ^ key[1];
	uint64_t m, b = (uint64_t)len << 56;
	uint32_t i, left = len & 7u;

	for (i = 0; i + 8 <= len; i += 8) {
		m = le64(msg + i);
		v3 ^= m;
		SIPROUND;
		SIPROUND;
		v0 ^= m;
	}
	while (left--)
		b |= (uint64_t)msg[i + left] << (8 * left);
	v3 ^= b;
	SIPROUND;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

/*
 * NH over 32-bit word pairs (m0, m1): sum of (m0 + k[2j]) * (m1 + k[2j+1]) mod 2^64; the
 * second pass uses the key shifted by one pair, whose words the next pair reuses. Takes the
 * whole 8-byte blocks of p[0, n) and returns the bytes taken.
 */
static uint32_t nh_blocks(struct tbp_nh *s, const uint8_t *p, uint32_t n)
{
	const uint32_t *k = s->k;
	uint64_t a = s->a, b = s->b, v;
	uint32_t i, k0, k1, k2, k3;

	if (n < 8)
		return 0;
	k0 = k[0];
	k1 = k[1];
	for (i = 0; i + 8 <= n; i += 8) {
		v = le64(p + i);
		k2 = k[2];
		k3 = k[3];
		a += (uint64_t)(uint32_t)((uint32_t)v + k0) * (uint32_t)((uint32_t)(v >> 32) + k1);
		b += (uint64_t)(uint32_t)((uint32_t)v + k2) * (uint32_t)((uint32_t)(v >> 32) + k3);
		k0 = k2;
		k1 = k3;
		k += 2;
	}
	s->a = a;
	s->b = b;
	s->k = k;
	return i;
}

void tbp_nh_init(struct tbp_nh *s, const uint32_t *nh_key)
{
	s->k = nh_key;
	s->a = 0;
	s->b = 0;
	s->len = 0;
}

void tbp_nh_update(struct tbp_nh *s, const uint8_t *p, uint32_t n)
{
	uint32_t fill = s->len & 7u, i = 0;

	s->len += n;
	if (fill) {
		/* A block split between pieces is completed in part[]. */
		i = n < 8 - fill ? n : 8 - fill;
		memcpy(s->part + fill, p, i);
		if (fill + i < 8)
			return;
		nh_blocks(s, s->part, 8);
	}
	i += nh_blocks(s, p + i, n - i);
	memcpy(s->part, p + i, n - i);
}

uint64_t tbp_nh_tag(struct tbp_nh *s, const uint64_t prf_key[2], const uint8_t ctr[8])
{
	uint32_t fill = s->len & 7u;
	uint8_t fin[28];

	if (fill) {
		/* Zero padding; the length goes into the PRF, so it cannot be confused. */
		memset(s->part + fill, 0, 8 - fill);
		nh_blocks(s, s->part, 8);
	}
	/* The counter is the last 8 bytes of the message: a fresh PRF input for every frame. */
	memcpy(fin, ctr, 8);
	put_le64(fin + 8, s->a);
	put_le64(fin + 16, s->b);
	fin[24] = (uint8_t)s->len;
	fin[25] = (uint8_t)(s->len >> 8);
	fin[26] = (uint8_t)(s->len >> 16);
	fin[27] = (uint8_t)(s->len >> 24);
	return tbp_siphash24(prf_key, fin, sizeof(fin));
}

uint64_t tbp_frame_tag(const uint64_t prf_key[2], const uint32_t *k, const uint8_t *msg,
		       uint32_t len)
{
	struct tbp_nh s;

	tbp_nh_init(&s, k);
	tbp_nh_update(&s, msg, len);
	return tbp_nh_tag(&s, prf_key, msg + len - 8);
}

uint32_t tbp_auth_overhead(const struct tbp_link *l)
{
	return (l->caps & TBP_CAP_FRAME_MAC) ? TBP_MAC_TRAILER : 0;
}

void tbp_auth_seal(struct tbp_link *l, uint8_t *frame, uint32_t len)
{
	uint8_t *t;

	if (!(l->caps & TBP_CAP_FRAME_MAC))
		return;
	/* A fresh counter per transmission, resends included: the receiver's window only
	 * ever has to move forward. */
	t = frame + len - TBP_MAC_TRAILER;
	put_le64(t, ++l->auth.tx_ctr);
	put_le64(t + 8, tbp_frame_tag(l->auth.tx_key, l->auth.tx_nh, frame, len - 8));
}

static bool replay_seen(const struct tbp_link *l, uint64_t c)
{
	return (l->auth.rx_bits[(c % TBP_REPLAY_BITS) / 64] >> (c % 64)) & 1u;
}

/* The tag of frame f (which carries a trailer), NH taken piece by piece; trailer: its last
 * TBP_MAC_TRAILER bytes (counter, tag), gathered. */
static uint64_t rx_tag(const struct tbp_auth *a, const struct tbp_rxf *f,
		       uint8_t trailer[TBP_MAC_TRAILER])
{
	struct tbp_rxf_pos pos;
	struct tbp_nh s;
	const uint8_t *p;
	uint32_t n;

	tbp_nh_init(&s, a->rx_nh);
	tbp_rxf_seek(f, 0, f->len - 8, &pos);
	while ((p = tbp_rxf_next(f, &pos, &n)))
		tbp_nh_update(&s, p, n);
	tbp_rxf_copy(f, f->len - TBP_MAC_TRAILER, trailer, TBP_MAC_TRAILER);
	return tbp_nh_tag(&s, a->rx_key, trailer);
}

bool tbp_auth_rx(struct tbp_link *l, bool dma_rail, const struct tbp_rxf *f,
		 const struct tbp_hdr *h)
{
	struct tbp_auth *a = &l->auth;
	uint8_t tag[8], trailer[TBP_MAC_TRAILER];
	uint64_t c;

	if (!(l->caps & TBP_CAP_FRAME_MAC)) {
		/* Not negotiated: a trailer is as wrong as a missing one is below. */
		if (h->flags & TBP_F_MAC) {
			l->st.drop_mac++;
			return false;
		}
		return true;
	}
	if (dma_rail && !(h->flags & TBP_F_MAC)) {
		/* Only the peer can put a frame on a DMA rail: it is the peer's by construction. */
		a->rx_authentic = 1;
		return true;
	}
	if (!(h->flags & TBP_F_MAC) || !a->keyed) {
		l->st.drop_mac++;
		return false;
	}
	put_le64(tag, rx_tag(a, f, trailer));
	if (!tbp_ct_equal(tag, trailer + 8, 8)) {
		l->st.drop_mac++;
		return false;
	}
	c = le64(trailer);
	if (c == 0 || (c <= a->rx_top && (a->rx_top - c >= TBP_REPLAY_BITS || replay_seen(l, c)))) {
		l->st.drop_replay++;
		return false;
	}
	if (c > a->rx_top) {
		/* Forget the counters the window slides past. */
		uint64_t k;

		if (c - a->rx_top >= TBP_REPLAY_BITS) {
			memset(a->rx_bits, 0, sizeof(a->rx_bits));
		} else {
			for (k = a->rx_top + 1; k < c; k++)
				a->rx_bits[(k % TBP_REPLAY_BITS) / 64] &= ~(1ull << (k % 64));
		}
		a->rx_top = c;
	}
	a->rx_bits[(c % TBP_REPLAY_BITS) / 64] |= 1ull << (c % 64);
	a->rx_authentic = 1;
	return true;
}

/* One direction: HMAC(key, label) gives the PRF key and a seed that SipHash expands, in
 * counter mode, into the NH key. */
static void derive_dir(struct tbp_link *l, const uint8_t *label, uint32_t label_len,
		       uint64_t prf[2], uint32_t *nh)
{
	uint8_t mac[TBP_MAC_LEN], ctr[4];
	uint64_t seed[2];
	uint32_t i;

	l->env.hmac_sha256(l->env.ctx, l->cfg.key, l->cfg.key_len, label, label_len, mac);
	prf[0] = le64(mac);
	prf[1] = le64(mac + 8);
	seed[0] = le64(mac + 16);
	seed[1] = le64(mac + 24);
	for (i = 0; i < TBP_NH_WORDS; i += 2) {
		uint64_t v;

		ctr[0] = (uint8_t)i;
		ctr[1] = (uint8_t)(i >> 8);
		ctr[2] = (uint8_t)(i >> 16);
		ctr[3] = (uint8_t)(i >> 24);
		v = tbp_siphash24(seed, ctr, sizeof(ctr));
		nh[i] = (uint32_t)v;
		if (i + 1 < TBP_NH_WORDS)
			nh[i + 1] = (uint32_t)(v >> 32);
	}
	tbp_auth_wipe_buf(mac, sizeof(mac));
	tbp_auth_wipe_buf(seed, sizeof(seed));
}

void tbp_auth_derive(struct tbp_link *l, const uint8_t *nonce_i, const uint8_t *nonce_r)
{
	uint8_t msg[2 + 2 * TBP_NONCE_LEN];
	bool initiator = l->cfg.role == TBP_ROLE_INITIATOR;

	msg[0] = 'K';
	memcpy(msg + 2, nonce_i, TBP_NONCE_LEN);
	memcpy(msg + 2 + TBP_NONCE_LEN, nonce_r, TBP_NONCE_LEN);
	msg[1] = 'i'; /* initiator to responder */
	derive_dir(l, msg, sizeof(msg), initiator ? l->auth.tx_key : l->auth.rx_key,
		   initiator ? l->auth.tx_nh : l->auth.rx_nh);
	msg[1] = 'r';
	derive_dir(l, msg, sizeof(msg), initiator ? l->auth.rx_key : l->auth.tx_key,
		   initiator ? l->auth.rx_nh : l->auth.tx_nh);
	l->auth.tx_ctr = 0;
	l->auth.rx_top = 0;
	memset(l->auth.rx_bits, 0, sizeof(l->auth.rx_bits));
	l->auth.keyed = 1;
}

void tbp_auth_wipe_buf(void *p, size_t n)
{
	volatile uint8_t *v = p;

	/* Volatile stores: the compiler may not drop them as dead. */
	while (n--)
		*v++ = 0;
}

void tbp_auth_wipe(struct tbp_link *l)
{
	tbp_auth_wipe_buf(l->cfg.key, sizeof(l->cfg.key));
	tbp_auth_wipe_buf(&l->auth, sizeof(l->auth));
	tbp_auth_wipe_buf(l->nonce, sizeof(l->nonce));
	tbp_auth_wipe_buf(l->peer_nonce, sizeof(l->peer_nonce));
	l->cfg.key_len = 0;
}

bool tbp_rx_authentic(const struct tbp_link *l)
{
	return l->auth.rx_authentic != 0;
}
