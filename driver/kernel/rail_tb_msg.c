// SPDX-License-Identifier: GPL-2.0-only
/*
 * Thunderbolt rail control messages: encoding, decoding and validation (see rail_tb_msg.h).
 * Nothing here trusts the peer: decode checks the size, the length field, the protocol UUID,
 * the type and the version; tbrdma_tb_check_peer() checks what a login announces.
 */
#ifdef __KERNEL__
#include <linux/string.h>
#else
#include <string.h>
#endif

#include "rail_tb_msg.h"

#define HDR_LENGTH_MASK		0x3fu		/* dwords after route and length_sn */
#define HDR_SN_SHIFT		27
#define HDR_SN_MASK		(3u << HDR_SN_SHIFT)
#define ROUTE_CM_BIT		(1ull << 63)

/* Dword offsets. */
enum {
	W_ROUTE_HI = 0,
	W_ROUTE_LO = 1,
	W_LENGTH_SN = 2,
	W_PROTO_UUID = 3,
	W_INITIATOR = 7,
	W_TARGET = 11,
	W_TYPE = 15,
	W_COMMAND_ID = 16,
	W_VERSION = 17,
	W_IN_HOPID = 18,
	W_MAX_FRAME = 19,
	W_STATUS = 20,
	W_PAIR = 21,		/* 0 from senders that have one ring pair per XDomain */
	/* 22..23 reserved, sent as zero, ignored on receipt */
};

void tbrdma_tb_msg_encode(const struct tbrdma_tb_msg *msg, const uint8_t proto_uuid[16],
			  uint32_t out[TBRDMA_TB_MSG_DWORDS])
{
	memset(out, 0, TBRDMA_TB_MSG_SIZE);
	out[W_ROUTE_HI] = (uint32_t)(msg->route >> 32);
	out[W_ROUTE_LO] = (uint32_t)msg->route;
	out[W_LENGTH_SN] = (TBRDMA_TB_MSG_DWORDS - 3) |
			   ((msg->sequence << HDR_SN_SHIFT) & HDR_SN_MASK);
	memcpy(&out[W_PROTO_UUID], proto_uuid, 16);
	memcpy(&out[W_INITIATOR], msg->initiator_uuid, 16);
	memcpy(&out[W_TARGET], msg->target_uuid, 16);
	out[W_TYPE] = msg->type;
	out[W_COMMAND_ID] = msg->command_id;
	out[W_VERSION] = msg->version;
	out[W_IN_HOPID] = msg->in_hopid;
	out[W_MAX_FRAME] = msg->max_frame;
	out[W_STATUS] = msg->status;
	out[W_PAIR] = msg->pair;
}

/*
 * Returns 0, -EBADMSG (short, or a length field that disagrees), -EPROTO (not our protocol
 * UUID, or an unknown type) or -EPROTONOSUPPORT (another version).
 */
int tbrdma_tb_msg_decode(const void *buf, size_t size, const uint8_t proto_uuid[16],
			 struct tbrdma_tb_msg *msg)
{
	uint32_t w[TBRDMA_TB_MSG_DWORDS];

	if (!buf || size < TBRDMA_TB_MSG_SIZE)
		return -EBADMSG;
	memcpy(w, buf, sizeof(w));	/* the caller's buffer need not be aligned */
	if ((w[W_LENGTH_SN] & HDR_LENGTH_MASK) != TBRDMA_TB_MSG_DWORDS - 3)
		return -EBADMSG;
	if (memcmp(&w[W_PROTO_UUID], proto_uuid, 16))
		return -EPROTO;
	if (w[W_TYPE] < TBRDMA_TB_LOGIN || w[W_TYPE] > TBRDMA_TB_LOGOUT_RESPONSE)
		return -EPROTO;
	if (w[W_VERSION] != TBRDMA_TB_MSG_VERSION)
		return -EPROTONOSUPPORT;
	memset(msg, 0, sizeof(*msg));
	msg->route = (((uint64_t)w[W_ROUTE_HI] << 32) | w[W_ROUTE_LO]) & ~ROUTE_CM_BIT;
	msg->sequence = (w[W_LENGTH_SN] & HDR_SN_MASK) >> HDR_SN_SHIFT;
	memcpy(msg->initiator_uuid, &w[W_INITIATOR], 16);
	memcpy(msg->target_uuid, &w[W_TARGET], 16);
	msg->type = w[W_TYPE];
	msg->command_id = w[W_COMMAND_ID];
	msg->version = w[W_VERSION];
	msg->in_hopid = w[W_IN_HOPID];
	msg->max_frame = w[W_MAX_FRAME];
	msg->status = w[W_STATUS];
	msg->pair = w[W_PAIR];
	return 0;
}

/*
 * A message is ours only if it comes from the XDomain's remote host, names this host as the
 * target and travelled the XDomain's route (what thunderbolt-net checks too). Responses are
 * sent the same way (initiator: the responder), so one check serves both.
 */
bool tbrdma_tb_msg_for_us(const struct tbrdma_tb_msg *msg, uint64_t route,
			  const uint8_t local_uuid[16], const uint8_t remote_uuid[16])
{
	if (!local_uuid || !remote_uuid)
		return false;
	return msg->route == (route & ~ROUTE_CM_BIT) &&
	       !memcmp(msg->initiator_uuid, remote_uuid, 16) &&
	       !memcmp(msg->target_uuid, local_uuid, 16);
}

/*
 * What a LOGIN or an OK LOGIN_RESPONSE announces: the HopID we will transmit to (it must be
 * an output HopID of this XDomain, TB_PATH_MIN_HOPID..remote_max_hopid) and the largest
 * frame the peer's ring takes (at least a protocol-core minimum frame, at most one ring
 * buffer). Returns 0 or -EINVAL.
 */
int tbrdma_tb_check_peer(const struct tbrdma_tb_msg *msg, uint32_t remote_max_hopid)
{
	if (msg->type != TBRDMA_TB_LOGIN && msg->type != TBRDMA_TB_LOGIN_RESPONSE)
		return -EINVAL;
	if (msg->type == TBRDMA_TB_LOGIN_RESPONSE && msg->status != TBRDMA_TB_STATUS_OK)
		return -EINVAL;
	if (msg->in_hopid < TBRDMA_TB_MIN_HOPID || msg->in_hopid > remote_max_hopid)
		return -EINVAL;
	if (msg->max_frame < TBRDMA_TB_MIN_FRAME || msg->max_frame > TBRDMA_TB_FRAME_SIZE)
		return -EINVAL;
	return 0;
}

/*
 * Length of a completed receive frame, from the descriptor's 12-bit size (0 means 4096) and
 * its error flags; a negative errno drops the frame. The length can never exceed the posted
 * buffer, which is checked anyway: the NHI's word is wire-derived too.
 */
int tbrdma_tb_rx_frame_len(uint32_t size_field, bool crc_error, bool overrun,
			   uint32_t buf_size)
{
	uint32_t len = size_field ? size_field : TBRDMA_TB_FRAME_SIZE;

	if (crc_error)
		return -EILSEQ;
	if (overrun || size_field > 0xfff || len > buf_size)
		return -EOVERFLOW;
	return (int)len;	/* the protocol core checks the frame itself */
}
