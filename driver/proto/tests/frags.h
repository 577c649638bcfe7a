/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * frags.h - frames received in pieces (tbp_rx_frags), as a NIC hands over a nonlinear skb:
 * cut inside the header, at its end, inside the payload, inside the MAC trailer, into single
 * bytes, into many uneven pieces and into pages. Each piece is an allocation of its own, so
 * ASan sees any read past one. Included by unit.c after pair.h.
 */

enum fr_mode {
	FR_WHOLE = 0, /* one piece, through tbp_rx: the reference */
	FR_HEADER,    /* cuts inside the header */
	FR_BOUNDARY,  /* a cut (and an empty piece) where the header ends */
	FR_PAYLOAD,   /* cuts inside the payload */
	FR_TRAILER,   /* cuts inside the MAC trailer's counter and tag */
	FR_BYTES,     /* one byte per piece */
	FR_MANY,      /* uneven pieces of 0..99 bytes */
	FR_PAGES,     /* a short linear part, then 4 KiB pages (an skb's frags) */
	FR_MODES,
};

#define FR_MAX_PIECES (TBP_MAX_FRAME + 64)

static struct tbp_rx_frag fr_piece[FR_MAX_PIECES];

/* Append a piece of len bytes; returns the new count. */
static uint32_t fr_add(uint32_t n, uint32_t len)
{
	fr_piece[n].len = len;
	return n + 1;
}

/* Piece lengths of a len-byte frame for mode into fr_piece[].len; returns the count. */
static uint32_t fr_layout(uint32_t mode, uint32_t len, uint32_t seed)
{
	uint32_t n = 0, off = 0, x = seed * 2654435761u + 1;

	switch (mode) {
	case FR_HEADER:
		if (len >= TBP_HDR_LEN) {
			n = fr_add(n, 1);
			n = fr_add(n, 36);
			n = fr_add(n, TBP_HDR_LEN - 37);
			off = TBP_HDR_LEN;
		}
		break;
	case FR_BOUNDARY:
		if (len >= TBP_HDR_LEN) {
			n = fr_add(n, TBP_HDR_LEN);
			n = fr_add(n, 0);
			off = TBP_HDR_LEN;
		}
		break;
	case FR_PAYLOAD:
		if (len >= TBP_HDR_LEN + 20) {
			n = fr_add(n, TBP_HDR_LEN + 10);
			n = fr_add(n, (len - TBP_HDR_LEN - 10) / 2);
			off = TBP_HDR_LEN + 10 + (len - TBP_HDR_LEN - 10) / 2;
		}
		break;
	case FR_TRAILER:
		if (len >= TBP_HDR_LEN + TBP_MAC_TRAILER) {
			n = fr_add(n, len - 12);
			n = fr_add(n, 5);
			off = len - 7;
		}
		break;
	case FR_BYTES:
		for (; off < len; off++)
			n = fr_add(n, 1);
		break;
	case FR_MANY:
		while (off < len && n < FR_MAX_PIECES - 1) {
			uint32_t k;

			x = x * 1103515245u + 12345u;
			k = (x >> 16) % 100;
			if (k > len - off)
				k = len - off;
			n = fr_add(n, k);
			off += k;
		}
		break;
	case FR_PAGES:
		n = fr_add(n, len < 54 ? len : 54);
		for (off = fr_piece[0].len; len - off > 4096; off += 4096)
			n = fr_add(n, 4096);
		break;
	default:
		break;
	}
	if (off < len || !n)
		n = fr_add(n, len - off);
	return n;
}

