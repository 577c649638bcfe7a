// SPDX-License-Identifier: GPL-2.0-only
/*
 * Thunderbolt rails on a real USB4 host interface: the thunderbolt driver's XDomain service
 * bus. The module advertises a "tbrdma" property directory; when the peer host advertises
 * it too, the bus probes us with a tb_service and we bind the rail (rail_tb.c) to its
 * XDomain with the real driver's functions as the host interface (rail_tb_ops.h).
 *
 * Not run in CI on hardware: the lab runs rail_tb.c on an emulated host interface
 * (usb4emu.c); what only real hardware can prove is listed in docs/driver.md.
 */
#include <linux/module.h>
#include <linux/thunderbolt.h>
#include <linux/uuid.h>
#include <linux/version.h>

#include "tbrdma.h"
#include "rail_tb_ops.h"

#if IS_REACHABLE(CONFIG_USB4)

#define TBRDMA_TB_PROTOCOL_KEY		"tbrdma"
#define TBRDMA_TB_PROTOCOL_ID		1
#define TBRDMA_TB_PROTOCOL_VERSION	1
#define TBRDMA_TB_PROTOCOL_REVISION	1

/* Property directory of the service: 896012a9-536e-4847-99f9-e3fcd1350f8b */
static const uuid_t tbrdma_tb_dir_uuid =
	UUID_INIT(0x896012a9, 0x536e, 0x4847, 0x99, 0xf9, 0xe3, 0xfc, 0xd1, 0x35, 0x0f, 0x8b);

static struct tb_property_dir *tbrdma_tb_dir;

static struct tb_ring *nhi_ring_alloc_tx(struct tb_xdomain *xd, int size, unsigned int flags)
{
	return tb_ring_alloc_tx(xd->tb->nhi, -1, size, flags);
}

static struct tb_ring *nhi_ring_alloc_rx(struct tb_xdomain *xd, int size, unsigned int flags,
					 int e2e_tx_hop, u16 sof_mask, u16 eof_mask,
					 void (*start_poll)(void *), void *poll_data)
{
	return tb_ring_alloc_rx(xd->tb->nhi, -1, size, flags, e2e_tx_hop, sof_mask, eof_mask,
				start_poll, poll_data);
}

static int nhi_ring_enqueue(struct tb_ring *ring, struct ring_frame *frame)
{
	return __tb_ring_enqueue(ring, frame);
}

static struct device *nhi_ring_dma_device(struct tb_ring *ring)
{
	return tb_ring_dma_device(ring);
}

static const struct tbrdma_tb_ops tbrdma_tb_nhi_ops = {
	.name = "nhi",
	.ring_alloc_tx = nhi_ring_alloc_tx,
	.ring_alloc_rx = nhi_ring_alloc_rx,
	.ring_start = tb_ring_start,
	.ring_stop = tb_ring_stop,
	.ring_free = tb_ring_free,
	.ring_enqueue = nhi_ring_enqueue,
	.ring_poll = tb_ring_poll,
	.ring_poll_complete = tb_ring_poll_complete,
#ifdef TBRDMA_HAVE_TB_RING_THROTTLING
	.ring_throttling = tb_ring_throttling,
#endif
	.ring_dma_device = nhi_ring_dma_device,
	.alloc_in_hopid = tb_xdomain_alloc_in_hopid,
	.release_in_hopid = tb_xdomain_release_in_hopid,
	.alloc_out_hopid = tb_xdomain_alloc_out_hopid,
	.release_out_hopid = tb_xdomain_release_out_hopid,
	.enable_paths = tb_xdomain_enable_paths,
	.disable_paths = tb_xdomain_disable_paths,
	.request = tb_xdomain_request,
	.response = tb_xdomain_response,
	.register_protocol_handler = tb_register_protocol_handler,
	.unregister_protocol_handler = tb_unregister_protocol_handler,
};

