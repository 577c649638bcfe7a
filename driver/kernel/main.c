// SPDX-License-Identifier: GPL-2.0-only
/*
 * Module entry, device life cycle (rdma link ops), rails and the netdev notifier.
 */
#include <linux/module.h>
#include <linux/rtnetlink.h>
#include <net/addrconf.h>
#include <rdma/rdma_netlink.h>

#include "tbrdma.h"
#include "tbp.h"

static unsigned int default_rail_weight = 1;
module_param(default_rail_weight, uint, 0444);
MODULE_PARM_DESC(default_rail_weight, "Scheduler weight of a newly added rail (default 1)");

/*
 * Devices are listed only so the netdev notifier can find the rails of a vanishing netdev;
 * all per-device state lives in struct tbrdma_dev.
 */
static LIST_HEAD(tbrdma_devices);
static DEFINE_MUTEX(tbrdma_devices_mutex);

struct tbrdma_dev *tbrdma_find_device(const char *name)
{
	struct tbrdma_dev *tdev, *found = NULL;

	mutex_lock(&tbrdma_devices_mutex);
	list_for_each_entry(tdev, &tbrdma_devices, list) {
		if (!strcmp(dev_name(&tdev->ibdev.dev), name)) {
			found = tdev;
			break;
		}
	}
	mutex_unlock(&tbrdma_devices_mutex);
	return found;
}

/* Process context, no driver lock held: the event's handlers may call back into verbs. */
void tbrdma_update_port_state(struct tbrdma_dev *tdev)
{
	enum ib_port_state new_state;
	struct ib_event event = {};
	bool changed;

	spin_lock_bh(&tdev->lock);
	new_state = tbrdma_link_is_up(tdev) ? IB_PORT_ACTIVE : IB_PORT_DOWN;
	changed = new_state != tdev->port_state;
	tdev->port_state = new_state;
	spin_unlock_bh(&tdev->lock);
	if (!changed)
		return;
	event.device = &tdev->ibdev;
	event.element.port_num = 1;
	event.event = new_state == IB_PORT_ACTIVE ? IB_EVENT_PORT_ACTIVE : IB_EVENT_PORT_ERR;
	ib_dispatch_event(&event);
}

/* One of ndev (an Ethernet rail) and pair (a Thunderbolt ring pair) is set. */
static int add_rail(struct tbrdma_dev *tdev, struct net_device *ndev,
		    struct tbrdma_tb_pair *pair)
{
	struct tbrdma_rail *rail = NULL;
	int i, err;

	mutex_lock(&tdev->rail_mutex);
	for (i = 0; i < TBRDMA_MAX_RAILS; i++) {
		if (tdev->rails[i].in_use && (ndev ? tdev->rails[i].netdev == ndev :
					      tdev->rails[i].tb == pair)) {
			mutex_unlock(&tdev->rail_mutex);
			return -EEXIST;
		}
	}
	for (i = 0; i < TBRDMA_MAX_RAILS; i++) {
		if (!tdev->rails[i].in_use) {
			rail = &tdev->rails[i];
			break;
		}
	}
	if (!rail) {
		mutex_unlock(&tdev->rail_mutex);
		return -ENOSPC;
	}
	memset(rail, 0, sizeof(*rail));
	rail->tdev = tdev;
	rail->id = i;
	eth_broadcast_addr(rail->peer_mac);
	if (ndev) {
		rail->kind = TBRDMA_RAIL_ETH;
		rail->netdev = ndev;
		dev_hold(ndev);
	} else {
		rail->kind = TBRDMA_RAIL_TB;
		rail->tb = pair;
		/* Takes a reference; from here on the service's frames go to this rail. */
		err = tbrdma_tb_rail_start(rail);
		if (err) {
			rail->tb = NULL;
			mutex_unlock(&tdev->rail_mutex);
			return err;
		}
	}

