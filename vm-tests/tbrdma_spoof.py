# SPDX-License-Identifier: MIT
# ruff: noqa: F821 - the driver provides start_all, a, b
# A third party on a cable segment (issue 9, item 8): while pyverbs moves data byte-exact from
# b to a's MR, a raw AF_PACKET socket on b plays attacker on cable 0. It records the frames b
# sends to a (as anyone on the segment could), then injects towards a: the recorded frames
# verbatim (replays), WRITEs re-aimed at a guarded part of a's MR with a valid CRC but an
# unknowable MAC, forged ACKs, frames stripped of their MAC trailer, and a flood of forged
# HELLOs - most with a spoofed source MAC. Nothing may change: the transfer stays byte-exact,
# the guarded bytes stay as they were, a keeps b's MAC as its peer, the link and rail stay up,
# and every injected frame is counted (drop_replay, drop_mac, drop_auth / drop_ratelimit).
# Globals (NixOS test driver subset): start_all, a, b.
import json
import secrets

KEY = secrets.token_hex(32)
ADDR = {"a": "10.77.0.1", "b": "10.77.0.2"}
SIZE = 1 << 20
ROUNDS = 12
# the lab installs tbctl under /usr/local/lib/tbctl (its launcher sets PYTHONPATH likewise)

# Server (a): MR of 2 x SIZE; [SIZE, 2 SIZE) is guarded: filled locally, never a legitimate
# target, checked at the end. Client (b): WRITE then READ back random data, SIZE per round.
PEER = r'''
import json, os, random, sys, time
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
mr = MR(pd, 2 * size, access); back = MR(pd, size, access); cq = CQ(ctx, 64)
guard = random.Random(99).randbytes(size)
if role == "server":
    mr.write(guard, size, size)
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
    assert mr.read(size, size) == guard, "guarded MR bytes changed"
    last = random.Random(rounds - 1).randbytes(size)
    assert mr.read(size, 0) == last, "MR does not hold the last round's data"
    print("ok server, guard intact")
'''

# The attacker on b. Records what b sends on cable 0 (ETH_P_ALL sees outgoing frames), then
# injects towards a. Knows everything on the wire, not the key.
ATTACK = r'''
import json, os, random, socket, struct, sys, time
dev, guard_addr, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
ETH_P_ALL, ETHERTYPE, OUTGOING = 3, 0x88B5, 4
SPOOF = bytes.fromhex("02deadbeef01")
F_SEQ, F_PCSUM, F_MAC = 1, 2, 8
T = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    T.append(c)
def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for x in data:
        crc = T[(crc ^ x) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF
def seal_crc(f):
    # header CRC (csum field zeroed) + payload when PCSUM; never the MAC trailer
    plen = struct.unpack_from("<H", f, 68)[0]
    body = f[:72] + b"\0\0\0\0" + f[76:80] + (f[80:80 + plen] if f[6] & F_PCSUM else b"")
    struct.pack_into("<I", f, 72, crc32c(body))
    return f
rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
rx.bind((dev, 0))
rx.settimeout(0.5)
tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
tx.bind((dev, 0))
def send(frame):
    # paced: the cable is a UDP socket between two busy TCG guests; a burst could be lost
    # before a ever sees it, and every injected frame is to be accounted for
    for _ in range(100):
        try:
            tx.send(frame)
            break
        except OSError:
            time.sleep(0.01)
    time.sleep(0.004)
seen, end = [], time.monotonic() + seconds
while time.monotonic() < end and len(seen) < 400:
    try:
        pkt, addr = rx.recvfrom(65535)
    except socket.timeout:
        continue
    if addr[2] == OUTGOING and struct.unpack_from("!H", pkt, 12)[0] == ETHERTYPE:
        seen.append(pkt)
eth_dst = seen[0][:6]
version = seen[0][14 + 4]  # the protocol version on the wire, so forged HELLOs get past decoding
sent = {"replayed": 0, "forged_mac": 0, "forged_hello": 0}
# 1. replays, byte for byte
for pkt in seen:
    send(pkt); sent["replayed"] += 1
rnd = random.Random(7)
for pkt in seen:
    f = bytearray(pkt[14:])
    op, flags = f[5], f[6]
    if not flags & F_MAC:
        continue
    # 2. a WRITE re-aimed at the guarded bytes: valid CRC, fresh counter, guessed tag
    if op == 18:
        g = bytearray(f)
        struct.pack_into("<Q", g, 48, guard_addr)
        plen = struct.unpack_from("<H", g, 68)[0]
        g[80:80 + plen] = b"\xee" * plen
        seal_crc(g)
        struct.pack_into("<Q", g, len(g) - 16, struct.unpack_from("<Q", g, len(g) - 16)[0] + 10**6)
        g[-8:] = rnd.randbytes(8)
        send(eth_dst + SPOOF + struct.pack("!H", ETHERTYPE) + bytes(g)); sent["forged_mac"] += 1
        # the same without its trailer: stripping the MAC must not help
        h = bytearray(g[:80 + plen]); h[6] &= ~F_MAC & 0xFF; seal_crc(h)
        send(eth_dst + SPOOF + struct.pack("!H", ETHERTYPE) + bytes(h)); sent["forged_mac"] += 1
    # 3. an ACK claiming everything arrived
    a = bytearray(f[:80]) + rnd.randbytes(16)
    a[5] = 5; a[6] = flags & (F_PCSUM | F_MAC)
    struct.pack_into("<I", a, 12, 0)
    struct.pack_into("<I", a, 16, struct.unpack_from("<I", f, 12)[0] + 200)
    a[20:68] = bytes(48); struct.pack_into("<HH", a, 68, 0, 0)
    seal_crc(a)
    send(eth_dst + SPOOF + struct.pack("!H", ETHERTYPE) + bytes(a)); sent["forged_mac"] += 1
# 4. forged HELLOs: valid header and CRC, random body and MAC
for i in range(300):
    h = bytearray(80) + bytearray(rnd.randbytes(96))
    h[0:4] = b"TBP1"; h[4] = version; h[5] = 1; h[6] = F_PCSUM
    struct.pack_into("<H", h, 68, 96)
    struct.pack_into("<I", h, 80, version)
    h[88:92] = b"\0\0\0\0"; h[92:96] = struct.pack("<I", 4096)
    seal_crc(h)
    send(eth_dst + SPOOF + struct.pack("!H", ETHERTYPE) + bytes(h)); sent["forged_hello"] += 1
sent["recorded"] = len(seen)
print(json.dumps(sent))
'''


