# SPDX-License-Identifier: MIT
"""Read what a host has from sysfs and procfs (Documentation/ABI/testing/sysfs-bus-thunderbolt,
sysfs-class-net, sysfs-class-infiniband). Every reader takes `root` so unit tests can point it
at a recorded tree; nothing here runs a command.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

THUNDERBOLT_NET_DRIVER = "thunderbolt-net"
DECLARED_LINKS_FILE = "etc/tbctl/links.conf"
WATCHED_MODULES = ("tbrdma", "rdma_rxe", "ib_uverbs", "thunderbolt", "thunderbolt_net")


def read_attr(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _int_attr(path: Path) -> int | None:
    value = read_attr(path)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _speed_gbps(path: Path) -> float | None:
    # The kernel prints e.g. "20.0 Gb/s".
    value = read_attr(path)
    match = re.match(r"([0-9.]+)", value or "")
    return float(match.group(1)) if match else None


def kernel_release(root: Path) -> str:
    return read_attr(root / "proc/sys/kernel/osrelease") or os.uname().release


def thunderbolt(root: Path) -> dict[str, Any]:
    """Domains, their host routers and the XDomain peers (other hosts) they see."""
    devices = root / "sys/bus/thunderbolt/devices"
    domains: list[dict[str, Any]] = []
    xdomains: list[dict[str, Any]] = []
    if not devices.is_dir():
        return {"present": False, "domains": domains, "xdomains": xdomains}
    for entry in sorted(devices.iterdir()):
        name = entry.name
        real = entry.resolve()
        if name.startswith("domain"):
            host = real / f"{name[len('domain'):]}-0"
            domains.append({
                "name": name,
                "security": read_attr(real / "security"),
                "iommu_dma_protection": read_attr(real / "iommu_dma_protection") == "1",
                "host_uid": read_attr(host / "unique_id"),
            })
        elif read_attr(real / "uevent") and "DEVTYPE=thunderbolt_xdomain" in (
            read_attr(real / "uevent") or ""
        ):
            domain = next((p.name for p in real.parents if p.name.startswith("domain")), None)
            xdomains.append({
                "name": name,
                "domain": domain,
                "unique_id": read_attr(real / "unique_id"),
                "device_name": read_attr(real / "device_name"),
                "vendor_name": read_attr(real / "vendor_name"),
                "rx_speed_gbps": _speed_gbps(real / "rx_speed"),
                "rx_lanes": _int_attr(real / "rx_lanes"),
                "tx_speed_gbps": _speed_gbps(real / "tx_speed"),
                "tx_lanes": _int_attr(real / "tx_lanes"),
            })
    return {"present": True, "domains": domains, "xdomains": xdomains}


def declared_links(root: Path) -> list[str]:
    """Interfaces the host's admin declared as cables (one name per line, # comments)."""
    text = read_attr(root / DECLARED_LINKS_FILE) or ""
    names = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(line)
    return names


def netdev(root: Path, name: str) -> dict[str, Any]:
    base = root / "sys/class/net" / name
    driver_link = base / "device" / "driver"
    driver = os.path.basename(os.readlink(driver_link)) if driver_link.is_symlink() else None
    xdomain = None
    if driver == THUNDERBOLT_NET_DRIVER:
        # device -> <domain>/<host>/<xdomain>/<xdomain>.<service>
        xdomain = (base / "device").resolve().parent.name
    carrier = read_attr(base / "carrier")
    # Mb/s; reading it fails on a link that is down, and is -1 where the driver cannot tell.
    speed = _int_attr(base / "speed")
    return {
        "name": name,
        "mac": read_attr(base / "address"),
        "mtu": _int_attr(base / "mtu"),
        "operstate": read_attr(base / "operstate"),
        "carrier": carrier == "1",
        "speed_mbps": speed if speed is not None and speed > 0 else None,
        "driver": driver,
        "xdomain": xdomain,
    }


