// SPDX-License-Identifier: GPL-2.0-only
/*
 * configfs: /sys/kernel/config/tbrdma/<device>/ appears when `rdma link add` creates a
 * device and carries its rails, pairing key, role and state (see docs/driver.md).
 */
#include <linux/ctype.h>
#include <linux/rtnetlink.h>

#include "tbrdma.h"
#include "tbp.h"

static struct tbrdma_dev *item_to_tdev(struct config_item *item)
{
	return container_of(to_config_group(item), struct tbrdma_dev, cfs_group);
}

/* configfs hands us the raw write, usually with echo's newline. */
static int copy_word(char *dst, size_t dst_len, const char *page, size_t count)
{
	size_t len = count;

	while (len && isspace(page[len - 1]))
		len--;
	if (!len || len >= dst_len)
		return -EINVAL;
	memcpy(dst, page, len);
	dst[len] = '\0';
	return 0;
}

static ssize_t tbrdma_cfs_rails_show(struct config_item *item, char *page)
{
	struct tbrdma_dev *tdev = item_to_tdev(item);
	ssize_t n = 0;
	int i;

	mutex_lock(&tdev->rail_mutex);
	for (i = 0; i < TBRDMA_MAX_RAILS; i++) {
		struct tbrdma_rail *rail = &tdev->rails[i];
		bool carrier;

		if (!rail->in_use)
			continue;
		if (rail->kind == TBRDMA_RAIL_TB)
			carrier = tbrdma_rail_running(rail);	/* DMA paths enabled */
		else
			carrier = netif_running(rail->netdev) && netif_carrier_ok(rail->netdev);
		n += scnprintf(page + n, PAGE_SIZE - n, "%d %s %s %s peer %pM tx %llu rx %llu",
			       i, tbrdma_rail_name(rail), carrier ? "carrier" : "no-carrier",
			       rail->core_added ? "added" : "idle", rail->peer_mac,
			       rail->tx_frames, rail->rx_frames);
		if (rail->kind == TBRDMA_RAIL_TB)
			n += tbrdma_tb_describe(rail, page + n, PAGE_SIZE - n);
		n += scnprintf(page + n, PAGE_SIZE - n, "\n");
	}
	mutex_unlock(&tdev->rail_mutex);
	return n;
}

static ssize_t tbrdma_cfs_add_rail_store(struct config_item *item, const char *page,
					 size_t count)
{
	struct tbrdma_dev *tdev = item_to_tdev(item);
	char ifname[TBRDMA_RAIL_NAME_LEN];
	struct net_device *ndev;
	int err;

	err = copy_word(ifname, sizeof(ifname), page, count);
	if (err)
		return err;
	if (!strncmp(ifname, "tb:", 3)) {
		/* A Thunderbolt service's rail (see docs/driver.md); no netdev involved. */
		err = tbrdma_tb_add_rail(tdev, ifname);
		goto out;
	}
	if (strlen(ifname) >= IFNAMSIZ)
		return -EINVAL;
	/* RTNL keeps the netdev from unregistering between lookup and rail creation. */
	rtnl_lock();
	ndev = __dev_get_by_name(&init_net, ifname);
	if (!ndev)
		err = -ENODEV;
	else if (ndev->type != ARPHRD_ETHER)
		err = -EINVAL;
	else
		err = tbrdma_add_rail(tdev, ndev);
	rtnl_unlock();
out:
	if (err == -EEXIST)
		err = 0;	/* idempotent, so tbctl can re-apply a configuration */
	tbrdma_update_port_state(tdev);
	return err ? err : count;
}

