# SPDX-License-Identifier: MIT
"""Native pairing over USB4: which `tb:` rails each host pairs over (tbctl.pairing), from the
ring pairs the module lists (tbctl.node.native.tb_services). The module's list is a recorded
file here; the lab pairs over the emulated host interface for real (vm-tests/tbrdma_usb4.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tbctl.node import native
from tbctl.pairing import usb4_peers

UUID_A = "tb:5e4d7a10-0000-4000-8000-00000000000a"
UUID_B = "tb:5e4d7a10-0000-4000-8000-00000000000b"
UUID_C = "tb:5e4d7a10-0000-4000-8000-00000000000c"

# What /sys/module/tbrdma/parameters/tb_services shows on host a with two cables to b.
SERVICES_A = "".join(
    f"{UUID_B}@thunderbolt{cable}/{pair} {state} via usb4emu local {UUID_A}\n"
    for cable, pair, state in ((0, 0, "up"), (0, 1, "up"), (1, 0, "down"), (1, 1, "up")))


def services(own: str, peers: list[str]) -> list[dict[str, str]]:
    return [{"rail": f"{peer}@0-1/0", "peer": peer, "state": "up", "via": "nhi",
             "local": own} for peer in peers]


def test_tb_services_parses_the_module_list(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    listing = tmp_path / "tb_services"
    listing.write_text(SERVICES_A + "garbage line\n\n")
    monkeypatch.setattr(native, "TB_SERVICES", listing)
    found = native.tb_services()
    assert len(found) == 4
    assert found[0] == {"rail": f"{UUID_B}@thunderbolt0/0", "peer": UUID_B, "state": "up",
                        "via": "usb4emu", "local": UUID_A}
    assert [s["state"] for s in found] == ["up", "up", "down", "up"]


def test_tb_services_without_the_module(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native, "TB_SERVICES", tmp_path / "absent")
    assert native.tb_services() == []


def test_usb4_peers_when_both_see_each_other() -> None:
    probe_a = {"usb4": services(UUID_A, [UUID_B])}
    probe_b = {"usb4": services(UUID_B, [UUID_A])}
    assert usb4_peers(probe_a, probe_b) == (UUID_B, UUID_A)


@pytest.mark.parametrize("usb4_a,usb4_b", [
    ([], []),                                        # no USB4 anywhere: netdevs
    (services(UUID_A, [UUID_B]), []),                # b does not see a (or lacks the module)
    (services(UUID_A, [UUID_C]), services(UUID_B, [UUID_A])),  # a's cable goes to c
])
def test_usb4_peers_falls_back_to_netdevs(usb4_a: list[dict[str, str]],
                                          usb4_b: list[dict[str, str]]) -> None:
    assert usb4_peers({"usb4": usb4_a}, {"usb4": usb4_b}) == (None, None)
    assert usb4_peers({}, {}) == (None, None)   # probes of an older agent
