# SPDX-License-Identifier: MIT
# ruff: noqa: F821 - the driver provides start_all, a, b, check_kernel_log, native_create
# UD QPs and address handles on tbrdma0 through pyverbs: a ping-pong between the nodes from
# 1 B to the 4096-byte MTU, byte-exact, every receive checked for its 40-byte GRH (an IPv4
# header naming both nodes), src_qp, IBV_WC_GRH, sl 2 (the GRH holds IPv4) and the
# immediate; the answer's AH built
# from the completion (ibv_create_ah_from_wc); a WR Q_Key with the high bit set taking the
# QP's own; a wrong Q_Key dropped and counted (ud_qkey_dropped); a message over the MTU not
# sent (IBA C10-93.1.1: a successful completion, nothing arrives, ud_oversize). Then, on one
# node, UD between two QPs of the same device (the loopback path, ud_loopback). AHs and QPs
# are gone again afterwards (configfs objects). Then RC and UC QPs of node a connected to each
# other and one RC QP connected to itself (the loop links, loop_frames; the cable carries none
# of it): SEND/RECV 1 B..4 MiB with immediates, WRITE, READ and both atomics, byte-exact; and
# rping between two rdma_cm ids on node a's own address (QP1 MADs delivered inside the
# device); mckey: a multicast group joined on b, fed from a. Last, what `ucx_info -d` says
# of tbrdma0.
# Globals (NixOS test driver subset): start_all, a, b, check_kernel_log.
import json
import secrets

