# SPDX-License-Identifier: MIT
# ruff: noqa: F821 - the driver provides start_all, a, b
# tbrdma end to end on two nodes: module load/unload x20, devices with rails on both cables
# through tbctl's native.py, ibv_devices/ibv_devinfo PORT_ACTIVE, perftest over RC and UC,
# ibv_rc_pingpong and ibv_srq_pingpong, rdma_cm (rping, ib_write_bw -R), byte-exact pyverbs
# SEND/WRITE/WRITE_WITH_IMM/READ from 1 B to 16 MiB on one and two rails, and misuse (bad rkey,
# WRITE past the MR end, an MR of another PD than the target QP's, destroying a QP with work
# outstanding) - each checked for kernel warnings; per-QP transport: a SEND posted before the
# peer's RTR completes once the peer is ready, a WRITE to a destroyed peer QP completes with
# IBV_WC_REM_OP_ERR, and a QP in RNR for a while stalls neither rping nor another QP.
# Globals (NixOS test driver subset): start_all, a, b.
import secrets

KEY = secrets.token_hex(32)
ADDR = {"a": "10.77.0.1", "b": "10.77.0.2"}
SIZES = [1, 7, 4096, 65537, 1 << 20, 16 << 20]

# Runs on the nodes: one RC QP; server/client exchange JSON files through the test script.
PEER = r'''
import json, os, random, sys, time
import pyverbs.enums as e
from pyverbs.addr import GID, AHAttr, GlobalRoute
from pyverbs.cq import CQ
from pyverbs.device import Context
from pyverbs.mr import MR
from pyverbs.pd import PD
from pyverbs.qp import QP, QPAttr, QPCap, QPInitAttr
from pyverbs.wr import SGE, RecvWR, SendWR

role, sizes, workdir = sys.argv[1], [int(s) for s in sys.argv[2].split(",")], sys.argv[3]
mode = sys.argv[4] if len(sys.argv) > 4 else "data"
big = max(sizes)
access = e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_REMOTE_WRITE | e.IBV_ACCESS_REMOTE_READ
ctx = Context(name="tbrdma0")
pd = PD(ctx)
# [0, big): SEND source / WRITE_WITH_IMM target; [big, 2 big): WRITE then READ target, so the
# client's next WRITE cannot overwrite what the server is still verifying. In mode other_pd the
# server's MR belongs to a second PD, so the peer's valid rkey must not reach it via this QP.
mr = MR(PD(ctx) if mode == "other_pd" and role == "server" else pd, 2 * big, access)
back = MR(pd, 2 * big, access)
cq = CQ(ctx, 256)
init = QPInitAttr(qp_type=e.IBV_QPT_RC, scq=cq, rcq=cq, sq_sig_all=1,
                  cap=QPCap(max_send_wr=64, max_recv_wr=64, max_send_sge=2, max_recv_sge=2))
attr = QPAttr(port_num=1)
attr.qp_access_flags = access
qp = QP(pd, init, attr)
gid_index = 1
me = {"qpn": qp.qp_num, "gid": str(ctx.query_gid(1, gid_index)), "rkey": mr.rkey,
      "addr": mr.buf, "length": 2 * big}
open(f"{workdir}/{role}.json", "w").write(json.dumps(me))
while True:
    try:
        peer = json.loads(open(f"{workdir}/peer.json").read())
        break
    except (OSError, ValueError):
        time.sleep(0.2)
attr = QPAttr(port_num=1)
attr.path_mtu = e.IBV_MTU_4096
attr.max_dest_rd_atomic = 16
attr.max_rd_atomic = 16
# rnr: the server holds back its receive for a while; the sender's retries every 40.96 ms
# (IBA code 24) keep its RNR NAKs from crowding the other QPs' traffic under TCG
attr.min_rnr_timer = 24 if mode == "rnr" else 1
attr.rnr_retry = 7
attr.retry_cnt = 7
# early: "not ready" counts against retry_cnt (a QP that never opens must fail), so the
# timeout covers the test script bringing the server to RTR over two ssh round trips and a
# 1 s poll, slow under TCG: 1.07 s per retry, 8.6 s in all
attr.timeout = 18 if mode == "early" else 14
attr.ah_attr = AHAttr(port_num=1, is_global=1,
                      gr=GlobalRoute(dgid=GID(peer["gid"]), sgid_index=gid_index))
attr.dest_qp_num = peer["qpn"]
qp.to_rts(attr)
if mode == "destroyed" and role == "server":
    qp.close()  # the client's WRITE finds a destroyed QP
if mode == "early" and role == "client":
    # posted before the server's QP exists: retried until it does
    mr.write(random.Random(4096).randbytes(4096), 4096, 0)
    qp.post_send(SendWR(opcode=e.IBV_WR_SEND, num_sge=1, sg=[SGE(mr.buf, 4096, mr.lkey)]))
open(f"{workdir}/{role}.ready", "w").write("1")

def payload(size, salt):
    return random.Random(size * 7919 + salt).randbytes(size)

step = "setup"  # what the client or server is waiting for, named in a failure

def wait(expect_status=e.IBV_WC_SUCCESS, timeout=300, idle=0.0):
    # idle: seconds to sleep between empty polls (a long wait must not spin the one vCPU)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n, wcs = cq.poll(1)
        if n:
            if wcs[0].status != expect_status:
                raise SystemExit(f"{role} {step}: completion status {wcs[0].status}, "
                                 f"expected {expect_status}")
            return wcs[0]
        if idle:
            time.sleep(idle)
    raise SystemExit("no completion")

def post(opcode, size, local=mr, raddr=0, rkey=0, imm=0, offset=0):
    # two SGEs when possible, so scatter/gather is exercised
    if size >= 2:
        half = size // 2
        sg = [SGE(local.buf + offset, half, local.lkey),
              SGE(local.buf + offset + half, size - half, local.lkey)]
    else:
        sg = [SGE(local.buf + offset, size, local.lkey)]
    wr = SendWR(opcode=opcode, num_sge=len(sg), sg=sg, imm_data=imm)
    if rkey:
        wr.set_wr_rdma(rkey, raddr)
    qp.post_send(wr)

def recv(size):
    qp.post_recv(RecvWR(num_sge=1, sg=[SGE(back.buf, max(size, 1), back.lkey)]))

if mode == "data" and role == "server":
    for size in sizes:
        recv(size)
        step = f"SEND {size}"
        wc = wait()
        assert wc.opcode == e.IBV_WC_RECV and wc.byte_len == size, (wc.opcode, wc.byte_len)
        assert back.read(size, 0) == payload(size, 1), f"SEND data differs at {size}"
        recv(size)
        step = f"WRITE_WITH_IMM {size}"
        wc = wait()
        assert wc.opcode == e.IBV_WC_RECV_RDMA_WITH_IMM, wc.opcode
        assert wc.imm_data == size & 0xffffffff, wc.imm_data
        assert mr.read(size, 0) == payload(size, 2), f"WRITE_WITH_IMM data differs at {size}"
    # the client still WRITEs and READs this QP's MR: stay until it is done
    while not os.path.exists(f"{workdir}/done"):
        time.sleep(0.2)
    print(json.dumps({"ok": True, "role": role}))
elif mode == "data":
    for size in sizes:
        mr.write(payload(size, 1), size, 0)
        step = f"SEND {size}"
        post(e.IBV_WR_SEND, size)
        wait()
        mr.write(payload(size, 2), size, 0)
        step = f"WRITE_WITH_IMM {size}"
        post(e.IBV_WR_RDMA_WRITE_WITH_IMM, size, raddr=peer["addr"], rkey=peer["rkey"],
             imm=size & 0xffffffff)
        wait()
        data = payload(size, 3)
        mr.write(data, size, 0)
        step = f"WRITE {size}"
        post(e.IBV_WR_RDMA_WRITE, size, raddr=peer["addr"] + big, rkey=peer["rkey"])
        wait()
        back.write(bytes(size), size, 0)
        step = f"READ {size}"
        post(e.IBV_WR_RDMA_READ, size, local=back, raddr=peer["addr"] + big, rkey=peer["rkey"])
        wait()
        assert back.read(size, 0) == data, f"WRITE then READ differs at {size}"
    print(json.dumps({"ok": True, "role": role}))
elif mode == "misuse" and role == "client":
    post(e.IBV_WR_RDMA_WRITE, 64, raddr=peer["addr"], rkey=peer["rkey"] ^ 0x5a5a5a5a)
    wait(e.IBV_WC_REM_ACCESS_ERR)
    print(json.dumps({"bad_rkey": "IBV_WC_REM_ACCESS_ERR"}))
elif mode == "other_pd" and role == "client":
    post(e.IBV_WR_RDMA_WRITE, 64, raddr=peer["addr"], rkey=peer["rkey"])
    wait(e.IBV_WC_REM_ACCESS_ERR)
    print(json.dumps({"mr_of_other_pd": "IBV_WC_REM_ACCESS_ERR"}))
elif mode == "past_end" and role == "client":
    post(e.IBV_WR_RDMA_WRITE, 4096, raddr=peer["addr"] + peer["length"] - 100,
         rkey=peer["rkey"])
    wait(e.IBV_WC_REM_ACCESS_ERR)
    print(json.dumps({"past_end": "IBV_WC_REM_ACCESS_ERR"}))
elif mode == "early" and role == "client":
    wait(timeout=120)
    print(json.dumps({"post_before_peer_rtr": "IBV_WC_SUCCESS"}))
elif mode == "early":
    recv(4096)
    wc = wait(timeout=120)
    assert back.read(4096, 0) == random.Random(4096).randbytes(4096), "early SEND data differs"
    print(json.dumps({"early_send_received": wc.byte_len}))
elif mode == "destroyed" and role == "client":
    start = time.monotonic()
    post(e.IBV_WR_RDMA_WRITE, 64, raddr=peer["addr"], rkey=peer["rkey"])
    wait(e.IBV_WC_REM_OP_ERR, timeout=30)
    print(json.dumps({"write_to_destroyed_qp": "IBV_WC_REM_OP_ERR",
                      "seconds": round(time.monotonic() - start, 3)}))
elif mode == "rnr" and role == "client":
    mr.write(payload(4096, 5), 4096, 0)
    start = time.monotonic()
    post(e.IBV_WR_SEND, 4096)
    step = "SEND 4096 into a receive queue posted late"
    wait(timeout=900, idle=0.05)
    print(json.dumps({"rnr_send": "IBV_WC_SUCCESS", "seconds": round(time.monotonic() - start, 3)}))
elif mode == "rnr":
    while not os.path.exists(f"{workdir}/post_recv"):
        time.sleep(0.2)
    recv(4096)
    step = "SEND 4096 after the late receive"
    wc = wait(timeout=900, idle=0.05)
    assert back.read(4096, 0) == payload(4096, 5), "RNR-delayed SEND data differs"
    print(json.dumps({"rnr_send_received": wc.byte_len}))
elif mode == "flush" and role == "client":
    for _ in range(32):
        post(e.IBV_WR_RDMA_WRITE, 65536, raddr=peer["addr"], rkey=peer["rkey"])
    for _ in range(16):
        recv(64)
    qp.close()
    print(json.dumps({"destroyed_with_outstanding": 48}))
else:
    while not os.path.exists(f"{workdir}/done"):
        time.sleep(0.2)
    print(json.dumps({"idle_server": True}))
'''

