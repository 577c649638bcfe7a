# SPDX-License-Identifier: MIT
"""Native pairing over USB4: which `tb:` rails each host pairs over (tbctl.pairing), from the
ring pairs the module lists (tbctl.node.native.tb_services). The module's list is a recorded
file here; the lab pairs over the emulated host interface for real (vm-tests/tbrdma_usb4.py).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

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
    assert usb4_peers(probe_a, probe_b) == ([UUID_B], [UUID_A])


def test_usb4_peers_across_host_routers() -> None:
    """A host with two USB4 host routers has two domains, each with its own UUID: a cable
    into each makes two XDomains whose UUIDs differ at both ends. Both cables pool: each
    end pairs over every peer UUID that sees it back (a cable to a third host is left out)."""
    a0, a1, b0, b1 = (f"tb:5e4d7a10-0000-4000-8000-0000000000{n}" for n in ("a0", "a1", "b0",
                                                                          "b1"))
    probe_a = {"usb4": services(a0, [b0]) + services(a1, [b1]) + services(a1, [UUID_C])}
    probe_b = {"usb4": services(b0, [a0]) + services(b1, [a1])}
    assert usb4_peers(probe_a, probe_b) == ([b0, b1], [a0, a1])


@pytest.mark.parametrize("usb4_a,usb4_b", [
    ([], []),                                        # no USB4 anywhere: netdevs
    (services(UUID_A, [UUID_B]), []),                # b does not see a (or lacks the module)
    (services(UUID_A, [UUID_C]), services(UUID_B, [UUID_A])),  # a's cable goes to c
])
def test_usb4_peers_falls_back_to_netdevs(usb4_a: list[dict[str, str]],
                                          usb4_b: list[dict[str, str]]) -> None:
    assert usb4_peers({"usb4": usb4_a}, {"usb4": usb4_b}) == ([], [])
    assert usb4_peers({}, {}) == ([], [])   # probes of an older agent


# A device's configfs rails as the module writes them (docs/driver.md): an Ethernet rail and
# a USB4 ring pair.
RAILS = (
    "0 thunderbolt1 carrier added peer 52:54:00:7c:01:01 tx 120 rx 118\n"
    f"1 {UUID_B}@thunderbolt0/1 carrier added peer ff:ff:ff:ff:ff:ff tx 5827 rx 4283 via "
    "usb4emu rings 2/2 of 512 hopids 9/9 link 20000 Mb/s rx_polls 983 rx_errors 0\n"
    f"2 {UUID_B}@thunderbolt1/0 no-carrier idle peer ff:ff:ff:ff:ff:ff tx 0 rx 0 via "
    "usb4emu rings 1/1 of 512 hopids -1/8 link 20000 Mb/s rx_polls 0 rx_errors 0\n")


def test_rails_parses_configfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    device = tmp_path / "tbrdma" / "tbrdma0"
    device.mkdir(parents=True)
    (device / "rails").write_text(RAILS)
    monkeypatch.setattr(native, "CONFIGFS", tmp_path)
    ethernet, ring, down = native.rails("tbrdma0")
    assert ethernet == {"name": "thunderbolt1", "carrier": True, "added": True,
                        "tx_frames": 120, "rx_frames": 118, "via": None, "rings": None,
                        "link_mbps": None}
    assert ring["via"] == "usb4emu" and ring["rings"] == "2/2 of 512"
    assert ring["link_mbps"] == 20000 and ring["tx_frames"] == 5827
    assert not down["carrier"] and not down["added"]
    assert native.rails("tbrdma9") == []


def test_doctor_reports_ring_pairs_per_peer() -> None:
    from tbctl.node.doctor import usb4

    facts = {"usb4": native_services_of(SERVICES_A)}
    (finding,) = usb4(facts)
    assert finding["status"] == "warn" and "3 of 4 ring pairs up via usb4emu" in \
        finding["detail"], finding
    facts["usb4"] = [dict(s, state="up") for s in facts["usb4"]]
    assert usb4(facts)[0]["status"] == "ok"
    assert usb4({"usb4": []}) == [] and usb4({}) == []


def native_services_of(text: str) -> list[dict[str, str]]:
    return [{"rail": w[0], "peer": w[0].split("@")[0], "state": w[1], "via": w[3],
             "local": w[5]} for w in (line.split() for line in text.splitlines())]


def test_create_keeps_going_when_the_usb4_peer_is_not_discovered_yet(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """At boot the reapply can run before the thunderbolt driver has found the peer's
    XDomain: the module answers add_rail of its `tb:` name with ENODEV and keeps the name as
    a wish (the rails join when the XDomain appears). The device must still get its role and
    key, or the pairing never comes back. Any other refusal stays an error."""
    device = tmp_path / "tbrdma" / "tbrdma0"
    device.mkdir(parents=True)
    for name in ("add_rail", "remove_rail", "role", "peer_key"):
        (device / name).write_text("")
    (tmp_path / "ib" / "tbrdma0").mkdir(parents=True)
    monkeypatch.setattr(native, "CONFIGFS", tmp_path)
    monkeypatch.setattr(native, "IB_CLASS", tmp_path / "ib")
    monkeypatch.setattr(native, "_ensure_loaded", lambda: None)
    refusal = {"errno": errno.ENODEV}
    real_write_text = Path.write_text

    def configfs_write(path: Path, text: str, *args: Any, **kwargs: Any) -> int:
        if path.name == "add_rail" and text.startswith("tb:"):
            raise OSError(refusal["errno"], os.strerror(refusal["errno"]))
        return real_write_text(path, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", configfs_write)
    key = bytes(range(32))
    native.create("tbrdma0", [UUID_B], key, initiator=True, port="thunderbolt0")
    assert (device / "role").read_text() == "initiator\n"
    assert (device / "peer_key").read_text() == key.hex() + "\n"

    refusal["errno"] = errno.EINVAL
    (device / "role").write_text("")
    with pytest.raises(native.NativeError, match="add_rail"):
        native.create("tbrdma0", [UUID_B], key, initiator=True, port="thunderbolt0")
