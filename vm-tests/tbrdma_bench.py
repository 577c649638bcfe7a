# SPDX-License-Identifier: MIT
# ruff: noqa: F821 - the driver provides start_all, a, b, cable, perftest, check_kernel_log
# Faults and the side-by-side benchmark, on the same lab run:
#  - tbrdma on two rails with tc netem (1% loss, 0.1% corruption, reordering) on cable 0
#    while pyverbs moves random data byte-exact; then cable 0 pulled mid-transfer, the
#    transfer completes on cable 1; no QP error, no kernel warning;
#  - a table: tbrdma vs rdma_rxe on cable 0 (ib_write_bw 64 KiB, ib_write_lat 2 B) and tbrdma
#    on 1 vs 2 rails (ib_write_bw, one QP). Targets are printed, never asserted.
# Globals (NixOS test driver subset): start_all, a, b, cable.
import re
import secrets
import time

KEY = secrets.token_hex(32)
ADDR = {"a": ("10.77.0.1", "10.78.0.1"), "b": ("10.77.0.2", "10.78.0.2")}
# the lab installs tbctl under /usr/local/lib/tbctl (its launcher sets PYTHONPATH likewise)

# WRITE then READ back random data in a loop on one RC QP; prints "ok N" at the end.
PEER = r'''
import json
import re, os, random, sys, time
import pyverbs.enums as e
from pyverbs.addr import GID, AHAttr, GlobalRoute
from pyverbs.cq import CQ
from pyverbs.device import Context
from pyverbs.mr import MR
from pyverbs.pd import PD
from pyverbs.qp import QP, QPAttr, QPCap, QPInitAttr
from pyverbs.wr import SGE, SendWR
role, size, rounds, workdir = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
access = e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_REMOTE_WRITE | e.IBV_ACCESS_REMOTE_READ
ctx = Context(name="tbrdma0"); pd = PD(ctx)
mr = MR(pd, size, access); back = MR(pd, size, access); cq = CQ(ctx, 64)
qp = QP(pd, QPInitAttr(qp_type=e.IBV_QPT_RC, scq=cq, rcq=cq, sq_sig_all=1,
        cap=QPCap(max_send_wr=8, max_recv_wr=8)))
attr = QPAttr(port_num=1); attr.qp_access_flags = access
qp.to_init(attr)
open(f"{workdir}/{role}.json", "w").write(json.dumps({"qpn": qp.qp_num,
     "gid": str(ctx.query_gid(1, 1)), "rkey": mr.rkey, "addr": mr.buf}))
while not os.path.exists(f"{workdir}/peer.json"):
    time.sleep(0.2)
peer = json.loads(open(f"{workdir}/peer.json").read())
attr = QPAttr(port_num=1); attr.path_mtu = e.IBV_MTU_4096
attr.max_dest_rd_atomic = attr.max_rd_atomic = 16; attr.rnr_retry = attr.retry_cnt = 7
attr.ah_attr = AHAttr(port_num=1, is_global=1, gr=GlobalRoute(dgid=GID(peer["gid"]), sgid_index=1))
attr.dest_qp_num = peer["qpn"]
qp.to_rts(attr)
open(f"{workdir}/{role}.ready", "w").write("1")
def run(opcode, local):
    wr = SendWR(opcode=opcode, num_sge=1, sg=[SGE(local.buf, size, local.lkey)])
    wr.set_wr_rdma(peer["rkey"], peer["addr"]); qp.post_send(wr)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        n, wcs = cq.poll(1)
        if n:
            assert wcs[0].status == e.IBV_WC_SUCCESS, f"status {wcs[0].status}"
            return
    raise SystemExit("no completion")
if role == "client":
    for i in range(rounds):
        data = random.Random(i).randbytes(size)
        mr.write(data, size, 0); run(e.IBV_WR_RDMA_WRITE, mr)
        back.write(bytes(size), size, 0); run(e.IBV_WR_RDMA_READ, back)
        assert back.read(size, 0) == data, f"round {i}: data differs"
        open(f"{workdir}/progress", "w").write(str(i + 1))
    print("ok", rounds)
else:
    while not os.path.exists(f"{workdir}/done"):
        time.sleep(0.5)
    print("ok server")
'''


