# SPDX-License-Identifier: MIT
# ruff: noqa: F821 - the driver provides start_all, a, b
# Verbs semantics of tbrdma0 over both cables, IBA as rxe implements them: query_port's rate
# is the rails' real rate; 4 QPs x max_qp_wr outstanding (ib_write_bw -q 4 -t 1024); then
# vm-tests/tbrdma_semantics_peer.py: destroy/RESET with work outstanding leave no CQE behind,
# CQ overflow (IBV_EVENT_CQ_ERR, QP to error), solicited notification, IBV_SEND_FENCE,
# resize_cq, query_qp, a responder's remote access violation, a shared receive queue (limit
# event, last-WQE event, resize), inline data, SEND with Invalidate of a fast-registration MR
# (REG_MR/LOCAL_INV posted by the driver's test hook), a type 2 memory window (bound QP,
# range, LOCAL_INV, no dereg while bound), mapped queues (receive posts and polls without a
# command, one doorbell per send post, a full receive queue, receives posted in error
# flushed), 1,000 create/destroy cycles
# without growth, and a link rebuild moving QPs to error - each checked for kernel warnings.
# Globals (NixOS test driver subset): start_all, a, b.
import json
import secrets

KEY = secrets.token_hex(32)
ADDR = {"a": "10.77.0.1", "b": "10.77.0.2"}
# Runs on the nodes: server and client of the semantics checks.
PEER = r'''
# Runs on the lab nodes (copied there by tbrdma_semantics.py): verbs semantics of tbrdma0,
# IBA as rxe implements it. "server" answers JSON-line requests on a TCP socket over cable 0;
# "client" runs each check and prints one JSON line per check. Every check names what it saw
# when it fails. usage: peer.py server|client <server-ip> <port> <hex key>
import json
import os
import random
import select
import socket
import sys
import time

import pyverbs.enums as e
from pyverbs.addr import GID, AHAttr, GlobalRoute
from pyverbs.cq import CQ, CompChannel
from pyverbs.device import Context
from pyverbs.mr import MR, MW, MWBindInfo
from pyverbs.pd import PD
from pyverbs.pyverbs_error import PyverbsRDMAError
from pyverbs.qp import QP, QPAttr, QPCap, QPInitAttr
from pyverbs.srq import SRQ, SrqAttr, SrqInitAttr
from pyverbs.wr import SGE, RecvWR, SendWR

DEV = "tbrdma0"
GID_INDEX = 1
ACCESS = e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_REMOTE_WRITE | e.IBV_ACCESS_REMOTE_READ
MIB = 1 << 20
CFS = f"/sys/kernel/config/tbrdma/{DEV}"

role, server_ip, port, key = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
ctx = Context(name=DEV)
pd = PD(ctx)
gid = str(ctx.query_gid(1, GID_INDEX))


def pattern(seed, size):
    return random.Random(seed).randbytes(size)


def make_qp(cq, rcq=None, send_wr=64, recv_wr=64, sig_all=1):
    init = QPInitAttr(qp_type=e.IBV_QPT_RC, scq=cq, rcq=rcq or cq, sq_sig_all=sig_all,
                      cap=QPCap(max_send_wr=send_wr, max_recv_wr=recv_wr, max_send_sge=1,
                                max_recv_sge=1))
    attr = QPAttr(port_num=1)
    attr.qp_access_flags = ACCESS
    return QP(pd, init, attr)


def rts_attr(peer_qpn, peer_gid, **extra):
    attr = QPAttr(port_num=1)
    attr.path_mtu = e.IBV_MTU_4096
    attr.max_dest_rd_atomic = 16
    attr.max_rd_atomic = 16
    attr.min_rnr_timer = 1
    attr.rnr_retry = 7
    attr.retry_cnt = 7
    attr.timeout = 14
    for name, value in extra.items():
        setattr(attr, name, value)
    attr.ah_attr = AHAttr(port_num=1, is_global=1,
                          gr=GlobalRoute(dgid=GID(peer_gid), sgid_index=GID_INDEX))
    attr.dest_qp_num = peer_qpn
    return attr


def qp_state(qp):
    return qp.query(e.IBV_QP_STATE)[0].qp_state


def event_fds():
    """This process's uverbs event files (async events, completion channels). pyverbs 56
    exposes neither fd, and its get_*_event() calls block holding the GIL, so they are
    found here and polled first."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[infinibandevent]":
                found.add(int(fd))
        except OSError:
            pass
    return found


def async_event_fd():
    """The client has no completion channel: its only event file is the async one."""
    fds = event_fds()
    if len(fds) != 1:
        raise SystemExit(f"expected one async event file, found {sorted(fds)}")
    return fds.pop()


class Channel:
    """JSON lines over one TCP connection."""

    def __init__(self, sock):
        self.sock = sock
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
    open("/tmp/tbsem/server.listening", "w").write("1")
    conn, _ = listener.accept()
    chan = Channel(conn)
    qps = {}
    while True:
        req = chan.recv()
        op = req["op"]
        if op == "quit":
            chan.send({"ok": True})
            return
        if op == "qp":
            # one RC QP connected to the client's, with a 2 MiB MR: [0, 1 MiB) a pattern,
            # [1 MiB, 2 MiB) zeros; optionally a receive CQ armed for solicited events
            before = event_fds()
            channel = CompChannel(ctx) if req.get("solicited") else None
            channel_fd = (event_fds() - before).pop() if channel else None
            cq = CQ(ctx, 256, None, channel, 0)
            qp = make_qp(cq)
            mr = MR(pd, 2 * MIB, ACCESS)
            mr.write(pattern(req.get("seed", 1), MIB), MIB, 0)
            mr.write(bytes(MIB), MIB, MIB)
            for i in range(req.get("recvs", 0)):
                qp.post_recv(RecvWR(wr_id=i, num_sge=1, sg=[SGE(mr.buf + MIB, 4096, mr.lkey)]))
            qp.to_rts(rts_attr(req["qpn"], req["gid"]))
            entry = {"qp": qp, "cq": cq, "mr": mr, "channel": channel, "fd": channel_fd}
            if channel:
                cq.req_notify(solicited_only=True)
            qps[qp.qp_num] = entry
            chan.send({"qpn": qp.qp_num, "gid": gid, "rkey": mr.rkey, "addr": mr.buf})
        elif op == "state":
            chan.send({"state": qp_state(qps[req["qpn"]]["qp"])})
        elif op == "send":
            # `count` SENDs of `size` bytes, the j-th from offset j * size of the pattern
            entry, size = qps[req["qpn"]], req["size"]
            for j in range(req["count"]):
                entry["qp"].post_send(SendWR(
                    wr_id=j, opcode=e.IBV_WR_SEND, num_sge=1,
                    sg=[SGE(entry["mr"].buf + j * size, size, entry["mr"].lkey)],
                    send_flags=e.IBV_SEND_SIGNALED))
            chan.send({"status": [wc.status for wc in wait_wc(entry["cq"], req["count"])]})
        elif op == "woke":
            # pyverbs blocks with the GIL held: wait on the channel's fd, then take the event
            entry = qps[req["qpn"]]
            ready, _, _ = select.select([entry["fd"]], [], [], req["timeout"])
            if ready:
                entry["channel"].get_cq_event(entry["cq"])
                entry["cq"].ack_events(1)
            chan.send({"woke": bool(ready)})
        elif op == "frmr":
            chan.send(frmr_test(req, qps[req["qpn"]]))
        elif op == "mrread":
            entry = qps[req["qpn"]]
            chan.send({"data": entry["fr_mr"].read(req["size"], req["offset"]).hex()})
        elif op == "recv_wc":
            [wc] = wait_wc(qps[req["qpn"]]["cq"])
            # imm_data is the union that carries the invalidated rkey
            chan.send({"status": wc.status, "opcode": wc.opcode, "flags": wc.wc_flags,
                       "rkey": wc.imm_data})
        elif op == "close":
            entry = qps.pop(req["qpn"])
            entry["qp"].close()
            entry["mr"].close()
            if "fr_mr" in entry:
                entry["fr_mr"].close()
            entry["cq"].close()
            chan.send({"ok": True})


FRMR_HOOK = "/sys/module/tbrdma/parameters/frmr_test_hook"


def frmr_test(req, entry):
    """The driver's test-only configfs hook (mr.c): a fast-registration MR over the pages
    of a 256 KiB user MR of this QP's PD, registered (REG_MR) and invalidated (LOCAL_INV)
    by WRs the kernel posts on this QP, as a kernel ULP would."""
    if req["cmd"] == "reg" and "fr_mr" not in entry:
        entry["fr_mr"] = MR(pd, 256 * 1024, ACCESS)
        entry["fr_mr"].write(pattern(70, 256 * 1024), 256 * 1024, 0)
    cmd = {"reg": f"reg {req['qpn']} {entry['fr_mr'].lkey if 'fr_mr' in entry else 0} "
                  f"{ACCESS} {req.get('key', 0)}",
           "inv": f"inv {req['qpn']}", "free": "free", "show": None}[req["cmd"]]
    try:
        with open(FRMR_HOOK, "w") as f:
            f.write("1")
        if cmd:
            with open(f"{CFS}/frmr_test", "w") as f:
                f.write(cmd)
        if cmd == "free":
            with open(FRMR_HOOK, "w") as f:
                f.write("0")
    except OSError as err:
        return {"error": f"{cmd}: {err}"}
    words = open(f"{CFS}/frmr_test").read().split()
    if words == ["none"]:
        return {"state": "none"}
    got = dict(zip(words[::2], words[1::2]))
    return {"rkey": int(got["rkey"], 0), "iova": int(got["iova"], 0),
            "length": int(got["length"]), "state": got["state"]}


def connect_qp(chan, qp, **server_opts):
    chan.send(dict(op="qp", qpn=qp.qp_num, gid=gid, **server_opts))
    peer = chan.recv()
    return peer


def wait_wc(cq, count=1, timeout=120):
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        n, wcs = cq.poll(count - len(got))
        got.extend(wcs)
        if not n:
            time.sleep(0.001)
    if len(got) < count:
        raise SystemExit(f"only {len(got)} of {count} completions within {timeout} s")
    return got


def write_wr(mr, size, raddr, rkey, wr_id=0, flags=e.IBV_SEND_SIGNALED, opcode=None,
             offset=0):
    wr = SendWR(wr_id=wr_id, opcode=e.IBV_WR_RDMA_WRITE if opcode is None else opcode,
                num_sge=1, sg=[SGE(mr.buf + offset, size, mr.lkey)], send_flags=flags)
    wr.set_wr_rdma(rkey, raddr)
    return wr


def report(name, **facts):
    print(json.dumps(dict(check=name, **facts)), flush=True)


def check_destroy_purges(chan):
    """Destroy / RESET with work outstanding: no CQE of that QP is ever polled."""
    cq = CQ(ctx, 1024)
    mr = MR(pd, MIB, ACCESS)
    bystander = make_qp(cq)
    for how in ("destroy", "reset"):
        victim = make_qp(cq)
        qpn = victim.qp_num
        peer = connect_qp(chan, victim)
        victim.to_rts(rts_attr(peer["qpn"], peer["gid"]))
        for i in range(32):
            victim.post_send(write_wr(mr, 64 * 1024, peer["addr"], peer["rkey"], wr_id=i))
        for i in range(16):
            victim.post_recv(RecvWR(wr_id=100 + i, num_sge=1, sg=[SGE(mr.buf, 64, mr.lkey)]))
        if how == "destroy":
            victim.close()
        else:
            attr = QPAttr()
            attr.qp_state = e.IBV_QPS_RESET
            victim.modify(attr, e.IBV_QP_STATE)
        seen = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            n, wcs = cq.poll(64)
            seen.extend((wc.qp_num, wc.wr_id, wc.status) for wc in wcs)
            if not n:
                time.sleep(0.01)
        assert not seen, f"after {how} of QP {qpn}: CQ still returned {seen[:8]} ({len(seen)})"
        if how == "reset":
            victim.close()
        chan.send({"op": "close", "qpn": peer["qpn"]})
        chan.recv()
        report("destroy_purges_cq", how=how, qpn=qpn, entries_after=0)
    bystander.close()
    mr.close()
    cq.close()


def check_cq_overflow(chan):
    """A full CQ: IBV_EVENT_CQ_ERR, and the QP whose completion did not fit goes to error."""
    cq = CQ(ctx, 4)
    qp = make_qp(cq, send_wr=16)
    mr = MR(pd, MIB, ACCESS)
    peer = connect_qp(chan, qp)
    qp.to_rts(rts_attr(peer["qpn"], peer["gid"]))
    events = []
    fd = async_event_fd()
    for i in range(8):
        qp.post_send(write_wr(mr, 4096, peer["addr"], peer["rkey"], wr_id=i))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if select.select([fd], [], [], 0.1)[0]:
            event = ctx.get_async_event()
            events.append(event.event_type)
            event.ack()
        if e.IBV_EVENT_CQ_ERR in events and qp_state(qp) == e.IBV_QPS_ERR:
            break
    state = qp_state(qp)
    assert e.IBV_EVENT_CQ_ERR in events, f"no IBV_EVENT_CQ_ERR, events {events}"
    assert state == e.IBV_QPS_ERR, f"QP state {state} after the CQ overflowed, not ERR"
    n, wcs = cq.poll(8)
    report("cq_overflow", events=events, qp_state="ERR", polled=n)
    qp.close()
    chan.send({"op": "close", "qpn": peer["qpn"]})
    chan.recv()
    mr.close()
    cq.close()


def check_solicited(chan):
    """req_notify_cq(solicited_only) sleeps through a SEND without IBV_SEND_SOLICITED (its
    receive completion is already on the CQ when the sender's completes) and wakes on one
    with it (IBA 11.4.2.2)."""
    cq = CQ(ctx, 64)
    qp = make_qp(cq)
    mr = MR(pd, MIB, ACCESS)
    peer = connect_qp(chan, qp, solicited=True, recvs=4)
    qp.to_rts(rts_attr(peer["qpn"], peer["gid"]))
    woke = {}
    for wr_id, flags in ((1, 0), (2, e.IBV_SEND_SOLICITED)):
        qp.post_send(SendWR(wr_id=wr_id, opcode=e.IBV_WR_SEND, num_sge=1,
                            sg=[SGE(mr.buf, 64, mr.lkey)],
                            send_flags=e.IBV_SEND_SIGNALED | flags))
        wc = wait_wc(cq)[0]
        assert wc.status == e.IBV_WC_SUCCESS, wc.status
        chan.send({"op": "woke", "qpn": peer["qpn"], "timeout": 60 if flags else 3})
        woke[wr_id] = chan.recv()["woke"]
    assert not woke[1], "an unsolicited SEND woke the peer's solicited-only CQ notification"
    assert woke[2], "the peer's solicited-only CQ notification never fired"
    report("solicited_notify", unsolicited_woke=woke[1], solicited_woke=woke[2])
    qp.close()
    chan.send({"op": "close", "qpn": peer["qpn"]})
    chan.recv()
    mr.close()
    cq.close()


def check_fence(chan):
    """READ X -> L, then a fenced WRITE L -> Y: Y must hold X (the WRITE waits for the READ)."""
    cq = CQ(ctx, 64)
    qp = make_qp(cq)
    local = MR(pd, MIB, ACCESS)
    back = MR(pd, MIB, ACCESS)
    local.write(bytes(MIB), MIB, 0)
    peer = connect_qp(chan, qp, seed=77)
    qp.to_rts(rts_attr(peer["qpn"], peer["gid"]))
    read = write_wr(local, MIB, peer["addr"], peer["rkey"], wr_id=1,
                    opcode=e.IBV_WR_RDMA_READ)
    qp.post_send(read)
    qp.post_send(write_wr(local, MIB, peer["addr"] + MIB, peer["rkey"], wr_id=2,
                          flags=e.IBV_SEND_SIGNALED | e.IBV_SEND_FENCE))
    wcs = wait_wc(cq, 2)
    assert [(w.wr_id, w.status) for w in wcs] == [(1, 0), (2, 0)], \
        [(w.wr_id, w.status) for w in wcs]
    qp.post_send(write_wr(back, MIB, peer["addr"] + MIB, peer["rkey"], wr_id=3,
                          opcode=e.IBV_WR_RDMA_READ))
    assert wait_wc(cq)[0].status == e.IBV_WC_SUCCESS
    got = back.read(MIB, 0)
    want = pattern(77, MIB)
    same = sum(1 for i in range(0, MIB, 4096) if got[i:i + 4096] == want[i:i + 4096])
    assert got == want, f"fenced WRITE sent stale data: {same} of 256 pages match"
    report("fence", pages_ok=same)
    qp.close()
    chan.send({"op": "close", "qpn": peer["qpn"]})
    chan.recv()
    local.close()
    back.close()
    cq.close()


def check_resize_cq(chan):
    """ibv_resize_cq keeps queued completions; shrinking below them is refused."""
    cq = CQ(ctx, 4)
    qp = make_qp(cq, send_wr=8)
    mr = MR(pd, MIB, ACCESS)
    peer = connect_qp(chan, qp)
    qp.to_rts(rts_attr(peer["qpn"], peer["gid"]))
    for i in range(3):
        qp.post_send(write_wr(mr, 4096, peer["addr"], peer["rkey"], wr_id=i))
    time.sleep(2)
    cq.resize(64)
    assert cq.cqe >= 64, cq.cqe
    wcs = wait_wc(cq, 3)
    assert [(w.wr_id, w.status) for w in wcs] == [(0, 0), (1, 0), (2, 0)], \
        [(w.wr_id, w.status) for w in wcs]
    for i in range(8):
        qp.post_send(write_wr(mr, 64, peer["addr"], peer["rkey"], wr_id=10 + i))
    # eight small WRITEs complete within milliseconds; give a slow TCG guest plenty
    time.sleep(5)
    try:
        cq.resize(2)
        refused = False
    except Exception:  # noqa: BLE001 - pyverbs raises PyverbsRDMAError (EINVAL)
        refused = True
    assert refused, "resize to 2 entries with 8 completions queued was accepted"
    wcs = wait_wc(cq, 8)
    assert [w.wr_id for w in wcs] == list(range(10, 18)), [w.wr_id for w in wcs]
    report("resize_cq", grown_to=cq.cqe, shrink_below_count="refused")
    qp.close()
    chan.send({"op": "close", "qpn": peer["qpn"]})
    chan.recv()
    mr.close()
    cq.close()


def check_query_qp(chan):
    """query_qp returns what modify_qp set."""
    cq = CQ(ctx, 16)
    qp = make_qp(cq)
    peer = connect_qp(chan, qp)
    want = {"path_mtu": e.IBV_MTU_1024, "timeout": 17, "retry_cnt": 6, "rnr_retry": 5,
            "min_rnr_timer": 12, "max_rd_atomic": 8, "max_dest_rd_atomic": 4,
            "sq_psn": 0x1234, "rq_psn": 0x4321}
    qp.to_rts(rts_attr(peer["qpn"], peer["gid"], **want))
    attr, init = qp.query(0x1fffff)
    got = {k: getattr(attr, k) for k in want}
    got_more = {"qp_state": attr.qp_state, "dest_qp_num": attr.dest_qp_num,
                "qp_access_flags": attr.qp_access_flags, "port_num": attr.port_num}
    assert got == want, f"query_qp {got}, set {want}"
    assert got_more == {"qp_state": e.IBV_QPS_RTS, "dest_qp_num": peer["qpn"],
                        "qp_access_flags": ACCESS, "port_num": 1}, got_more
    report("query_qp", **got)
    qp.close()
    chan.send({"op": "close", "qpn": peer["qpn"]})
    chan.recv()
    cq.close()


def check_responder_error(chan):
    """A responder that sees a remote access violation goes to error, like rxe's."""
    cq = CQ(ctx, 16)
    qp = make_qp(cq)
    mr = MR(pd, MIB, ACCESS)
    peer = connect_qp(chan, qp)
    qp.to_rts(rts_attr(peer["qpn"], peer["gid"]))
    qp.post_send(write_wr(mr, 64, peer["addr"], peer["rkey"] ^ 0x5a5a5a5a))
    wc = wait_wc(cq)[0]
    assert wc.status == e.IBV_WC_REM_ACCESS_ERR, wc.status
    deadline = time.monotonic() + 60
    state = None
    while time.monotonic() < deadline:
        chan.send({"op": "state", "qpn": peer["qpn"]})
        state = chan.recv()["state"]
        if state == e.IBV_QPS_ERR:
            break
        time.sleep(0.2)
    assert state == e.IBV_QPS_ERR, f"responder QP state {state} after the violation, not ERR"
    report("responder_access_error", requester=wc.status, responder_state="ERR")
    qp.close()
    chan.send({"op": "close", "qpn": peer["qpn"]})
    chan.recv()
    mr.close()
    cq.close()


def check_inline(chan):
    """IBV_SEND_INLINE: max_inline_data 256 reported (a larger request clamped), the data is
    taken at post time (no MR needed; the buffer changed right after the post is not what
    arrives), WRITE and SEND inline complete, more than 256 bytes is refused."""
    cq = CQ(ctx, 64)
    init = QPInitAttr(qp_type=e.IBV_QPT_RC, scq=cq, rcq=cq, sq_sig_all=1,
                      cap=QPCap(max_send_wr=16, max_recv_wr=4, max_send_sge=2,
                                max_recv_sge=1, max_inline_data=1024))
    attr = QPAttr(port_num=1)
    attr.qp_access_flags = ACCESS
    qp = QP(pd, init, attr)
    assert init.cap.max_inline_data == 256, f"max_inline_data {init.cap.max_inline_data}"
    queried = qp.query(e.IBV_QP_CAP)[1].cap.max_inline_data
    assert queried == 256, f"query_qp max_inline_data {queried}"
    mr = MR(pd, MIB, ACCESS)
    peer = connect_qp(chan, qp, recvs=1)
    qp.to_rts(rts_attr(peer["qpn"], peer["gid"]))
    inline = e.IBV_SEND_INLINE | e.IBV_SEND_SIGNALED
    cases = [(1, 0), (100, 4096), (256, 8192)]
    for i, (size, offset) in enumerate(cases):
        mr.write(pattern(40 + i, size), size, 0)
        # no lkey: inline data needs no MR; two SGEs for the largest
        half = size // 2 if size > 1 else size
        sges = [SGE(mr.buf, half, 0)] + ([SGE(mr.buf + half, size - half, 0)]
                                         if size > half else [])
        wr = SendWR(wr_id=i, opcode=e.IBV_WR_RDMA_WRITE, num_sge=len(sges), sg=sges,
                    send_flags=inline)
        wr.set_wr_rdma(peer["rkey"], peer["addr"] + MIB + offset)
        qp.post_send(wr)
        mr.write(bytes(size), size, 0)  # too late to matter: the post took the data
        [wc] = wait_wc(cq)
        assert wc.status == e.IBV_WC_SUCCESS, f"inline WRITE of {size} B: status {wc.status}"
    for i, (size, offset) in enumerate(cases):
        wr = SendWR(wr_id=10 + i, opcode=e.IBV_WR_RDMA_READ, num_sge=1,
                    sg=[SGE(mr.buf + 65536, size, mr.lkey)], send_flags=e.IBV_SEND_SIGNALED)
        wr.set_wr_rdma(peer["rkey"], peer["addr"] + MIB + offset)
        qp.post_send(wr)
        [wc] = wait_wc(cq)
        got = mr.read(size, 65536)
        assert wc.status == e.IBV_WC_SUCCESS and got == pattern(40 + i, size), \
            f"inline WRITE of {size} B arrived as {got[:16].hex()}..."
    qp.post_send(SendWR(wr_id=20, opcode=e.IBV_WR_SEND, num_sge=1,
                        sg=[SGE(mr.buf, 200, 0)], send_flags=inline))
    [wc] = wait_wc(cq)
    assert wc.status == e.IBV_WC_SUCCESS, f"inline SEND: status {wc.status}"
    try:
        qp.post_send(SendWR(wr_id=21, opcode=e.IBV_WR_SEND, num_sge=1,
                            sg=[SGE(mr.buf, 257, 0)], send_flags=inline))
        raise AssertionError("an inline SEND of 257 bytes was accepted")
    except PyverbsRDMAError:
        pass
    report("inline", max_inline_data=256, sizes=[size for size, _ in cases])
    qp.close()
    chan.send({"op": "close", "qpn": peer["qpn"]})
    chan.recv()
    mr.close()
    cq.close()


def async_events(fd, wanted, timeout=60):
    """Async event types read from `fd` until every type in `wanted` came (or timeout)."""
    events = []
    deadline = time.monotonic() + timeout
    while not set(wanted) <= set(events) and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.1)[0]:
            event = ctx.get_async_event()
            events.append(event.event_type)
            event.ack()
    return events


def check_send_with_inv(chan):
    """SEND with Invalidate (rxe semantics): the peer's fast-registration MR (registered by
    a REG_MR its kernel posted, test hook) is reachable by WRITE/READ through its rkey, the
    SEND_WITH_INV's receive reports IBV_WC_WITH_INV and the key, and a WRITE to the key
    afterwards fails with REM_ACCESS_ERR. Registered again with a new key byte, LOCAL_INV
    revokes it the same way. A user MR's rkey cannot be invalidated: REM_INV_REQ_ERR on both
    sides, and the MR still works."""
    cq = CQ(ctx, 64)
    mr = MR(pd, MIB, ACCESS)
    adm = make_qp(cq)
    peer = connect_qp(chan, adm)
    adm.to_rts(rts_attr(peer["qpn"], peer["gid"]))
    pairs = [(adm, peer)]

    def frmr(cmd, **extra):
        chan.send(dict(op="frmr", cmd=cmd, qpn=peer["qpn"], **extra))
        got = chan.recv()
        assert "error" not in got, got["error"]
        return got

    def victim(**opts):
        qp = make_qp(cq)
        vpeer = connect_qp(chan, qp, **opts)
        qp.to_rts(rts_attr(vpeer["qpn"], vpeer["gid"]))
        pairs.append((qp, vpeer))
        return qp, vpeer

    def send_inv(qp, rkey):
        wr = SendWR(wr_id=7, opcode=e.IBV_WR_SEND_WITH_INV, num_sge=1,
                    sg=[SGE(mr.buf, 64, mr.lkey)], send_flags=e.IBV_SEND_SIGNALED)
        wr.imm_data = rkey  # the union with invalidate_rkey, as rdma-core's tests set it
        qp.post_send(wr)
        return wait_wc(cq)[0]

    def one(qp, wr):
        qp.post_send(wr)
        return wait_wc(cq)[0].status

    try:
        fr = frmr("reg", key=0x11)
        assert fr["state"] == "VALID" and fr["length"] == 256 * 1024 and \
            (fr["rkey"] & 0xff) == 0x11, f"after REG_MR: {fr}"
        # a WRITE across page boundaries lands in the user MR's pages behind the FRMR
        data = pattern(71, 8192)
        mr.write(data, 8192, 0)
        status = one(adm, write_wr(mr, 8192, fr["iova"] + 8292, fr["rkey"]))
        assert status == e.IBV_WC_SUCCESS, f"WRITE through the FRMR: status {status}"
        chan.send({"op": "mrread", "qpn": peer["qpn"], "offset": 8292, "size": 8192})
        assert bytes.fromhex(chan.recv()["data"]) == data, "WRITE through the FRMR misplaced"
        rd = SendWR(wr_id=2, opcode=e.IBV_WR_RDMA_READ, num_sge=1,
                    sg=[SGE(mr.buf + 65536, 10000, mr.lkey)], send_flags=e.IBV_SEND_SIGNALED)
        rd.set_wr_rdma(fr["rkey"], fr["iova"] + 20000)
        status = one(adm, rd)
        assert status == e.IBV_WC_SUCCESS and \
            mr.read(10000, 65536) == pattern(70, 256 * 1024)[20000:30000], \
            f"READ through the FRMR: status {status} or wrong bytes"
        qp, vpeer = victim(recvs=1)
        wc = send_inv(qp, fr["rkey"])
        assert wc.status == e.IBV_WC_SUCCESS and wc.opcode == e.IBV_WC_SEND, \
            f"SEND_WITH_INV: status {wc.status} opcode {wc.opcode}"
        chan.send({"op": "recv_wc", "qpn": vpeer["qpn"]})
        rw = chan.recv()
        assert rw["status"] == e.IBV_WC_SUCCESS and rw["opcode"] == e.IBV_WC_RECV and \
            rw["flags"] & e.IBV_WC_WITH_INV and rw["rkey"] == fr["rkey"], \
            f"receive of the SEND_WITH_INV: {rw}, want WITH_INV and rkey {fr['rkey']:#x}"
        flags = rw["flags"]
        state = frmr("show")["state"]
        assert state == "FREE", f"FRMR {state} after SEND_WITH_INV"
        status = one(qp, write_wr(mr, 64, fr["iova"], fr["rkey"]))
        assert status == e.IBV_WC_REM_ACCESS_ERR, f"WRITE after invalidation: status {status}"
        fr2 = frmr("reg", key=0x22)
        assert fr2["state"] == "VALID" and fr2["rkey"] == (fr["rkey"] & ~0xff) | 0x22, \
            f"registered again: {fr2}"
        status = one(adm, write_wr(mr, 64, fr2["iova"], fr2["rkey"]))
        assert status == e.IBV_WC_SUCCESS, f"WRITE with the new key: status {status}"
        state = frmr("inv")["state"]
        assert state == "FREE", f"FRMR {state} after LOCAL_INV"
        qp, _ = victim()
        status = one(qp, write_wr(mr, 64, fr2["iova"], fr2["rkey"]))
        assert status == e.IBV_WC_REM_ACCESS_ERR, f"WRITE after LOCAL_INV: status {status}"
        qp, vpeer = victim(recvs=1)
        wc = send_inv(qp, vpeer["rkey"])
        assert wc.status == e.IBV_WC_REM_INV_REQ_ERR, \
            f"SEND_WITH_INV of a user MR's rkey: status {wc.status}"
        chan.send({"op": "recv_wc", "qpn": vpeer["qpn"]})
        rw = chan.recv()
        assert rw["status"] == e.IBV_WC_REM_INV_REQ_ERR, f"its receive: {rw}"
        status = one(adm, write_wr(mr, 64, vpeer["addr"] + MIB, vpeer["rkey"]))
        assert status == e.IBV_WC_SUCCESS, f"the user MR after the refused invalidation: {status}"
        facts = dict(frmr_rkey=hex(fr["rkey"]), receive_flags=flags,
                     write_after_send_inv="REM_ACCESS_ERR", reregistered=hex(fr2["rkey"]),
                     write_after_local_inv="REM_ACCESS_ERR", user_mr="REM_INV_REQ_ERR")
    finally:
        # before the QPs and the PD's MRs go: the FRMR holds a reference on the PD
        chan.send({"op": "frmr", "cmd": "free", "qpn": peer["qpn"]})
        freed = chan.recv()
        for qp, p in pairs:
            qp.close()
            chan.send({"op": "close", "qpn": p["qpn"]})
            chan.recv()
        mr.close()
        cq.close()
    assert freed == {"state": "none"}, f"freeing the FRMR: {freed}"
    report("send_with_inv", **facts, freed=True)


def check_srq(chan):
    """Two RC QPs share one SRQ: the peer's SENDs on both land in the SRQ's WQEs byte-exact,
    the armed limit raises IBV_EVENT_SRQ_LIMIT_REACHED and disarms, a post to the QPs' own
    receive queues is refused, a QP moved to error raises IBV_EVENT_QP_LAST_WQE_REACHED and
    leaves the SRQ's WQEs to the other QP, and resize keeps the posted WQEs."""
    fd = async_event_fd()
    cq = CQ(ctx, 256)
    srq = SRQ(pd, SrqInitAttr(SrqAttr(max_wr=64, max_sge=1)))
    mr = MR(pd, 64 * 4096, ACCESS)
    init = QPInitAttr(qp_type=e.IBV_QPT_RC, scq=cq, rcq=cq, srq=srq, sq_sig_all=1,
                      cap=QPCap(max_send_wr=16, max_recv_wr=0, max_send_sge=1,
                                max_recv_sge=0))
    qps, peers = [], []
    for seed in (11, 12):
        attr = QPAttr(port_num=1)
        attr.qp_access_flags = ACCESS
        qp = QP(pd, init, attr)
        peer = connect_qp(chan, qp, seed=seed)
        qp.to_rts(rts_attr(peer["qpn"], peer["gid"]))
        qps.append(qp)
        peers.append(peer)
    for i in range(48):
        srq.post_recv(RecvWR(wr_id=i, num_sge=1, sg=[SGE(mr.buf + i * 4096, 4096, mr.lkey)]))
    srq.modify(SrqAttr(srq_limit=10), e.IBV_SRQ_LIMIT)
    assert srq.query().srq_limit == 10, f"srq_limit {srq.query().srq_limit} after arming 10"
    try:
        qps[0].post_recv(RecvWR(wr_id=99, num_sge=1, sg=[SGE(mr.buf, 64, mr.lkey)]))
        raise AssertionError("post_recv on a QP attached to an SRQ was accepted")
    except PyverbsRDMAError:
        pass
    sizes = (1000, 4096)
    for peer, size in zip(peers, sizes):
        chan.send({"op": "send", "qpn": peer["qpn"], "count": 20, "size": size})
        status = chan.recv()["status"]
        assert status == [0] * 20, f"peer's SEND statuses {status}"
    wcs = wait_wc(cq, 40)
    seen = {qp.qp_num: 0 for qp in qps}
    for wc in wcs:
        assert wc.status == e.IBV_WC_SUCCESS and wc.opcode == e.IBV_WC_RECV, \
            f"wc status {wc.status} opcode {wc.opcode}"
        index = [qp.qp_num for qp in qps].index(wc.qp_num)
        j, size = seen[wc.qp_num], sizes[index]
        seen[wc.qp_num] += 1
        expect = pattern(11 + index, MIB)[j * size:(j + 1) * size]
        assert wc.byte_len == size and mr.read(size, wc.wr_id * 4096) == expect, \
            f"QP {index} message {j} in WQE {wc.wr_id}: {wc.byte_len} bytes, data differs"
    assert sorted(wc.wr_id for wc in wcs) == list(range(40)), "WQEs not taken in post order"
    events = async_events(fd, [e.IBV_EVENT_SRQ_LIMIT_REACHED])
    assert e.IBV_EVENT_SRQ_LIMIT_REACHED in events, f"no SRQ limit event: {events}"
    assert srq.query().srq_limit == 0, "the limit event did not disarm the limit"
    qps[0].modify(QPAttr(qp_state=e.IBV_QPS_ERR), e.IBV_QP_STATE)
    events = async_events(fd, [e.IBV_EVENT_QP_LAST_WQE_REACHED])
    assert e.IBV_EVENT_QP_LAST_WQE_REACHED in events, f"no last-WQE event: {events}"
    n, flushed = cq.poll(8)
    assert n == 0, f"{n} completions after the error of a QP that held no WQE"
    chan.send({"op": "send", "qpn": peers[1]["qpn"], "count": 5, "size": 4096})
    assert chan.recv()["status"] == [0] * 5
    more = wait_wc(cq, 5)
    assert sorted(wc.wr_id for wc in more) == list(range(40, 45)), [wc.wr_id for wc in more]
    srq.modify(SrqAttr(max_wr=128), e.IBV_SRQ_MAX_WR)
    resized = srq.query().max_wr
    assert resized >= 128, f"max_wr {resized} after resizing to 128"
    try:
        srq.modify(SrqAttr(max_wr=2), e.IBV_SRQ_MAX_WR)
        raise AssertionError("shrinking the SRQ below its 3 posted WQEs was accepted")
    except PyverbsRDMAError:
        pass
    report("srq", received=len(wcs) + len(more), limit_event=True, last_wqe_event=True,
           resized=resized)
    for qp, peer in zip(qps, peers):
        qp.close()
        chan.send({"op": "close", "qpn": peer["qpn"]})
        chan.recv()
    srq.close()
    mr.close()
    cq.close()


def check_memory_windows(chan):
    """A type 2 window over 4 KiB of an MR, bound to one QP (loopback pairs on this
    device): a WRITE through it lands in the window; the same key through another QP of the
    PD, or past the window's end, is a remote access error; the MR cannot be deregistered
    while the window is bound; after LOCAL_INV the key opens nothing."""
    cq = CQ(ctx, 256)
    mr = MR(pd, 4 * 4096, ACCESS | e.IBV_ACCESS_MW_BIND)
    src = MR(pd, 8192, ACCESS)
    src.write(pattern(7, 8192), 8192, 0)

    def pair():
        a, b = make_qp(cq), make_qp(cq)
        a.to_rts(rts_attr(b.qp_num, gid))
        b.to_rts(rts_attr(a.qp_num, gid))
        return a, b

    def write_through(qp, rkey, offset, size=64):
        qp.post_send(write_wr(src, size, mr.buf + 4096 + offset, rkey))
        [wc] = wait_wc(cq)
        return wc.status

    def bind_window(qp):
        mw = MW(pd, e.IBV_MW_TYPE_2)
        bind = SendWR(opcode=e.IBV_WR_BIND_MW, send_flags=e.IBV_SEND_SIGNALED)
        bind.set_bind_wr(mw, MWBindInfo(mr, mr.buf + 4096, 4096, e.IBV_ACCESS_REMOTE_WRITE))
        qp.post_send(bind)
        [wc] = wait_wc(cq)
        assert wc.status == e.IBV_WC_SUCCESS, f"BIND_MW: status {wc.status}"
        return mw, bind.rkey

    (a1, a2), (b1, b2), (c1, c2) = pair(), pair(), pair()
    mw, rkey = bind_window(a2)
    other_mw, other_rkey = bind_window(c2)
    assert write_through(a1, rkey, 0) == e.IBV_WC_SUCCESS
    assert mr.read(64, 4096) == pattern(7, 64), "the WRITE did not land in the window"
    assert write_through(b1, rkey, 0) == e.IBV_WC_REM_ACCESS_ERR, "another QP used the window"
    assert write_through(c1, other_rkey, 4096 - 32) == e.IBV_WC_REM_ACCESS_ERR, \
        "a WRITE ran past the window's end"
    try:
        mr.close()
        raise AssertionError("an MR with a bound window was deregistered")
    except PyverbsRDMAError:
        pass
    inv = SendWR(opcode=e.IBV_WR_LOCAL_INV, send_flags=e.IBV_SEND_SIGNALED)
    inv.imm_data = rkey
    a2.post_send(inv)
    [wc] = wait_wc(cq)
    assert wc.status == e.IBV_WC_SUCCESS, f"LOCAL_INV: status {wc.status}"
    assert write_through(a1, rkey, 0) == e.IBV_WC_REM_ACCESS_ERR, "invalidated key still works"
    for qp in (a1, a2, b1, b2, c1, c2):
        qp.close()
    mw.close()
    other_mw.close()
    mr.close()
    src.close()
    cq.close()
    report("memory_windows", type=2, window=4096)


def post_calls(kind):
    """Post commands tbrdma0 took from user QPs so far (a doorbell counts): uverbs sends
    commands by write() or by ioctl, so the module's own count is the reliable one. The
    RDMA core caches hw counters for ~10 ms: read only after that has passed."""
    time.sleep(0.05)
    with open(f"/sys/class/infiniband/{DEV}/ports/1/hw_counters/user_post_{kind}_calls") as f:
        return int(f.read())


def check_mapped_queues(chan):
    """Receive posts go into the mapped receive queue without a post command; a send post
    is one doorbell; a full receive queue refuses the next post (ENOMEM); receives posted
    while the QP is in error complete as flushed (the doorbell the error flag asks for)."""
    cq = CQ(ctx, 256)
    qp = make_qp(cq, recv_wr=64)
    mr = MR(pd, MIB, ACCESS)
    peer = connect_qp(chan, qp)
    qp.to_rts(rts_attr(peer["qpn"], peer["gid"]))
    before = post_calls("recv")
    for i in range(64):
        qp.post_recv(RecvWR(wr_id=i, num_sge=1, sg=[SGE(mr.buf, 64, mr.lkey)]))
    recv_calls = post_calls("recv") - before
    assert recv_calls == 0, f"64 receive posts made {recv_calls} post commands"
    n, _ = cq.poll(1)
    assert n == 0, "a completion on a QP that has done nothing yet"
    try:
        qp.post_recv(RecvWR(wr_id=64, num_sge=1, sg=[SGE(mr.buf, 64, mr.lkey)]))
        raise AssertionError("a 65th receive on a full 64-entry receive queue was accepted")
    except PyverbsRDMAError as err:
        assert err.error_code == 12, f"full receive queue: errno {err.error_code}, not ENOMEM"
    before = post_calls("send")
    for i in range(8):
        qp.post_send(write_wr(mr, 64, peer["addr"], peer["rkey"], wr_id=i))
    send_calls = post_calls("send") - before
    assert send_calls == 8, f"8 send posts made {send_calls} post commands, not one doorbell each"
    wait_wc(cq, 8)
    attr = QPAttr()
    attr.qp_state = e.IBV_QPS_ERR
    qp.modify(attr, e.IBV_QP_STATE)
    flushed = wait_wc(cq, 64)
    assert sorted((wc.wr_id, wc.status) for wc in flushed) == [
        (i, e.IBV_WC_WR_FLUSH_ERR) for i in range(64)], "the 64 receives were not all flushed"
    before = post_calls("recv")
    for i in range(3):
        qp.post_recv(RecvWR(wr_id=1000 + i, num_sge=1, sg=[SGE(mr.buf, 64, mr.lkey)]))
    doorbells = post_calls("recv") - before
    assert doorbells == 3, f"3 receive posts in error rang {doorbells} doorbells, not 3"
    late = wait_wc(cq, 3, timeout=10)
    assert [(wc.wr_id, wc.status) for wc in late] == [
        (1000 + i, e.IBV_WC_WR_FLUSH_ERR) for i in range(3)], \
        f"receives posted in error: {[(wc.wr_id, wc.status) for wc in late]}"
    report("mapped_queues", recv_commands=recv_calls, send_commands=send_calls,
           flushed=len(flushed), flushed_after_error=len(late), error_doorbells=doorbells)
    qp.close()
    chan.send({"op": "close", "qpn": peer["qpn"]})
    chan.recv()
    mr.close()
    cq.close()


def objects():
    with open(f"{CFS}/objects") as f:
        return dict((k, int(v)) for k, v in (line.split() for line in f))


def slab_kib():
    with open("/proc/meminfo") as f:
        return dict((line.split(":")[0], int(line.split()[1])) for line in f)["Slab"]


def check_no_leak(chan):
    """1,000 create/destroy cycles of PD, MR, CQ and QP (+ connected QPs with work): the
    module's object counts return to where they were and slab memory does not grow."""
    before, slab_before = objects(), slab_kib()
    for _ in range(1000):
        p = PD(ctx)
        mr = MR(p, 65536, ACCESS)
        cq = CQ(ctx, 16)
        init = QPInitAttr(qp_type=e.IBV_QPT_RC, scq=cq, rcq=cq, sq_sig_all=1,
                          cap=QPCap(max_send_wr=16, max_recv_wr=16))
        attr = QPAttr(port_num=1)
        attr.qp_access_flags = ACCESS
        qp = QP(p, init, attr)
        for i in range(8):
            qp.post_recv(RecvWR(wr_id=i, num_sge=1, sg=[SGE(mr.buf, 64, mr.lkey)]))
        qp.close()
        cq.close()
        mr.close()
        p.close()
    cq = CQ(ctx, 256)
    mr = MR(pd, MIB, ACCESS)
    for _ in range(100):
        qp = make_qp(cq)
        peer = connect_qp(chan, qp)
        qp.to_rts(rts_attr(peer["qpn"], peer["gid"]))
        for i in range(16):
            qp.post_send(write_wr(mr, 65536, peer["addr"], peer["rkey"], wr_id=i))
        qp.close()
        chan.send({"op": "close", "qpn": peer["qpn"]})
        chan.recv()
    mr.close()
    cq.close()
    time.sleep(2)
    after, slab_after = objects(), slab_kib()
    assert after == before, f"object counts {before} -> {after}"
    # one leaked QP, MR or WQE per cycle would be megabytes; allow for unrelated slab noise
    assert slab_after - slab_before < 4096, f"Slab grew {slab_after - slab_before} KiB"
    report("no_leak", objects=after, slab_delta_kib=slab_after - slab_before)


def check_relink_errors_qps(chan):
    """A link rebuild (here: the pairing key written again) moves connected QPs to error."""
    cq = CQ(ctx, 64)
    qp = make_qp(cq)
    peer = connect_qp(chan, qp)
    qp.to_rts(rts_attr(peer["qpn"], peer["gid"]))
    with open(f"{CFS}/peer_key", "w") as f:
        f.write(key)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and qp_state(qp) != e.IBV_QPS_ERR:
        time.sleep(0.1)
    state = qp_state(qp)
    assert state == e.IBV_QPS_ERR, f"QP state {state} after the link was rebuilt, not ERR"
    report("relink_errors_qps", state="ERR")
    qp.close()
    cq.close()


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
    sock.settimeout(600)
    chan = Channel(sock)
    only = os.environ.get("TBSEM_ONLY")
    failed = []
    # Every check runs even after one failed, so a run shows each verdict.
    for check in (check_destroy_purges, check_cq_overflow, check_solicited, check_fence,
                  check_resize_cq, check_query_qp, check_responder_error, check_srq,
                  check_inline, check_send_with_inv, check_memory_windows,
                  check_mapped_queues, check_no_leak,
                  check_relink_errors_qps):
        if only and check.__name__ not in only.split(","):
            continue
        try:
            check(chan)
        except (AssertionError, SystemExit, Exception) as err:  # noqa: BLE001
            failed.append(check.__name__)
            report(check.__name__, failed=f"{type(err).__name__}: {err}")
    chan.send({"op": "quit"})
    chan.recv()
    if failed:
        raise SystemExit(f"failed: {failed}")


if role == "server":
    serve()
else:
    client()
'''
# Sets a virtio-net cable's reported speed (legacy ETHTOOL_GSET/SSET; no ethtool binary in
# the guest). Best effort: the expected rate below is computed from what sysfs then reports.
SET_SPEED = r'''
import ctypes, fcntl, socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for name in sys.argv[2:]:
    cmd = ctypes.create_string_buffer(44)
    struct.pack_into("I", cmd, 0, 1)
    ifr = struct.pack("16sP16x", name.encode(), ctypes.addressof(cmd))
    try:
        fcntl.ioctl(s, 0x8946, ifr)
        struct.pack_into("I", cmd, 0, 2)
        speed = int(sys.argv[1])
        struct.pack_into("H", cmd, 12, speed & 0xffff)
        struct.pack_into("B", cmd, 14, 1)
        struct.pack_into("H", cmd, 28, speed >> 16)
        fcntl.ioctl(s, 0x8946, ifr)
    except OSError as exc:
        print(name, "speed not set:", exc)
'''
LANES = {"1X": 1, "2X": 2, "4X": 4, "8X": 8, "12X": 12}
LANE_MBPS = {"SDR": 2500, "DDR": 5000, "QDR": 10000, "FDR": 14000, "EDR": 25000,
             "HDR": 50000, "NDR": 100000}