KEY = secrets.token_hex(32)
ADDR = {"a": "10.77.0.1", "b": "10.77.0.2"}
PEER = r'''
# usage: peer.py server|client|self <server-ip> <port>. JSON lines over TCP on cable 0.
import hashlib
import ipaddress
import json
import random
import socket
import sys
import time

import struct

import pyverbs.enums as e
from pyverbs.addr import AH, GID, AHAttr, GlobalRoute
from pyverbs.cq import CQ
from pyverbs.device import Context
from pyverbs.mr import MR
from pyverbs.pd import PD
from pyverbs.qp import QP, QPAttr, QPCap, QPInitAttr
from pyverbs.wr import SGE, RecvWR, SendWR

MTU = 4096
GRH = 40
QKEY = 0x11111111
SIZES = [1, 2, 63, 64, 255, 256, 1000, 2048, 4095, 4096]
SLOT = GRH + MTU + 64  # one receive buffer
role, server_ip, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = Context(name="tbrdma0")
pd = PD(ctx)
gid = str(ctx.query_gid(1, 1))
failures = []
CNT = "/sys/class/infiniband/tbrdma0/ports/1/hw_counters/"


def check(cond, what):
    if not cond:
        failures.append(what)
        print(json.dumps({"failed": what}), flush=True)


def counter(name):
    with open(CNT + name) as f:
        return int(f.read())


def payload(seed, size):
    return random.Random(repr(seed)).randbytes(size)


def digest(data):
    return hashlib.sha256(data).hexdigest()


class UD:
    """A UD QP with its CQ and one MR: receive slots first, then a send area."""

    def __init__(self, slots=8):
        self.cq = CQ(ctx, 64)
        init = QPInitAttr(qp_type=e.IBV_QPT_UD, scq=self.cq, rcq=self.cq, sq_sig_all=1,
                          cap=QPCap(max_send_wr=32, max_recv_wr=32, max_send_sge=2,
                                    max_recv_sge=2, max_inline_data=256))
        attr = QPAttr(port_num=1)
        attr.qkey = QKEY
        attr.pkey_index = 0
        self.qp = QP(pd, init, attr)  # pyverbs takes a UD QP to RTS
        self.slots = slots
        self.send_at = slots * SLOT
        self.mr = MR(pd, self.send_at + MTU + 64, e.IBV_ACCESS_LOCAL_WRITE)
        self.next_slot = 0
        self.posted = []  # (wr_id, offset) of posted receives, oldest first

    def post_recv(self, wr_id):
        # two SGEs: the GRH lands across the first one's end
        at = (self.next_slot % self.slots) * SLOT
        self.next_slot += 1
        sg = [SGE(self.mr.buf + at, 24, self.mr.lkey),
              SGE(self.mr.buf + at + 24, SLOT - 24, self.mr.lkey)]
        self.qp.post_recv(RecvWR(wr_id=wr_id, num_sge=2, sg=sg))
        self.posted.append((wr_id, at))

    def send(self, ah, qpn, data, wr_id, qkey=QKEY, imm=None, inline=False):
        if data:
            self.mr.write(data, len(data), self.send_at)
        half = len(data) // 2
        sg = ([SGE(self.mr.buf + self.send_at, half, self.mr.lkey),
               SGE(self.mr.buf + self.send_at + half, len(data) - half, self.mr.lkey)]
              if half else [SGE(self.mr.buf + self.send_at, len(data), self.mr.lkey)])
        # imm_data is __be32 in ibv_send_wr: pyverbs stores the value as given
        wr = SendWR(wr_id=wr_id, num_sge=len(sg), sg=sg,
                    opcode=e.IBV_WR_SEND_WITH_IMM if imm is not None else e.IBV_WR_SEND,
                    imm_data=socket.htonl(imm) if imm is not None else 0,
                    send_flags=e.IBV_SEND_SIGNALED | (e.IBV_SEND_INLINE if inline else 0))
        wr.set_wr_ud(ah, qpn, qkey)
        self.qp.post_send(wr)

    def poll(self, count=1, timeout=60):
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            n, wcs = self.cq.poll(count - len(got))
            got.extend(wcs[:n])
            if len(got) < count:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{role}: {len(got)} of {count} completions")
                time.sleep(0.002)
        return got

    def nothing(self, what, settle=1.0):
        time.sleep(settle)
        n, wcs = self.cq.poll(1)
        check(n == 0, f"{what}: unexpected completion {wcs[0] if n else ''}")

    def sent(self, what, wr_id):
        (wc,) = self.poll()
        check(wc.status == e.IBV_WC_SUCCESS and wc.wr_id == wr_id and
              wc.opcode == e.IBV_WC_SEND, f"{what}: send completion {wc}")

    def received(self, what, data, src_qp, src_ip, dst_ip, imm=None):
        """The oldest posted receive: fields, the IPv4 GRH, the bytes after it."""
        wr_id, at = self.posted.pop(0)
        (wc,) = self.poll()
        check(wc.status == e.IBV_WC_SUCCESS, f"{what}: status {wc.status}")
        check(wc.wr_id == wr_id and wc.opcode == e.IBV_WC_RECV, f"{what}: wr_id/opcode")
        check(wc.byte_len == GRH + len(data), f"{what}: byte_len {wc.byte_len}")
        self.last_at = at
        check(wc.src_qp == src_qp, f"{what}: src_qp {wc.src_qp}, want {src_qp}")
        check(wc.qp_num == self.qp.qp_num, f"{what}: qp_num {wc.qp_num}")
        want_flags = e.IBV_WC_GRH | (e.IBV_WC_WITH_IMM if imm is not None else 0)
        check(wc.wc_flags == want_flags, f"{what}: wc_flags {wc.wc_flags:#x}")
        # the GRH's kind, as mlx5 reports it for RoCE UD (2: IPv4), which UCX relies on
        check(wc.sl == 2, f"{what}: sl {wc.sl}, want 2 (an IPv4 header in the GRH)")
        if imm is not None:
            check(socket.ntohl(wc.imm_data) == imm, f"{what}: imm {wc.imm_data:#x}")
        grh = self.mr.read(GRH, at)
        ip = grh[20:]
        check(ip[0] == 0x45 and ip[9] == 17, f"{what}: GRH not an IPv4/UDP header {ip.hex()}")
        check(str(ipaddress.IPv4Address(ip[12:16])) == src_ip and
              str(ipaddress.IPv4Address(ip[16:20])) == dst_ip,
              f"{what}: GRH addresses {ip[12:16].hex()} -> {ip[16:20].hex()}")
        check(int.from_bytes(ip[2:4], "big") == 20 + 8 + 24 + len(data),
              f"{what}: GRH total length {int.from_bytes(ip[2:4], 'big')}")
        check(digest(self.mr.read(len(data), at + GRH)) == digest(data) if data else True,
              f"{what}: data differs")
        return wc

    def close(self):
        self.qp.close()
        self.mr.close()
        self.cq.close()


def make_ah(peer_gid):
    return AH(pd, attr=AHAttr(port_num=1, is_global=1,
                              gr=GlobalRoute(dgid=GID(peer_gid), sgid_index=1)))


def own_ip():
    return str(ipaddress.IPv6Address(gid).ipv4_mapped)


class Channel:
    def __init__(self, sock):
        self.file = sock.makefile("rw")

    def send(self, obj):
        self.file.write(json.dumps(obj) + "\n")
        self.file.flush()

    def recv(self):
        line = self.file.readline()
        if not line:
            raise SystemExit("control connection closed")
        return json.loads(line)


def serve():
    """Answers every datagram with the same bytes, to an AH built from its completion."""
    listener = socket.create_server((server_ip, port))
    open("/tmp/tbud/server.listening", "w").write("1")
    chan = Channel(listener.accept()[0])
    ud = UD()
    peer = chan.recv()
    chan.send({"qpn": ud.qp.qp_num, "gid": gid})
    peer_ip = str(ipaddress.IPv6Address(peer["gid"]).ipv4_mapped)
    ah_attr_ah = make_ah(peer["gid"])
    while True:
        req = chan.recv()
        if req["op"] == "quit":
            ah_attr_ah.close()
            ud.close()
            chan.send({"failures": failures})
            return
        if req["op"] == "counter":
            chan.send({"value": counter(req["name"])})
            continue
        ud.post_recv(req["wr_id"])
        chan.send({"posted": True})
        if req["op"] == "expect_nothing":
            ud.nothing(req["what"], settle=3.0)
            chan.send({"done": True})
            # the receive is still posted: take it back with the next datagram
            continue
        data = payload(req["seed"], req["size"])
        wc = ud.received(req["what"], data, peer["qpn"], peer_ip, own_ip(),
                         imm=req.get("imm"))
        # answer through an AH made from the completion and its GRH, as a MAD agent does
        ah = AH(pd, wc=wc, grh=ud.mr.buf + ud.last_at, port_num=1)
        ud.send(ah, wc.src_qp, data, req["wr_id"], inline=len(data) <= 256)
        ud.sent(req["what"] + " (answer)", req["wr_id"])
        ah.close()
        chan.send({"answered": True})


def client():
    deadline = time.monotonic() + 120
    while True:
        try:
            sock = socket.create_connection((server_ip, port), timeout=10)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    sock.settimeout(300)
    chan = Channel(sock)
    ud = UD()
    chan.send({"qpn": ud.qp.qp_num, "gid": gid})
    peer = chan.recv()
    peer_ip = str(ipaddress.IPv6Address(peer["gid"]).ipv4_mapped)
    ah = make_ah(peer["gid"])
    ids = iter(range(1, 1 << 30))

    def ping(what, size, qkey=QKEY, imm=None, inline=False):
        rid = next(ids)
        seed = (what, size)
        chan.send({"op": "recv", "what": what, "size": size, "seed": repr(seed),
                   "wr_id": rid, "imm": imm})
        chan.recv()
        data = payload(repr(seed), size)
        ud.post_recv(rid)
        ud.send(ah, peer["qpn"], data, rid, qkey=qkey, imm=imm, inline=inline)
        ud.sent(what, rid)
        ud.received(what + " (answer)", data, peer["qpn"], peer_ip, own_ip())
        chan.recv()
        print(json.dumps({"ping": what, "size": size}), flush=True)

    started = time.monotonic()
    for size in SIZES:
        ping(f"UD {size}", size)
    ping("UD SEND_WITH_IMM 100", 100, imm=0xfeedf00d)
    ping("UD inline 200", 200, inline=True)
    # IBA 10.2.5: a WR Q_Key with the high bit set means the QP's own Q_Key
    ping("UD Q_Key 0x80000000", 77, qkey=0x80000000)
    print(json.dumps({"pingpong_s": round(time.monotonic() - started, 1)}), flush=True)

    def peer_counter(name):
        chan.send({"op": "counter", "name": name})
        return chan.recv()["value"]

    # a wrong Q_Key: sent fine here, dropped silently there and counted
    before = peer_counter("ud_qkey_dropped")
    rid = next(ids)
    chan.send({"op": "expect_nothing", "what": "wrong Q_Key", "wr_id": rid})
    chan.recv()
    ud.send(ah, peer["qpn"], payload("bad qkey", 64), rid, qkey=0x22222222)
    ud.sent("wrong Q_Key", rid)
    chan.recv()
    after = peer_counter("ud_qkey_dropped")
    check(after == before + 1, f"ud_qkey_dropped {before} -> {after}")
    print(json.dumps({"qkey_dropped": after - before}), flush=True)

    # over the MTU: IBA C10-93.1.1 (and rxe): nothing is sent, and no error either
    before = counter("ud_oversize")
    rid = next(ids)
    chan.send({"op": "expect_nothing", "what": "over MTU", "wr_id": rid})
    chan.recv()
    ud.send(ah, peer["qpn"], payload("big", MTU + 1), rid)
    ud.sent("over MTU", rid)
    chan.recv()
    check(counter("ud_oversize") == before + 1, "ud_oversize did not count the send")
    print(json.dumps({"oversize": counter("ud_oversize") - before}), flush=True)

    # the server still holds two receives posted for the dropped datagrams: a ping uses
    # the first, its answer must still be right
    ping("UD after drops", 33)
    chan.send({"op": "quit"})
    server_failures = chan.recv()["failures"]
    check(not server_failures, f"server: {server_failures}")
    ah.close()
    ud.close()


def self_test():
    """UD between two QPs of this device: the datagram never leaves it."""
    x, y = UD(), UD()
    ah = make_ah(gid)
    before = counter("ud_loopback")
    ip = own_ip()
    for i, size in enumerate(SIZES):
        data = payload(("self", size), size)
        y.post_recv(i)
        x.send(ah, y.qp.qp_num, data, i, inline=size <= 256 and i % 2 == 0)
        x.sent(f"self {size}", i)
        y.received(f"self {size}", data, x.qp.qp_num, ip, ip)
        # and back
        x.post_recv(100 + i)
        y.send(ah, x.qp.qp_num, data, 100 + i, imm=i)
        y.sent(f"self back {size}", 100 + i)
        x.received(f"self back {size}", data, y.qp.qp_num, ip, ip, imm=i)
    looped = counter("ud_loopback") - before
    check(looped == 2 * len(SIZES), f"ud_loopback moved by {looped}")
    q = counter("ud_qkey_dropped")
    y.post_recv(999)
    x.send(ah, y.qp.qp_num, b"x" * 8, 999, qkey=QKEY + 1)
    x.sent("self wrong Q_Key", 999)
    y.nothing("self wrong Q_Key")
    check(counter("ud_qkey_dropped") == q + 1, "self wrong Q_Key not counted")
    print(json.dumps({"self": len(SIZES), "loopback": looped}), flush=True)
    ah.close()
    x.close()
    y.close()


RC_SIZES = [1, 64, 4095, 4096, 65536, 1 << 20, 4 << 20]
RX = RC_SIZES[-1]  # an MR's receiving half starts here: a QP connected to itself never
# reads back what it just wrote to the same bytes
RC_ACCESS = (e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_REMOTE_WRITE | e.IBV_ACCESS_REMOTE_READ
             | e.IBV_ACCESS_REMOTE_ATOMIC)


class RC:
    """An RC or UC QP of this device, its CQ and one MR of the largest size."""

    def __init__(self, qp_type=e.IBV_QPT_RC):
        self.cq = CQ(ctx, 256)
        init = QPInitAttr(qp_type=qp_type, scq=self.cq, rcq=self.cq, sq_sig_all=1,
                          cap=QPCap(max_send_wr=64, max_recv_wr=64, max_send_sge=1,
                                    max_recv_sge=1))
        attr = QPAttr(port_num=1)
        attr.qp_access_flags = RC_ACCESS if qp_type == e.IBV_QPT_RC else (
            e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_REMOTE_WRITE)
        self.qp = QP(pd, init, attr)
        self.mr = MR(pd, 2 * RX, RC_ACCESS)

    def connect(self, peer_qpn):
        attr = QPAttr(port_num=1)
        attr.path_mtu = e.IBV_MTU_4096
        attr.max_dest_rd_atomic = 4
        attr.max_rd_atomic = 4
        attr.min_rnr_timer = 1
        attr.rnr_retry = 7
        attr.retry_cnt = 7
        attr.timeout = 14
        attr.ah_attr = AHAttr(port_num=1, is_global=1,
                              gr=GlobalRoute(dgid=GID(gid), sgid_index=1))
        attr.dest_qp_num = peer_qpn
        self.qp.to_rts(attr)

    def post_recv(self, wr_id, size):
        self.qp.post_recv(RecvWR(wr_id, 1, [SGE(self.mr.buf + RX, size, self.mr.lkey)]))

    def post(self, wr_id, opcode, size, peer=None, imm=None, atomic=None):
        wr = SendWR(wr_id=wr_id, opcode=opcode, num_sge=1,
                    sg=[SGE(self.mr.buf, size, self.mr.lkey)], send_flags=e.IBV_SEND_SIGNALED)
        if peer is not None and atomic is not None:
            wr.set_wr_atomic(peer.mr.rkey, peer.mr.buf + RX, *atomic)
        elif peer is not None:
            wr.set_wr_rdma(peer.mr.rkey, peer.mr.buf + RX)
        if imm is not None:
            wr.imm_data = imm
        self.qp.post_send(wr)

    def wc(self, what, timeout=120):
        end = time.time() + timeout
        while time.time() < end:
            n, wcs = self.cq.poll(1)
            if n:
                check(wcs[0].status == e.IBV_WC_SUCCESS,
                      f"{what}: status {wcs[0].status} vendor_err {wcs[0].vendor_err}")
                return wcs[0]
            time.sleep(0.0005)
        check(False, f"{what}: no completion in {timeout} s")
        return None

    def close(self):
        self.qp.close()
        self.mr.close()
        self.cq.close()


def rc_pair(x, y, tag):
    """SEND/RECV with immediates, WRITE and READ, 1 B..4 MiB, byte-exact, both ways. Each
    side sends from the first half of its MR and is written into in the second."""
    for i, size in enumerate(RC_SIZES):
        for src, dst, way in ((x, y, "x->y"), (y, x, "y->x")):
            data = payload((tag, way, size), size)
            src.mr.write(data, size, 0)
            dst.post_recv(i, size)
            src.post(i, e.IBV_WR_SEND_WITH_IMM, size, imm=0x1000 + i)
            wcs = [src.wc(f"{tag} send {way} {size}"), dst.wc(f"{tag} recv {way} {size}")]
            # a QP connected to itself has one CQ: its two completions come in either order
            wc = next((w for w in wcs if w is not None and w.opcode == e.IBV_WC_RECV), None)
            check(wc is not None and wc.byte_len == size and wc.imm_data == 0x1000 + i,
                  f"{tag} recv {way} {size}: {wc and (wc.byte_len, wc.imm_data)}")
            check(digest(dst.mr.read(size, RX)) == digest(data), f"{tag} send data {way} {size}")
            data = payload((tag, "write", way, size), size)
            src.mr.write(data, size, 0)
            src.post(100 + i, e.IBV_WR_RDMA_WRITE, size, peer=dst)
            src.wc(f"{tag} write {way} {size}")
            check(digest(dst.mr.read(size, RX)) == digest(data), f"{tag} write data {way} {size}")
            data = payload((tag, "read", way, size), size)
            dst.mr.write(data, size, RX)
            src.post(200 + i, e.IBV_WR_RDMA_READ, size, peer=dst)
            src.wc(f"{tag} read {way} {size}")
            check(digest(src.mr.read(size, 0)) == digest(data), f"{tag} read data {way} {size}")


def rc_atomics(x, y):
    y.mr.write(struct.pack("<Q", 40), 8, RX)
    x.post(300, e.IBV_WR_ATOMIC_FETCH_AND_ADD, 8, peer=y, atomic=(2, 0))
    x.wc("loop fetch_add")
    check(struct.unpack("<Q", x.mr.read(8, 0))[0] == 40, "loop fetch_add original")
    x.post(301, e.IBV_WR_ATOMIC_CMP_AND_SWP, 8, peer=y, atomic=(42, 7))
    x.wc("loop cmp_swp")
    check(struct.unpack("<Q", x.mr.read(8, 0))[0] == 42, "loop cmp_swp original")
    check(struct.unpack("<Q", y.mr.read(8, RX))[0] == 7, "loop cmp_swp result")


def rc_loop_test():
    """RC/UC between QPs of this device and an RC QP connected to itself: the loop links."""
    before = {n: counter(n) for n in ("loop_frames", "tx_data_frames")}
    x, y = RC(), RC()
    x.connect(y.qp.qp_num)
    y.connect(x.qp.qp_num)
    rc_pair(x, y, "rc")
    rc_atomics(x, y)
    x.close()
    y.close()
    s = RC()
    s.connect(s.qp.qp_num)
    rc_pair(s, s, "self")
    s.close()
    u, v = RC(e.IBV_QPT_UC), RC(e.IBV_QPT_UC)
    u.connect(v.qp.qp_num)
    v.connect(u.qp.qp_num)
    data = payload("uc", 65536)
    u.mr.write(data, len(data), 0)
    u.post(1, e.IBV_WR_RDMA_WRITE, len(data), peer=v)
    u.wc("uc write")
    check(digest(v.mr.read(len(data), RX)) == digest(data), "uc write data")
    u.close()
    v.close()
    looped = counter("loop_frames") - before["loop_frames"]
    cable = counter("tx_data_frames") - before["tx_data_frames"]
    # Two 4 MiB messages each way per pair are over 4000 frames; the cable saw none of them.
    check(looped > 4000, f"loop_frames moved by {looped}")
    check(cable < 50, f"the cable carried {cable} data frames of loopback traffic")
    print(json.dumps({"rc_loop": "ok", "loop_frames": looped, "cable_data_frames": cable}),
          flush=True)


if role == "server":
    serve()
elif role == "client":
    client()
elif role == "rc-loop":
    rc_loop_test()
else:
    self_test()
print(json.dumps({"role": role, "failures": len(failures)}), flush=True)
sys.exit(1 if failures else 0)
'''
OBJECTS = "cat /sys/kernel/config/tbrdma/tbrdma0/objects"


