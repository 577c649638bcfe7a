# SPDX-License-Identifier: MIT
# ruff: noqa: F821 - the driver provides start_all, a, b, check_kernel_log, native_create
# RC atomics on tbrdma0 between the two nodes (both cables), through pyverbs:
#  1. both nodes at once run FETCH_AND_ADD and COMPARE_AND_SWAP on the other node's counter
#     over two QPs each (ibv_post_send on one, the ibv_wr_atomic_* API on the other,
#     several in flight per QP). Every returned original is checked: the values claimed
#     (every FETCH_ADD, every CMP_SWP that matched) are exactly 0..K-1, each once, a failed
#     CMP_SWP returned something other than its compare value, and the counter ends at K;
#  2. a misaligned address completes with IBV_WC_REM_INV_REQ_ERR, an MR without
#     REMOTE_ATOMIC with IBV_WC_REM_ACCESS_ERR, memory untouched;
#  3. ibv_rereg_mr gives that MR REMOTE_ATOMIC (moving it to another PD and back): atomics
#     on it then work;
#     new translation is refused; an MR registered with IBV_ACCESS_RELAXED_ORDERING works.
# Globals (NixOS test driver subset): start_all, a, b, check_kernel_log.
import json
import secrets

KEY = secrets.token_hex(32)
ADDR = {"a": "10.77.0.1", "b": "10.77.0.2"}
PEER = r'''
# usage: peer.py a|b <server-ip> <port>. b listens, a connects; JSON lines over TCP.
import json
import socket
import struct
import sys
import time

import pyverbs.enums as e
from pyverbs.addr import GID, AHAttr, GlobalRoute
from pyverbs.cq import CQ
from pyverbs.device import Context
from pyverbs.mr import MR
from pyverbs.pd import PD
from pyverbs.pyverbs_error import PyverbsRDMAError
from pyverbs.qp import QP, QPAttr, QPCap, QPEx, QPInitAttr, QPInitAttrEx
from pyverbs.wr import SGE, SendWR

LOCAL = e.IBV_ACCESS_LOCAL_WRITE
REMOTE = LOCAL | e.IBV_ACCESS_REMOTE_WRITE | e.IBV_ACCESS_REMOTE_READ
ATOMIC = REMOTE | e.IBV_ACCESS_REMOTE_ATOMIC
OPS = e.IBV_QP_EX_WITH_ATOMIC_CMP_AND_SWP | e.IBV_QP_EX_WITH_ATOMIC_FETCH_AND_ADD
ROUNDS, DEPTH = 12, 8          # per QP: ROUNDS x DEPTH atomics, DEPTH in flight
NOATOMIC_INIT = 0x1234
role, server_ip, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = Context(name="tbrdma0")
pd = PD(ctx)
gid = str(ctx.query_gid(1, 1))
dev = ctx.query_device()
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print(json.dumps({"failed": what}), flush=True)


check(dev.atomic_caps == e.IBV_ATOMIC_HCA, f"atomic_cap {dev.atomic_caps}")
check(dev.max_qp_rd_atom >= 1 and dev.max_qp_init_rd_atom >= 1, "rd_atom limits")


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


def make_qp(cq, ex):
    """An RC QP in INIT; ex: created with the ibv_wr_* atomic send ops."""
    cap = QPCap(max_send_wr=64, max_recv_wr=4, max_send_sge=1, max_recv_sge=1)
    attr = QPAttr(port_num=1)
    attr.qp_access_flags = ATOMIC
    if ex:
        init = QPInitAttrEx(qp_type=e.IBV_QPT_RC, scq=cq, rcq=cq, pd=pd, cap=cap,
                            sq_sig_all=1, send_ops_flags=OPS,
                            comp_mask=e.IBV_QP_INIT_ATTR_PD
                            | e.IBV_QP_INIT_ATTR_SEND_OPS_FLAGS)
        return QPEx(ctx, init, attr)
    return QP(pd, QPInitAttr(qp_type=e.IBV_QPT_RC, scq=cq, rcq=cq, cap=cap, sq_sig_all=1),
              attr)


def connect(qp, peer_qpn, peer_gid):
    attr = QPAttr(port_num=1)
    attr.qp_access_flags = ATOMIC
    attr.path_mtu = e.IBV_MTU_4096
    attr.max_dest_rd_atomic = 4
    attr.max_rd_atomic = 4      # fewer than DEPTH: the rest wait for a free resource
    attr.min_rnr_timer = 1
    attr.rnr_retry = 7
    attr.retry_cnt = 7
    attr.timeout = 14
    attr.ah_attr = AHAttr(port_num=1, is_global=1,
                          gr=GlobalRoute(dgid=GID(peer_gid), sgid_index=1))
    attr.dest_qp_num = peer_qpn
    qp.to_rts(attr)


def poll(cq, count, timeout=120):
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        n, wcs = cq.poll(count - len(got))
        got += wcs[:n]
        if not n:
            if time.monotonic() > deadline:
                raise SystemExit(f"{role}: {len(got)} of {count} completions")
            time.sleep(0.001)
    return got


def u64(mr, off):
    return struct.unpack("<Q", mr.read(8, off))[0]


cq = CQ(ctx, 512)
qps = {"plain": make_qp(cq, False), "ex": make_qp(cq, True),
       "misaligned": make_qp(cq, False), "denied": make_qp(cq, False),
       "rereg": make_qp(cq, False)}
# [0, 8): the counter the peer hammers; [8, 16): scratch
target = MR(pd, 4096, ATOMIC)
target.write(bytes(4096), 4096, 0)
noatomic = MR(pd, 4096, REMOTE)
noatomic.write(struct.pack("<Q", NOATOMIC_INIT), 8, 0)
results = MR(pd, 8 * 2 * ROUNDS * DEPTH + 64, LOCAL | e.IBV_ACCESS_RELAXED_ORDERING)
me = {"qpns": {k: q.qp_num for k, q in qps.items()}, "gid": gid,
      "target": [target.rkey, target.buf], "noatomic": [noatomic.rkey, noatomic.buf]}
if role == "b":
    listener = socket.create_server((server_ip, port))
    open("/tmp/tbat/listening", "w").write("1")
    chan = Channel(listener.accept()[0])
    peer = chan.recv()
    chan.send(me)
else:
    deadline = time.monotonic() + 120
    while True:
        try:
            sock = socket.create_connection((server_ip, port), timeout=10)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    chan = Channel(sock)
    chan.send(me)
    peer = chan.recv()
for name, qp in qps.items():
    connect(qp, peer["qpns"][name], peer["gid"])
chan.send({"ready": True})
chan.recv()


def post_atomic(name, wr_id, slot, op, rkey, addr, compare_add, swap=0):
    qp = qps[name]
    sge = SGE(results.buf + 8 * slot, 8, results.lkey)
    if name == "ex":
        qp.wr_start()
        qp.wr_id = wr_id
        qp.wr_flags = e.IBV_SEND_SIGNALED
        if op == e.IBV_WR_ATOMIC_FETCH_AND_ADD:
            qp.wr_atomic_fetch_add(rkey, addr, compare_add)
        else:
            qp.wr_atomic_cmp_swp(rkey, addr, compare_add, swap)
        qp.wr_set_sge(sge)
        qp.wr_complete()
        return
    wr = SendWR(wr_id=wr_id, opcode=op, num_sge=1, sg=[sge],
                send_flags=e.IBV_SEND_SIGNALED)
    wr.set_wr_atomic(rkey, addr, compare_add, swap)
    qp.post_send(wr)


# 1. both nodes, both QPs, on the peer's counter at once
rkey, addr = peer["target"]
claimed, cas_ok, cas_failed, seen_max = [], 0, 0, -1
started = time.monotonic()
for rnd in range(ROUNDS):
    ops = {}
    for qi, name in enumerate(("plain", "ex")):
        for k in range(DEPTH):
            slot = (rnd * 2 + qi) * DEPTH + k
            wr_id = slot + 1
            results.write(struct.pack("<Q", 0xdeadbeefdeadbeef), 8, 8 * slot)
            if k % 2 == 0:
                post_atomic(name, wr_id, slot, e.IBV_WR_ATOMIC_FETCH_AND_ADD, rkey, addr, 1)
                ops[wr_id] = ("fa", slot, None)
            else:
                # a guess at the current value: some match, some do not
                guess = seen_max + 1 + k // 2
                post_atomic(name, wr_id, slot, e.IBV_WR_ATOMIC_CMP_AND_SWP, rkey, addr,
                            guess, guess + 1)
                ops[wr_id] = ("cs", slot, guess)
    for wc in poll(cq, len(ops)):
        kind, slot, guess = ops.pop(wc.wr_id)
        want = e.IBV_WC_FETCH_ADD if kind == "fa" else e.IBV_WC_COMP_SWAP
        check(wc.status == e.IBV_WC_SUCCESS, f"{kind} {wc.wr_id}: status {wc.status}")
        check(wc.opcode == want, f"{kind} {wc.wr_id}: opcode {wc.opcode}")
        check(wc.byte_len == 8, f"{kind} {wc.wr_id}: byte_len {wc.byte_len}")
        orig = u64(results, 8 * slot)
        if kind == "fa" or orig == guess:
            claimed.append(orig)
            cas_ok += kind == "cs"
        else:
            cas_failed += 1
        seen_max = max(seen_max, orig)
    check(not ops, f"round {rnd}: no completion for {sorted(ops)}")
elapsed = time.monotonic() - started
check(sorted(claimed) == list(range(len(claimed))),
      f"claimed originals are not 0..K-1 once each: {sorted(claimed)}")
print(json.dumps({"phase": "concurrent", "atomics": 2 * ROUNDS * DEPTH,
                  "claimed": len(claimed), "cas_ok": cas_ok, "cas_failed": cas_failed,
                  "seconds": round(elapsed, 2)}), flush=True)
chan.send({"claimed": len(claimed)})
peer_claimed = chan.recv()["claimed"]
# every atomic of both peer QPs has completed: our counter holds exactly their claims
check(u64(target, 0) == peer_claimed,
      f"counter {u64(target, 0)}, peer claimed {peer_claimed}")

# 2. errors (a requests, b's memory); 3. rereg and relaxed ordering
if role == "a":
    nrkey, naddr = peer["noatomic"]
    results.write(struct.pack("<Q", 0x5555), 8, 0)
    post_atomic("misaligned", 1, 0, e.IBV_WR_ATOMIC_FETCH_AND_ADD, rkey, addr + 4, 1)
    (wc,) = poll(cq, 1)
    check(wc.status == e.IBV_WC_REM_INV_REQ_ERR, f"misaligned: status {wc.status}")
    post_atomic("denied", 2, 0, e.IBV_WR_ATOMIC_CMP_AND_SWP, nrkey, naddr,
                NOATOMIC_INIT, 99)
    (wc,) = poll(cq, 1)
    check(wc.status == e.IBV_WC_REM_ACCESS_ERR, f"no REMOTE_ATOMIC: status {wc.status}")
    check(u64(results, 0) == 0x5555, "a failed atomic wrote its result buffer")
    print(json.dumps({"phase": "errors", "misaligned": "REM_INV_REQ_ERR",
                      "denied": "REM_ACCESS_ERR"}), flush=True)
    chan.send({"op": "rereg"})
    reply = chan.recv()
    check(reply["untouched"], "the failed atomics changed the peer's memory")
    post_atomic("rereg", 3, 1, e.IBV_WR_ATOMIC_FETCH_AND_ADD, nrkey, naddr, 7)
    post_atomic("rereg", 4, 2, e.IBV_WR_ATOMIC_CMP_AND_SWP, nrkey, naddr,
                NOATOMIC_INIT + 7, 42)
    for wc in poll(cq, 2):
        check(wc.status == e.IBV_WC_SUCCESS, f"after rereg: {wc.wr_id} status {wc.status}")
    check(u64(results, 8) == NOATOMIC_INIT and u64(results, 16) == NOATOMIC_INIT + 7,
          f"after rereg: originals {u64(results, 8)}, {u64(results, 16)}")
    chan.send({"op": "value"})
    check(chan.recv()["value"] == 42, "after rereg: the peer's value")
    print(json.dumps({"phase": "rereg", "ok": True}), flush=True)
    chan.send({"op": "quit"})
    check(not chan.recv()["failures"], "peer failures")
else:
    while True:
        req = chan.recv()
        if req["op"] == "quit":
            chan.send({"failures": failures})
            break
        if req["op"] == "value":
            chan.send({"value": u64(noatomic, 0)})
            continue
        untouched = u64(noatomic, 0) == NOATOMIC_INIT and u64(target, 0) == peer_claimed
        # new translation is refused (as rxe); access and PD change in place, keys kept
        try:
            noatomic.rereg(e.IBV_REREG_MR_CHANGE_TRANSLATION, pd, noatomic.buf, 4096, 0)
            check(False, "rereg with new translation accepted")
        except PyverbsRDMAError:
            pass
        # to another PD with the new access, then back to the QPs' PD (access kept)
        pd2 = PD(ctx)
        noatomic.rereg(e.IBV_REREG_MR_CHANGE_ACCESS | e.IBV_REREG_MR_CHANGE_PD, pd2, 0, 0,
                       ATOMIC)
        noatomic.rereg(e.IBV_REREG_MR_CHANGE_PD, pd, 0, 0, 0)
        chan.send({"untouched": untouched})
print(json.dumps({"role": role, "failures": len(failures)}), flush=True)
sys.exit(1 if failures else 0)
'''