# the lab installs tbctl under /usr/local/lib/tbctl (its launcher sets PYTHONPATH likewise)


def start_pair(mode, sizes=SIZES, server_mode=None, client_first=False, workdir="/tmp/tbv"):
    """Starts the peer script on both nodes (server on b, client on a) and connects them."""
    for m in (a, b):
        m.succeed(f"rm -rf {workdir} && mkdir -p {workdir} && cat > {workdir}/peer.py <<'EOF'\n"
                  + PEER + "\nEOF")
    sizes_arg = ",".join(str(s) for s in sizes)
    # detached from the shell's output, or the runner would wait for it
    b.succeed(f"(python3 {workdir}/peer.py server {sizes_arg} {workdir} {server_mode or mode} "
              f"> {workdir}/out 2> {workdir}/err; echo $? > {workdir}/rc) > /dev/null 2>&1 &")
    a.succeed(f"(python3 {workdir}/peer.py client {sizes_arg} {workdir} {mode} "
              f"> {workdir}/out 2> {workdir}/err; echo $? > {workdir}/rc) > /dev/null 2>&1 &")
    b.wait_until_succeeds(f"test -s {workdir}/server.json", timeout=120)
    a.wait_until_succeeds(f"test -s {workdir}/client.json", timeout=120)
    info_b = b.succeed(f"cat {workdir}/server.json")
    info_a = a.succeed(f"cat {workdir}/client.json")
    # the server's QP is open before the client sends anything, unless client_first
    first, second = ((a, info_b, "client"), (b, info_a, "server"))
    if not client_first:
        first, second = second, first
    for m, info, role in (first, second):
        m.succeed(f"echo '{info}' > {workdir}/p.tmp && mv {workdir}/p.tmp {workdir}/peer.json")
        m.wait_until_succeeds(f"test -e {workdir}/{role}.ready", timeout=60)


