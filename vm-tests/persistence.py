# SPDX-License-Identifier: MIT
# ruff: noqa: F821 - the driver provides start_all, a, b, controller, cable, HOST_A, HOST_B
# Persistence: reboot lab-b; the pairing comes back by itself (tbctl's reapply unit) and
# RDMA works again on every cable without running `tbctl pair` again.
# Globals: start_all, a, b, controller, HOST_A, HOST_B.

import json

start_all()
links = b.succeed("cat /etc/tbctl/links.conf").split()
b.reboot()
b.wait_for_unit("multi-user.target")
for netdev in links:
    b.wait_until_succeeds(f"rdma link show rxe_{netdev}/1 | grep -q 'state ACTIVE'",
                          timeout=120)
    b.wait_until_succeeds(f"ip -4 -o addr show dev {netdev} | grep -q inet", timeout=60)
    output = controller.succeed(
        f"python3 -m tbctl.rdmaverify {HOST_A} {HOST_B} --netdev {netdev} --sizes 1,65536")
    result = json.loads(output.strip().splitlines()[-1])
    assert result["ok"], result