/* Give data[0, len) to link in mode's pieces (FR_WHOLE: tbp_rx) and count copied writes. */
static void fr_rx(struct tbp_link *link, uint32_t rail, const uint8_t *data, uint32_t len,
		  uint32_t mode, uint32_t seed)
{
	uint32_t n, i, off = 0;

	if (mode == FR_WHOLE) {
		tbp_rx(link, rail, data, len);
		return;
	}
	n = fr_layout(mode, len, seed);
	for (i = 0; i < n; i++) {
		uint8_t *p = malloc(fr_piece[i].len ? fr_piece[i].len : 1);

		memcpy(p, data + off, fr_piece[i].len);
		fr_piece[i].data = p;
		off += (uint32_t)fr_piece[i].len;
	}
	p_pieces = fr_piece;
	p_npieces = n;
	tbp_rx_frags(link, rail, fr_piece, n);
	p_pieces = NULL;
	p_npieces = 0;
	for (i = 0; i < n; i++)
		free((void *)fr_piece[i].data);
}

static uint32_t fr_mode_now, fr_seed;

static void fr_hook(struct tbp_link *link, const struct pframe *f)
{
	fr_rx(link, f->rail, f->data, f->len, fr_mode_now, fr_seed++);
}

/* The tag computed in steps over any split equals the one-shot tag. */
static void test_rx_frags_nh(void)
{
	static const uint32_t lens[] = { 8, 9, 15, 16, 17, 100, 1001, TBP_MAX_FRAME - 8 };
	static uint8_t msg[TBP_MAX_FRAME];
	static uint32_t nh[TBP_NH_WORDS];
	uint64_t key[2] = { 0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull };
	uint32_t i, mode;

	for (i = 0; i < TBP_NH_WORDS; i++)
		nh[i] = i * 0x9e3779b9u;
	fill(msg, sizeof(msg), 9);
	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		uint64_t want = tbp_frame_tag(key, nh, msg, lens[i]);

		for (mode = FR_HEADER; mode < FR_MODES; mode++) {
			uint32_t n = fr_layout(mode, lens[i], i), k, off = 0;
			struct tbp_nh s;

			tbp_nh_init(&s, nh);
			for (k = 0; k < n; k++) {
				tbp_nh_update(&s, msg + off, (uint32_t)fr_piece[k].len);
				off += (uint32_t)fr_piece[k].len;
			}
			CHECK(off == lens[i]);
			CHECK(tbp_nh_tag(&s, key, msg + lens[i] - 8) == want);
		}
	}
}

/* Decode a frame split at cut and cut2 (three pieces, the middle one possibly empty). */
static int fr_decode3(const uint8_t *frame, uint32_t len, uint32_t cut, uint32_t cut2,
		      struct tbp_hdr *h, struct tbp_rxf *f)
{
	struct tbp_rx_frag p[3];
	uint8_t *a = malloc(cut + 1), *b = malloc(cut2 - cut + 1), *c = malloc(len - cut2 + 1);
	int rc;

	memcpy(a, frame, cut);
	memcpy(b, frame + cut, cut2 - cut);
	memcpy(c, frame + cut2, len - cut2);
	p[0].data = a;
	p[0].len = cut;
	p[1].data = b;
	p[1].len = cut2 - cut;
	p[2].data = c;
	p[2].len = len - cut2;
	memset(h, 0, sizeof(*h));
	tbp_rxf_init(f, p, 3);
	rc = tbp_rxf_decode(f, TBP_MAX_FRAME, h);
	/* What decode said about the payload, checked while the pieces still exist. */
	if (!rc && f->payload && memcmp(f->payload, frame + TBP_HDR_LEN, h->payload_len))
		rc = 99;
	if (!rc && !f->payload && (h->opcode < TBP_W_SEND || h->opcode == TBP_W_ATOMIC_REQ ||
				   h->opcode == TBP_W_ATOMIC_RESP))
		rc = 98; /* a control payload must be handed over in one buffer */
	free(a);
	free(b);
	free(c);
	return rc;
}

/*
 * Decoding a frame in pieces gives the header and verdict of decoding it whole, wherever the
 * cuts fall: a data frame with the payload CRC, an ACK with SACK ranges (gathered), each with
 * every byte flipped in turn.
 */