def finish_pair(mode, timeout=900, workdir="/tmp/tbv"):
    """Waits for the client, lets the server go, and returns both outputs (exit 0 each)."""
    results = {}
    a.wait_until_succeeds(f"test -s {workdir}/rc", timeout=timeout)
    b.succeed(f"touch {workdir}/done")
    for m in (a, b):
        m.wait_until_succeeds(f"test -s {workdir}/rc", timeout=timeout)
        rc = m.succeed(f"cat {workdir}/rc").strip()
        out = m.succeed(f"cat {workdir}/out; cat {workdir}/err")
        assert rc == "0", (f"{m.name} {mode}: exit {rc}\n{out}\n"
                           + "\n".join(f"{n.name}: {stats(n)}" for n in (a, b)))
        results[m.name] = out
    return results


def run_pair(mode, sizes=SIZES, server_mode=None, timeout=900, client_first=False):
    start_pair(mode, sizes, server_mode, client_first)
    return finish_pair(mode, timeout)


def run_rping():
    """rping -V between the nodes: ten pings, each echoed back and compared by the client."""
    b.succeed(f"(timeout 180 rping -s -a {ADDR['b']} -v -V -C 10 > /tmp/rping.out 2>&1; "
              "echo $? > /tmp/rping.rc) > /dev/null 2>&1 &")
    b.wait_until_succeeds("rdma resource show cm_id | grep -q LISTEN", timeout=60)
    status, out = a.execute(f"timeout 180 rping -c -a {ADDR['b']} -v -V -C 10 2>&1", timeout=240)
    b.wait_until_succeeds("test -s /tmp/rping.rc", timeout=240)
    server_rc = b.succeed("cat /tmp/rping.rc && rm /tmp/rping.rc").strip()
    server_out = b.succeed("cat /tmp/rping.out")
    print(f"rping client (exit {status}):\n{out}\nrping server (exit {server_rc}):\n{server_out}")
    assert status == 0, f"rping client exit {status}:\n{out}\nserver:\n{server_out}"
    assert server_rc == "0", f"rping server exit {server_rc}:\n{server_out}"
    assert out.count("ping data: rdma-ping-") == 10, out
    assert server_out.count("server ping data: rdma-ping-") == 10, server_out


