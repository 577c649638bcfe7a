// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * tbp_wire.c - frame header codec and validation.
 *
 * Fields are little-endian on the wire and are assembled byte by byte so the
 * codec is independent of host endianness and alignment.
 */
#include "tbp_internal.h"

/* CRC32C (Castagnoli, reflected polynomial 0x82f63b78), one table lookup per byte. */
static const uint32_t crc32c_table[256] = {
	0x00000000u, 0xf26b8303u, 0xe13b70f7u, 0x1350f3f4u, 0xc79a971fu, 0x35f1141cu,
	0x26a1e7e8u, 0xd4ca64ebu, 0x8ad958cfu, 0x78b2dbccu, 0x6be22838u, 0x9989ab3bu,
	0x4d43cfd0u, 0xbf284cd3u, 0xac78bf27u, 0x5e133c24u, 0x105ec76fu, 0xe235446cu,
	0xf165b798u, 0x030e349bu, 0xd7c45070u, 0x25afd373u, 0x36ff2087u, 0xc494a384u,
	0x9a879fa0u, 0x68ec1ca3u, 0x7bbcef57u, 0x89d76c54u, 0x5d1d08bfu, 0xaf768bbcu,
	0xbc267848u, 0x4e4dfb4bu, 0x20bd8edeu, 0xd2d60dddu, 0xc186fe29u, 0x33ed7d2au,
	0xe72719c1u, 0x154c9ac2u, 0x061c6936u, 0xf477ea35u, 0xaa64d611u, 0x580f5512u,
	0x4b5fa6e6u, 0xb93425e5u, 0x6dfe410eu, 0x9f95c20du, 0x8cc531f9u, 0x7eaeb2fau,
	0x30e349b1u, 0xc288cab2u, 0xd1d83946u, 0x23b3ba45u, 0xf779deaeu, 0x05125dadu,
	0x1642ae59u, 0xe4292d5au, 0xba3a117eu, 0x4851927du, 0x5b016189u, 0xa96ae28au,
	0x7da08661u, 0x8fcb0562u, 0x9c9bf696u, 0x6ef07595u, 0x417b1dbcu, 0xb3109ebfu,
	0xa0406d4bu, 0x522bee48u, 0x86e18aa3u, 0x748a09a0u, 0x67dafa54u, 0x95b17957u,
	0xcba24573u, 0x39c9c670u, 0x2a993584u, 0xd8f2b687u, 0x0c38d26cu, 0xfe53516fu,
	0xed03a29bu, 0x1f682198u, 0x5125dad3u, 0xa34e59d0u, 0xb01eaa24u, 0x42752927u,
	0x96bf4dccu, 0x64d4cecfu, 0x77843d3bu, 0x85efbe38u, 0xdbfc821cu, 0x2997011fu,
	0x3ac7f2ebu, 0xc8ac71e8u, 0x1c661503u, 0xee0d9600u, 0xfd5d65f4u, 0x0f36e6f7u,
	0x61c69362u, 0x93ad1061u, 0x80fde395u, 0x72966096u, 0xa65c047du, 0x5437877eu,
	0x4767748au, 0xb50cf789u, 0xeb1fcbadu, 0x197448aeu, 0x0a24bb5au, 0xf84f3859u,
	0x2c855cb2u, 0xdeeedfb1u, 0xcdbe2c45u, 0x3fd5af46u, 0x7198540du, 0x83f3d70eu,
	0x90a324fau, 0x62c8a7f9u, 0xb602c312u, 0x44694011u, 0x5739b3e5u, 0xa55230e6u,
	0xfb410cc2u, 0x092a8fc1u, 0x1a7a7c35u, 0xe811ff36u, 0x3cdb9bddu, 0xceb018deu,
	0xdde0eb2au, 0x2f8b6829u, 0x82f63b78u, 0x709db87bu, 0x63cd4b8fu, 0x91a6c88cu,
	0x456cac67u, 0xb7072f64u, 0xa457dc90u, 0x563c5f93u, 0x082f63b7u, 0xfa44e0b4u,
	0xe9141340u, 0x1b7f9043u, 0xcfb5f4a8u, 0x3dde77abu, 0x2e8e845fu, 0xdce5075cu,
	0x92a8fc17u, 0x60c37f14u, 0x73938ce0u, 0x81f80fe3u, 0x55326b08u, 0xa759e80bu,
	0xb4091bffu, 0x466298fcu, 0x1871a4d8u, 0xea1a27dbu, 0xf94ad42fu, 0x0b21572cu,
	0xdfeb33c7u, 0x2d80b0c4u, 0x3ed04330u, 0xccbbc033u, 0xa24bb5a6u, 0x502036a5u,
	0x4370c551u, 0xb11b4652u, 0x65d122b9u, 0x97baa1bau, 0x84ea524eu, 0x7681d14du,
	0x2892ed69u, 0xdaf96e6au, 0xc9a99d9eu, 0x3bc21e9du, 0xef087a76u, 0x1d63f975u,
	0x0e330a81u, 0xfc588982u, 0xb21572c9u, 0x407ef1cau, 0x532e023eu, 0xa145813du,
	0x758fe5d6u, 0x87e466d5u, 0x94b49521u, 0x66df1622u, 0x38cc2a06u, 0xcaa7a905u,
	0xd9f75af1u, 0x2b9cd9f2u, 0xff56bd19u, 0x0d3d3e1au, 0x1e6dcdeeu, 0xec064eedu,
	0xc38d26c4u, 0x31e6a5c7u, 0x22b65633u, 0xd0ddd530u, 0x0417b1dbu, 0xf67c32d8u,
	0xe52cc12cu, 0x1747422fu, 0x49547e0bu, 0xbb3ffd08u, 0xa86f0efcu, 0x5a048dffu,
	0x8ecee914u, 0x7ca56a17u, 0x6ff599e3u, 0x9d9e1ae0u, 0xd3d3e1abu, 0x21b862a8u,
	0x32e8915cu, 0xc083125fu, 0x144976b4u, 0xe622f5b7u, 0xf5720643u, 0x07198540u,
	0x590ab964u, 0xab613a67u, 0xb831c993u, 0x4a5a4a90u, 0x9e902e7bu, 0x6cfbad78u,
	0x7fab5e8cu, 0x8dc0dd8fu, 0xe330a81au, 0x115b2b19u, 0x020bd8edu, 0xf0605beeu,
	0x24aa3f05u, 0xd6c1bc06u, 0xc5914ff2u, 0x37faccf1u, 0x69e9f0d5u, 0x9b8273d6u,
	0x88d28022u, 0x7ab90321u, 0xae7367cau, 0x5c18e4c9u, 0x4f48173du, 0xbd23943eu,
	0xf36e6f75u, 0x0105ec76u, 0x12551f82u, 0xe03e9c81u, 0x34f4f86au, 0xc69f7b69u,
	0xd5cf889du, 0x27a40b9eu, 0x79b737bau, 0x8bdcb4b9u, 0x988c474du, 0x6ae7c44eu,
	0xbe2da0a5u, 0x4c4623a6u, 0x5f16d052u, 0xad7d5351u,
};

