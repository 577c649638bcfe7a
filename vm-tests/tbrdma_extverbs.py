# SPDX-License-Identifier: MIT
# ruff: noqa: F821 - the driver provides start_all, a, b
# The extended verbs on tbrdma0 between the two nodes, through pyverbs' QPEx and CQEX:
# SEND, SEND_WITH_IMM, RDMA_WRITE, RDMA_WRITE_WITH_IMM and RDMA_READ built with the ibv_wr_*
# API (one WR per region and several in one), inline data through wr_set_inline_data(_list)
# copied at the setter, wr_abort posting nothing; every completion on both sides polled with
# start_poll/next_poll/end_poll and checked field by field; data byte-exact. Refused: a
# completion timestamp, IGNORE_OVERRUN, bind_mw on UD, READ on UC, inline past
# max_inline_data and too many SGEs, each with its errno and nothing posted; a post whose
# num_sge would have libibverbs overflow its stack is EINVAL, not a crash. The send_inv send
# op is accepted on RC and UC (SEND with Invalidate: tbrdma_semantics.py's send_with_inv),
# bind_mw, local_inv, atomic_write and flush on RC (the mapped send queue; windows:
# tbrdma_semantics.py's memory_windows, rdma-core's suite).
# Globals (NixOS test driver subset): start_all, a, b.
import json
import secrets