def expected_rate(total_mbps):
    """The largest width x lane rate not above the rails' sum (at least 1X SDR)."""
    best, choice = 0, ("1X", "SDR")
    for width, lanes in LANES.items():
        for name, mbps in LANE_MBPS.items():
            if best < lanes * mbps <= total_mbps:
                best, choice = lanes * mbps, (width, name)
    return choice


def no_kernel_trouble(machine):
    check_kernel_log(machine, also=("INFO: task", "lockdep"))


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
    m.wait_until_succeeds("rdma statistic show link tbrdma0/1 | grep -q 'rails_up 2'",
                          timeout=120)

failures = []

# 2. query_port: the rate is the sum of the rails' link speeds, not a fixed 4X EDR.
for m in (a, b):
    m.succeed(f"cat > /tmp/speed.py <<'EOF'\n{SET_SPEED}\nEOF")
    print(m.succeed("python3 /tmp/speed.py 10000 thunderbolt0 thunderbolt1"))
    total = 0
    for cable in ("thunderbolt0", "thunderbolt1"):
        speed = int(m.succeed(f"cat /sys/class/net/{cable}/speed").strip())
        total += speed if speed > 0 else 1000  # unknown counts as 1 Gb/s, as for rxe
    rate = m.succeed("cat /sys/class/infiniband/tbrdma0/ports/1/rate").strip()
    width, name = expected_rate(total)
    print(f"{m.name}: rails {total} Mb/s, port rate {rate!r}")
    if not rate.endswith(f"({width} {name})"):
        failures.append(f"{m.name}: port rate {rate!r}, want {width} {name} ({total} Mb/s)")

