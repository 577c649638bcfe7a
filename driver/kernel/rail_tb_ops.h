/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The host interface a Thunderbolt rail runs on: exactly the <linux/thunderbolt.h> calls
 * the rail makes, as a table. rail_tb_nhi.c fills it with the real thunderbolt driver's
 * functions (a USB4 host's NHI); the lab's emulated host interface (usb4emu.c, a separate
 * test-only module) fills it with its own and binds its XDomains through
 * tbrdma_tb_bind(). Neither module depends on the other: tbrdma never calls into the
 * emulation but through this table, and the emulation reaches tbrdma's functions with
 * symbol_get() for each call, so tbrdma loads and unloads beside it as a service driver
 * does on the real bus.
 *
 * Every object crossing the table is the real header's type (struct tb_xdomain, tb_ring,
 * ring_frame, tb_protocol_handler), so the rail is compiled against the real API and reads
 * only the fields the real thunderbolt driver fills: xd->local_uuid, remote_uuid, route,
 * remote_max_hopid, is_unplugged, link_speed, link_width; ring->hop.
 */
#ifndef TBRDMA_RAIL_TB_OPS_H
#define TBRDMA_RAIL_TB_OPS_H

#include <linux/thunderbolt.h>

struct tbrdma_tb_ops {
	const char *name;		/* "nhi" or the emulation's name, shown per rail */
	struct tb_ring *(*ring_alloc_tx)(struct tb_xdomain *xd, int size, unsigned int flags);
	struct tb_ring *(*ring_alloc_rx)(struct tb_xdomain *xd, int size, unsigned int flags,
					 int e2e_tx_hop, u16 sof_mask, u16 eof_mask,
					 void (*start_poll)(void *), void *poll_data);
	void (*ring_start)(struct tb_ring *ring);
	void (*ring_stop)(struct tb_ring *ring);
	void (*ring_free)(struct tb_ring *ring);
	int (*ring_enqueue)(struct tb_ring *ring, struct ring_frame *frame);
	struct ring_frame *(*ring_poll)(struct tb_ring *ring);
	void (*ring_poll_complete)(struct tb_ring *ring);
	/* NULL where the kernel has no tb_ring_throttling() */
	int (*ring_throttling)(struct tb_ring *ring, unsigned int interval_nsec);
	struct device *(*ring_dma_device)(struct tb_ring *ring);

	int (*alloc_in_hopid)(struct tb_xdomain *xd, int hopid);
	void (*release_in_hopid)(struct tb_xdomain *xd, int hopid);
	int (*alloc_out_hopid)(struct tb_xdomain *xd, int hopid);
	void (*release_out_hopid)(struct tb_xdomain *xd, int hopid);
	int (*enable_paths)(struct tb_xdomain *xd, int transmit_path, int transmit_ring,
			    int receive_path, int receive_ring);
	int (*disable_paths)(struct tb_xdomain *xd, int transmit_path, int transmit_ring,
			     int receive_path, int receive_ring);

	int (*request)(struct tb_xdomain *xd, const void *request, size_t request_size,
		       enum tb_cfg_pkg_type request_type, void *response, size_t response_size,
		       enum tb_cfg_pkg_type response_type, unsigned int timeout_msec);
	int (*response)(struct tb_xdomain *xd, const void *response, size_t size,
			enum tb_cfg_pkg_type type);
	int (*register_protocol_handler)(struct tb_protocol_handler *handler);
	void (*unregister_protocol_handler)(struct tb_protocol_handler *handler);

	/*
	 * tbrdma is unloading and has unbound the service on xd itself (NULL for the NHI, whose
	 * bus unbinds its services when the driver unregisters). A host interface that is not
	 * a bus (the emulation) forgets the service here and binds again when tbrdma is back.
	 */
	void (*detached)(struct tb_xdomain *xd);
};

struct tbrdma_tb_service;

/*
 * A host interface found the peer's tbrdma service on XDomain xd: set the rail's ring pairs
 * up (they log in by themselves). where names the XDomain for rail names ("0-1", the
 * emulated cable's netdev); dev is the device messages are logged against. Returns the
 * service or an ERR_PTR. Unbind before xd goes away (set xd->is_unplugged first if the
 * cable is gone: no logout is sent then).
 */
struct tbrdma_tb_service *tbrdma_tb_bind(const struct tbrdma_tb_ops *ops,
					 struct tb_xdomain *xd, const char *where,
					 struct device *dev);
void tbrdma_tb_unbind(struct tbrdma_tb_service *ts);
/* Host suspend (and shutdown): pairs log out and stay down; resume logs them in again. */
void tbrdma_tb_suspend(struct tbrdma_tb_service *ts);
void tbrdma_tb_resume(struct tbrdma_tb_service *ts);

#endif
