/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * tbp_port.h - the only environment the protocol core sees.
 *
 * The core is freestanding C11 compiled unchanged into the kernel module and into
 * userspace. It may use fixed-width integers, size_t, bool, errno values and
 * memcpy/memset/memcmp; nothing else from libc or the kernel.
 */
#ifndef TBP_PORT_H
#define TBP_PORT_H

#ifdef __KERNEL__
#include <linux/types.h>
#include <linux/string.h>
#include <linux/errno.h>
/*
 * The kernel's CRC32C uses the CPU's CRC instruction where there is one; the core's table
 * version runs ten times slower, which matters once payloads are checksummed. The module
 * defines this function (same convention as tbp_crc32c).
 */
#define TBP_PORT_CRC32C 1
uint32_t tbp_port_crc32c(uint32_t crc, const void *data, size_t len);
#else
#include <stdint.h>
#include <stddef.h>
#include <stdbool.h>
#include <string.h>
#include <errno.h>
#endif

#endif /* TBP_PORT_H */