# 3. every QP may have max_qp_wr (1024) WRs outstanding at once.
base = "timeout 600 ib_write_bw -d tbrdma0 -x 1 -q 4 -t 1024 -s 4096 -n 4096"
b.succeed(f"({base} > /tmp/qd.out 2>&1; echo $? > /tmp/qd.rc) > /dev/null 2>&1 &")
b.wait_until_succeeds("ss -ltn | grep -q ':18515 '", timeout=60)
status, out = a.execute(f"{base} {ADDR['b']} 2>&1", timeout=660)
b.wait_until_succeeds("test -s /tmp/qd.rc", timeout=660)
print(f"ib_write_bw -q 4 -t 1024 (exit {status}):\n" + "\n".join(out.splitlines()[-3:]))
if status != 0 or b.succeed("cat /tmp/qd.rc").strip() != "0":
    failures.append(f"ib_write_bw -q 4 -t 1024: client exit {status}, server exit "
                    f"{b.succeed('cat /tmp/qd.rc').strip()}:\n{out[-1500:]}")
for m in (a, b):
    no_kernel_trouble(m)

# 4. the semantics checks (client on a, server on b, control over TCP on cable 0).
for m in (a, b):
    m.succeed("rm -rf /tmp/tbsem && mkdir -p /tmp/tbsem && cat > /tmp/tbsem/peer.py <<'EOF'\n"
              + PEER + "\nEOF")
