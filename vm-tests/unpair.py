# SPDX-License-Identifier: MIT
# ruff: noqa: F821 - the driver provides start_all, a, b, controller, cable, HOST_A, HOST_B
# Unpair leaves both nodes as they were before `tbctl pair` (pair.py saved a snapshot of
# addresses, links, RDMA devices, /etc and enabled units on each node).
# Globals: start_all, a, b, controller, HOST_A, HOST_B.

import difflib

SNAPSHOT = (
    "{ ip -o addr show | grep -v ' lo ' | sed 's/valid_lft.*//';"
    "  ip -o link show | grep thunderbolt | sed 's/ state [A-Z]* .*//; s/^[0-9]*: //';"
    "  rdma link show 2>/dev/null;"
    "  find /etc -xdev -type f ! -path '/etc/ssh/*' ! -name resolv.conf ! -name adjtime"
    "       ! -path '/etc/.pwd.lock' -print0 | sort -z | xargs -0 sha256sum;"
    "  systemctl list-unit-files --state=enabled --no-legend --plain; } 2>&1"
)

start_all()
controller.succeed(f"tbctl unpair {HOST_A} {HOST_B}", timeout=600)
for machine in (a, b):
    before = machine.succeed("cat /root/vm-tests-before-pair.txt").splitlines()
    after = machine.succeed(SNAPSHOT).splitlines()
    diff = "\n".join(difflib.unified_diff(before, after, "before pair", "after unpair",
                                          lineterm=""))
    assert not diff, f"{machine.name} differs after unpair:\n{diff}"