	rail->in_use = true;
	err = tbrdma_link_rail_add(tdev, rail);
	if (err) {
		rail->in_use = false;
		goto err_put;
	}
	if (ndev) {
		err = tbrdma_eth_rail_start(rail);
		if (err) {
			tbrdma_link_rail_down(tdev, rail, true);
			goto err_put;
		}
		if (i == 0) {
			ib_device_set_netdev(&tdev->ibdev, ndev, 1);
			tdev->port_netdev = ndev;	/* compared only: ib_core holds it */
		}
	}
	mutex_unlock(&tdev->rail_mutex);
	return 0;

err_put:
	if (ndev) {
		dev_put(ndev);
		rail->netdev = NULL;
	} else {
		tbrdma_tb_rail_stop(rail);
	}
	mutex_unlock(&tdev->rail_mutex);
	return err;
}

int tbrdma_add_rail(struct tbrdma_dev *tdev, struct net_device *ndev)
{
	return add_rail(tdev, ndev, NULL);
}

/* Called by rail_tb.c with its service list lock held, so the pair cannot go away meanwhile. */
int tbrdma_add_tb_rail(struct tbrdma_dev *tdev, struct tbrdma_tb_pair *pair)
{
	return add_rail(tdev, NULL, pair);
}

static void tbrdma_drop_rail(struct tbrdma_dev *tdev, struct tbrdma_rail *rail)
{
	lockdep_assert_held(&tdev->rail_mutex);
	if (rail->kind == TBRDMA_RAIL_TB) {
		/* Not in use stops xmit; then receive is detached and the service let go. */
		tbrdma_link_rail_down(tdev, rail, true);
		tbrdma_tb_rail_stop(rail);
		return;
	}
	tbrdma_eth_rail_stop(rail);
	tbrdma_link_rail_down(tdev, rail, true);
	/*
	 * The port's netdev (its IP addresses are the GIDs rdma_cm resolves) stays when only
	 * its rail goes, as on a device that carries data on Thunderbolt rails alone; the
	 * notifier lets go of it when the netdev unregisters.
	 */
	dev_put(rail->netdev);
	rail->netdev = NULL;
}

int tbrdma_remove_rail(struct tbrdma_dev *tdev, const char *name)
{
	int i, err = -ENOENT;

	mutex_lock(&tdev->rail_mutex);
	for (i = 0; i < TBRDMA_MAX_RAILS; i++) {
		struct tbrdma_rail *rail = &tdev->rails[i];

		if (!rail->in_use)
			continue;
		/* "tb:" names may cover several ring pairs (rail_tb.c). */
		if (rail->kind == TBRDMA_RAIL_TB ? tbrdma_tb_covers(name, rail) :
		    !strcmp(tbrdma_rail_name(rail), name)) {
			tbrdma_drop_rail(tdev, rail);
			err = 0;
		}
	}
	mutex_unlock(&tdev->rail_mutex);
	tbrdma_update_port_state(tdev);
	return err;
}

/*
 * A Thunderbolt service's DMA paths came up or went down (gone: the service is being
 * removed): the counterpart of the netdev notifier for TB rails.
 */
void tbrdma_tb_rail_event(struct tbrdma_tb_pair *pair, bool gone)
{
	struct tbrdma_dev *tdev;
	int i;

	mutex_lock(&tbrdma_devices_mutex);
	list_for_each_entry(tdev, &tbrdma_devices, list) {
		mutex_lock(&tdev->rail_mutex);
		for (i = 0; i < TBRDMA_MAX_RAILS; i++) {
			struct tbrdma_rail *rail = &tdev->rails[i];

			if (!rail->in_use || rail->kind != TBRDMA_RAIL_TB || rail->tb != pair)
				continue;
			if (gone)
				tbrdma_drop_rail(tdev, rail);
			else if (tbrdma_rail_running(rail))
				tbrdma_link_rail_add(tdev, rail);
			else
				tbrdma_link_rail_down(tdev, rail, false);
		}
		mutex_unlock(&tdev->rail_mutex);
		tbrdma_update_port_state(tdev);
	}
	mutex_unlock(&tbrdma_devices_mutex);
}

void tbrdma_dealloc_driver(struct ib_device *ibdev)
{
	struct tbrdma_dev *tdev = to_tdev(ibdev);
	int i;

	mutex_lock(&tbrdma_devices_mutex);
	list_del(&tdev->list);
	mutex_unlock(&tbrdma_devices_mutex);

	tbrdma_configfs_remove_device(tdev);
	tbrdma_tb_forget_device(tdev);
	mutex_lock(&tdev->rail_mutex);
	for (i = 0; i < TBRDMA_MAX_RAILS; i++)
		if (tdev->rails[i].in_use)
			tbrdma_drop_rail(tdev, &tdev->rails[i]);
	mutex_unlock(&tdev->rail_mutex);
	tbrdma_link_destroy(tdev);
	xa_destroy(&tdev->qps);
	xa_destroy(&tdev->mrs);
	mutex_destroy(&tdev->rail_mutex);
}