start_all()
for m in (a, b):
    m.wait_for_unit("multi-user.target")

# a device on both cables
for m, initiator in ((a, 1), (b, 0)):
    m.succeed("modprobe tbrdma")
    m.succeed("ip link set thunderbolt0 mtu 9000 && ip link set thunderbolt1 mtu 9000")
    m.succeed(f"ip addr replace {ADDR[m.name]}/24 dev thunderbolt0")
    native_create(m, "thunderbolt0,thunderbolt1", KEY, initiator)
for m in (a, b):
    m.wait_until_succeeds("grep -q ACTIVE /sys/class/infiniband/tbrdma0/ports/1/state",
                          timeout=120)

for m in (a, b):
    m.succeed("rm -rf /tmp/tbat && mkdir -p /tmp/tbat && cat > /tmp/tbat/peer.py <<'EOF'\n"
              + PEER + "\nEOF")
b.succeed(f"(python3 /tmp/tbat/peer.py b {ADDR['b']} 18710 > /tmp/tbat/out "
          "2> /tmp/tbat/err; echo $? > /tmp/tbat/rc) > /dev/null 2>&1 &")
b.wait_until_succeeds("test -e /tmp/tbat/listening", timeout=120)
a.succeed(f"(python3 /tmp/tbat/peer.py a {ADDR['b']} 18710 > /tmp/tbat/out "
          "2> /tmp/tbat/err; echo $? > /tmp/tbat/rc) > /dev/null 2>&1 &")
a.wait_until_succeeds("test -s /tmp/tbat/rc", timeout=600)
b.wait_until_succeeds("test -s /tmp/tbat/rc", timeout=120)
outs = {}
for m in (a, b):
    rc = m.succeed("cat /tmp/tbat/rc").strip()
    outs[m.name] = m.succeed("cat /tmp/tbat/out /tmp/tbat/err")
    print(f"{m.name} (exit {rc}):\n{outs[m.name]}")
    assert rc == "0", outs[m.name]
phases = {json.loads(line)["phase"] for line in outs["a"].splitlines()
          if line.startswith('{"phase"')}
assert phases == {"concurrent", "errors", "rereg"}, outs["a"]
assert '"phase": "concurrent"' in outs["b"], outs["b"]
for m in (a, b):
    check_kernel_log(m)

# teardown: the device and the module go away cleanly
for m in (a, b):
    m.succeed("PYTHONPATH=/usr/local/lib/tbctl python3 -c 'from tbctl.node import native; "
              "native.destroy(\"tbrdma0\")'")
    m.succeed("modprobe -r tbrdma")
    check_kernel_log(m)
