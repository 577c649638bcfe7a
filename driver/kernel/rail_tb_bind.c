// SPDX-License-Identifier: GPL-2.0-only
/*
 * Thunderbolt rails: binding the tbrdma service to an XDomain (tbrdma_tb_bind(), called by
 * a host interface: rail_tb_nhi.c or the lab's emulation), the rails its ring pairs become,
 * and the wishes (configfs add_rail of a "tb:" name) that bring them back after an unplug.
 */
#include <linux/module.h>
#include <linux/slab.h>

#include "rail_tb.h"

#if IS_REACHABLE(CONFIG_USB4)

static unsigned int tb_ring_pairs = 2;
module_param(tb_ring_pairs, uint, 0444);
MODULE_PARM_DESC(tb_ring_pairs, "Ring pairs (rails) per XDomain, 1-4 (default 2: both lanes)");

/* A device's add_rail of a Thunderbolt name: kept until remove_rail or the device goes. */
struct tbrdma_tb_wish {
	struct list_head node;
	struct tbrdma_dev *tdev;
	char name[TBRDMA_RAIL_NAME_LEN];
};

/* Bound services and wishes; attaching rails happens under this mutex. */
static LIST_HEAD(tbrdma_tb_services);
static LIST_HEAD(tbrdma_tb_wishes);
static DEFINE_MUTEX(tbrdma_tb_mutex);

/* ---- rails ---- */

/* Whether a wished-for name covers a pair: the peer, the cable or the pair itself. */
static bool tbrdma_tb_wish_covers(const char *name, const struct tbrdma_tb_pair *pair)
{
	return !strcmp(name, pair->ts->peer) || !strcmp(name, pair->ts->cable) ||
	       !strcmp(name, pair->name);
}

/* tbrdma_tb_mutex held: attach every bound pair the name covers to tdev. */
static int tbrdma_tb_attach_wish(struct tbrdma_dev *tdev, const char *name)
{
	struct tbrdma_tb_service *ts;
	int err = -ENODEV;
	unsigned int i;

	lockdep_assert_held(&tbrdma_tb_mutex);
	list_for_each_entry(ts, &tbrdma_tb_services, node) {
		for (i = 0; i < ts->npairs; i++) {
			int ret;

			if (!tbrdma_tb_wish_covers(name, &ts->pairs[i]))
				continue;
			ret = tbrdma_add_tb_rail(tdev, &ts->pairs[i]);
			if (ret && ret != -EEXIST)
				return ret;
			err = 0;
		}
	}
	return err;
}

/*
 * configfs add_rail of a "tb:" name. The wish is kept even when nothing it names is bound
 * yet (-ENODEV then tells the user; the rails still come when the peer shows up).
 */
int tbrdma_tb_add_rail(struct tbrdma_dev *tdev, const char *name)
{
	struct tbrdma_tb_wish *wish;
	int err;

	mutex_lock(&tbrdma_tb_mutex);
	list_for_each_entry(wish, &tbrdma_tb_wishes, node)
		if (wish->tdev == tdev && !strcmp(wish->name, name))
			goto attach;
	wish = kzalloc(sizeof(*wish), GFP_KERNEL);
	if (!wish) {
		mutex_unlock(&tbrdma_tb_mutex);
		return -ENOMEM;
	}
	wish->tdev = tdev;
	strscpy(wish->name, name, sizeof(wish->name));
	list_add_tail(&wish->node, &tbrdma_tb_wishes);
attach:
	err = tbrdma_tb_attach_wish(tdev, name);
	mutex_unlock(&tbrdma_tb_mutex);
	return err;
}

/* Forgets tdev's wishes named name, or all of them (NULL); returns how many went. */
static unsigned int tbrdma_tb_drop_wishes(struct tbrdma_dev *tdev, const char *name)
{
	struct tbrdma_tb_wish *wish, *next;
	unsigned int dropped = 0;

	mutex_lock(&tbrdma_tb_mutex);
	list_for_each_entry_safe(wish, next, &tbrdma_tb_wishes, node) {
		if (wish->tdev == tdev && (!name || !strcmp(wish->name, name))) {
			list_del(&wish->node);
			kfree(wish);
			dropped++;
		}
	}
	mutex_unlock(&tbrdma_tb_mutex);
	return dropped;
}

