# SPDX-License-Identifier: MIT
"""Network changes and observations through iproute2, ping and rdma (never faked)."""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any


class CommandError(Exception):
    pass


def run(args: list[str], check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as exc:
        raise CommandError(f"{args[0]} is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandError(f"{' '.join(args)} timed out after {timeout:.0f}s") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise CommandError(f"{' '.join(args)} failed: {detail[-1] if detail else proc.returncode}")
    return proc


def ip_json(*args: str) -> list[dict[str, Any]]:
    out = run(["ip", "-j", *args]).stdout.strip()
    return json.loads(out) if out else []


def ipv4_addresses(link: str | None = None) -> list[str]:
    """CIDRs such as 10.0.0.1/31, on one link or on all."""
    args = ["-4", "addr", "show"] + (["dev", link] if link else [])
    return [f"{a['local']}/{a['prefixlen']}" for entry in ip_json(*args)
            for a in entry.get("addr_info", []) if a.get("family") == "inet"]


def ipv4_routes() -> list[str]:
    routes = []
    for route in ip_json("-4", "route", "show", "table", "all"):
        dst = route.get("dst")
        if not dst or dst == "default" or route.get("type") in ("broadcast",):
            continue
        try:
            routes.append(str(ipaddress.ip_network(dst, strict=False)))
        except ValueError:
            continue
    return routes


def default_route_links() -> set[str]:
    """Links that carry a default route (IPv4 or IPv6): the way out, never a cable."""
    links = set()
    for family in ("-4", "-6"):
        for route in ip_json(family, "route", "show", "default"):
            links.update(n.get("dev") for n in [route, *route.get("nexthops", [])])
    links.discard(None)
    return links


def links_with_address(address: str) -> set[str]:
    """Links holding `address` (the SSH session's end on this host, IPv4 or IPv6)."""
    if not address:
        return set()
    try:
        return {e["ifname"] for e in ip_json("addr", "show", "to", address.split("%")[0])}
    except CommandError:
        return set()


def link_state(link: str) -> dict[str, Any]:
    entries = ip_json("link", "show", "dev", link)
    entry = entries[0]
    return {"mtu": entry.get("mtu"), "up": "UP" in entry.get("flags", []),
            "operstate": entry.get("operstate")}


def set_link(link: str, mtu: int | None = None, up: bool | None = None) -> None:
    args = ["ip", "link", "set", "dev", link]
    if mtu is not None:
        args += ["mtu", str(mtu)]
    if up is not None:
        args.append("up" if up else "down")
    run(args)


def add_address(link: str, cidr: str) -> None:
    run(["ip", "addr", "replace", cidr, "dev", link])


def del_address(link: str, cidr: str) -> None:
    run(["ip", "addr", "del", cidr, "dev", link], check=False)


def _ipv6_link_local(link: str) -> list[dict[str, Any]]:
    return [a for entry in ip_json("-6", "addr", "show", "dev", link, "scope", "link")
            for a in entry.get("addr_info", [])]


def wait_link_local(link: str, timeout: float = 3.0) -> bool:
    """Wait until the link has a usable (not tentative) IPv6 link-local address."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        addrs = _ipv6_link_local(link)
        if addrs and not all(a.get("tentative") for a in addrs):
            return True
        time.sleep(0.1)
    return False


def _ping_multicast(link: str) -> set[str]:
    proc = run(["ping", "-6", "-n", "-c", "2", "-i", "0.2", "-w", "1", f"ff02::1%{link}"],
               check=False, timeout=5)
    return set(re.findall(r"from (fe80:[0-9a-f:]+)", proc.stdout))


def _neighbour_macs(link: str) -> dict[str, str]:
    return {n["dst"]: n["lladdr"] for n in ip_json("-6", "neigh", "show", "dev", link)
            if n.get("lladdr") and n.get("dst", "").startswith("fe80:")}


def neighbours(link: str) -> list[str]:
    """MACs of the hosts at the other end of `link`, found over IPv6 link-local."""
    own = {a["local"] for a in _ipv6_link_local(link)}
    repliers = _ping_multicast(link) - own
    macs = _neighbour_macs(link)
    for addr in repliers - set(macs):
        # Force neighbour resolution for repliers the table has not learned yet.
        run(["ping", "-6", "-n", "-c", "1", "-W", "1", f"{addr}%{link}"], check=False, timeout=5)
    macs = _neighbour_macs(link)
    return sorted({macs[a].lower() for a in repliers if a in macs})


def neighbours_of(links: list[str]) -> dict[str, list[str]]:
    with ThreadPoolExecutor(max_workers=max(1, len(links))) as pool:
        return dict(zip(links, pool.map(neighbours, links), strict=True))


def ping(address: str, count: int = 3) -> float | None:
    """Average round trip in microseconds, or None when nothing answered."""
    proc = run(["ping", "-n", "-c", str(count), "-i", "0.05", "-W", "1", address],
               check=False, timeout=5 + count)
    match = re.search(r"= [0-9.]+/([0-9.]+)/", proc.stdout)
    return float(match.group(1)) * 1000 if match and proc.returncode == 0 else None


def have(command: str) -> bool:
    return shutil.which(command) is not None


def rxe_create(device: str, link: str) -> None:
    run(["rdma", "link", "add", device, "type", "rxe", "netdev", link])


def rxe_delete(device: str) -> None:
    run(["rdma", "link", "delete", device], check=False)


def modprobe(module: str) -> None:
    run(["modprobe", module])


def rmmod(module: str) -> None:
    run(["modprobe", "-r", module], check=False)


def link_present(name: str) -> bool:
    """Whether the network interface exists (in this host's network namespace)."""
    return Path(f"/sys/class/net/{name}").exists()


def ensure_node_link(name: str) -> None:
    """A link of its own for the node address, up: a dummy, or where the kernel has no dummy
    driver an empty bridge (both carry local addresses and need no configuration)."""
    if not link_present(name):
        errors = []
        for kind in ("dummy", "bridge"):
            proc = run(["ip", "link", "add", name, "type", kind], check=False)
            if proc.returncode == 0:
                break
            errors.append(f"{kind}: {(proc.stderr or proc.stdout).strip()}")
        else:
            raise CommandError(f"cannot create the node address link {name} "
                               f"({'; '.join(errors)}): load the dummy module")
    run(["ip", "link", "set", "dev", name, "up"])


def delete_link(name: str) -> None:
    run(["ip", "link", "del", "dev", name], check=False)


def add_route(to: str, via: str, link: str, source: str) -> None:
    run(["ip", "route", "replace", f"{to}/32", "via", via, "dev", link, "src", source])


def del_route(to: str, via: str, link: str) -> None:
    run(["ip", "route", "del", f"{to}/32", "via", via, "dev", link], check=False)


def _forwarding_path(link: str) -> str:
    return f"/proc/sys/net/ipv4/conf/{link}/forwarding"


def forwarding(link: str) -> str:
    """net.ipv4.conf.LINK.forwarding: IPv4 is forwarded for packets that arrive on LINK."""
    with open(_forwarding_path(link)) as f:
        return f.read().strip()


def set_forwarding(link: str, value: str) -> None:
    with open(_forwarding_path(link), "w") as f:
        f.write(f"{value}\n")