def stats(machine):
    out = machine.succeed("rdma statistic show link tbrdma0/1").split()
    return {out[i]: int(out[i + 1]) for i in range(2, len(out) - 1, 2) if out[i + 1].isdigit()}


def peer_mac(machine):
    rails = machine.succeed("cat /sys/kernel/config/tbrdma/tbrdma0/rails")
    return rails.split(" peer ")[1].split()[0].lower()


start_all()
# a is the responder: the end that must answer HELLOs, so the flood meets its budget.
for m, initiator in ((a, 0), (b, 1)):
    m.wait_for_unit("multi-user.target")
    m.succeed("ip link set thunderbolt0 mtu 9000")
    m.succeed(f"ip addr replace {ADDR[m.name]}/24 dev thunderbolt0")
    native_create(m, "thunderbolt0", KEY, initiator)
for m in (a, b):
    m.wait_until_succeeds("grep -q ACTIVE /sys/class/infiniband/tbrdma0/ports/1/state", 120)
b_mac = b.succeed("cat /sys/class/net/thunderbolt0/address").strip().lower()
a.wait_until_succeeds(f"grep -qi 'peer {b_mac}' /sys/kernel/config/tbrdma/tbrdma0/rails", 60)

for m in (a, b):
    m.succeed("rm -rf /tmp/tbs && mkdir -p /tmp/tbs && cat > /tmp/tbs/peer.py <<'EOF'\n"
              + PEER + "\nEOF")
b.succeed("cat > /tmp/tbs/attack.py <<'EOF'\n" + ATTACK + "\nEOF")
for m, role in ((a, "server"), (b, "client")):
    m.succeed(f"(python3 /tmp/tbs/peer.py {role} {SIZE} {ROUNDS} /tmp/tbs > /tmp/tbs/out "
              "2>&1; echo $? > /tmp/tbs/rc) > /dev/null 2>&1 &")
a.wait_until_succeeds("test -s /tmp/tbs/server.json", timeout=120)
b.wait_until_succeeds("test -s /tmp/tbs/client.json", timeout=120)
info_a, info_b = a.succeed("cat /tmp/tbs/server.json"), b.succeed("cat /tmp/tbs/client.json")
a.succeed(f"echo '{info_b}' > /tmp/tbs/p && mv /tmp/tbs/p /tmp/tbs/peer.json")
a.wait_until_succeeds("test -e /tmp/tbs/server.ready", timeout=60)
b.succeed(f"echo '{info_a}' > /tmp/tbs/p && mv /tmp/tbs/p /tmp/tbs/peer.json")
b.wait_until_succeeds("test -s /tmp/tbs/progress", timeout=600)

before = stats(a)
guard_addr = json.loads(info_a)["addr"] + SIZE
sent = json.loads(b.succeed(f"python3 /tmp/tbs/attack.py thunderbolt0 {guard_addr} 8",
                            timeout=600).strip().splitlines()[-1])
print("injected towards a:", sent)
assert sent["recorded"] > 20 and sent["forged_mac"] > 0, sent

b.wait_until_succeeds("test -s /tmp/tbs/rc", timeout=1200)
out_b = b.succeed("cat /tmp/tbs/out")
assert b.succeed("cat /tmp/tbs/rc").strip() == "0", out_b
a.succeed("touch /tmp/tbs/done")
a.wait_until_succeeds("test -s /tmp/tbs/rc", timeout=120)
out_a = a.succeed("cat /tmp/tbs/out")
assert a.succeed("cat /tmp/tbs/rc").strip() == "0", out_a
print(out_b, out_a)

after = stats(a)
delta = {k: after.get(k, 0) - before.get(k, 0)
         for k in ("drop_replay", "drop_mac", "drop_auth", "drop_ratelimit", "drop_checksum",
                   "rx_frames", "retransmits")}
print("a's counters during the attack:", delta)
# Every injected frame that reached a is refused and counted. The cable between the two TCG
# guests is a UDP socket that may lose a frame under load (legitimate ones are resent,
# injected ones are not), so 90% must be accounted for; the safety assertions below are exact.
def accounted(counted, injected):
    return counted >= injected - injected // 10 and counted > 0


assert accounted(delta["drop_replay"], sent["replayed"]), (delta, sent)
assert accounted(delta["drop_mac"], sent["forged_mac"]), (delta, sent)
assert accounted(delta["drop_auth"] + delta["drop_ratelimit"], sent["forged_hello"]), (delta, sent)
assert delta["drop_checksum"] == 0, delta
assert peer_mac(a) == b_mac, (peer_mac(a), b_mac)
for m in (a, b):
    s = stats(m)
    assert s["link_state"] == 1 and s["rails_up"] == 1, (m.name, s)
    check_kernel_log(m)
# only now: a device gone on one end takes the link down on the other
for m in (a, b):
    m.succeed("rdma link delete tbrdma0 && modprobe -r tbrdma")
