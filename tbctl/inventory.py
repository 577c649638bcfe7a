# SPDX-License-Identifier: MIT
"""The inventory, `tbctl.toml`: which hosts form the cluster and how to pair them.

    hosts = ["strix-a", "strix-b", "root@strix-c:2222"]   # as for ssh (aliases welcome)
    pool = "10.254.0.0/16"       # optional: where the per-cable /31s come from
    node_pool = "10.254.255.0/24"  # optional: where the node addresses (/32) come from
                                 # (default: the last /24 of pool; cables never use it)
    transport = "auto"           # optional: auto, native, rxe or ip
    mtu = 9000                   # optional: every cable's MTU
    topology = [["strix-a", "strix-b"], ["strix-b", "strix-c"], ["strix-c", "strix-a"]]
                                 # optional: the cabled pairs (else found from the cables)
    [links]                      # optional: more cable links per host, like --links
    strix-a = ["usb4net0"]

Every problem is reported as one line naming the file and the field (exit 2), before any
host is contacted.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tbctl.errors import TbctlError, UsageError
from tbctl.hostspec import parse_host
from tbctl.nodes import default_node_pool, node_problem
from tbctl.plan import DEFAULT_POOL, TRANSPORTS

INVENTORY_FILE = "tbctl.toml"
FIELDS = ("hosts", "pool", "node_pool", "transport", "mtu", "topology", "links")
MTU_RANGE = (1280, 65535)

# Linux interface names: 1-15 characters, no '/', ':', whitespace (dev_valid_name()).
IFNAME = re.compile(r"^[^/:\s]{1,15}$")


def pool_problem(value: str) -> str | None:
    """Why `value` cannot be the address pool, or None."""
    try:
        network = ipaddress.IPv4Network(value)
    except ValueError as exc:
        return f"'{value}' is not an IPv4 network ({exc}); give one like {DEFAULT_POOL}"
    if network.prefixlen > 31:
        return f"{value} is smaller than one /31"
    return None


def ifname_problem(name: str) -> str | None:
    if IFNAME.match(name):
        return None
    return f"'{name}' is not an interface name (1-15 characters, no '/', ':' or spaces)"


@dataclass(frozen=True)
class Inventory:
    path: Path
    hosts: tuple[str, ...]
    pool: str = DEFAULT_POOL
    transport: str = "auto"
    mtu: int | None = None
    topology: tuple[tuple[str, str], ...] | None = None  # None: found from the cables
    links: dict[str, tuple[str, ...]] | None = None  # host -> extra cable links
    node_pool: str | None = None  # None: the last /24 of pool

    @property
    def nodes(self) -> str:
        """Where the node addresses come from."""
        return self.node_pool or default_node_pool(self.pool)

    def links_of(self, host: str) -> tuple[str, ...]:
        return (self.links or {}).get(host, ())


def find_inventory(given: str | None, cwd: Path | None = None) -> Path | None:
    """The inventory given with --inventory, else ./tbctl.toml if there is one."""
    if given:
        return Path(given)
    candidate = (cwd or Path.cwd()) / INVENTORY_FILE
    return candidate if candidate.is_file() else None


def _bad(path: Path, field: str, problem: str) -> UsageError:
    return UsageError(f"{path}: {field}: {problem} (see docs/tbctl.md, section 7)")


def _strings(path: Path, field: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(path, field, "must be a list of strings")
    return value


def _hosts(path: Path, value: Any) -> tuple[str, ...]:
    hosts = _strings(path, "hosts", value)
    if len(hosts) < 2:
        raise _bad(path, "hosts", f"names {len(hosts)} host(s); a cluster needs at least two")
    for spec in hosts:
        try:
            parse_host(spec)
        except TbctlError as exc:
            raise _bad(path, "hosts", str(exc)) from None
    duplicates = sorted({h for h in hosts if hosts.count(h) > 1})
    if duplicates:
        raise _bad(path, "hosts", f"{duplicates[0]} is listed twice")
    return tuple(hosts)


def _topology(path: Path, value: Any, hosts: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list) or not value:
        raise _bad(path, "topology", 'must be a list of host pairs, like [["a", "b"]]')
    pairs: list[tuple[str, str]] = []
    for entry in value:
        if (not isinstance(entry, list) or len(entry) != 2
                or not all(isinstance(v, str) for v in entry)):
            raise _bad(path, "topology", f"{entry!r} is not a pair of host names")
        a, b = entry
        unknown = [h for h in (a, b) if h not in hosts]
        if unknown:
            raise _bad(path, "topology", f"{unknown[0]} is not one of hosts")
        if a == b:
            raise _bad(path, "topology", f"[{a!r}, {b!r}] joins a host to itself")
        if (a, b) in pairs or (b, a) in pairs:
            raise _bad(path, "topology", f"[{a!r}, {b!r}] is listed twice")
        pairs.append((a, b))
    return tuple(pairs)


def _links(path: Path, value: Any, hosts: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, dict):
        raise _bad(path, "links", "must be a table of host = [interface names]")
    links: dict[str, tuple[str, ...]] = {}
    for host, names in value.items():
        if host not in hosts:
            raise _bad(path, f"links.{host}", "is not one of hosts")
        for name in _strings(path, f"links.{host}", names):
            if problem := ifname_problem(name):
                raise _bad(path, f"links.{host}", problem)
        links[host] = tuple(names)
    return links


def parse_inventory(path: Path, text: str) -> Inventory:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    unknown = [key for key in data if key not in FIELDS]
    if unknown:
        raise _bad(path, unknown[0], f"unknown field (known: {', '.join(FIELDS)})")
    if "hosts" not in data:
        raise _bad(path, "hosts", 'missing; list the cluster\'s hosts, like hosts = ["a", "b"]')
    hosts = _hosts(path, data["hosts"])
    pool = data.get("pool", DEFAULT_POOL)
    if not isinstance(pool, str):
        raise _bad(path, "pool", f"must be a string like \"{DEFAULT_POOL}\"")
    if problem := pool_problem(pool):
        raise _bad(path, "pool", problem)
    node_pool = data.get("node_pool")
    if node_pool is not None:
        if not isinstance(node_pool, str):
            raise _bad(path, "node_pool", "must be a string like \"10.254.255.0/24\"")
        if problem := node_problem(node_pool):
            raise _bad(path, "node_pool", problem)
    transport = data.get("transport", "auto")
    if transport not in TRANSPORTS:
        raise _bad(path, "transport", f"{transport!r} is not one of {', '.join(TRANSPORTS)}")
    mtu = data.get("mtu")
    if mtu is not None and (not isinstance(mtu, int) or isinstance(mtu, bool)
                            or not MTU_RANGE[0] <= mtu <= MTU_RANGE[1]):
        raise _bad(path, "mtu", f"{mtu!r} is not a number {MTU_RANGE[0]}-{MTU_RANGE[1]}")
    topology = _topology(path, data["topology"], hosts) if "topology" in data else None
    links = _links(path, data["links"], hosts) if "links" in data else None
    return Inventory(path, hosts, pool, transport, mtu, topology, links, node_pool)


def load_inventory(path: Path) -> Inventory:
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read inventory {path}: {exc.strerror}; give an existing "
                         "file with --inventory") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not valid TOML: not UTF-8 text") from None
    return parse_inventory(path, text)
