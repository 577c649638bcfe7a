# SPDX-License-Identifier: MIT
# ruff: noqa: F821 - the driver provides start_all, a, b, controller, cable, HOST_A, HOST_B
# Cable pull: pulling cable 1 shows in `tbctl status` as down; plugging it back recovers
# the link and RDMA on it. Globals: start_all, a, b, controller, cable, HOST_A, HOST_B.

import json

start_all()
netdev = "thunderbolt1"


def cable_states():
    """{host: "up" | "down" | "absent"} for this cable, from `tbctl status --json`."""
    # status exits 1 while a cable is down; its JSON is what matters here.
    output = controller.execute(f"tbctl status --json {HOST_A} {HOST_B}")[1]
    states = {}
    for status in json.loads(output[output.index("{"):])["result"]["hosts"]:  # the envelope
        host = status["name"]
        for pairing in status["pairings"]:
            for row in pairing["cables"]:
                if row["link"] == netdev:
                    states[host] = ("up" if row["up"] else
                                    "down" if row["present"] else "absent")
    assert len(states) == 2, f"`tbctl status` does not show {netdev} on both hosts: {output}"
    return states


def status_line():
    return " ".join(sorted(cable_states().values()))


assert "down" not in status_line()
cable(1).block()
for machine in (a, b):
    machine.wait_until_succeeds(f"test $(cat /sys/class/net/{netdev}/carrier) = 0",
                                timeout=30)
    machine.succeed("test $(cat /sys/class/net/thunderbolt0/carrier) = 1")
assert "down" in status_line(), "a pulled cable is not shown as down"

cable(1).unblock()
for machine in (a, b):
    machine.wait_until_succeeds(f"test $(cat /sys/class/net/{netdev}/carrier) = 1",
                                timeout=30)
    machine.wait_until_succeeds(f"rdma link show rxe_{netdev}/1 | grep -q 'state ACTIVE'",
                                timeout=60)
assert "down" not in status_line()
output = controller.wait_until_succeeds(
    f"python3 -m tbctl.rdmaverify {HOST_A} {HOST_B} --netdev {netdev} --sizes 1,65536",
    timeout=120)
assert json.loads(output.strip().splitlines()[-1])["ok"]
