/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Every kernel API difference between the supported kernels (Debian bookworm 6.1, trixie
 * 6.12, sid 7.x) lives here, so the rest of the module reads like one kernel's code.
 */
#ifndef TBRDMA_COMPAT_H
#define TBRDMA_COMPAT_H

#include <linux/hrtimer.h>
#include <linux/version.h>

/* v6.11 passes the whole uverbs attribute bundle to create_cq. */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 11, 0)
#define TBRDMA_CREATE_CQ_LAST_ARG struct uverbs_attr_bundle *attrs
#else
#define TBRDMA_CREATE_CQ_LAST_ARG struct ib_udata *udata
#endif

/* v6.17 added a DMA handle argument to reg_user_mr. */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 17, 0)
#define TBRDMA_REG_USER_MR_EXTRA_ARGS struct ib_dmah *dmah,
#else
#define TBRDMA_REG_USER_MR_EXTRA_ARGS
#endif

/* v6.13 introduced hrtimer_setup() and later kernels removed hrtimer_init(). */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 13, 0)
#define tbrdma_hrtimer_setup(timer, fn, clock, mode) hrtimer_setup(timer, fn, clock, mode)
#else
static inline void tbrdma_hrtimer_setup(struct hrtimer *timer,
					enum hrtimer_restart (*fn)(struct hrtimer *),
					clockid_t clock, enum hrtimer_mode mode)
{
	hrtimer_init(timer, clock, mode);
	timer->function = fn;
}
#endif

#endif