def stats(machine):
    out = machine.succeed("rdma statistic show link tbrdma0/1").split()
    return {out[i]: int(out[i + 1]) for i in range(2, len(out) - 1, 2) if out[i + 1].isdigit()}


start_all()
for m in (a, b):
    m.wait_for_unit("multi-user.target")

# 1. load/unload 20 times: devices appear and vanish, nothing leaks or warns.
for m in (a, b):
    m.succeed("modprobe -r tbrdma 2>/dev/null; true")
    m.succeed(
        "for i in $(seq 20); do modprobe tbrdma && "
        "rdma link add tbrdma0 type tbrdma netdev thunderbolt0 && "
        "test -e /sys/class/infiniband/tbrdma0 && "
        "test -d /sys/kernel/config/tbrdma/tbrdma0 && "
        "rdma link delete tbrdma0 && test ! -e /sys/class/infiniband/tbrdma0 && "
        "modprobe -r tbrdma && test ! -e /sys/module/tbrdma || exit 1; done", timeout=600)
    check_kernel_log(m)

# 2. devices with a rail on cable 0, the pairing key, PORT_ACTIVE.
for m, initiator in ((a, 1), (b, 0)):
    # jumbo frames: per-frame cost dominates under TCG (rails take the MTU when added)
    m.succeed("ip link set thunderbolt0 mtu 9000 && ip link set thunderbolt1 mtu 9000")
    m.succeed(f"ip addr replace {ADDR[m.name]}/24 dev thunderbolt0")
    native_create(m, "thunderbolt0", KEY, initiator)
