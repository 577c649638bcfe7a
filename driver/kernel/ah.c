// SPDX-License-Identifier: GPL-2.0-only
/*
 * Address handles, for QP1 (ib_mad, rdma_cm) and for UD QPs of kernel and user consumers.
 *
 * The port is RoCEv2-style, so an AH is a GRH: source GID (ib_core resolved sgid_attr from
 * the GID index), destination GID, flow label, traffic class and hop limit. A datagram
 * header (gsi.c, ud.c) is built from this copy when a WR is posted; the AH itself is never
 * touched by the data path afterwards, so destroying it under outstanding work is harmless.
 * A user AH is created through the uverbs CREATE_AH command: the provider keeps only the
 * handle, and POST_SEND hands the kernel this object (as rxe's AHs before ah_num).
 */
#include <net/ipv6.h>
#include <rdma/ib_addr.h>
#include <rdma/ib_cache.h>

#include "tbrdma.h"

/* A GID of this device's port: datagrams and QPs addressed to it stay inside the device. */
bool tbrdma_gid_is_own(struct tbrdma_dev *tdev, const u8 *raw)
{
	const struct ib_gid_attr *own;
	union ib_gid gid;

	memcpy(gid.raw, raw, sizeof(gid.raw));
	own = rdma_find_gid_by_port(&tdev->ibdev, &gid, IB_GID_TYPE_ROCE_UDP_ENCAP, 1, NULL);
	if (IS_ERR(own))
		return false;
	rdma_put_gid_attr(own);
	return true;
}

static int tbrdma_init_ah(struct tbrdma_ah *ah, const struct rdma_ah_attr *attr)
{
	const struct ib_global_route *grh;
	const struct ib_gid_attr *sgid_attr;

	if (attr->type != RDMA_AH_ATTR_TYPE_ROCE || rdma_ah_get_port_num(attr) != 1 ||
	    !(rdma_ah_get_ah_flags(attr) & IB_AH_GRH))
		return -EINVAL;
	grh = rdma_ah_read_grh(attr);
	sgid_attr = grh->sgid_attr;
	if (!sgid_attr || sgid_attr->gid_type != IB_GID_TYPE_ROCE_UDP_ENCAP)
		return -EINVAL;
	/* Unicast or a multicast group (ud.c); both GIDs of one family, as the GRH needs. */
	if (ipv6_addr_v4mapped((struct in6_addr *)grh->dgid.raw) !=
	    ipv6_addr_v4mapped((struct in6_addr *)sgid_attr->gid.raw))
		return -EINVAL;
	ah->sgid = sgid_attr->gid;
	ah->dgid = grh->dgid;
	ah->sgid_index = grh->sgid_index;
	ah->flow_label = grh->flow_label & 0xfffff;
	ah->traffic_class = grh->traffic_class;
	ah->hop_limit = grh->hop_limit;
	ah->sl = rdma_ah_get_sl(attr);
	ah->static_rate = rdma_ah_get_static_rate(attr);
	memcpy(ah->dmac, attr->roce.dmac, ETH_ALEN);
	return 0;
}

/* Both create_ah (kernel) and create_user_ah (uverbs); never sleeps (RDMA_CREATE_AH_SLEEPABLE
 * is not needed). */
int tbrdma_create_ah(struct ib_ah *ibah, struct rdma_ah_init_attr *init, struct ib_udata *udata)
{
	struct tbrdma_dev *tdev = to_tdev(ibah->device);
	struct tbrdma_ah *ah = to_tah(ibah);
	int err;

	/* The provider sends the plain command and expects the plain response. */
	if (udata && (udata->inlen || udata->outlen))
		return -EINVAL;
	err = tbrdma_init_ah(ah, init->ah_attr);
	if (err)
		return err;
	if (atomic_inc_return(&tdev->n_ah) > TBRDMA_MAX_AH) {
		atomic_dec(&tdev->n_ah);
		return -ENOMEM;
	}
	return 0;
}

int tbrdma_query_ah(struct ib_ah *ibah, struct rdma_ah_attr *attr)
{
	struct tbrdma_ah *ah = to_tah(ibah);

	memset(attr, 0, sizeof(*attr));
	attr->type = ibah->type;
	rdma_ah_set_port_num(attr, 1);
	rdma_ah_set_sl(attr, ah->sl);
	rdma_ah_set_static_rate(attr, ah->static_rate);
	rdma_ah_set_grh(attr, &ah->dgid, ah->flow_label, ah->sgid_index, ah->hop_limit,
			ah->traffic_class);
	memcpy(attr->roce.dmac, ah->dmac, ETH_ALEN);
	return 0;
}

int tbrdma_destroy_ah(struct ib_ah *ibah, u32 flags)
{
	atomic_dec(&to_tdev(ibah->device)->n_ah);
	return 0;
}