def run(m, args, timeout):
    m.succeed(f"(python3 /tmp/tbud/peer.py {args} > /tmp/tbud/out 2> /tmp/tbud/err; "
              "echo $? > /tmp/tbud/rc) > /dev/null 2>&1 &")
    return lambda: m.wait_until_succeeds("test -s /tmp/tbud/rc", timeout=timeout)


def result(m):
    rc = m.succeed("cat /tmp/tbud/rc").strip()
    out = m.succeed("cat /tmp/tbud/out /tmp/tbud/err")
    print(f"{m.name} (exit {rc}):\n{out}")
    return rc, out


start_all()
for m in (a, b):
    m.wait_for_unit("multi-user.target")

# 1. a device on cable 0.
for m, initiator in ((a, 1), (b, 0)):
    m.succeed("modprobe tbrdma")
    m.succeed("ip link set thunderbolt0 mtu 9000")
    m.succeed(f"ip addr replace {ADDR[m.name]}/24 dev thunderbolt0")
    native_create(m, "thunderbolt0", KEY, initiator)
for m in (a, b):
    m.wait_until_succeeds("grep -q ACTIVE /sys/class/infiniband/tbrdma0/ports/1/state",
                          timeout=120)
    m.succeed("rm -rf /tmp/tbud && mkdir -p /tmp/tbud && cat > /tmp/tbud/peer.py <<'EOF'\n"
              + PEER + "\nEOF")