/* configfs remove_rail of a "tb:" name: forget the wish (main.c drops the rails). */
int tbrdma_tb_remove_rail(struct tbrdma_dev *tdev, const char *name)
{
	return tbrdma_tb_drop_wishes(tdev, name) ? 0 : -ENOENT;
}

/* The device is going: its wishes go with it. */
void tbrdma_tb_forget_device(struct tbrdma_dev *tdev)
{
	tbrdma_tb_drop_wishes(tdev, NULL);
}

/* Whether remove_rail's name covers a Thunderbolt rail (see tbrdma_tb_wish_covers()). */
bool tbrdma_tb_covers(const char *name, const struct tbrdma_rail *rail)
{
	return rail->tb && tbrdma_tb_wish_covers(name, rail->tb);
}

/* Rail mutex and the service list mutex held. A pair feeds one device only. */
int tbrdma_tb_rail_start(struct tbrdma_rail *rail)
{
	struct tbrdma_tb_pair *pair = rail->tb;
	int err = 0;

	spin_lock_bh(&pair->rx_lock);
	if (pair->rail)
		err = -EBUSY;
	else
		pair->rail = rail;
	spin_unlock_bh(&pair->rx_lock);
	if (!err)
		kref_get(&pair->ts->kref);
	return err;
}

/* Rail mutex held. When this returns no receive handler is using the rail. */
void tbrdma_tb_rail_stop(struct tbrdma_rail *rail)
{
	struct tbrdma_tb_pair *pair = rail->tb;

	spin_lock_bh(&pair->rx_lock);
	if (pair->rail == rail)
		pair->rail = NULL;
	spin_unlock_bh(&pair->rx_lock);
	rail->tb = NULL;
	kref_put(&pair->ts->kref, tbrdma_tb_release);
}

bool tbrdma_tb_running(const struct tbrdma_rail *rail)
{
	return rail->tb && READ_ONCE(rail->tb->tx_ready);
}

u32 tbrdma_tb_max_frame(const struct tbrdma_rail *rail)
{
	if (!tbrdma_tb_running(rail))
		return TBRDMA_TB_FRAME_SIZE;
	return READ_ONCE(rail->tb->max_frame);
}

const char *tbrdma_tb_name(const struct tbrdma_rail *rail)
{
	return rail->tb ? rail->tb->name : "tb:?";
}

/*
 * The XDomain link's negotiated rate shared by its pairs: link_speed Gb/s per lane times
 * the lanes, divided among the ring pairs. Before 6.4 link_width was a lane count (1 or 2);
 * since then a tb_link_width bit whose single- and dual-lane values are the same 1 and 2.
 * An asymmetric USB4 v2 link (3 lanes one way, 1 the other) is counted as the symmetric
 * dual-lane link it was bonded from. Unknown speed (0): USB4's nominal 40 Gb/s.
 */
u32 tbrdma_tb_mbps(const struct tbrdma_rail *rail)
{
	struct tbrdma_tb_service *ts = rail->tb ? rail->tb->ts : NULL;
	struct tb_xdomain *xd = ts ? ts->xd : NULL;
	u32 speed = xd ? READ_ONCE(xd->link_speed) : 0;
	u32 width = xd ? (u32)READ_ONCE(xd->link_width) : 0;
	u32 mbps = speed ? speed * 1000 * (width == 1 ? 1 : 2) : 40000;

	return ts ? mbps / ts->npairs : mbps;
}

/* What configfs shows of a Thunderbolt rail after the common fields. */
int tbrdma_tb_describe(const struct tbrdma_rail *rail, char *buf, size_t size)
{
	struct tbrdma_tb_pair *pair = rail->tb;

	if (!pair)
		return 0;
	return scnprintf(buf, size, " via %s rings %d/%d of %d hopids %d/%d link %u Mb/s rx_polls %llu rx_errors %llu cm %s relogins %llu paths_kept %llu",
			 pair->ts->ops->name, pair->tx_ring ? pair->tx_ring->hop : -1,
			 pair->rx_ring ? pair->rx_ring->hop : -1, TBRDMA_TB_RING_SIZE,
			 pair->out_hopid, pair->in_hopid, tbrdma_tb_mbps(rail), pair->rx_polls,
			 pair->rx_errors, pair->ts->firmware_cm ? "firmware" : "software",
			 pair->silent_relogins, pair->paths_kept);
}