def candidate_links(root: Path, extra: list[str],
                    declared_names: list[str]) -> list[dict[str, Any]]:
    """thunderbolt-net links, plus links declared in links.conf or named on the command line."""
    net = root / "sys/class/net"
    present = sorted(p.name for p in net.iterdir()) if net.is_dir() else []
    declared = set(declared_names)
    wanted = set(extra)
    links = []
    for name in present:
        info = netdev(root, name)
        if info["driver"] == THUNDERBOLT_NET_DRIVER:
            info["source"] = THUNDERBOLT_NET_DRIVER
        elif name in wanted:
            info["source"] = "option"
        elif name in declared:
            info["source"] = "declared"
        else:
            continue
        links.append(info)
    missing = sorted((wanted | declared) - set(present))
    for name in missing:
        links.append({"name": name, "missing": True, "source":
                      "option" if name in wanted else "declared"})
    return links


def _port_state(text: str | None) -> str | None:
    # "4: ACTIVE" -> "ACTIVE"
    return text.split(":", 1)[1].strip() if text and ":" in text else text


def rdma_devices(root: Path) -> list[dict[str, Any]]:
    base = root / "sys/class/infiniband"
    devices = []
    if not base.is_dir():
        return devices
    for dev in sorted(base.iterdir()):
        ports = []
        ports_dir = dev / "ports"
        for port in sorted(ports_dir.iterdir() if ports_dir.is_dir() else [], key=lambda p: p.name):
            gids = []
            gid_dir = port / "gids"
            for gid_file in sorted(gid_dir.iterdir() if gid_dir.is_dir() else [],
                                   key=lambda p: int(p.name)):
                gid = read_attr(gid_file)
                if not gid or set(gid.replace(":", "")) == {"0"}:
                    continue
                index = gid_file.name
                gids.append({
                    "index": int(index),
                    "gid": gid,
                    "type": read_attr(port / "gid_attrs/types" / index),
                    "ndev": read_attr(port / "gid_attrs/ndevs" / index),
                })
            ports.append({
                "port": int(port.name),
                "state": _port_state(read_attr(port / "state")),
                "phys_state": _port_state(read_attr(port / "phys_state")),
                "link_layer": read_attr(port / "link_layer"),
                "gids": gids,
            })
        netdevs = {g["ndev"] for p in ports for g in p["gids"] if g["ndev"]}
        parent = read_attr(dev / "parent")
        devices.append({
            "name": dev.name,
            "node_type": read_attr(dev / "node_type"),
            "netdev": parent or (sorted(netdevs)[0] if netdevs else None),
            "ports": ports,
        })
    return devices


def modules(root: Path, release: str) -> dict[str, dict[str, bool]]:
    moddir = root / "lib/modules" / release
    dep = read_attr(moddir / "modules.dep") or ""
    builtin = read_attr(moddir / "modules.builtin") or ""
    shipped = set()
    for line in (dep + "\n" + builtin).splitlines():
        path = line.split(":", 1)[0].strip()
        if path:
            stem = os.path.basename(path).split(".ko", 1)[0]
            shipped.add(stem.replace("-", "_"))
    result = {}
    for name in WATCHED_MODULES:
        loaded = (root / "sys/module" / name).is_dir()
        result[name] = {"loaded": loaded, "available": loaded or name in shipped}
    return result


def iommu(root: Path) -> dict[str, Any]:
    units = root / "sys/class/iommu"
    groups = root / "sys/kernel/iommu_groups"
    cmdline = read_attr(root / "proc/cmdline") or ""
    return {
        "units": sorted(p.name for p in units.iterdir()) if units.is_dir() else [],
        "groups": len(list(groups.iterdir())) if groups.is_dir() else 0,
        "passthrough": bool(re.search(r"\biommu=pt\b|\biommu.passthrough=1\b", cmdline)),
        "disabled": bool(re.search(r"\b(amd_iommu|intel_iommu|iommu)=off\b", cmdline)),
    }


def host_identity(root: Path) -> str:
    """Same machine and network namespace -> same id (namespaces make distinct hosts)."""
    machine = read_attr(root / "etc/machine-id") or "unknown"
    try:
        netns = os.readlink("/proc/self/ns/net")
    except OSError:
        netns = "net:[?]"
    return f"{machine}/{netns}"