static ssize_t tbrdma_cfs_remove_rail_store(struct config_item *item, const char *page,
					    size_t count)
{
	struct tbrdma_dev *tdev = item_to_tdev(item);
	char ifname[TBRDMA_RAIL_NAME_LEN];
	int err, tb_err;

	err = copy_word(ifname, sizeof(ifname), page, count);
	if (err)
		return err;
	/* A Thunderbolt name is also a wish for rails to come (rail_tb.c): forget it first. */
	tb_err = strncmp(ifname, "tb:", 3) ? -ENOENT : tbrdma_tb_remove_rail(tdev, ifname);
	rtnl_lock();
	err = tbrdma_remove_rail(tdev, ifname);
	rtnl_unlock();
	if (err == -ENOENT && !tb_err)
		err = 0;	/* wanted, but none of its rails is bound right now */
	return err ? err : count;
}

static ssize_t tbrdma_cfs_peer_key_show(struct config_item *item, char *page)
{
	struct tbrdma_dev *tdev = item_to_tdev(item);

	/* The key itself never leaves the kernel; its public fingerprint does. */
	if (!tdev->key_set)
		return sysfs_emit(page, "unset\n");
	return sysfs_emit(page, "set %*phN\n", (int)sizeof(tdev->key_id), tdev->key_id);
}

static ssize_t tbrdma_cfs_peer_key_store(struct config_item *item, const char *page,
					 size_t count)
{
	struct tbrdma_dev *tdev = item_to_tdev(item);
	char hex[2 * TBRDMA_KEY_LEN + 1];
	u8 key[TBRDMA_KEY_LEN];
	size_t hex_len;
	int err;

	err = copy_word(hex, sizeof(hex), page, count);
	if (err)
		return err;
	hex_len = strlen(hex);
	if (hex_len % 2 || hex_len / 2 < 16 || hex2bin(key, hex, hex_len / 2))
		return -EINVAL;
	err = tbrdma_set_key(tdev, key, hex_len / 2);
	memzero_explicit(key, sizeof(key));
	memzero_explicit(hex, sizeof(hex));
	return err ? err : count;
}

static ssize_t tbrdma_cfs_role_show(struct config_item *item, char *page)
{
	return sysfs_emit(page, "%s\n", item_to_tdev(item)->role == TBP_ROLE_INITIATOR ?
			  "initiator" : "responder");
}

static ssize_t tbrdma_cfs_role_store(struct config_item *item, const char *page, size_t count)
{
	struct tbrdma_dev *tdev = item_to_tdev(item);
	char word[16];
	int err;

	err = copy_word(word, sizeof(word), page, count);
	if (err)
		return err;
	mutex_lock(&tdev->rail_mutex);
	if (!strcmp(word, "initiator"))
		tdev->role = TBP_ROLE_INITIATOR;
	else if (!strcmp(word, "responder"))
		tdev->role = TBP_ROLE_RESPONDER;
	else
		err = -EINVAL;
	mutex_unlock(&tdev->rail_mutex);
	/* Takes effect with the next peer_key write, which (re)builds the link. */
	return err ? err : count;
}

static const char *const link_state_names[] = {
	[TBP_LINK_HANDSHAKE] = "handshake",
	[TBP_LINK_UP] = "up",
	[TBP_LINK_DEGRADED] = "degraded",
	[TBP_LINK_FAILED] = "failed",
};

static ssize_t tbrdma_cfs_state_show(struct config_item *item, char *page)
{
	struct tbrdma_dev *tdev = item_to_tdev(item);
	const char *link = "no-key";
	u32 state;

	spin_lock_bh(&tdev->lock);
	if (tdev->link_ready) {
		state = tbp_link_state(tdev->link);
		link = state < ARRAY_SIZE(link_state_names) ? link_state_names[state] : "unknown";
	}
	spin_unlock_bh(&tdev->lock);
	return sysfs_emit(page, "port %s\nlink %s\n",
			  tdev->port_state == IB_PORT_ACTIVE ? "ACTIVE" : "DOWN", link);
}