KEY = secrets.token_hex(32)
ADDR = {"a": "10.77.0.1", "b": "10.77.0.2"}
PEER = r'''
# usage: peer.py server|client <server-ip> <port>. JSON lines over TCP on cable 0; the
# client drives, the server posts receives and checks what arrives.
import errno
import hashlib
import json
import os
import random
import socket
import sys
import time

import pyverbs.enums as e
from pyverbs.addr import GID, AHAttr, GlobalRoute
from pyverbs.cq import CQEX, CqInitAttrEx, PollCqAttr
from pyverbs.device import Context
from pyverbs.mr import MR
from pyverbs.pd import PD
from pyverbs.pyverbs_error import PyverbsRDMAError
from pyverbs.qp import DataBuffer, QPAttr, QPCap, QPEx, QPInitAttrEx
from pyverbs.wr import SGE, RecvWR, SendWR

ACCESS = e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_REMOTE_WRITE | e.IBV_ACCESS_REMOTE_READ
WC_FLAGS = (e.IBV_WC_EX_WITH_BYTE_LEN | e.IBV_WC_EX_WITH_IMM | e.IBV_WC_EX_WITH_QP_NUM
            | e.IBV_WC_EX_WITH_SRC_QP | e.IBV_WC_EX_WITH_SLID | e.IBV_WC_EX_WITH_SL
            | e.IBV_WC_EX_WITH_DLID_PATH_BITS)
OPS = (e.IBV_QP_EX_WITH_SEND | e.IBV_QP_EX_WITH_SEND_WITH_IMM | e.IBV_QP_EX_WITH_RDMA_WRITE
       | e.IBV_QP_EX_WITH_RDMA_WRITE_WITH_IMM | e.IBV_QP_EX_WITH_RDMA_READ)
MIB = 1 << 20
# the server's MR: [0, 1 MiB) receives and WRITE_WITH_IMM, [WRITE_AT, +1 MiB) RDMA WRITE,
# [READ_AT, +1 MiB) the source of every READ
WRITE_AT, READ_AT = MIB, 2 * MIB
SIZES = [1, 200, 4096, 65537, MIB]
role, server_ip, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = Context(name="tbrdma0")
pd = PD(ctx)
gid = str(ctx.query_gid(1, 1))
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print(json.dumps({"failed": what}), flush=True)


def payload(seed, size):
    # Python 3.11+ seeds only from None, numbers, str and bytes: name tuples as text
    return random.Random(repr(seed)).randbytes(size)


def digest(data):
    return hashlib.sha256(data).hexdigest()


def make_cq(wc_flags=WC_FLAGS, **kw):
    return CQEX(ctx, CqInitAttrEx(cqe=256, wc_flags=wc_flags, **kw))


def make_qp(cq, ops=OPS, qp_type=e.IBV_QPT_RC):
    init = QPInitAttrEx(qp_type=qp_type, scq=cq, rcq=cq, pd=pd, sq_sig_all=0,
                        cap=QPCap(max_send_wr=64, max_recv_wr=64, max_send_sge=2,
                                  max_recv_sge=2, max_inline_data=256),
                        comp_mask=e.IBV_QP_INIT_ATTR_PD | e.IBV_QP_INIT_ATTR_SEND_OPS_FLAGS,
                        send_ops_flags=ops)
    attr = QPAttr(port_num=1)
    attr.qp_access_flags = ACCESS
    return QPEx(ctx, init, attr)


def connect(qp, peer):
    attr = QPAttr(port_num=1)
    attr.path_mtu = e.IBV_MTU_4096
    attr.max_dest_rd_atomic = 16
    attr.max_rd_atomic = 16
    attr.min_rnr_timer = 1
    attr.rnr_retry = 7
    attr.retry_cnt = 7
    attr.timeout = 14
    attr.ah_attr = AHAttr(port_num=1, is_global=1,
                          gr=GlobalRoute(dgid=GID(peer["gid"]), sgid_index=1))
    attr.dest_qp_num = peer["qpn"]
    qp.to_rts(attr)


def read_wc(cq):
    # imm_data is __be32 as the API returns it; pyverbs' wr_*_imm wrote it with htobe32
    return {"wr_id": cq.wr_id, "status": cq.status, "opcode": cq.read_opcode(),
            "vendor_err": cq.read_vendor_err(), "byte_len": cq.read_byte_len(),
            "imm": socket.ntohl(cq.read_imm_data()), "qp_num": cq.read_qp_num(),
            "src_qp": cq.read_src_qp(), "wc_flags": cq.read_wc_flags(),
            "slid": cq.read_slid(), "sl": cq.read_sl(),
            "dlid_path_bits": cq.read_dlid_path_bits()}


def poll(cq, count, per_region=None, timeout=120):
    """count completions, at most per_region read between one start_poll and end_poll
    (the rest of a fetched batch must wait for the next start_poll, not vanish)."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        ret = cq.start_poll(PollCqAttr())
        if ret == errno.ENOENT:
            if time.monotonic() > deadline:
                raise SystemExit(f"{role}: {len(got)} of {count} completions in {timeout} s")
            time.sleep(0.002)
            continue
        if ret:
            raise SystemExit(f"{role}: start_poll returned {ret}")
        in_region = 0
        while True:
            got.append(read_wc(cq))
            in_region += 1
            if len(got) == count or in_region == per_region:
                break
            ret = cq.poll_next()
            if ret == errno.ENOENT:
                break
            if ret:
                raise SystemExit(f"{role}: next_poll returned {ret}")
        cq.end_poll()
    return got


def bad_wr(cls, num_sge):
    wr = cls(num_sge=1, sg=[SGE(0, 8, 0)])
    wr.num_sge = num_sge
    return wr


def nothing_more(cq, what, settle=1.0):
    time.sleep(settle)
    ret = cq.start_poll(PollCqAttr())
    if ret == 0:
        extra = read_wc(cq)
        cq.end_poll()
        check(False, f"{what}: unexpected completion {extra}")
    else:
        check(ret == errno.ENOENT, f"{what}: start_poll on an empty CQ returned {ret}")


def expect_fields(wc, what, **want):
    for name, value in want.items():
        check(wc[name] == value, f"{what}: {name} {wc[name]}, expected {value}")


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
    listener = socket.create_server((server_ip, port))
    open("/tmp/tbext/server.listening", "w").write("1")
    chan = Channel(listener.accept()[0])
    cq = make_cq()
    qp = make_qp(cq)
    mr = MR(pd, 3 * MIB, ACCESS)
    mr.write(payload("read-source", MIB), MIB, READ_AT)
    peer = chan.recv()
    connect(qp, peer)
    chan.send({"qpn": qp.qp_num, "gid": gid, "rkey": mr.rkey, "addr": mr.buf})
    while True:
        req = chan.recv()
        if req["op"] == "quit":
            chan.send({"failures": failures})
            return
        if req["op"] == "digest":
            chan.send({"digest": digest(mr.read(req["size"], req["offset"]))})
            continue
        # "recv": post one receive (two SGEs) into [0, size), report, then check what lands
        size, what = req["size"], req["what"]
        half = size // 2
        sg = ([SGE(mr.buf, half, mr.lkey), SGE(mr.buf + half, size - half, mr.lkey)]
              if half else [SGE(mr.buf, size, mr.lkey)])
        qp.post_recv(RecvWR(wr_id=req["wr_id"], num_sge=len(sg), sg=sg))
        chan.send({"posted": True})
        (wc,) = poll(cq, 1)
        imm = req.get("imm")
        expect_fields(wc, what, wr_id=req["wr_id"], status=e.IBV_WC_SUCCESS,
                      opcode=req["opcode"], vendor_err=0, byte_len=req["len"],
                      qp_num=qp.qp_num, src_qp=peer["qpn"], slid=0, sl=0, dlid_path_bits=0,
                      wc_flags=e.IBV_WC_WITH_IMM if imm is not None else 0)
        if imm is not None:
            expect_fields(wc, what, imm=imm)
        chan.send({"wc": wc, "digest": digest(mr.read(req["len"], 0))})


def refusals():
    """Unsupported requests fail cleanly with their errno; nothing half-created."""
    def refused(what, want, create):
        try:
            obj = create()
        except PyverbsRDMAError as err:
            check(err.error_code == want, f"{what}: errno {err.error_code}, want {want}")
            print(json.dumps({"refused": what, "errno": err.error_code}), flush=True)
            return
        obj.close()
        check(False, f"{what}: accepted")

    refused("cq completion timestamp", errno.EOPNOTSUPP,
            lambda: make_cq(WC_FLAGS | e.IBV_WC_EX_WITH_COMPLETION_TIMESTAMP))
    refused("cq IGNORE_OVERRUN", errno.EOPNOTSUPP,
            lambda: make_cq(comp_mask=e.IBV_CQ_INIT_ATTR_MASK_FLAGS,
                            flags=e.IBV_CREATE_CQ_ATTR_IGNORE_OVERRUN))
    cq = make_cq()
    # (atomics are supported on RC: tbrdma_atomics.py)
    for name, ops, qpt in (("bind_mw on UD", e.IBV_QP_EX_WITH_BIND_MW, e.IBV_QPT_UD),
                           ("READ on UC", e.IBV_QP_EX_WITH_RDMA_READ, e.IBV_QPT_UC)):
        refused(f"qp send op {name}", errno.EOPNOTSUPP,
                lambda ops=ops, qpt=qpt: make_qp(cq, e.IBV_QP_EX_WITH_SEND | ops, qpt))
    for qpt in (e.IBV_QPT_RC, e.IBV_QPT_UC):
        make_qp(cq, e.IBV_QP_EX_WITH_SEND | e.IBV_QP_EX_WITH_SEND_WITH_INV, qpt).close()
        print(json.dumps({"accepted": f"qp send op send_with_inv on {qpt}"}), flush=True)
    make_qp(cq, e.IBV_QP_EX_WITH_SEND | e.IBV_QP_EX_WITH_BIND_MW | e.IBV_QP_EX_WITH_LOCAL_INV
            | e.IBV_QP_EX_WITH_ATOMIC_WRITE | e.IBV_QP_EX_WITH_FLUSH, e.IBV_QPT_RC).close()
    print(json.dumps({"accepted": "qp send ops bind_mw local_inv atomic_write flush on RC"}),
          flush=True)
    # the UC QP the refused op was asked of exists without it
    make_qp(cq, OPS & ~e.IBV_QP_EX_WITH_RDMA_READ, e.IBV_QPT_UC).close()
    cq.close()


def client():
    refusals()
    deadline = time.monotonic() + 120
    while True:
        try:
            sock = socket.create_connection((server_ip, port), timeout=10)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    sock.settimeout(600)
    chan = Channel(sock)
    cq = make_cq()
    qp = make_qp(cq)
    mr = MR(pd, 2 * MIB, ACCESS)
    chan.send({"qpn": qp.qp_num, "gid": gid})
    peer = chan.recv()
    connect(qp, peer)
    next_id = iter(range(1, 1 << 30))

    def sges(size, offset=0):
        half = size // 2
        if size < 2:
            return [SGE(mr.buf + offset, size, mr.lkey)]
        return [SGE(mr.buf + offset, half, mr.lkey),
                SGE(mr.buf + offset + half, size - half, mr.lkey)]

    def own(what, opcode, wr_id, byte_len=None):
        (wc,) = poll(cq, 1)
        want = {"wr_id": wr_id, "status": e.IBV_WC_SUCCESS, "opcode": opcode,
                "vendor_err": 0, "qp_num": qp.qp_num}
        if byte_len is not None:
            want["byte_len"] = byte_len
        expect_fields(wc, what, **want)

    def received(what, size, build, opcode=e.IBV_WC_RECV, imm=None, data=None):
        """The server posts a receive; build() posts our side in one wr_* region."""
        rid = next(next_id)
        chan.send({"op": "recv", "what": what, "size": max(size, 1), "len": size,
                   "wr_id": rid, "opcode": opcode, "imm": imm})
        chan.recv()
        wr_id = build()
        own(what, e.IBV_WC_RDMA_WRITE if opcode == e.IBV_WC_RECV_RDMA_WITH_IMM
            else e.IBV_WC_SEND, wr_id)
        got = chan.recv()
        if data is not None:
            check(got["digest"] == digest(data), f"{what}: data differs")
        return got

    def region(*ops):
        """One wr_start..wr_complete region; each op is (builder, args, setter, set_args)."""
        qp.wr_start()
        ids = []
        for builder, args, setter, set_args in ops:
            qp.wr_id = next(next_id)
            qp.wr_flags = e.IBV_SEND_SIGNALED
            ids.append(qp.wr_id)
            getattr(qp, builder)(*args)
            getattr(qp, setter)(*set_args)
        qp.wr_complete()
        return ids

    for size in SIZES:
        data = payload(("send", size), size)
        mr.write(data, size, 0)
        sg = sges(size)
        received(f"SEND {size}", size, lambda: region(
            ("wr_send", (), "wr_set_sge_list", (len(sg), sg)))[0], data=data)
        imm = (size * 2654435761) & 0xffffffff
        received(f"SEND_WITH_IMM {size}", size, lambda: region(
            ("wr_send_imm", (imm,), "wr_set_sge", (SGE(mr.buf, size, mr.lkey),)))[0],
            imm=imm, data=data)
        data = payload(("write_imm", size), size)
        mr.write(data, size, 0)
        # lands at the server's offset 0, which its reply digests
        received(f"RDMA_WRITE_WITH_IMM {size}", size, lambda: region(
            ("wr_rdma_write_imm", (peer["rkey"], peer["addr"], imm), "wr_set_sge_list",
             (len(sg), sg)))[0], opcode=e.IBV_WC_RECV_RDMA_WITH_IMM, imm=imm, data=data)
        data = payload(("write", size), size)
        mr.write(data, size, 0)
        (wid,) = region(("wr_rdma_write", (peer["rkey"], peer["addr"] + WRITE_AT),
                         "wr_set_sge_list", (len(sg), sg)))
        own(f"RDMA_WRITE {size}", e.IBV_WC_RDMA_WRITE, wid)
        chan.send({"op": "digest", "offset": WRITE_AT, "size": size})
        check(chan.recv()["digest"] == digest(data), f"RDMA_WRITE {size}: data")
        mr.write(bytes(size), size, MIB)
        rsg = sges(size, MIB)
        (rid,) = region(("wr_rdma_read", (peer["rkey"], peer["addr"] + READ_AT),
                         "wr_set_sge_list", (len(rsg), rsg)))
        own(f"RDMA_READ {size}", e.IBV_WC_RDMA_READ, rid, byte_len=size)
        check(mr.read(size, MIB) == payload("read-source", MIB)[:size],
              f"RDMA_READ {size}: data")
        print(json.dumps({"size": size, "ops": 5}), flush=True)

    # several WRs in one region; completions come back in order, read one per
    # start_poll..end_poll so the rest of each fetched batch must survive end_poll
    chunk = 8192
    mr.write(payload("batch", 4 * chunk), 4 * chunk, 0)
    ops = [("wr_rdma_write", (peer["rkey"], peer["addr"] + 8192 + i * chunk), "wr_set_sge",
            (SGE(mr.buf + i * chunk, chunk, mr.lkey),)) for i in range(4)]
    ops.append(("wr_rdma_read", (peer["rkey"], peer["addr"] + READ_AT), "wr_set_sge",
                (SGE(mr.buf + MIB, chunk, mr.lkey),)))
    mr.write(bytes(chunk), chunk, MIB)
    ids = region(*ops)
    wcs = poll(cq, len(ids), per_region=1)
    check([w["wr_id"] for w in wcs] == ids, f"batch: wr_ids {[w['wr_id'] for w in wcs]}")
    check([w["opcode"] for w in wcs] == [e.IBV_WC_RDMA_WRITE] * 4 + [e.IBV_WC_RDMA_READ],
          f"batch: opcodes {[w['opcode'] for w in wcs]}")
    chan.send({"op": "digest", "offset": 8192, "size": 4 * chunk})
    check(chan.recv()["digest"] == digest(payload("batch", 4 * chunk)), "batch: WRITE data")
    check(mr.read(chunk, MIB) == payload("read-source", MIB)[:chunk], "batch: READ data")
    ids = region(*ops[:4])
    wcs = poll(cq, len(ids))
    check([w["wr_id"] for w in wcs] == ids, f"batch 2: wr_ids {[w['wr_id'] for w in wcs]}")
    nothing_more(cq, "after the batches")

    # inline: the data is taken at the setter, so overwriting it before wr_complete
    # changes nothing; inline WRITE_WITH_IMM from a list of three buffers
    inline = payload("inline", 200)
    mr.write(inline, 200, 0)

    def inline_send():
        qp.wr_start()
        qp.wr_id, qp.wr_flags = next(next_id), e.IBV_SEND_SIGNALED
        qp.wr_send()
        qp.wr_set_inline_data(mr.buf, 200)
        mr.write(bytes(200), 200, 0)
        qp.wr_complete()
        return qp.wr_id
    received("inline SEND 200", 200, inline_send, data=inline)
    parts = [payload(("part", i), n) for i, n in enumerate((100, 56, 100))]
    for i, part in enumerate(parts):
        mr.write(part, len(part), 1024 * i)

    def inline_list():
        qp.wr_start()
        qp.wr_id, qp.wr_flags = next(next_id), e.IBV_SEND_SIGNALED
        qp.wr_rdma_write_imm(peer["rkey"], peer["addr"] + 65536, 0x1234abcd)
        qp.wr_set_inline_data_list(3, [DataBuffer(mr.buf + 1024 * i, len(p))
                                       for i, p in enumerate(parts)])
        qp.wr_complete()
        return qp.wr_id
    received("inline list WRITE_WITH_IMM 256", 256, inline_list,
             opcode=e.IBV_WC_RECV_RDMA_WITH_IMM, imm=0x1234abcd)
    chan.send({"op": "digest", "offset": 65536, "size": 256})
    check(chan.recv()["digest"] == digest(b"".join(parts)), "inline list: data")

    # refused inside a region: the error comes from wr_complete and nothing is posted
    for what, want, build in (
            ("inline 257 bytes", errno.ENOSPC,
             lambda: (qp.wr_send(), qp.wr_set_inline_data(mr.buf, 257))),
            ("3 SGEs on max_send_sge 2", errno.EINVAL,
             lambda: (qp.wr_send(), qp.wr_set_sge_list(3, sges(2) + sges(1)))),
            ("inline data on a READ", errno.EINVAL,
             lambda: (qp.wr_rdma_read(peer["rkey"], peer["addr"]),
                      qp.wr_set_inline_data(mr.buf, 8)))):
        qp.wr_start()
        qp.wr_flags = e.IBV_SEND_SIGNALED
        qp.wr_send()
        qp.wr_set_sge(SGE(mr.buf, 8, mr.lkey))
        build()
        try:
            qp.wr_complete()
            check(False, f"{what}: wr_complete accepted it")
        except PyverbsRDMAError as err:
            check(err.error_code == want, f"{what}: errno {err.error_code}, want {want}")
            print(json.dumps({"refused": what, "errno": err.error_code}), flush=True)
    # wr_abort drops the region
    qp.wr_start()
    qp.wr_flags = e.IBV_SEND_SIGNALED
    qp.wr_send()
    qp.wr_set_sge(SGE(mr.buf, 8, mr.lkey))
    qp.wr_abort()
    nothing_more(cq, "refused and aborted regions")
    # ibv_post_send/ibv_post_recv with a num_sge libibverbs would size its stack command
    # from (negative: a 64 GiB memcpy; 1 Mi SGEs: a 16 MiB alloca) are refused with
    # EINVAL before it does; each in a child, so a crash shows as a signal, not a hang
    for what, post in (
            ("post_send num_sge -1", lambda: qp.post_send(bad_wr(SendWR, -1))),
            ("post_recv num_sge 1Mi", lambda: qp.post_recv(bad_wr(RecvWR, 1 << 20)))):
        pid = os.fork()
        if pid == 0:
            try:
                post()
                os._exit(2)
            except PyverbsRDMAError as err:
                os._exit(0 if err.error_code == errno.EINVAL else 3)
            except BaseException:  # noqa: BLE001 - any other outcome is a failure code
                os._exit(4)
        _, status = os.waitpid(pid, 0)
        check(os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0,
              f"{what}: child " + (f"killed by signal {os.WTERMSIG(status)}"
                                   if os.WIFSIGNALED(status)
                                   else f"exit {os.WEXITSTATUS(status)}"))
        print(json.dumps({"refused": what, "errno": errno.EINVAL}), flush=True)
    nothing_more(cq, "refused posts")
    # the QP is still fine: one more SEND goes through
    data = payload("after", 64)
    mr.write(data, 64, 0)
    received("SEND after refusals", 64, lambda: region(
        ("wr_send", (), "wr_set_sge", (SGE(mr.buf, 64, mr.lkey),)))[0], data=data)

    chan.send({"op": "quit"})
    server_failures = chan.recv()["failures"]
    check(not server_failures, f"server: {server_failures}")
    qp.close()
    mr.close()
    cq.close()


if role == "server":
    serve()
else:
    client()
print(json.dumps({"role": role, "failures": len(failures)}), flush=True)
sys.exit(1 if failures else 0)
'''

