/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Thunderbolt rail control messages (login/logout over the XDomain control channel) and the
 * checks on everything the peer or the NHI hands us. Pure C without kernel API, so the same
 * file is compiled into the module and into a userspace test (tests/driver/test_tb_msg.py).
 */
#ifndef TBRDMA_RAIL_TB_MSG_H
#define TBRDMA_RAIL_TB_MSG_H

#ifdef __KERNEL__
#include <linux/errno.h>
#include <linux/types.h>
#else
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#endif

/*
 * A message is 24 dwords in CPU order; the control channel converts each dword to and from
 * big-endian on the wire, so UUIDs are carried as four dwords copied byte for byte (like
 * thunderbolt-net). The first three dwords are the XDomain header (route, length, sequence),
 * the next four the protocol UUID the XDomain core dispatches on.
 */
#define TBRDMA_TB_MSG_DWORDS	24
#define TBRDMA_TB_MSG_SIZE	(TBRDMA_TB_MSG_DWORDS * 4)
#define TBRDMA_TB_MSG_VERSION	1

#define TBRDMA_TB_MIN_HOPID	8	/* TB_PATH_MIN_HOPID: HopIDs below are reserved */
#define TBRDMA_TB_FRAME_SIZE	4096	/* a frame-mode ring buffer; the 12-bit size 0 means 4096 */
#define TBRDMA_TB_MIN_FRAME	256	/* TBP_MIN_FRAME */

enum tbrdma_tb_msg_type {
	TBRDMA_TB_LOGIN = 1,		/* "send to my in_hopid"; answered by LOGIN_RESPONSE */
	TBRDMA_TB_LOGIN_RESPONSE = 2,	/* carries the responder's in_hopid too */
	TBRDMA_TB_LOGOUT = 3,		/* the sender is tearing its paths down */
	TBRDMA_TB_LOGOUT_RESPONSE = 4,
};

enum tbrdma_tb_msg_status {
	TBRDMA_TB_STATUS_OK = 0,
	TBRDMA_TB_STATUS_REFUSED = 1,	/* bad HopID or frame size in the request */
};

struct tbrdma_tb_msg {
	uint64_t route;			/* bit 63 (set by the receiving router) is masked off */
	uint32_t sequence;		/* 0..3 */
	uint8_t initiator_uuid[16];
	uint8_t target_uuid[16];
	uint32_t type;			/* enum tbrdma_tb_msg_type */
	uint32_t command_id;
	uint32_t version;
	uint32_t in_hopid;		/* HopID the sender receives on (0 in logout messages) */
	uint32_t max_frame;		/* largest frame the sender's receive ring takes */
	uint32_t status;		/* responses: enum tbrdma_tb_msg_status */
	uint32_t pair;			/* ring pair of the XDomain the message is about */
};

void tbrdma_tb_msg_encode(const struct tbrdma_tb_msg *msg, const uint8_t proto_uuid[16],
			  uint32_t out[TBRDMA_TB_MSG_DWORDS]);
int tbrdma_tb_msg_decode(const void *buf, size_t size, const uint8_t proto_uuid[16],
			 struct tbrdma_tb_msg *msg);
bool tbrdma_tb_msg_for_us(const struct tbrdma_tb_msg *msg, uint64_t route,
			  const uint8_t local_uuid[16], const uint8_t remote_uuid[16]);
int tbrdma_tb_check_peer(const struct tbrdma_tb_msg *msg, uint32_t remote_max_hopid);
int tbrdma_tb_rx_frame_len(uint32_t size_field, bool crc_error, bool overrun,
			   uint32_t buf_size);

#endif
