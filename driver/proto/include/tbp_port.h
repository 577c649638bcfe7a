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
#else
#include <stdint.h>
#include <stddef.h>
#include <stdbool.h>
#include <string.h>
#include <errno.h>
#endif

#endif /* TBP_PORT_H */