b.succeed(f"(python3 /tmp/tbsem/peer.py server {ADDR['b']} 18600 {KEY} > /tmp/tbsem/out "
          "2> /tmp/tbsem/err; echo $? > /tmp/tbsem/rc) > /dev/null 2>&1 &")
b.wait_until_succeeds("test -e /tmp/tbsem/server.listening", timeout=120)
a.succeed(f"(python3 /tmp/tbsem/peer.py client {ADDR['b']} 18600 {KEY} > /tmp/tbsem/out "
          "2> /tmp/tbsem/err; echo $? > /tmp/tbsem/rc) > /dev/null 2>&1 &")
a.wait_until_succeeds("test -s /tmp/tbsem/rc", timeout=1500)
client_rc = a.succeed("cat /tmp/tbsem/rc").strip()
client_out = a.succeed("cat /tmp/tbsem/out /tmp/tbsem/err")
print(client_out)
if client_rc != "0":
    failures.append(f"semantics client exit {client_rc}:\n{client_out}")
b.wait_until_succeeds("test -s /tmp/tbsem/rc", timeout=120)
if b.succeed("cat /tmp/tbsem/rc").strip() != "0":
    failures.append("semantics server: " + b.succeed("cat /tmp/tbsem/err"))
passed = {json.loads(line)["check"] for line in client_out.splitlines()
          if line.startswith("{") and "failed" not in json.loads(line)}
want = {"destroy_purges_cq", "cq_overflow", "solicited_notify", "fence", "resize_cq",
        "query_qp", "responder_access_error", "srq", "inline", "send_with_inv", "no_leak",
        "relink_errors_qps"}
if not passed >= want:
    failures.append(f"checks not passed: {sorted(want - passed)}")
for m in (a, b):
    no_kernel_trouble(m)
assert not failures, "\n".join(failures)

# 5. teardown: the device and the module go away cleanly.
for m in (a, b):
    m.succeed("PYTHONPATH=/usr/local/lib/tbctl python3 -c 'from tbctl.node import native; "
              "native.destroy(\"tbrdma0\")'")
    m.succeed("modprobe -r tbrdma")
    no_kernel_trouble(m)
