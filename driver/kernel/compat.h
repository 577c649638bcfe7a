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
#define TBRDMA_CREATE_CQ_UDATA (attrs ? &attrs->driver_udata : NULL)
#else
#define TBRDMA_CREATE_CQ_LAST_ARG struct ib_udata *udata
#define TBRDMA_CREATE_CQ_UDATA udata	/* the argument's name above */
#endif

/*
 * v6.2 added ATOMIC_WRITE and FLUSH (opcodes, completion opcodes, MR rights, device caps).
 * Before it uverbs refuses the MR rights, so such work never reaches the module; the numbers
 * are uverbs' own (IB_UVERBS_WR_*, IB_UVERBS_WC_*), which the provider posts either way.
 */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 2, 0)
#define TBRDMA_WR_FLUSH IB_WR_FLUSH
#define TBRDMA_WR_ATOMIC_WRITE IB_WR_ATOMIC_WRITE
#define TBRDMA_WC_FLUSH IB_WC_FLUSH
#define TBRDMA_WC_ATOMIC_WRITE IB_WC_ATOMIC_WRITE
#define TBRDMA_ACCESS_FLUSH_GLOBAL IB_ACCESS_FLUSH_GLOBAL
#define TBRDMA_ACCESS_FLUSH_PERSISTENT IB_ACCESS_FLUSH_PERSISTENT
#define TBRDMA_DEVICE_FLUSH_ATOMIC_WRITE (IB_DEVICE_FLUSH_GLOBAL | IB_DEVICE_ATOMIC_WRITE)
#else
#define TBRDMA_WR_FLUSH ((enum ib_wr_opcode)14)
#define TBRDMA_WR_ATOMIC_WRITE ((enum ib_wr_opcode)15)
#define TBRDMA_WC_FLUSH ((enum ib_wc_opcode)8)
#define TBRDMA_WC_ATOMIC_WRITE ((enum ib_wc_opcode)9)
#define TBRDMA_ACCESS_FLUSH_GLOBAL 0
#define TBRDMA_ACCESS_FLUSH_PERSISTENT 0
#define TBRDMA_DEVICE_FLUSH_ATOMIC_WRITE 0
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

/*
 * hex2bin() moved from <linux/kernel.h> to <linux/hex.h>; including the new header where it
 * exists keeps one spelling.
 */
#if __has_include(<linux/hex.h>)
#include <linux/hex.h>
#else
#include <linux/kernel.h>
#endif

/* CRC32C moved from <linux/crc32c.h> into <linux/crc32.h>. */
#if __has_include(<linux/crc32c.h>)
#include <linux/crc32c.h>
#else
#include <linux/crc32.h>
#endif

/*
 * ib_umem_get() became ib_umem_get_va() (beside attribute-based variants) after 6.12; the
 * supported kernels are checked on both sides (6.1/6.12 old, 7.x new), the exact release of
 * the change is not relied on beyond that.
 */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(7, 0, 0)
#define tbrdma_umem_get(dev, addr, size, access) ib_umem_get_va(dev, addr, size, access)
#else
#define tbrdma_umem_get(dev, addr, size, access) ib_umem_get(dev, addr, size, access)
#endif

/*
 * 7.x calls the CQ resize op resize_user_cq and passes an unsigned size (6.1 and 6.12:
 * resize_cq, int); checked on both sides like the umem change above.
 */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(7, 0, 0)
#define TBRDMA_RESIZE_CQ_OP resize_user_cq
typedef unsigned int tbrdma_cqe_t;
#else
#define TBRDMA_RESIZE_CQ_OP resize_cq
typedef int tbrdma_cqe_t;
#endif

/*
 * Thunderbolt (rail_tb_nhi.c): every <linux/thunderbolt.h> API the rail uses (ring alloc/
 * start/stop/free/enqueue/poll/poll_complete, tb_ring_dma_device, tb_xdomain_{alloc,release}_{in,out}_hopid,
 * tb_xdomain_{enable,disable}_paths with transmit/receive path and ring, tb_xdomain_request/
 * response, protocol handlers, service drivers) has the same signature in the 6.1, 6.12 and
 * 7.2 headers, so nothing is needed here. 7.x wraps the header in IS_REACHABLE(CONFIG_USB4),
 * which rail_tb.c tests as well; TB_MAX_FRAME_SIZE exists only in 7.x, so the rail defines
 * its own 4096-byte frame size.
 * tb_ring_throttling() (a driver's own RX interrupt moderation) is in the 7.2 header and not
 * in 6.12's; older kernels keep the NHI's default throttle.
 */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(7, 2, 0)
#define TBRDMA_HAVE_TB_RING_THROTTLING
#endif

#endif