static void test_rx_frags_decode(void)
{
	static const uint16_t pairs[] = { 70, 3, 80, 10, 200, 1 };
	uint8_t frame[TBP_HDR_LEN + 300];
	struct tbp_hdr h = sample_hdr(), want, got;
	struct tbp_rxf f;
	uint32_t kind, len, cut, i;

	for (kind = 0; kind < 2; kind++) {
		h = sample_hdr();
		if (kind == 0) {
			h.payload_len = 300;
			fill(frame + TBP_HDR_LEN, 300, 7);
		} else {
			h.opcode = TBP_W_ACK;
			h.flags = TBP_F_PCSUM;
			h.seq = h.ssn = h.dst_qpn = h.src_qpn = h.msn = h.rkey = h.msg_len = 0;
			h.frag_off = h.imm = 0;
			h.raddr = 0;
			for (i = 0; i < 3; i++) {
				frame[TBP_HDR_LEN + 4 * i] = (uint8_t)pairs[2 * i];
				frame[TBP_HDR_LEN + 4 * i + 1] = 0;
				frame[TBP_HDR_LEN + 4 * i + 2] = (uint8_t)pairs[2 * i + 1];
				frame[TBP_HDR_LEN + 4 * i + 3] = 0;
			}
			h.payload_len = 12;
		}
		len = TBP_HDR_LEN + h.payload_len;
		tbp_hdr_encode(frame, &h);
		memset(&want, 0, sizeof(want));
		CHECK(tbp_frame_decode(frame, len, TBP_MAX_FRAME, &want) == 0);
		for (cut = 0; cut <= len; cut++) {
			uint32_t cut2 = cut + 7 <= len ? cut + 7 : len;

			CHECK(fr_decode3(frame, len, cut, cut, &got, &f) == 0);
			CHECK(memcmp(&want, &got, sizeof(got)) == 0);
			CHECK(fr_decode3(frame, len, cut, cut2, &got, &f) == 0);
			CHECK(memcmp(&want, &got, sizeof(got)) == 0);
			/* A payload that spans pieces stays there; one in one piece is used in place. */
			if (kind == 0)
				CHECK((f.payload != NULL) == (cut2 <= TBP_HDR_LEN || cut >= len));
		}
		/* Every corruption is refused the same way, whole or in pieces. */
		for (i = 0; i < len; i++) {
			struct tbp_hdr d;
			int whole;

			frame[i] ^= 0x10;
			whole = tbp_frame_decode(frame, len, TBP_MAX_FRAME, &d);
			CHECK(whole != 0);
			CHECK(fr_decode3(frame, len, i / 2, i + 1 < len ? i + 1 : len, &got, &f) ==
			      whole);
			CHECK(fr_decode3(frame, len, 41, 41 + 40, &got, &f) == whole);
			frame[i] ^= 0x10;
		}
		/* Pieces one byte short, or a byte long, are short frames as a whole one is. */
		CHECK(fr_decode3(frame, len - 1, 10, 90, &got, &f) == TBP_DEC_SHORT);
		CHECK(fr_decode3(frame, 79, 10, 50, &got, &f) == TBP_DEC_SHORT);
	}
	frame[len] = 0;
	CHECK(fr_decode3(frame, len + 1, 10, 90, &got, &f) == TBP_DEC_SHORT);
	/* No pieces at all; pieces whose lengths add up past any frame (never read). */
	tbp_rxf_init(&f, NULL, 0);
	CHECK(tbp_rxf_decode(&f, TBP_MAX_FRAME, &got) == TBP_DEC_SHORT);
	{
		struct tbp_rx_frag huge[3] = { { frame, 100 }, { frame, (size_t)-50 }, { frame, 100 } };

		tbp_rxf_init(&f, huge, 3);
		CHECK(f.len == TBP_MAX_FRAME + 1);
		CHECK(tbp_rxf_decode(&f, TBP_MAX_FRAME, &got) == TBP_DEC_FIELD);
	}
}

struct fr_outcome {
	struct tbp_stats st[2];
	uint32_t ndone, nrc, copied;
	bool data_ok;
};

/*
 * A link brought up and used (WRITE, SEND, READ, atomic) with every frame, in both
 * directions, delivered in mode's pieces.
 */
