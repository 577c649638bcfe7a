# SPDX-License-Identifier: MIT
# ruff: noqa: F821 - the driver provides start_all, a, b, controller, cable, HOST_A, HOST_B
# Bring-up: both nodes boot, systemd is running (or degraded, with the reason printed),
# and every declared cable NIC exists under its stable name with carrier.
# Globals (NixOS test driver subset): start_all, a, b.

start_all()

for machine in (a, b):
    machine.wait_for_unit("multi-user.target")
    state = machine.execute("systemctl is-system-running --wait")[1].strip()
    if state == "degraded":
        print(f"{machine.name}: degraded because of:\n"
              + machine.succeed("systemctl --failed --no-legend --plain"))
    assert state in ("running", "degraded"), f"{machine.name}: system is {state!r}"

    links = machine.succeed("cat /etc/tbctl/links.conf").split()
    assert links, f"{machine.name}: /etc/tbctl/links.conf declares no cable links"
    for index, link in enumerate(links):
        assert link == f"thunderbolt{index}", f"{machine.name}: unexpected link name {link}"
        machine.wait_until_succeeds(
            f"test \"$(cat /sys/class/net/{link}/operstate)\" = up", timeout=60)
        machine.succeed(f"test \"$(cat /sys/class/net/{link}/carrier)\" = 1")
    # No NIC may keep a kernel name: a rename that lost the udev race would show here.
    names = machine.succeed("ls /sys/class/net").split()
    assert not [n for n in names if n.startswith("eth")], f"{machine.name}: {names}"
    machine.succeed("tbctl --version")
    machine.succeed("python3 -c 'import pyverbs.device'")
    machine.succeed("modinfo rdma_rxe >/dev/null")