uint32_t tbp_crc32c(uint32_t crc, const void *data, size_t len)
{
	const uint8_t *p = data;
	size_t i;

	crc = ~crc;
	for (i = 0; i < len; i++)
		crc = crc32c_table[(crc ^ p[i]) & 0xffu] ^ (crc >> 8);
	return ~crc;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | ((uint64_t)get32(p + 4) << 32);
}

/* Byte offsets of the header fields; docs/protocol.md has the same table. */
enum {
	OFF_MAGIC = 0, OFF_VERSION = 4, OFF_OPCODE = 5, OFF_FLAGS = 6, OFF_RAIL = 7,
	OFF_SESSION = 8, OFF_SEQ = 12, OFF_ACK = 16, OFF_SSN = 20, OFF_SACK = 24,
	OFF_DST_QPN = 32, OFF_SRC_QPN = 36, OFF_MSN = 40, OFF_RKEY = 44, OFF_RADDR = 48,
	OFF_MSG_LEN = 56, OFF_FRAG_OFF = 60, OFF_IMM = 64, OFF_PAYLOAD_LEN = 68,
	OFF_STATUS = 70, OFF_CSUM = 72, OFF_RESERVED = 76,
};

static uint32_t frame_checksum(const uint8_t *frame, uint32_t payload_len, bool with_payload)
{
	static const uint8_t zero_csum[4];
	uint32_t crc;

	crc = tbp_crc32c(0, frame, OFF_CSUM);
	crc = tbp_crc32c(crc, zero_csum, sizeof(zero_csum));
	crc = tbp_crc32c(crc, frame + OFF_RESERVED, TBP_HDR_LEN - OFF_RESERVED);
	if (with_payload)
		crc = tbp_crc32c(crc, frame + TBP_HDR_LEN, payload_len);
	return crc;
}

void tbp_hdr_encode(void *frame, struct tbp_hdr *h)
{
	uint8_t *p = frame;

	put32(p + OFF_MAGIC, h->magic);
	p[OFF_VERSION] = h->version;
	p[OFF_OPCODE] = h->opcode;
	p[OFF_FLAGS] = h->flags;
	p[OFF_RAIL] = h->rail;
	put32(p + OFF_SESSION, h->session);
	put32(p + OFF_SEQ, h->seq);
	put32(p + OFF_ACK, h->ack);
	put32(p + OFF_SSN, h->ssn);
	put64(p + OFF_SACK, h->sack);
	put32(p + OFF_DST_QPN, h->dst_qpn);
	put32(p + OFF_SRC_QPN, h->src_qpn);
	put32(p + OFF_MSN, h->msn);
	put32(p + OFF_RKEY, h->rkey);
	put64(p + OFF_RADDR, h->raddr);
	put32(p + OFF_MSG_LEN, h->msg_len);
	put32(p + OFF_FRAG_OFF, h->frag_off);
	put32(p + OFF_IMM, h->imm);
	put16(p + OFF_PAYLOAD_LEN, h->payload_len);
	put16(p + OFF_STATUS, h->status);
	put32(p + OFF_RESERVED, h->reserved);
	h->csum = frame_checksum(p, h->payload_len, (h->flags & TBP_F_PCSUM) != 0);
	put32(p + OFF_CSUM, h->csum);
}

