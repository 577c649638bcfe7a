// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * Address handles. The kernel keeps the address (it builds each datagram's header from it
 * when a UD WR is posted through POST_SEND, which names the AH by its handle), so the
 * provider only issues the commands and keeps libibverbs' struct ibv_ah.
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tbrdma.h"

struct ibv_ah *tbrdma_create_ah(struct ibv_pd *pd, struct ibv_ah_attr *attr)
{
	struct ib_uverbs_create_ah_resp resp;
	struct ibv_ah *ah;
	int ret;

	ah = calloc(1, sizeof(*ah));
	if (!ah)
		return NULL;
	memset(&resp, 0, sizeof(resp));
	ret = ibv_cmd_create_ah(pd, ah, attr, &resp, sizeof(resp));
	if (ret) {
		free(ah);
		errno = ret;
		return NULL;
	}
	return ah;
}

int tbrdma_destroy_ah(struct ibv_ah *ah)
{
	int ret = ibv_cmd_destroy_ah(ah);

	if (ret)
		return ret;
	free(ah);
	return 0;
}