objects_before = {m.name: m.succeed(OBJECTS) for m in (a, b)}

# 2. UD between the nodes (client on a, server on b).
b_done = run(b, f"server {ADDR['b']} 18710", 300)
b.wait_until_succeeds("test -e /tmp/tbud/server.listening", timeout=120)
a_done = run(a, f"client {ADDR['b']} 18710", 600)
a_done()
b_done()
(a_rc, a_out), (b_rc, b_out) = result(a), result(b)
assert a_rc == "0" and b_rc == "0", (a_out, b_out)
pings = [json.loads(line) for line in a_out.splitlines() if line.startswith('{"ping"')]
assert len(pings) == 14, pings

# 3. UD between two QPs of node a (loopback inside the device).
a.succeed("rm -f /tmp/tbud/rc")
run(a, "self 0 0", 300)()
rc, out = result(a)
assert rc == "0" and '"loopback": 20' in out, out
for m in (a, b):
    print(m.succeed("rdma statistic show link tbrdma0/1 | tr ' ' '\\n' | grep -A1 '^ud_'"))
    assert m.succeed(OBJECTS) == objects_before[m.name], (objects_before[m.name],
                                                           m.succeed(OBJECTS))
    check_kernel_log(m)

# 3b. RC/UC QPs of node a connected to each other and to themselves (the loop links).
a.succeed("rm -f /tmp/tbud/rc")
run(a, "rc-loop 0 0", 600)()
rc, out = result(a)
assert rc == "0" and '"rc_loop": "ok"' in out, out