static bool is_data_op(uint8_t op)
{
	return op == TBP_W_SEND || op == TBP_W_SEND_IMM || op == TBP_W_WRITE ||
	       op == TBP_W_WRITE_IMM || op == TBP_W_READ_RESP;
}

/* Per-opcode rules: which frames are sequenced, which carry payload, which fields are bounded. */
static bool fields_valid(const struct tbp_hdr *h)
{
	bool sequenced = (h->flags & TBP_F_SEQ) != 0;

	if (h->flags & ~TBP_F_ALL)
		return false;
	if (h->reserved != 0 || h->rail >= TBP_MAX_RAILS)
		return false;
	if (h->dst_qpn > TBP_QPN_MASK || h->src_qpn > TBP_QPN_MASK)
		return false;
	switch (h->opcode) {
	case TBP_W_HELLO:
	case TBP_W_HELLO_ACK:
	case TBP_W_HELLO_CONFIRM:
		return !sequenced && h->payload_len == TBP_HELLO_LEN && h->status == 0;
	case TBP_W_KEEPALIVE:
	case TBP_W_ACK:
		return !sequenced && h->payload_len == 0 && h->status == 0;
	case TBP_W_RNR_NAK:
		return !sequenced && h->payload_len == 0 && h->status == 0;
	case TBP_W_NOP:
		return sequenced && h->payload_len == 0 && h->status == 0;
	case TBP_W_MSG_ACK:
		return sequenced && h->payload_len == 0 && h->status <= TBP_STATUS_MAX;
	case TBP_W_READ_REQ:
		return sequenced && h->payload_len == 0 && h->frag_off == 0 &&
		       h->msg_len <= TBP_MSG_LEN_LIMIT && h->status == 0;
	default:
		break;
	}
	if (!is_data_op(h->opcode))
		return false;
	if (!sequenced || h->status != 0 || h->msg_len > TBP_MSG_LEN_LIMIT)
		return false;
	if ((uint64_t)h->frag_off + h->payload_len > h->msg_len)
		return false;
	/* Only an empty message may have an empty fragment. */
	return h->payload_len != 0 || h->msg_len == 0;
}

int tbp_frame_decode(const void *frame, uint32_t len, uint32_t max_frame, struct tbp_hdr *h)
{
	const uint8_t *p = frame;

	if (len < TBP_HDR_LEN)
		return TBP_DEC_SHORT;
	if (len > max_frame || len > TBP_MAX_FRAME)
		return TBP_DEC_FIELD;
	h->magic = get32(p + OFF_MAGIC);
	h->version = p[OFF_VERSION];
	if (h->magic != TBP_MAGIC || h->version != TBP_PROTO_VERSION)
		return TBP_DEC_MAGIC;
	h->opcode = p[OFF_OPCODE];
	h->flags = p[OFF_FLAGS];
	h->rail = p[OFF_RAIL];
	h->session = get32(p + OFF_SESSION);
	h->seq = get32(p + OFF_SEQ);
	h->ack = get32(p + OFF_ACK);
	h->ssn = get32(p + OFF_SSN);
	h->sack = get64(p + OFF_SACK);
	h->dst_qpn = get32(p + OFF_DST_QPN);
	h->src_qpn = get32(p + OFF_SRC_QPN);
	h->msn = get32(p + OFF_MSN);
	h->rkey = get32(p + OFF_RKEY);
	h->raddr = get64(p + OFF_RADDR);
	h->msg_len = get32(p + OFF_MSG_LEN);
	h->frag_off = get32(p + OFF_FRAG_OFF);
	h->imm = get32(p + OFF_IMM);
	h->payload_len = get16(p + OFF_PAYLOAD_LEN);
	h->status = get16(p + OFF_STATUS);
	h->csum = get32(p + OFF_CSUM);
	h->reserved = get32(p + OFF_RESERVED);
	if ((uint32_t)h->payload_len + TBP_HDR_LEN != len)
		return TBP_DEC_SHORT;
	if (frame_checksum(p, h->payload_len, (h->flags & TBP_F_PCSUM) != 0) != h->csum)
		return TBP_DEC_CHECKSUM;
	if (!fields_valid(h))
		return TBP_DEC_FIELD;
	return 0;
}
