# SPDX-License-Identifier: MIT
"""Write sysfs/procfs trees shaped as Documentation/ABI/testing/sysfs-bus-thunderbolt,
sysfs-class-net and sysfs-class-infiniband describe them, for the probe's unit tests."""

from __future__ import annotations

import os
from pathlib import Path

PCI = "sys/devices/pci0000:00/0000:00:0d.2"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def link(path: Path, target: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.relpath(target, path.parent), path)


def thunderbolt_host(root: Path, host_uid: str, peers: list[dict]) -> None:
    """One domain whose host router sees XDomain peers, each with a thunderbolt-net link.

    peers: [{"uid", "name", "netdev", "mac", "port", "lanes", "speed", "mtu"}]
    """
    bus = root / "sys/bus/thunderbolt"
    domain = root / PCI / "domain0"
    write(domain / "security", "user")
    write(domain / "iommu_dma_protection", "1")
    write(domain / "uevent", "DEVTYPE=thunderbolt_domain")
    router = domain / "0-0"
    write(router / "unique_id", host_uid)
    write(router / "uevent", "DEVTYPE=thunderbolt_device")
    link(bus / "devices/domain0", domain)
    link(bus / "devices/0-0", router)
    driver = bus / "drivers/thunderbolt-net"
    driver.mkdir(parents=True, exist_ok=True)
    for peer in peers:
        name = f"0-{peer['port']}"
        xdomain = router / name
        write(xdomain / "uevent", "DEVTYPE=thunderbolt_xdomain")
        write(xdomain / "unique_id", peer["uid"])
        write(xdomain / "device_name", peer["name"])
        write(xdomain / "vendor_name", "tbrdma")
        for side in ("rx", "tx"):
            write(xdomain / f"{side}_speed", f"{peer['speed']}.0 Gb/s")
            write(xdomain / f"{side}_lanes", str(peer["lanes"]))
        service = xdomain / f"{name}.1"
        write(service / "uevent", "DEVTYPE=thunderbolt_service")
        link(service / "driver", driver)
        link(bus / f"devices/{name}", xdomain)
        link(bus / f"devices/{name}.1", service)
        netdev(root, peer["netdev"], peer["mac"], peer.get("mtu", 65520), service)


def netdev(root: Path, name: str, mac: str, mtu: int = 1500, device: Path | None = None,
           operstate: str = "up") -> None:
    parent = device if device else root / "sys/devices/virtual"
    base = parent / "net" / name
    write(base / "address", mac)
    write(base / "mtu", str(mtu))
    write(base / "operstate", operstate)
    write(base / "carrier", "1" if operstate == "up" else "0")
    if device:
        link(base / "device", device)
    link(root / "sys/class/net" / name, base)


def rxe_device(root: Path, name: str, netdev_name: str, ipv4_gid: str,
               state: str = "4: ACTIVE") -> None:
    base = root / "sys/class/infiniband" / name
    write(base / "node_type", "1: CA")
    write(base / "parent", netdev_name)
    port = base / "ports/1"
    write(port / "state", state)
    write(port / "phys_state", "5: LinkUp")
    write(port / "link_layer", "Ethernet")
    gids = {0: ("fe80:0000:0000:0000:5054:00ff:fe12:3456", "IB/RoCE v1"),
            1: ("fe80:0000:0000:0000:5054:00ff:fe12:3456", "RoCE v2"),
            2: (ipv4_gid, "IB/RoCE v1"),
            3: (ipv4_gid, "RoCE v2"),
            4: ("0000:0000:0000:0000:0000:0000:0000:0000", None)}
    for index, (gid, kind) in gids.items():
        write(port / "gids" / str(index), gid)
        if kind:
            write(port / "gid_attrs/types" / str(index), kind)
            write(port / "gid_attrs/ndevs" / str(index), netdev_name)


def kernel(root: Path, release: str, shipped: list[str], loaded: list[str]) -> None:
    write(root / "proc/sys/kernel/osrelease", release)
    write(root / "proc/cmdline", "BOOT_IMAGE=/vmlinuz root=/dev/vda amd_iommu=on")
    write(root / "lib/modules" / release / "modules.dep",
          "\n".join(f"kernel/drivers/{m}.ko.xz:" for m in shipped))
    write(root / "lib/modules" / release / "modules.builtin", "kernel/drivers/base/firmware.ko")
    for module in loaded:
        (root / "sys/module" / module).mkdir(parents=True, exist_ok=True)
    (root / "sys/class/iommu/ivhd0").mkdir(parents=True, exist_ok=True)
