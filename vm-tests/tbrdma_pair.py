# SPDX-License-Identifier: MIT
# ruff: noqa: F821 - the driver provides start_all, a, b, controller, HOST_A, HOST_B
# `tbctl pair --transport native`: on each host one tbrdma device with a rail on every cable,
# the same fresh random pairing key on both ends and exactly one initiator; tbctl's own
# verification (ping, ports ACTIVE, pyverbs RC WRITE/READ compared) passes on every cable;
# pairing again changes nothing; unpair removes the devices; auto picks native.

import json

DEVICE_DIR = "/sys/kernel/config/tbrdma/tbrdma0"


def pair(args):
    output = controller.succeed(f"tbctl pair --yes --json {args} {HOST_A} {HOST_B}",
                                timeout=900)
    return json.loads(output)["result"]  # the --json envelope (docs/tbctl.md)


start_all()
for m in (a, b):
    m.succeed("rdma link delete tbrdma0 2>/dev/null; modprobe -r tbrdma 2>/dev/null; true")
links = a.succeed("cat /etc/tbctl/links.conf").split()

report = pair("--transport native")
assert report["transport"] == "native" and report["verified"], report
assert sorted(c["link_a"] for c in report["cables"]) == sorted(links), report
for cable in report["cables"]:
    assert cable["rdma_a"] == cable["rdma_b"] == "tbrdma0", cable
    assert cable["port_a"] == cable["port_b"] == "ACTIVE", cable
    assert cable["rdma_ok"] is True, cable
    print(f"benchmark: native {cable['link_a']} pyverbs READ round trip "
          f"{cable['rdma_rtt_us']} us, ping {cable['ping_rtt_us']} us")

keys, roles = [], []
for m in (a, b):
    rails = m.succeed(f"cat {DEVICE_DIR}/rails")
    assert all(link in rails for link in links), rails
    keys.append(m.succeed(f"cat {DEVICE_DIR}/peer_key").split())
    roles.append(m.succeed(f"cat {DEVICE_DIR}/role").strip())
assert keys[0] == keys[1] and keys[0][0] == "set", keys
assert sorted(roles) == ["initiator", "responder"], roles
first_key = keys[0]

again = pair("")
assert again["already_paired"] and again["transport"] == "native", again
assert a.succeed(f"cat {DEVICE_DIR}/peer_key").split() == first_key

controller.succeed(f"tbctl unpair {HOST_A} {HOST_B}")
for m in (a, b):
    m.succeed("test ! -e /sys/class/infiniband/tbrdma0")
    m.succeed("test ! -e /var/lib/tbctl/state.json")

# auto prefers tbrdma when both hosts have it, and each pairing gets a fresh key.
auto = pair("")
assert auto["transport"] == "native" and auto["verified"], auto
assert a.succeed(f"cat {DEVICE_DIR}/peer_key").split() != first_key
controller.succeed(f"tbctl unpair {HOST_A} {HOST_B}")