/* Live verbs objects and send WQEs: the advertised limits count these; a leak shows here. */
static ssize_t tbrdma_cfs_objects_show(struct config_item *item, char *page)
{
	struct tbrdma_dev *tdev = item_to_tdev(item);

	return sysfs_emit(page, "pd %d\ncq %d\nqp %d\nmr %d\nsend_wqe %d\nsrq %d\nah %d\n",
			  atomic_read(&tdev->n_pd), atomic_read(&tdev->n_cq),
			  atomic_read(&tdev->n_qp), atomic_read(&tdev->n_mr),
			  atomic_read(&tdev->n_wqe), atomic_read(&tdev->n_srq),
			  atomic_read(&tdev->n_ah));
}

/* Test only (module parameter frmr_test_hook): fast registration from the lab (mr.c). */
static ssize_t tbrdma_cfs_frmr_test_show(struct config_item *item, char *page)
{
	return tbrdma_frmr_test_show(item_to_tdev(item), page);
}

static ssize_t tbrdma_cfs_frmr_test_store(struct config_item *item, const char *page,
					  size_t count)
{
	char cmd[64];
	int err;

	err = copy_word(cmd, sizeof(cmd), page, count);
	if (!err)
		err = tbrdma_frmr_test_store(item_to_tdev(item), cmd);
	return err ?: count;
}

CONFIGFS_ATTR_RO(tbrdma_cfs_, objects);
CONFIGFS_ATTR(tbrdma_cfs_, frmr_test);
CONFIGFS_ATTR_RO(tbrdma_cfs_, rails);
CONFIGFS_ATTR_WO(tbrdma_cfs_, add_rail);
CONFIGFS_ATTR_WO(tbrdma_cfs_, remove_rail);
CONFIGFS_ATTR(tbrdma_cfs_, peer_key);
CONFIGFS_ATTR(tbrdma_cfs_, role);
CONFIGFS_ATTR_RO(tbrdma_cfs_, state);

static struct configfs_attribute *tbrdma_cfs_dev_attrs[] = {
	&tbrdma_cfs_attr_rails,
	&tbrdma_cfs_attr_add_rail,
	&tbrdma_cfs_attr_remove_rail,
	&tbrdma_cfs_attr_peer_key,
	&tbrdma_cfs_attr_role,
	&tbrdma_cfs_attr_state,
	&tbrdma_cfs_attr_objects,
	&tbrdma_cfs_attr_frmr_test,
	NULL,
};

static const struct config_item_type tbrdma_cfs_dev_type = {
	.ct_attrs = tbrdma_cfs_dev_attrs,
	.ct_owner = THIS_MODULE,
};

static const struct config_item_type tbrdma_cfs_root_type = {
	.ct_owner = THIS_MODULE,
};

static struct configfs_subsystem tbrdma_cfs_subsys = {
	.su_group = {
		.cg_item = {
			.ci_namebuf = "tbrdma",
			.ci_type = &tbrdma_cfs_root_type,
		},
	},
};

int tbrdma_configfs_add_device(struct tbrdma_dev *tdev)
{
	int err;

	config_group_init_type_name(&tdev->cfs_group, dev_name(&tdev->ibdev.dev),
				    &tbrdma_cfs_dev_type);
	err = configfs_register_group(&tbrdma_cfs_subsys.su_group, &tdev->cfs_group);
	tdev->cfs_registered = !err;
	return err;
}

void tbrdma_configfs_remove_device(struct tbrdma_dev *tdev)
{
	if (tdev->cfs_registered)
		configfs_unregister_group(&tdev->cfs_group);
	tdev->cfs_registered = false;
}

int tbrdma_configfs_init(void)
{
	config_group_init(&tbrdma_cfs_subsys.su_group);
	mutex_init(&tbrdma_cfs_subsys.su_mutex);
	return configfs_register_subsystem(&tbrdma_cfs_subsys);
}

void tbrdma_configfs_exit(void)
{
	configfs_unregister_subsystem(&tbrdma_cfs_subsys);
}