/* ---- binding to an XDomain ---- */

static void tbrdma_tb_init_pair(struct tbrdma_tb_service *ts, unsigned int index)
{
	struct tbrdma_tb_pair *pair = &ts->pairs[index];

	pair->ts = ts;
	pair->index = index;
	snprintf(pair->name, sizeof(pair->name), "%s/%u", ts->cable, index);
	spin_lock_init(&pair->tx_lock);
	spin_lock_init(&pair->rx_lock);
	INIT_DELAYED_WORK(&pair->login_work, tbrdma_tb_login_work);
	INIT_WORK(&pair->ctl_work, tbrdma_tb_ctl_work);
	INIT_DELAYED_WORK(&pair->silence_work, tbrdma_tb_silence_work);
	INIT_WORK(&pair->rx_work, tbrdma_tb_rx_work);
	pair->in_hopid = -1;
	pair->out_hopid = -1;
	pair->peer_hopid = -1;
}

/* The pairs come back to the devices that want them (tbrdma_tb_mutex held). */
static void tbrdma_tb_grant_wishes(struct tbrdma_tb_service *ts)
{
	struct tbrdma_tb_wish *wish;
	unsigned int i;

	lockdep_assert_held(&tbrdma_tb_mutex);
	list_for_each_entry(wish, &tbrdma_tb_wishes, node) {
		for (i = 0; i < ts->npairs; i++) {
			if (tbrdma_tb_wish_covers(wish->name, &ts->pairs[i]) &&
			    tbrdma_add_tb_rail(wish->tdev, &ts->pairs[i]) &&
			    !ts->pairs[i].rail)
				dev_warn(ts->dev, "%s wanted by %s but not attached\n",
					 ts->pairs[i].name, dev_name(&wish->tdev->ibdev.dev));
		}
	}
}

struct tbrdma_tb_service *tbrdma_tb_bind(const struct tbrdma_tb_ops *ops,
					 struct tb_xdomain *xd, const char *where,
					 struct device *dev)
{
	unsigned int npairs = clamp_t(unsigned int, tb_ring_pairs, 1, TBRDMA_TB_MAX_PAIRS);
	struct tbrdma_tb_service *ts;
	unsigned int i;
	int err;

	if (!xd || !xd->local_uuid || !xd->remote_uuid)
		return ERR_PTR(-ENODEV);
	ts = kzalloc(struct_size(ts, pairs, npairs), GFP_KERNEL);
	if (!ts)
		return ERR_PTR(-ENOMEM);
	kref_init(&ts->kref);
	mutex_init(&ts->conn_lock);
	mutex_init(&ts->request_lock);
	spin_lock_init(&ts->ctl_lock);
	atomic_set(&ts->command_id, 0);
	ts->ops = ops;
	ts->xd = xd;
	ts->dev = dev;
	ts->npairs = npairs;
	ts->firmware_cm = tbrdma_tb_firmware_cm(xd);
	snprintf(ts->peer, sizeof(ts->peer), "tb:%pUb", xd->remote_uuid);
	snprintf(ts->cable, sizeof(ts->cable), "%s@%s", ts->peer, where);
	for (i = 0; i < npairs; i++)
		tbrdma_tb_init_pair(ts, i);
	for (i = 0; i < npairs; i++) {
		err = tbrdma_tb_alloc_resources(&ts->pairs[i]);
		if (err)
			goto err_resources;
	}
	ts->handler.uuid = &tbrdma_tb_proto_uuid;
	ts->handler.callback = tbrdma_tb_handle_packet;
	ts->handler.data = ts;
	err = ops->register_protocol_handler(&ts->handler);
	if (err)
		goto err_resources;

	mutex_lock(&tbrdma_tb_mutex);
	list_add_tail(&ts->node, &tbrdma_tb_services);
	tbrdma_tb_grant_wishes(ts);
	mutex_unlock(&tbrdma_tb_mutex);

	for (i = 0; i < npairs; i++)
		queue_delayed_work(system_long_wq, &ts->pairs[i].login_work,
				   msecs_to_jiffies(TBRDMA_TB_LOGIN_FIRST_MS));
	dev_info(dev, "tbrdma peer %s: %u ring pairs via %s, %s connection manager\n", ts->cable,
		 npairs, ops->name, ts->firmware_cm ? "firmware" : "software");
	return ts;

err_resources:
	for (i = 0; i < npairs; i++)
		tbrdma_tb_free_resources(&ts->pairs[i]);
	kref_put(&ts->kref, tbrdma_tb_release);
	return ERR_PTR(err);
}
EXPORT_SYMBOL_GPL(tbrdma_tb_bind);

