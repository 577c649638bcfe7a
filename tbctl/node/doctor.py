# SPDX-License-Identifier: MIT
"""Findings about one host, each with the fix, from the facts `probe` gathered."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

MIN_KERNEL = (6, 1)
THUNDERBOLT_NET_MTU = 65520
MIN_MEMLOCK = 1 << 30


def _finding(check: str, status: str, detail: str, fix: str = "") -> dict[str, str]:
    return {"check": check, "status": status, "detail": detail, "fix": fix}


def kernel(facts: dict[str, Any]) -> list[dict[str, str]]:
    match = re.match(r"(\d+)\.(\d+)", facts["kernel"])
    version = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
    if version >= MIN_KERNEL:
        return [_finding("kernel", "ok", f"Linux {facts['kernel']}")]
    return [_finding("kernel", "fail", f"Linux {facts['kernel']} is older than 6.1",
                     "boot a 6.1 or newer kernel (the tbrdma appliance ships one)")]


def modules(facts: dict[str, Any]) -> list[dict[str, str]]:
    mods = facts["modules"]
    out = []
    if facts.get("native_available") or mods["tbrdma"]["available"]:
        out.append(_finding("rdma transport", "ok", "tbrdma (native) is available"))
    elif mods["rdma_rxe"]["available"]:
        out.append(_finding("rdma transport", "warn",
                            "tbrdma is not installed; pairing falls back to rdma_rxe (slower)",
                            "install the tbrdma module (NixOS: hardware.tbrdma.enable = true)"))
    else:
        out.append(_finding("rdma transport", "fail",
                            "neither tbrdma nor rdma_rxe is available: links carry IP only",
                            "install tbrdma, or a kernel with CONFIG_RDMA_RXE=m"))
    if not mods["ib_uverbs"]["available"]:
        out.append(_finding("ib_uverbs", "fail", "ib_uverbs is missing: no userspace verbs",
                            "install a kernel built with CONFIG_INFINIBAND_USER_ACCESS"))
    if facts["thunderbolt"]["present"] and not mods["thunderbolt_net"]["available"]:
        out.append(_finding("thunderbolt_net", "warn", "thunderbolt_net module is missing",
                            "install a kernel built with CONFIG_USB4_NET=m"))
    return out


def iommu(facts: dict[str, Any]) -> list[dict[str, str]]:
    info = facts["iommu"]
    if info["disabled"] or not info["units"]:
        return [_finding("iommu", "warn", "no IOMMU is active: a peer's DMA is not confined",
                         "enable the IOMMU in firmware and remove iommu=off/amd_iommu=off")]
    out = [_finding("iommu", "ok", f"IOMMU active ({', '.join(info['units'])})"
                    + (", passthrough mode" if info["passthrough"] else ""))]
    for domain in facts["thunderbolt"]["domains"]:
        if not domain["iommu_dma_protection"]:
            out.append(_finding("iommu", "warn", f"{domain['name']} has no IOMMU DMA protection",
                                "enable 'Kernel DMA protection' / IOMMU in firmware"))
    return out


def memlock(facts: dict[str, Any]) -> list[dict[str, str]]:
    soft = facts["memlock"]["soft"]
    if soft == -1 or soft >= MIN_MEMLOCK:
        limit = "unlimited" if soft == -1 else f"{soft >> 20} MiB"
        return [_finding("memlock", "ok", f"memlock limit {limit}")]
    return [_finding("memlock", "warn",
                     f"memlock limit is {soft >> 10} KiB: RDMA memory registration will fail",
                     "add '* - memlock unlimited' to /etc/security/limits.d/tbrdma.conf and "
                     "LimitMEMLOCK=infinity to services (NixOS: hardware.tbrdma sets both)")]


def link_speed(facts: dict[str, Any]) -> list[dict[str, str]]:
    out = []
    for xd in facts["thunderbolt"]["xdomains"]:
        lanes = min(xd["rx_lanes"] or 0, xd["tx_lanes"] or 0)
        speed = min(xd["rx_speed_gbps"] or 0.0, xd["tx_speed_gbps"] or 0.0)
        name = f"{xd['name']} ({xd['device_name'] or 'peer'})"
        if lanes < 2 or speed < 20:
            out.append(_finding("link speed", "warn",
                                f"{name} runs {lanes} lane(s) at {speed:g} Gb/s",
                                "use a certified 40/80 Gb/s USB4 cable, directly port to port"))
        else:
            out.append(_finding("link speed", "ok", f"{name}: {lanes} x {speed:g} Gb/s"))
    return out


def usb4(facts: dict[str, Any]) -> list[dict[str, str]]:
    """The tbrdma ring pairs bound on USB4 XDomains: each peer's pairs up, or why not."""
    peers = Counter(s["peer"] for s in facts.get("usb4", []))
    up = Counter(s["peer"] for s in facts.get("usb4", []) if s["state"] == "up")
    out = []
    for peer, count in sorted(peers.items()):
        via = next(s["via"] for s in facts["usb4"] if s["peer"] == peer)
        if up[peer] == count:
            out.append(_finding("usb4 rings", "ok", f"{peer}: {count} ring pairs up via {via}"))
        else:
            out.append(_finding("usb4 rings", "warn",
                                f"{peer}: {up[peer]} of {count} ring pairs up via {via}",
                                "a pair that stays down has no login answer: load tbrdma on "
                                "the peer too (dmesg shows the rail's login)"))
    return out


