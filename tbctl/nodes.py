# SPDX-License-Identifier: MIT
"""Node addresses: one /32 per host of an inventory that every other host reaches over the
cables, so that a job's bootstrap (MASTER_ADDR, Ray's node IP, Gloo, NCCL) has one address
per host, also in a triangle or ring where each cable is its own /31.

Each host holds its node address on a link of its own (NODE_LINK) and routes every other
node address over a direct cable, with its node address as source; a host two hops away
(the opposite corner of a ring) is routed via a neighbour both share, the same neighbour in
both directions (so a strict rp_filter accepts the replies), and only that neighbour
forwards, and only on the two cables that carry the traffic.

Pure functions over the inventory and the hosts' probes: unit-tested without hosts.
"""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tbctl.errors import PlanError

NODE_LINK = "tbnode0"
# The node addresses come from the top of the cable pool unless the inventory says otherwise.
NODE_POOL_PREFIX = 24


def default_node_pool(pool: str) -> str:
    """The last /24 of `pool` (the last half of a pool smaller than a /23)."""
    network = ipaddress.IPv4Network(pool)
    prefix = min(max(network.prefixlen + 1, NODE_POOL_PREFIX), 32)
    return str(list(network.subnets(new_prefix=prefix))[-1]) if prefix > network.prefixlen \
        else str(network)


def _candidates(network: ipaddress.IPv4Network) -> list[ipaddress.IPv4Address]:
    # No network or broadcast address where a subnet has them: some tools refuse those.
    return list(network.hosts()) if network.prefixlen < 31 else list(network)


def _slot(name: str, size: int) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % size


def allocate_node_addresses(hosts: Sequence[str], node_pool: str,
                            taken: Sequence[str] = (),
                            recorded: dict[str, str] | None = None) -> dict[str, str]:
    """host -> node address from `node_pool`.

    A host that already holds a node address (recorded by an earlier pairing) keeps it;
    the others get the address their name hashes to, or the next free one after it, so a
    host's address does not depend on the order of the inventory. No address inside a
    `taken` network (an address or route on some host) is handed out.
    """
    network = ipaddress.IPv4Network(node_pool)
    recorded = dict(recorded or {})
    taken_nets = [ipaddress.IPv4Network(t, strict=False) for t in taken]
    mine = {ipaddress.IPv4Address(a) for a in recorded.values()}
    # tbctl's own node addresses and routes to them are not someone else's.
    taken_nets = [t for t in taken_nets
                  if not (t.prefixlen == 32 and t.network_address in mine)]
    candidates = _candidates(network)
    used: set[ipaddress.IPv4Address] = set()
    result: dict[str, str] = {}
    for host in hosts:
        if host in recorded:
            address = ipaddress.IPv4Address(recorded[host])
            if address in used:
                raise PlanError(f"{host} and another host both hold node address {address}: "
                                f"run tbctl unpair with the inventory, then pair again")
            used.add(address)
            result[host] = str(address)
    free = [a for a in candidates
            if a not in used and not any(a in t for t in taken_nets)]
    for host in sorted(h for h in hosts if h not in result):
        if not free:
            raise PlanError(f"node address pool {node_pool} is exhausted: no free address "
                            f"for {host} ({len(hosts)} hosts; the rest is taken by addresses "
                            "or routes on the hosts); give a larger or other node_pool in "
                            "the inventory")
        start = _slot(host, len(candidates))
        # The first free address at or after the host's own slot, wrapping around.
        chosen = min(free, key=lambda a: (int(a) - int(candidates[start])) % len(candidates))
        free.remove(chosen)
        result[host] = str(chosen)
    return {h: result[h] for h in hosts}


@dataclass(frozen=True)
class NodeSide:
    """What one host of a pair does for the node addresses, before the cable addresses are
    known: its own address, the node addresses it reaches through this peer (the peer's
    own first), and whether it forwards between this cable and another."""

    address: str
    via_peer: tuple[str, ...]
    forward: bool

    def request(self, link: str, peer_address: str) -> dict[str, Any]:
        """The `node` part of the apply request; routes go over `link` to `peer_address`."""
        return {"link": NODE_LINK, "address": self.address, "forward_link": link
                if self.forward else None,
                "routes": [{"to": to, "via": peer_address, "link": link}
                           for to in self.via_peer]}


def middles(hosts: Sequence[str], pairs: Sequence[tuple[str, str]]) -> dict[frozenset[str], str]:
    """{(x, y): the neighbour m that carries x <-> y} for every two hosts with no cable
    between them: the first host of the inventory joined to both. Two hosts with no
    neighbour in common are refused: forwarding over more than one hop is not set up."""
    neighbours = {h: set() for h in hosts}
    for a, b in pairs:
        neighbours[a].add(b)
        neighbours[b].add(a)
    result = {}
    for x, y in itertools.combinations(hosts, 2):
        if y in neighbours[x]:
            continue
        common = [m for m in hosts if m in neighbours[x] and m in neighbours[y]]
        if not common:
            raise PlanError(f"{x} and {y} are more than one hop apart over the cables: cable "
                            "them (or a host both are cabled to) for node addresses")
        result[frozenset((x, y))] = common[0]
    return result


def node_sides(hosts: Sequence[str], pairs: Sequence[tuple[str, str]],
               addresses: dict[str, str]) -> dict[tuple[str, str], tuple[NodeSide, NodeSide]]:
    """For each cabled pair (a, b): what a and b each set up on their cable."""
    via = middles(hosts, pairs)
    sides = {}
    for a, b in pairs:
        def side(me: str, peer: str) -> NodeSide:
            beyond = [next(iter(xy - {me})) for xy, m in via.items() if m == peer and me in xy]
            forward = any(m == me and peer in xy for xy, m in via.items())
            return NodeSide(addresses[me], (addresses[peer], *sorted(
                (addresses[h] for h in beyond), key=ipaddress.IPv4Address)), forward)

        sides[(a, b)] = (side(a, b), side(b, a))
    return sides


def recorded_node(status: dict[str, Any]) -> str | None:
    """The node address a host's recorded pairings give it, if any."""
    return next((p["node"]["address"] for p in status["pairings"] if p.get("node")), None)


def node_problem(value: str) -> str | None:
    """Why `value` cannot be the node address pool, or None."""
    try:
        ipaddress.IPv4Network(value)
    except ValueError as exc:
        return f"'{value}' is not an IPv4 network ({exc}); give one like 10.254.255.0/24"
    return None