def start_transfer(size, rounds):
    for m in (a, b):
        m.succeed("rm -rf /tmp/tbf && mkdir -p /tmp/tbf && cat > /tmp/tbf/peer.py <<'EOF'\n"
                  + PEER + "\nEOF")
    for m, role in ((b, "server"), (a, "client")):
        m.succeed(f"(python3 /tmp/tbf/peer.py {role} {size} {rounds} /tmp/tbf > /tmp/tbf/out "
                  "2>&1; echo $? > /tmp/tbf/rc) > /dev/null 2>&1 &")
    b.wait_until_succeeds("test -s /tmp/tbf/server.json", timeout=120)
    a.wait_until_succeeds("test -s /tmp/tbf/client.json", timeout=120)
    info_a, info_b = a.succeed("cat /tmp/tbf/client.json"), b.succeed("cat /tmp/tbf/server.json")
    b.succeed(f"echo '{info_a}' > /tmp/tbf/p && mv /tmp/tbf/p /tmp/tbf/peer.json")
    b.wait_until_succeeds("test -e /tmp/tbf/server.ready", timeout=60)
    a.succeed(f"echo '{info_b}' > /tmp/tbf/p && mv /tmp/tbf/p /tmp/tbf/peer.json")


def finish_transfer(timeout=1200):
    a.wait_until_succeeds("test -s /tmp/tbf/rc", timeout=timeout)
    out = a.succeed("cat /tmp/tbf/out")
    assert a.succeed("cat /tmp/tbf/rc").strip() == "0", out
    b.succeed("touch /tmp/tbf/done")
    b.wait_until_succeeds("test -s /tmp/tbf/rc", timeout=60)
    return out


def measure(device, tool, args, gid=1):
    out = perftest(b, a, f"{tool} -d {device} -x {gid} {args}", ADDR["b"][0])
    rows = [line.split() for line in out.splitlines()
            if line.split() and line.split()[0].isdigit() and len(line.split()) >= 4]
    assert rows, out
    # ib_write_bw: bytes iters peak avg rate; ib_write_lat: bytes iters min max typical ...
    return float(rows[-1][3] if "_bw" in tool else rows[-1][4])


def shape(links, rate):
    """tbf on both ends of each link at `rate` (e.g. "30mbit"), or none with None."""
    for m in (a, b):
        for link in links:
            m.succeed(f"tc qdisc del dev {link} root 2>/dev/null; true")
            if rate:
                m.succeed(f"tc qdisc add dev {link} root tbf rate {rate} burst 64kb "
                          "latency 50ms")


start_all()
for m in (a, b):
    m.wait_for_unit("multi-user.target")
    for i, link in enumerate(("thunderbolt0", "thunderbolt1")):
        # the same jumbo MTU for rxe and tbrdma: per-frame cost dominates under TCG
        m.succeed(f"ip link set {link} mtu 9000")
        m.succeed(f"ip addr replace {ADDR[m.name][i]}/24 dev {link}")

# rdma_rxe on cable 0 first, alone.
for m in (a, b):
    m.succeed("modprobe rdma_rxe && rdma link add rxe0 type rxe netdev thunderbolt0")
time.sleep(2)
rxe_bw = measure("rxe0", "ib_write_bw", "-s 65536 -n 300")
rxe_lat = measure("rxe0", "ib_write_lat", "-s 2 -n 300")
for m in (a, b):
    m.succeed("rdma link delete rxe0")

for m, initiator in ((a, 1), (b, 0)):
    native_create(m, "thunderbolt0", KEY, initiator)
for m in (a, b):
    m.wait_until_succeeds("grep -q ACTIVE /sys/class/infiniband/tbrdma0/ports/1/state", 120)
tb_bw1 = measure("tbrdma0", "ib_write_bw", "-s 65536 -n 300")
tb_lat = measure("tbrdma0", "ib_write_lat", "-s 2 -n 300")
# Pooling shows only where the cable, not the TCG guest's CPU, is the limit: each cable is
# shaped (tbf, both ends) well below what the guests push unshaped (~400 Mbit/s).
SHAPED = "-s 65536 -n 200"
shape(("thunderbolt0",), "30mbit")
tb_shaped1 = measure("tbrdma0", "ib_write_bw", SHAPED)
for m, initiator in ((a, 1), (b, 0)):
    native_create(m, "thunderbolt0,thunderbolt1", KEY, initiator)
for m in (a, b):
    m.wait_until_succeeds("rdma statistic show link tbrdma0/1 | grep -q 'rails_up 2'", 120)
tb_bw2 = measure("tbrdma0", "ib_write_bw", "-s 65536 -n 300")
shape(("thunderbolt0", "thunderbolt1"), "30mbit")
tb_shaped2 = measure("tbrdma0", "ib_write_bw", SHAPED)
shape(("thunderbolt1",), "15mbit")
tb_unequal = measure("tbrdma0", "ib_write_bw", SHAPED)
shape(("thunderbolt0", "thunderbolt1"), None)