static int tbrdma_newlink(const char *ibdev_name, struct net_device *ndev)
{
	struct tbrdma_dev *tdev;
	int err;

	if (ndev->type != ARPHRD_ETHER)
		return -EINVAL;

	tdev = ib_alloc_device(tbrdma_dev, ibdev);
	if (!tdev)
		return -ENOMEM;
	spin_lock_init(&tdev->lock);
	mutex_init(&tdev->rail_mutex);
	xa_init_flags(&tdev->qps, XA_FLAGS_ALLOC);
	xa_init(&tdev->mrs);
	tdev->next_qpn = TBRDMA_FIRST_QPN;
	tdev->port_state = IB_PORT_DOWN;
	INIT_LIST_HEAD(&tdev->list);

	err = tbrdma_link_create(tdev);
	if (err)
		goto err_free;
	tdev->rail_weight = default_rail_weight ? default_rail_weight : 1;

	tdev->ibdev.node_type = RDMA_NODE_IB_CA;
	tdev->ibdev.phys_port_cnt = 1;
	tdev->ibdev.num_comp_vectors = 1;
	tdev->ibdev.local_dma_lkey = 0;
	strscpy(tdev->ibdev.node_desc, "tbrdma", sizeof(tdev->ibdev.node_desc));
	addrconf_addr_eui48((unsigned char *)&tdev->ibdev.node_guid, ndev->dev_addr);
	/*
	 * ib_core leaves these write commands off by default (drivers with user-mapped queues
	 * never need them); our data path is exactly these kernel commands.
	 */
	tdev->ibdev.uverbs_cmd_mask |= BIT_ULL(IB_USER_VERBS_CMD_POST_SEND) |
				       BIT_ULL(IB_USER_VERBS_CMD_POST_RECV) |
				       BIT_ULL(IB_USER_VERBS_CMD_POST_SRQ_RECV) |
				       BIT_ULL(IB_USER_VERBS_CMD_POLL_CQ) |
				       BIT_ULL(IB_USER_VERBS_CMD_REQ_NOTIFY_CQ);
	ib_set_device_ops(&tdev->ibdev, &tbrdma_dev_ops);

	err = tbrdma_add_rail(tdev, ndev);
	if (err)
		goto err_link;

	mutex_lock(&tbrdma_devices_mutex);
	list_add_tail(&tdev->list, &tbrdma_devices);
	mutex_unlock(&tbrdma_devices_mutex);

	err = ib_register_device(&tdev->ibdev, ibdev_name, NULL);
	if (err) {
		mutex_lock(&tbrdma_devices_mutex);
		list_del(&tdev->list);
		mutex_unlock(&tbrdma_devices_mutex);
		goto err_rails;
	}
	/* Registered: from here on ib_core owns teardown via dealloc_driver. */
	err = tbrdma_configfs_add_device(tdev);
	if (err)
		dev_warn(&tdev->ibdev.dev, "configfs group not created (%d)\n", err);
	return 0;

err_rails:
	mutex_lock(&tdev->rail_mutex);
	if (tdev->rails[0].in_use)
		tbrdma_drop_rail(tdev, &tdev->rails[0]);
	mutex_unlock(&tdev->rail_mutex);
err_link:
	tbrdma_link_destroy(tdev);
err_free:
	xa_destroy(&tdev->qps);
	xa_destroy(&tdev->mrs);
	ib_dealloc_device(&tdev->ibdev);
	return err;
}

static struct rdma_link_ops tbrdma_link_ops = {
	.type = "tbrdma",
	.newlink = tbrdma_newlink,
};

/* The port's netdev is unregistering: the port has none until a rail 0 brings one. */
static void tbrdma_release_port_netdev(struct tbrdma_dev *tdev, struct net_device *ndev)
{
	lockdep_assert_held(&tdev->rail_mutex);
	if (tdev->port_netdev != ndev)
		return;
	ib_device_set_netdev(&tdev->ibdev, NULL, 1);
	tdev->port_netdev = NULL;
}