for m in (a, b):
    m.wait_until_succeeds("grep -q ACTIVE /sys/class/infiniband/tbrdma0/ports/1/state",
                          timeout=120)
    devices = m.succeed("ibv_devices")
    assert "tbrdma0" in devices, devices
    info = m.succeed("ibv_devinfo -d tbrdma0")
    assert "PORT_ACTIVE" in info, info
    print(m.succeed("cat /sys/kernel/config/tbrdma/tbrdma0/state "
                    "/sys/kernel/config/tbrdma/tbrdma0/rails"))
    # re-applying the same pairing changes nothing (idempotent, link stays up)
    native_create(m, "thunderbolt0", KEY, int(m is a))
    m.succeed("grep -q ACTIVE /sys/class/infiniband/tbrdma0/ports/1/state")

# 3. perftest (RC, and UC where perftest supports it), ibv_rc_pingpong, ibv_srq_pingpong.
PERF = [("ib_write_bw", "-s 65536 -n 200"), ("ib_read_bw", "-s 65536 -n 100"),
        ("ib_send_bw", "-s 65536 -n 200"), ("ib_write_lat", "-s 2 -n 200"),
        ("ib_read_lat", "-s 2 -n 200"), ("ib_send_lat", "-s 2 -n 200"),
        ("ib_write_bw", "-c UC -s 65536 -n 200"), ("ib_send_bw", "-c UC -s 65536 -n 200"),
        ("ib_write_lat", "-c UC -s 2 -n 200"), ("ib_send_lat", "-c UC -s 2 -n 200")]
for tool, args in PERF:
    out = perftest(b, a, f"{tool} -d tbrdma0 -x 1 {args}", ADDR["b"])
    print(f"{tool} {args}:\n" + "\n".join(out.splitlines()[-3:]))
# ibv_srq_pingpong: four RC QPs receiving from one shared receive queue on each side.
for pingpong in ("ibv_rc_pingpong -d tbrdma0 -g 1 -n 100",
                 "ibv_srq_pingpong -d tbrdma0 -g 1 -n 100 -q 4"):
    b.succeed(f"(timeout 120 {pingpong} > /tmp/pp.out 2>&1; "
              "echo $? > /tmp/pp.rc) > /dev/null 2>&1 &")
    print(a.wait_until_succeeds(f"timeout 120 {pingpong} {ADDR['b']} 2>&1", timeout=300))
    b.wait_until_succeeds("test -s /tmp/pp.rc", timeout=120)
    assert b.succeed("cat /tmp/pp.rc; rm /tmp/pp.rc").strip() == "0", \
        b.succeed("cat /tmp/pp.out")
for m in (a, b):
    check_kernel_log(m)

# 4. rdma_cm: the connection is made with IB CM MADs (REQ/REP/RTU, DREQ/DREP) on QP1, so
# GSI datagrams must cross the link both ways. rping -V checks every ping's data.
for m in (a, b):
    m.succeed("modprobe rdma_ucm")
gsi_before = {m.name: stats(m) for m in (a, b)}
run_rping()
for m in (a, b):
    delta = {k: stats(m)[k] - gsi_before[m.name].get(k, 0)
             for k in ("gsi_sent", "gsi_received", "gsi_dropped")}
    print(f"{m.name} QP1 during rping: {delta}")
    assert delta["gsi_sent"] > 0 and delta["gsi_received"] > 0, delta
    check_kernel_log(m)

# perftest with its connection made by rdma_cm (-R) instead of its TCP exchange.
out = perftest(b, a, "ib_write_bw -d tbrdma0 -R -s 65536 -n 200", ADDR["b"],
               ready="rdma resource show cm_id | grep -q LISTEN")
print("ib_write_bw -R -s 65536 -n 200:\n" + "\n".join(out.splitlines()[-3:]))
for m in (a, b):
    check_kernel_log(m)

