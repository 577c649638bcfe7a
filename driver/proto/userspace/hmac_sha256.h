/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/* Small SHA-256 / HMAC-SHA256 for userspace (FIPS 180-4, RFC 2104); the kernel uses its crypto API. */
#ifndef TBP_HMAC_SHA256_H
#define TBP_HMAC_SHA256_H

#include <stddef.h>
#include <stdint.h>

struct sha256_ctx {
	uint32_t h[8];
	uint64_t bytes;
	uint8_t block[64];
	uint32_t fill;
};

void sha256_init(struct sha256_ctx *c);
void sha256_update(struct sha256_ctx *c, const void *data, size_t len);
void sha256_final(struct sha256_ctx *c, uint8_t out[32]);
void hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *msg, size_t msg_len,
		 uint8_t out[32]);

#endif