static int tbrdma_netdev_event(struct notifier_block *nb, unsigned long event, void *ptr)
{
	struct net_device *ndev = netdev_notifier_info_to_dev(ptr);
	struct tbrdma_dev *tdev;
	int i;

	/* NETDEV_CHANGEMTU re-adds the rail: it handshakes again with its new frame size and
	 * the core resends frames cut for the old one. */
	if (event != NETDEV_UNREGISTER && event != NETDEV_DOWN && event != NETDEV_UP &&
	    event != NETDEV_CHANGE && event != NETDEV_CHANGEMTU)
		return NOTIFY_DONE;

	mutex_lock(&tbrdma_devices_mutex);
	list_for_each_entry(tdev, &tbrdma_devices, list) {
		mutex_lock(&tdev->rail_mutex);
		for (i = 0; i < TBRDMA_MAX_RAILS; i++) {
			struct tbrdma_rail *rail = &tdev->rails[i];

			if (!rail->in_use || rail->kind != TBRDMA_RAIL_ETH || rail->netdev != ndev)
				continue;
			if (event == NETDEV_UNREGISTER)
				tbrdma_drop_rail(tdev, rail);
			else if (!netif_running(ndev) || !netif_carrier_ok(ndev))
				tbrdma_link_rail_down(tdev, rail, false);
			else
				tbrdma_link_rail_add(tdev, rail);
		}
		if (event == NETDEV_UNREGISTER)
			tbrdma_release_port_netdev(tdev, ndev);
		mutex_unlock(&tdev->rail_mutex);
		tbrdma_update_port_state(tdev);
	}
	mutex_unlock(&tbrdma_devices_mutex);
	return NOTIFY_DONE;
}

static struct notifier_block tbrdma_netdev_notifier = {
	.notifier_call = tbrdma_netdev_event,
};

/*
 * ib_unregister_driver() would match every device with our (unknown) driver id, including
 * other modules' devices, so unregister exactly ours. A device reference keeps the memory
 * alive if `rdma link delete` races with us; ib_core serialises the unregistration itself.
 */
static void tbrdma_unregister_all(void)
{
	struct tbrdma_dev *tdev;

	for (;;) {
		mutex_lock(&tbrdma_devices_mutex);
		tdev = list_first_entry_or_null(&tbrdma_devices, struct tbrdma_dev, list);
		if (tdev)
			get_device(&tdev->ibdev.dev);
		mutex_unlock(&tbrdma_devices_mutex);
		if (!tdev)
			return;
		ib_unregister_device(&tdev->ibdev);
		put_device(&tdev->ibdev.dev);
	}
}

static int __init tbrdma_init(void)
{
	int err;

	/* The wire format fixes CRC32C; the standard check value catches a wrong convention. */
	if (tbp_crc32c(0, "123456789", 9) != 0xe3069283) {
		pr_err("tbrdma: kernel CRC32C does not match the wire format\n");
		return -ELIBBAD;
	}
	err = tbrdma_configfs_init();
	if (err)
		return err;
	err = register_netdevice_notifier(&tbrdma_netdev_notifier);
	if (err)
		goto err_configfs;
	err = tbrdma_tb_init();
	if (err)
		goto err_notifier;
	rdma_link_register(&tbrdma_link_ops);
	return 0;

err_notifier:
	unregister_netdevice_notifier(&tbrdma_netdev_notifier);
err_configfs:
	tbrdma_configfs_exit();
	return err;
}

static void __exit tbrdma_exit(void)
{
	rdma_link_unregister(&tbrdma_link_ops);
	tbrdma_unregister_all();
	tbrdma_tb_exit();
	unregister_netdevice_notifier(&tbrdma_netdev_notifier);
	tbrdma_configfs_exit();
}

module_init(tbrdma_init);
module_exit(tbrdma_exit);

MODULE_AUTHOR("tbrdma project");
MODULE_DESCRIPTION("RDMA over USB4/Thunderbolt and Ethernet rails");
MODULE_LICENSE("GPL");
MODULE_ALIAS_RDMA_LINK("tbrdma");