start_all()
for m in (a, b):
    m.wait_for_unit("multi-user.target")

# 1. a device on both cables.
for m, initiator in ((a, 1), (b, 0)):
    m.succeed("modprobe tbrdma")
    m.succeed("ip link set thunderbolt0 mtu 9000 && ip link set thunderbolt1 mtu 9000")
    m.succeed(f"ip addr replace {ADDR[m.name]}/24 dev thunderbolt0")
    native_create(m, "thunderbolt0,thunderbolt1", KEY, initiator)
for m in (a, b):
    m.wait_until_succeeds("grep -q ACTIVE /sys/class/infiniband/tbrdma0/ports/1/state",
                          timeout=120)

# 2. the extended verbs (client on a, server on b, control over TCP on cable 0).
for m in (a, b):
    m.succeed("rm -rf /tmp/tbext && mkdir -p /tmp/tbext && cat > /tmp/tbext/peer.py <<'EOF'\n"
              + PEER + "\nEOF")
b.succeed(f"(python3 /tmp/tbext/peer.py server {ADDR['b']} 18700 > /tmp/tbext/out "
          "2> /tmp/tbext/err; echo $? > /tmp/tbext/rc) > /dev/null 2>&1 &")
b.wait_until_succeeds("test -e /tmp/tbext/server.listening", timeout=120)
a.succeed(f"(python3 /tmp/tbext/peer.py client {ADDR['b']} 18700 > /tmp/tbext/out "
          "2> /tmp/tbext/err; echo $? > /tmp/tbext/rc) > /dev/null 2>&1 &")
