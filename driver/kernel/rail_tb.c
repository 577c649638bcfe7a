// SPDX-License-Identifier: GPL-2.0-only
/*
 * Thunderbolt/USB4 rail: an XDomain service driver. The module advertises a "tbrdma"
 * property directory to connected hosts; when the peer advertises the same service, the
 * thunderbolt bus creates a tb_service and probes us. Only real USB4 hardware gets here
 * (QEMU has no NHI), so the lab exercises the Ethernet rail and this file is compiled,
 * registered and unregistered on every build.
 */
#include <linux/module.h>
#include <linux/thunderbolt.h>

#include "tbrdma.h"

#define TBRDMA_TB_PROTOCOL_KEY		"tbrdma"
#define TBRDMA_TB_PROTOCOL_ID		1
#define TBRDMA_TB_PROTOCOL_VERSION	1
#define TBRDMA_TB_PROTOCOL_REVISION	1

#if IS_ENABLED(CONFIG_USB4)

struct tbrdma_tb_service {
	struct tb_service *svc;
	struct tb_xdomain *xd;
	struct tb_ring *tx_ring;
	struct tb_ring *rx_ring;
	int local_hopid;
	int remote_hopid;
};

static struct tb_property_dir *tbrdma_tb_dir;

static int tbrdma_tb_probe(struct tb_service *svc, const struct tb_service_id *id)
{
	struct tb_xdomain *xd = tb_service_parent(svc);
	struct tbrdma_tb_service *ts;

	ts = devm_kzalloc(&svc->dev, sizeof(*ts), GFP_KERNEL);
	if (!ts)
		return -ENOMEM;
	ts->svc = svc;
	ts->xd = xd;
	ts->local_hopid = -1;
	ts->remote_hopid = -1;
	/*
	 * Rings and paths are set up once the protocol handshake has exchanged HopIDs over the
	 * peer's Ethernet-less control channel; until that glue lands the service only binds,
	 * so a hardware user sees the peer and can fall back to thunderbolt-net Ethernet rails.
	 */
	tb_service_set_drvdata(svc, ts);
	dev_info(&svc->dev, "tbrdma peer service found on %s\n", dev_name(&xd->dev));
	return 0;
}

static void tbrdma_tb_remove(struct tb_service *svc)
{
	tb_service_set_drvdata(svc, NULL);
}

static const struct tb_service_id tbrdma_tb_ids[] = {
	{ TB_SERVICE(TBRDMA_TB_PROTOCOL_KEY, TBRDMA_TB_PROTOCOL_ID) },
	{ },
};
MODULE_DEVICE_TABLE(tbsvc, tbrdma_tb_ids);

static struct tb_service_driver tbrdma_tb_driver = {
	.driver = {
		.owner = THIS_MODULE,
		.name = "tbrdma",
	},
	.probe = tbrdma_tb_probe,
	.remove = tbrdma_tb_remove,
	.id_table = tbrdma_tb_ids,
};

int tbrdma_tb_init(void)
{
	int err;

	tbrdma_tb_dir = tb_property_create_dir(NULL);
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

void tbrdma_tb_exit(void)
{
	tb_unregister_service_driver(&tbrdma_tb_driver);
	tb_unregister_property_dir(TBRDMA_TB_PROTOCOL_KEY, tbrdma_tb_dir);
	tb_property_free_dir(tbrdma_tb_dir);
	tbrdma_tb_dir = NULL;
}

#else /* !CONFIG_USB4 */

int tbrdma_tb_init(void)
{
	return 0;
}

void tbrdma_tb_exit(void)
{
}

#endif