static void fr_workload(uint32_t mode, struct fr_outcome *o)
{
	struct tbp_wr fa = { .opcode = TBP_OP_ATOMIC_FETCH_ADD, .qpn = 10, .wr_id = 4,
			     .local_buf = 60000, .len = 8, .rkey = 0x77, .raddr = 40000,
			     .compare_add = 5 };
	uint64_t v;

	fr_mode_now = mode;
	fr_seed = 1;
	p_copied_writes = 0;
	p_rx_hook = fr_hook;
	p_rail_frame = TBP_MAX_FRAME;
	pair_up(2);
	fill(P[0].local, 30000, 11);
	fill(P[1].mr + 20000, 7000, 12);
	memset(P[1].mr + 40000, 0, 8);
	P[1].recvs_posted = 2; /* WRITE_WITH_IMM takes one too */
	post(0, TBP_OP_RDMA_WRITE_WITH_IMM, 1, 0, 19990, 0x77, 3, 77);
	post(0, TBP_OP_SEND, 2, 20000, 5001, 0, 0, 0);
	post(0, TBP_OP_RDMA_READ, 3, 30000, 7000, 0x77, 20000, 0);
	CHECK(tbp_post(P[0].link, &fa) == 0);
	pair_run(NULL, 1000, 100);
	o->ndone = P[0].ndone;
	o->nrc = P[1].nrc;
	o->copied = p_copied_writes;
	memcpy(&v, P[1].mr + 40000, 8);
	o->data_ok = memcmp(P[1].mr + 3, P[0].local, 19990) == 0 &&
		     memcmp(P[1].recvbuf[1], P[0].local + 20000, 5001) == 0 &&
		     memcmp(P[0].local + 30000, P[1].mr + 20000, 7000) == 0 && v == 5;
	tbp_get_stats(P[0].link, &o->st[0]);
	tbp_get_stats(P[1].link, &o->st[1]);
	p_rx_hook = NULL;
	p_rail_frame = 0;
}

static bool fr_no_drops(const struct tbp_stats *s)
{
	return !s->drop_short && !s->drop_magic && !s->drop_checksum && !s->drop_field &&
	       !s->drop_session && !s->drop_rail && !s->drop_mac && !s->drop_replay &&
	       !s->drop_auth && !s->drop_bad_msg;
}

/*
 * The handshake and every kind of message work with frames in pieces, with the frame MAC,
 * with the payload CRC as well, and on a DMA rail (neither): the same data lands, the links
 * count what they count with whole frames, and no payload byte was copied out of the pieces
 * before its placement.
 */
static void test_rx_frags_transfer(void)
{
	static const uint32_t caps[3] = { TBP_CAP_FRAME_MAC,
					  TBP_CAP_FRAME_MAC | TBP_CAP_PAYLOAD_CSUM,
					  TBP_CAP_FRAME_MAC };
	struct fr_outcome ref, o;
	uint32_t c, mode, i;

	for (c = 0; c < 3; c++) {
		p_caps = caps[c];
		p_dma_rails = c == 2 ? 3 : 0;
		fr_workload(FR_WHOLE, &ref);
		CHECK(ref.ndone == 4 && ref.nrc == 2 && ref.data_ok);
		CHECK(fr_no_drops(&ref.st[0]) && fr_no_drops(&ref.st[1]));
		for (mode = FR_HEADER; mode < FR_MODES; mode++) {
			fr_workload(mode, &o);
			if (o.ndone != 4 || o.nrc != 2 || !o.data_ok || o.copied)
				printf("  caps %u mode %u: done %u recv %u data %d copied %u\n", c,
				       mode, o.ndone, o.nrc, o.data_ok, o.copied);
			CHECK(o.ndone == 4 && o.nrc == 2 && o.data_ok && o.copied == 0);
			for (i = 0; i < 2; i++) {
				CHECK(fr_no_drops(&o.st[i]));
				CHECK(o.st[i].rx_frames == ref.st[i].rx_frames);
				CHECK(o.st[i].rx_accepted == ref.st[i].rx_accepted);
				CHECK(o.st[i].msgs_received == ref.st[i].msgs_received);
			}
		}
	}
	p_caps = 0;
	p_dma_rails = 0;
}