a.wait_until_succeeds("test -s /tmp/tbext/rc", timeout=900)
b.wait_until_succeeds("test -s /tmp/tbext/rc", timeout=120)
outs = {}
for m in (a, b):
    rc = m.succeed("cat /tmp/tbext/rc").strip()
    outs[m.name] = m.succeed("cat /tmp/tbext/out /tmp/tbext/err")
    print(f"{m.name} (exit {rc}):\n{outs[m.name]}")
    outs[m.name + "_rc"] = rc
assert outs["a_rc"] == "0" and outs["b_rc"] == "0", outs
refused = [json.loads(line)["refused"] for line in outs["a"].splitlines()
           if line.startswith('{"refused"')]
assert len(refused) == 9, refused
assert sum(1 for line in outs["a"].splitlines() if line.startswith('{"accepted"')) == 3, outs["a"]
assert sum(1 for line in outs["a"].splitlines() if line.startswith('{"size"')) == 5, outs["a"]
for m in (a, b):
    check_kernel_log(m)

# 3. teardown: the device and the module go away cleanly.
for m in (a, b):
    m.succeed("PYTHONPATH=/usr/local/lib/tbctl python3 -c 'from tbctl.node import native; "
              "native.destroy(\"tbrdma0\")'")
    m.succeed("modprobe -r tbrdma")
    check_kernel_log(m)