static int tbrdma_tb_probe(struct tb_service *svc, const struct tb_service_id *id)
{
	struct tb_xdomain *xd = tb_service_parent(svc);
	struct tbrdma_tb_service *ts;

	if (!xd)
		return -ENODEV;
	ts = tbrdma_tb_bind(&tbrdma_tb_nhi_ops, xd, dev_name(&xd->dev), &svc->dev);
	if (IS_ERR(ts))
		return PTR_ERR(ts);
	tb_service_set_drvdata(svc, ts);
	return 0;
}

static void tbrdma_tb_remove(struct tb_service *svc)
{
	tbrdma_tb_unbind(tb_service_get_drvdata(svc));
	tb_service_set_drvdata(svc, NULL);
}

/* Power off or reboot: the peer hears our logout instead of timing the rails out. */
static void tbrdma_tb_shutdown(struct tb_service *svc)
{
	tbrdma_tb_suspend(tb_service_get_drvdata(svc));
}

static int tbrdma_tb_pm_suspend(struct device *dev)
{
	tbrdma_tb_suspend(tb_service_get_drvdata(tb_to_service(dev)));
	return 0;
}

static int tbrdma_tb_pm_resume(struct device *dev)
{
	tbrdma_tb_resume(tb_service_get_drvdata(tb_to_service(dev)));
	return 0;
}

static DEFINE_SIMPLE_DEV_PM_OPS(tbrdma_tb_pm_ops, tbrdma_tb_pm_suspend, tbrdma_tb_pm_resume);

static const struct tb_service_id tbrdma_tb_ids[] = {
	{ TB_SERVICE(TBRDMA_TB_PROTOCOL_KEY, TBRDMA_TB_PROTOCOL_ID) },
	{ },
};
MODULE_DEVICE_TABLE(tbsvc, tbrdma_tb_ids);

static struct tb_service_driver tbrdma_tb_driver = {
	.driver = {
		.owner = THIS_MODULE,
		.name = "tbrdma",
		.pm = pm_sleep_ptr(&tbrdma_tb_pm_ops),
	},
	.probe = tbrdma_tb_probe,
	.remove = tbrdma_tb_remove,
	.shutdown = tbrdma_tb_shutdown,
	.id_table = tbrdma_tb_ids,
};

int tbrdma_tb_nhi_init(void)
{
	int err;

	/* A service directory needs its own UUID: the peer parses one in front of its entries. */
	tbrdma_tb_dir = tb_property_create_dir(&tbrdma_tb_dir_uuid);
	if (!tbrdma_tb_dir)
		return -ENOMEM;
	tb_property_add_immediate(tbrdma_tb_dir, "prtcid", TBRDMA_TB_PROTOCOL_ID);
	tb_property_add_immediate(tbrdma_tb_dir, "prtcvers", TBRDMA_TB_PROTOCOL_VERSION);
	tb_property_add_immediate(tbrdma_tb_dir, "prtcrevs", TBRDMA_TB_PROTOCOL_REVISION);
	tb_property_add_immediate(tbrdma_tb_dir, "prtcstns", 0);
	err = tb_register_property_dir(TBRDMA_TB_PROTOCOL_KEY, tbrdma_tb_dir);
	if (err)
		goto err_dir;
	err = tb_register_service_driver(&tbrdma_tb_driver);
	if (err)
		goto err_unregister_dir;
	return 0;

err_unregister_dir:
	tb_unregister_property_dir(TBRDMA_TB_PROTOCOL_KEY, tbrdma_tb_dir);
err_dir:
	tb_property_free_dir(tbrdma_tb_dir);
	tbrdma_tb_dir = NULL;
	return err;
}

void tbrdma_tb_nhi_exit(void)
{
	tb_unregister_service_driver(&tbrdma_tb_driver);
	tb_unregister_property_dir(TBRDMA_TB_PROTOCOL_KEY, tbrdma_tb_dir);
	tb_property_free_dir(tbrdma_tb_dir);
	tbrdma_tb_dir = NULL;
}

#endif