/* The first data frame side 0 has queued (a WRITE of 3000 bytes), found by decoding. */
static struct pframe *fr_write_frame(void)
{
	uint32_t k;

	for (k = 0; k < P[0].nout; k++) {
		struct tbp_hdr h;

		if (!tbp_frame_decode(P[0].out[k].data, P[0].out[k].len, TBP_MAX_FRAME, &h) &&
		    h.opcode == TBP_W_WRITE)
			return &P[0].out[k];
	}
	return NULL;
}

/*
 * A corrupted frame is refused in pieces exactly as whole (same counter, nothing placed),
 * whether the flip is in the header, the payload or the trailer; the intact frame in pieces
 * is then accepted once.
 */
static void test_rx_frags_corrupt(void)
{
	static const uint32_t caps[2] = { TBP_CAP_FRAME_MAC, TBP_CAP_PAYLOAD_CSUM };
	static uint8_t before[P_MEM];
	uint32_t c, mode, k;

	for (c = 0; c < 2; c++) {
		struct tbp_stats a, b;
		struct pframe *f;
		uint32_t at[4];

		p_caps = caps[c];
		pair_up(1);
		fill(P[0].local, 3000, 21);
		post(0, TBP_OP_RDMA_WRITE, 1, 0, 3000, 0x77, 100, 0);
		f = fr_write_frame();
		CHECK(f != NULL);
		if (!f)
			break;
		at[0] = 13;                      /* header */
		at[1] = TBP_HDR_LEN + 1500;      /* payload */
		at[2] = f->len - 3;              /* tag, or the payload's last bytes */
		at[3] = f->len - 12;             /* counter, or payload */
		memcpy(before, P[1].mr, P_MEM);
		for (k = 0; k < 4; k++) {
			f->data[at[k]] ^= 0x40;
			for (mode = FR_WHOLE; mode < FR_MODES; mode++) {
				tbp_get_stats(P[1].link, &a);
				fr_rx(P[1].link, f->rail, f->data, f->len, mode, k);
				tbp_get_stats(P[1].link, &b);
				CHECK(b.rx_frames == a.rx_frames + 1 && b.rx_accepted == a.rx_accepted);
				CHECK(b.drop_checksum + b.drop_mac ==
				      a.drop_checksum + a.drop_mac + 1);
				/* The same counter as the whole frame's: header and payload flips are
				 * checksum drops without the MAC, header flips with it. */
				CHECK((b.drop_checksum > a.drop_checksum) ==
				      (k == 0 || caps[c] == TBP_CAP_PAYLOAD_CSUM));
			}
			f->data[at[k]] ^= 0x40;
		}
		CHECK(memcmp(before, P[1].mr, P_MEM) == 0);
		tbp_get_stats(P[1].link, &a);
		fr_rx(P[1].link, f->rail, f->data, f->len, FR_MANY, 5);
		fr_rx(P[1].link, f->rail, f->data, f->len, FR_BYTES, 5);
		tbp_get_stats(P[1].link, &b);
		CHECK(b.rx_accepted == a.rx_accepted + 1);
		CHECK(b.rx_duplicates + b.drop_replay == a.rx_duplicates + a.drop_replay + 1);
		CHECK(memcmp(P[1].mr + 100, P[0].local, 3000) == 0);
		pair_run(NULL, 1000, 50);
		CHECK(P[0].ndone == 1 && P[0].done_status[0] == TBP_OK);
	}
	p_caps = 0;
}

#define FRAGS_TESTS                                             \
	{ "rx_frags_nh", test_rx_frags_nh },                    \
	{ "rx_frags_decode", test_rx_frags_decode },            \
	{ "rx_frags_transfer", test_rx_frags_transfer },        \
	{ "rx_frags_corrupt", test_rx_frags_corrupt },