/*
 * A pair goes away on purpose: LOGOUT first when the peer may have paths to us and the cable
 * is still there, then our paths down. Returns whether they were up.
 */
static bool tbrdma_tb_leave(struct tbrdma_tb_pair *pair, bool peer_may_have_paths)
{
	struct tbrdma_tb_service *ts = pair->ts;
	struct tbrdma_tb_msg reply;
	bool was_up;

	mutex_lock(&ts->conn_lock);
	if (peer_may_have_paths && !ts->xd->is_unplugged)
		tbrdma_tb_request(pair, TBRDMA_TB_LOGOUT, 0, TBRDMA_TB_LOGOUT_TIMEOUT_MS, &reply);
	was_up = tbrdma_tb_disconnect(pair);
	mutex_unlock(&ts->conn_lock);
	return was_up;
}

/* Driver unbind or unplug: rails first, then the login machinery, paths, rings, HopIDs. */
void tbrdma_tb_unbind(struct tbrdma_tb_service *ts)
{
	unsigned int i;

	mutex_lock(&tbrdma_tb_mutex);
	list_del(&ts->node);
	mutex_unlock(&tbrdma_tb_mutex);
	for (i = 0; i < ts->npairs; i++)
		tbrdma_tb_rail_event(&ts->pairs[i], true);

	/*
	 * The XDomain core calls handlers without holding its list lock, so a message in
	 * flight may still run our handler after this; ctl_closed makes it refuse and queue
	 * nothing (thunderbolt-net has the same window).
	 */
	spin_lock_bh(&ts->ctl_lock);
	ts->ctl_closed = true;
	spin_unlock_bh(&ts->ctl_lock);
	ts->ops->unregister_protocol_handler(&ts->handler);
	mutex_lock(&ts->conn_lock);
	ts->removing = true;
	mutex_unlock(&ts->conn_lock);
	for (i = 0; i < ts->npairs; i++) {
		cancel_work_sync(&ts->pairs[i].ctl_work);
		cancel_delayed_work_sync(&ts->pairs[i].silence_work);
		cancel_delayed_work_sync(&ts->pairs[i].login_work);
	}

	for (i = 0; i < ts->npairs; i++) {
		struct tbrdma_tb_pair *pair = &ts->pairs[i];

		/* The peer may have paths to us if it connected on our answer: tell it we go. */
		tbrdma_tb_leave(pair, pair->connected || pair->ctl_answered);
		tbrdma_tb_free_resources(pair);
	}
	kref_put(&ts->kref, tbrdma_tb_release);
}
EXPORT_SYMBOL_GPL(tbrdma_tb_unbind);

/*
 * /sys/module/tbrdma/parameters/tb_services (read-only): one line per bound ring pair,
 * "<rail name> up|down via <host interface> local tb:<this host's UUID>", for tbctl and
 * the lab to find the rails a peer offers.
 */
static int tbrdma_tb_services_get(char *buf, const struct kernel_param *kp)
{
	struct tbrdma_tb_service *ts;
	int n = 0;
	unsigned int i;

	mutex_lock(&tbrdma_tb_mutex);
	list_for_each_entry(ts, &tbrdma_tb_services, node)
		for (i = 0; i < ts->npairs; i++)
			n += scnprintf(buf + n, PAGE_SIZE - n, "%s %s via %s local tb:%pUb\n",
				       ts->pairs[i].name,
				       READ_ONCE(ts->pairs[i].tx_ready) ? "up" : "down",
				       ts->ops->name, ts->xd->local_uuid);
	mutex_unlock(&tbrdma_tb_mutex);
	return n;
}

static const struct kernel_param_ops tbrdma_tb_services_ops = {
	.get = tbrdma_tb_services_get,
};
module_param_cb(tb_services, &tbrdma_tb_services_ops, NULL, 0444);
MODULE_PARM_DESC(tb_services, "Bound Thunderbolt ring pairs (read-only)");

/*
 * The host suspends or shuts down: every pair logs out (the peer takes its paths down
 * rather than sending into stopped rings) and stays down, refusing logins, until resume.
 */