# 5. pyverbs byte-exact data on one rail, then on two.
print(run_pair("data"))
for m, initiator in ((a, 1), (b, 0)):
    native_create(m, "thunderbolt0,thunderbolt1", KEY, initiator)
for m in (a, b):
    m.wait_until_succeeds(
        "test $(grep -c ' added ' /sys/kernel/config/tbrdma/tbrdma0/rails) = 2", timeout=60)
    m.wait_until_succeeds("rdma statistic show link tbrdma0/1 | grep -q 'rails_up 2'",
                          timeout=120)
before = stats(a)
print(run_pair("data"))
rails = a.succeed("cat /sys/kernel/config/tbrdma/tbrdma0/rails")
print(rails)
for line in rails.splitlines():
    # both rails carried traffic during the two-rail run
    assert int(line.split(" tx ")[1].split()[0]) > 100, rails
print({k: stats(a)[k] - before.get(k, 0) for k in ("tx_frames", "retransmits")})
for m in (a, b):
    assert stats(m)["link_state"] == 1, stats(m)
    check_kernel_log(m)

# 6. misuse: bad rkey, WRITE past the MR end and an rkey whose MR is in another PD than the
# target QP's fail with remote access errors; destroying a
# QP with work outstanding flushes cleanly; no kernel warning.
print(run_pair("misuse", sizes=[65536], server_mode="idle"))
print(run_pair("past_end", sizes=[65536], server_mode="idle"))
print(run_pair("other_pd", sizes=[65536]))
print(run_pair("flush", sizes=[65536], server_mode="idle"))
for m in (a, b):
    check_kernel_log(m)
    assert stats(m)["link_state"] == 1, stats(m)

# 6b. per-QP transport: a SEND posted right after RTS, before the peer's QP reached RTR,
# completes once it does; a WRITE to a destroyed peer QP fails with REM_OP_ERR at once
# (seconds printed, not asserted), and the link stays up.
before = stats(b)
print(run_pair("early", sizes=[4096], client_first=True))
middle = stats(b)
print(run_pair("destroyed", sizes=[64]))
after = stats(b)
# b's core really answered "not ready", then "QP error" (else the steps proved nothing)
nak_counts = {k: (middle[k] - before[k], after[k] - middle[k])
              for k in ("naks_not_ready_sent", "naks_qp_error_sent")}
print(f"b NAKs sent (early, destroyed): {nak_counts}")
assert nak_counts["naks_not_ready_sent"][0] >= 1, nak_counts
assert nak_counts["naks_qp_error_sent"][1] >= 1, nak_counts
for m in (a, b):
    check_kernel_log(m)
    assert stats(m)["link_state"] == 1, stats(m)

# 6c. RNR on one QP stalls only that QP: b posts its receive late (rnr_retry 7, so a's SEND
# is retried for as long as it takes), and meanwhile rping and a byte-exact pyverbs pair run
# over the same link on other QPs; then b posts the receive and the SEND completes.
before = stats(b)
start_pair("rnr", sizes=[4096], workdir="/tmp/tbr")
run_rping()
print(run_pair("data", sizes=[4096, 1048576]))
stalled = a.execute("test -s /tmp/tbr/rc")[0] != 0
rnr_naks = stats(b)["rnr_naks_sent"] - before["rnr_naks_sent"]
print(f"while the other QPs ran: RNR SEND still pending {stalled}, b sent {rnr_naks} RNR NAKs")
assert stalled and rnr_naks >= 1, (stalled, rnr_naks)
b.succeed("touch /tmp/tbr/post_recv")
print(finish_pair("rnr", workdir="/tmp/tbr"))
for m in (a, b):
    check_kernel_log(m)
    assert stats(m)["link_state"] == 1, stats(m)

# 7. teardown through native.py: the device goes away cleanly.
for m in (a, b):
    m.succeed("PYTHONPATH=/usr/local/lib/tbctl python3 -c 'from tbctl.node import native; "
              "native.destroy(\"tbrdma0\"); "
              "assert native.port_state(\"tbrdma0\") == \"ABSENT\"'")
    m.succeed("modprobe -r tbrdma")
    check_kernel_log(m)