print("side by side (TCG lab; MiB/s and usec; targets are for hardware-like hosts)")
print(f"| test | rdma_rxe | tbrdma | ratio | target |\n|---|---|---|---|---|\n"
      f"| ib_write_bw 64 KiB, cable 0 | {rxe_bw:.1f} | {tb_bw1:.1f} | "
      f"{tb_bw1 / rxe_bw:.2f}x | >= 2x |\n"
      f"| ib_write_lat 2 B typical, cable 0 | {rxe_lat:.1f} | {tb_lat:.1f} | "
      f"{tb_lat / rxe_lat:.2f}x | <= 0.5x |\n"
      f"| tbrdma ib_write_bw 1 vs 2 rails, 1 QP | {tb_bw1:.1f} | {tb_bw2:.1f} | "
      f"{tb_bw2 / tb_bw1:.2f}x | >= 1.6x |")
# perftest's MB/sec is 2^20 B/s; tbf's mbit is 10^6 bit/s.
print("pooling with each cable shaped by tbf (MiB/s; the cable, not the CPU, is the limit)")
print(f"| test | one rail | pooled | ratio | target |\n|---|---|---|---|---|\n"
      f"| 2 rails at 30 Mbit/s vs 1 rail at 30, 1 QP | {tb_shaped1:.2f} | {tb_shaped2:.2f} | "
      f"{tb_shaped2 / tb_shaped1:.2f}x | >= 1.8x |\n"
      f"| rails at 30 + 15 Mbit/s vs their sum (45 Mbit/s = {45e6 / 8 / 2**20:.2f}) | "
      f"{tb_shaped1:.2f} | {tb_unequal:.2f} | {tb_unequal / (45e6 / 8 / 2**20):.2f}x | "
      f">= 0.9x |")

# Faults on two rails: netem on cable 0 of node a while data moves, byte-exact.
a.succeed("modprobe sch_netem")
a.succeed("tc qdisc replace dev thunderbolt0 root netem loss 1% corrupt 0.1% "
          "delay 1ms reorder 25% 50%")
NETEM_COUNTERS = ("retransmits", "retx_fast", "retx_timeouts", "spurious_retransmits",
                  "drop_mac", "drop_checksum", "tx_data_frames")


def link_counters(m):
    words = m.succeed("rdma statistic show link tbrdma0/1").split()
    return {k: int(words[words.index(k) + 1]) for k in NETEM_COUNTERS}


before = {m.name: link_counters(m) for m in (a, b)}
start_transfer(1 << 20, 8)
print(finish_transfer())
qdisc = a.succeed("tc -s qdisc show dev thunderbolt0")
a.succeed("tc qdisc del dev thunderbolt0 root")
after = {m.name: link_counters(m) for m in (a, b)}
delta = {n: {k: after[n][k] - before[n][k] for k in NETEM_COUNTERS} for n in after}
# What cable 0 lost from a: netem's drops, and the frames it corrupted, which b's MAC or
# CRC refused. Retransmits of a (both rails) against them: issue 12's target is <= 2x.
netem_dropped = int(re.search(r"dropped (\d+)", qdisc).group(1))
lost = netem_dropped + delta["b"]["drop_mac"] + delta["b"]["drop_checksum"]
da = delta["a"]
print(f"netem on cable 0 (1% loss, 0.1% corrupt, 25% reorder): a sent {da['tx_data_frames']} "
      f"data frames; {lost} lost ({netem_dropped} dropped, "
      f"{lost - netem_dropped} corrupted and refused at b); a retransmitted "
      f"{da['retransmits']} (fast {da['retx_fast']}, timeouts {da['retx_timeouts']}, "
      f"spurious {da['spurious_retransmits']}): "
      f"{da['retransmits'] / max(lost, 1):.2f} per frame lost (target <= 2)")
for m in (a, b):
    words = m.succeed("rdma statistic show link tbrdma0/1").split()
    assert words[words.index("link_state") + 1] == "1", words
    # corrupted frames are caught by the payload CRC32C and retransmitted, never placed
    print(m.name, {k: words[words.index(k) + 1] for k in ("drop_checksum", "retransmits")})
    check_kernel_log(m)

# Cable 0 pulled in the middle of a transfer: it completes on cable 1.
start_transfer(4 << 20, 6)
a.wait_until_succeeds("test -s /tmp/tbf/progress", timeout=600)
cable(0).block()
try:
    print(finish_transfer())
finally:
    cable(0).unblock()
print(a.succeed("rdma statistic show link tbrdma0/1"))
for m in (a, b):
    check_kernel_log(m)
    m.succeed("rdma link delete tbrdma0 && modprobe -r tbrdma")