def mtu(facts: dict[str, Any]) -> list[dict[str, str]]:
    out = []
    for link in facts["links"]:
        if link.get("driver") == "thunderbolt-net" and link.get("mtu") != THUNDERBOLT_NET_MTU:
            out.append(_finding("mtu", "warn", f"{link['name']} MTU is {link['mtu']}",
                                f"tbctl pair sets {THUNDERBOLT_NET_MTU}; or: ip link set "
                                f"{link['name']} mtu {THUNDERBOLT_NET_MTU}"))
    return out


def provider_dirs(root: Path) -> list[Path]:
    patterns = ("usr/lib/*/libibverbs", "usr/lib64/libibverbs", "usr/lib/libibverbs")
    return [p for pattern in patterns for p in root.glob(pattern) if p.is_dir()]


def providers(facts: dict[str, Any], root: Path) -> list[dict[str, str]]:
    """Each /etc/libibverbs.d driver must have a provider built for libibverbs' private ABI."""
    drivers = []
    for conf in sorted((root / "etc/libibverbs.d").glob("*.driver")):
        match = re.search(r"^\s*driver\s+(\S+)", conf.read_text(), re.M)
        if match:
            drivers.append(match.group(1))
    libs: dict[str, int] = {}
    for directory in provider_dirs(root):
        for lib in directory.glob("lib*-rdmav*.so"):
            m = re.match(r"lib(.+)-rdmav(\d+)\.so$", lib.name)
            if m:
                libs[m.group(1)] = int(m.group(2))
    if not drivers:
        return [_finding("providers", "warn", "rdma-core is not installed",
                         "install rdma-core and ibverbs-providers")]
    abi = Counter(libs.values()).most_common(1)[0][0] if libs else None
    out = []
    for name in drivers:
        if name not in libs:
            if name == "tbrdma" or facts["modules"]["tbrdma"]["loaded"]:
                out.append(_finding("providers", "fail", f"provider {name} is configured but "
                                    "its library is missing", "reinstall the tbrdma provider"))
        elif libs[name] != abi:
            out.append(_finding("providers", "fail",
                                f"provider {name} is built for libibverbs ABI {libs[name]}, "
                                f"the others for {abi}",
                                f"rebuild {name} inside this host's rdma-core source "
                                "(driver/provider/ has the script)"))
    if facts["modules"]["tbrdma"]["loaded"] and "tbrdma" not in drivers:
        out.append(_finding("providers", "fail", "tbrdma is loaded but no tbrdma provider is "
                            "configured", "install the tbrdma provider (rdma-core-tbrdma)"))
    if not out:
        out.append(_finding("providers", "ok", f"{len(libs)} providers match libibverbs ABI {abi}"))
    return out


def tools(facts: dict[str, Any]) -> list[dict[str, str]]:
    packages = {"ip": "iproute2", "ping": "iputils-ping", "rdma": "iproute2",
                "modprobe": "kmod"}
    return [_finding("tools", "fail", f"{tool} is not installed", f"install {packages[tool]}")
            for tool, present in facts["tools"].items() if not present]


def findings(facts: dict[str, Any], root: Path) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for check in (kernel, modules, iommu, memlock, link_speed, usb4, mtu, tools):
        out.extend(check(facts))
    out.extend(providers(facts, root))
    return out