void tbrdma_tb_suspend(struct tbrdma_tb_service *ts)
{
	unsigned int i;

	mutex_lock(&ts->conn_lock);
	ts->suspended = true;
	mutex_unlock(&ts->conn_lock);
	for (i = 0; i < ts->npairs; i++)
		cancel_delayed_work_sync(&ts->pairs[i].login_work);
	for (i = 0; i < ts->npairs; i++)
		if (tbrdma_tb_leave(&ts->pairs[i], ts->pairs[i].connected))
			tbrdma_tb_rail_event(&ts->pairs[i], false);
}
EXPORT_SYMBOL_GPL(tbrdma_tb_suspend);

/* After resume every pair logs in again; the peer's answer brings the rails back. */
void tbrdma_tb_resume(struct tbrdma_tb_service *ts)
{
	unsigned int i;

	mutex_lock(&ts->conn_lock);
	ts->suspended = false;
	for (i = 0; i < ts->npairs; i++)
		tbrdma_tb_start_login(&ts->pairs[i], 0);
	mutex_unlock(&ts->conn_lock);
}
EXPORT_SYMBOL_GPL(tbrdma_tb_resume);

void tbrdma_tb_exit(void)
{
	struct tbrdma_tb_wish *wish, *next;
	struct tbrdma_tb_service *ts;

	tbrdma_tb_nhi_exit();
	/*
	 * What is left was bound by a host interface that is not a bus (the lab's emulation):
	 * unbind it here, as the bus does for the NHI's, and tell the host interface.
	 */
	for (;;) {
		const struct tbrdma_tb_ops *ops;
		struct tb_xdomain *xd;

		mutex_lock(&tbrdma_tb_mutex);
		ts = list_first_entry_or_null(&tbrdma_tb_services, struct tbrdma_tb_service, node);
		mutex_unlock(&tbrdma_tb_mutex);
		if (!ts)
			break;
		ops = ts->ops;
		xd = ts->xd;
		tbrdma_tb_unbind(ts);
		if (ops->detached)
			ops->detached(xd);
	}
	/* Devices are gone before this runs (rdma link ops unregistered first). */
	list_for_each_entry_safe(wish, next, &tbrdma_tb_wishes, node) {
		list_del(&wish->node);
		kfree(wish);
	}
}

int tbrdma_tb_init(void)
{
	return tbrdma_tb_nhi_init();
}

#else /* !IS_REACHABLE(CONFIG_USB4) */

int tbrdma_tb_init(void)
{
	return 0;
}

void tbrdma_tb_exit(void)
{
}

int tbrdma_tb_add_rail(struct tbrdma_dev *tdev, const char *name)
{
	return -EOPNOTSUPP;
}

int tbrdma_tb_remove_rail(struct tbrdma_dev *tdev, const char *name)
{
	return -ENOENT;
}

void tbrdma_tb_forget_device(struct tbrdma_dev *tdev)
{
}

bool tbrdma_tb_covers(const char *name, const struct tbrdma_rail *rail)
{
	return false;
}

int tbrdma_tb_rail_start(struct tbrdma_rail *rail)
{
	return -EOPNOTSUPP;
}

void tbrdma_tb_rail_stop(struct tbrdma_rail *rail)
{
}

int tbrdma_tb_xmit(struct tbrdma_rail *rail, const void *frame, size_t len)
{
	return -ENODEV;
}

void *tbrdma_tb_frame_get(struct tbrdma_rail *rail, size_t len, void **token)
{
	return ERR_PTR(-ENODEV);
}

int tbrdma_tb_frame_commit(struct tbrdma_rail *rail, void *token, size_t len)
{
	return -ENODEV;
}

bool tbrdma_tb_running(const struct tbrdma_rail *rail)
{
	return false;
}

u32 tbrdma_tb_max_frame(const struct tbrdma_rail *rail)
{
	return 0;
}

u32 tbrdma_tb_mbps(const struct tbrdma_rail *rail)
{
	return 0;
}

const char *tbrdma_tb_name(const struct tbrdma_rail *rail)
{
	return "tb:?";
}

int tbrdma_tb_describe(const struct tbrdma_rail *rail, char *buf, size_t size)
{
	return 0;
}

void tbrdma_tb_rail_silent(struct tbrdma_tb_pair *pair)
{
}

#endif