# 3c. rdma_cm between two ids of node a: rping to its own address, data verified (-V).
rping = a.succeed(f"timeout 120 rping -s -a {ADDR['a']} -p 18720 -C 5 -S 1000 -V "
                  "> /tmp/tbud/rping-s 2>&1 & sleep 2; "
                  f"timeout 120 rping -c -a {ADDR['a']} -p 18720 -C 5 -S 1000 -V -v 2>&1; "
                  "echo client-exit=$?; wait; echo server-exit=$?; cat /tmp/tbud/rping-s")
print(rping)
assert "client-exit=0" in rping and "server-exit=0" in rping, rping
assert rping.count("ping data:") >= 5, rping

# 3d. multicast between the nodes: librdmacm's mckey on b joins a group and receives what
# mckey on a (joined as a sender) sends to it; the datagrams cross the cable.
b.succeed("(timeout 120 stdbuf -oL mckey -m 239.7.7.7 -b 10.77.0.2 -C 4 -S 256 > /tmp/tbud/mckey "
          "2>&1; echo $? > /tmp/tbud/mckey.rc) > /dev/null 2>&1 &")
b.wait_until_succeeds("grep -q 'receiving data transfers' /tmp/tbud/mckey", timeout=60)
sender = a.succeed("timeout 120 mckey -m 239.7.7.7 -b 10.77.0.1 -s -C 4 -S 256 2>&1")
b.wait_until_succeeds("test -s /tmp/tbud/mckey.rc", timeout=120)
receiver = b.succeed("cat /tmp/tbud/mckey /tmp/tbud/mckey.rc")
print(f"mckey sender (a):\n{sender}\nmckey receiver (b):\n{receiver}")
assert receiver.strip().endswith("0") and "data transfers complete" in receiver, receiver

# 4. what UCX makes of the device (printed: ucx_info's transports on tbrdma0).
ucx = a.succeed("command -v ucx_info > /dev/null && ucx_info -d 2>&1 | "
                "grep -B2 -A12 'Device: tbrdma0' || echo 'ucx_info not installed'")
print(ucx)

# 5. teardown: the device and the module go away cleanly.
for m in (a, b):
    m.succeed("PYTHONPATH=/usr/local/lib/tbctl python3 -c 'from tbctl.node import native; "
              "native.destroy(\"tbrdma0\")'")
    m.succeed("modprobe -r tbrdma")
    check_kernel_log(m)
