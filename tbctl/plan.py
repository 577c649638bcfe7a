# SPDX-License-Identifier: MIT
"""From two hosts' probes to a pairing plan: which link meets which, addresses, MTU, transport.

Pure functions over the probe JSON, so every decision is unit-tested without hosts.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field
from typing import Any

from tbctl.errors import PlanError

DEFAULT_POOL = "10.254.0.0/16"
THUNDERBOLT_NET_MTU = 65520
TRANSPORTS = ("auto", "native", "rxe", "ip")


@dataclass
class Cable:
    link_a: str
    link_b: str
    matched_by: str
    address_a: str = ""
    address_b: str = ""
    prefix: int = 31
    mtu: int = 1500
    rdma_a: str | None = None
    rdma_b: str | None = None


@dataclass
class Plan:
    host_a: str
    host_b: str
    transport: str
    transport_reason: str
    cables: list[Cable] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def request_for(self, side: str, peer_id: str, peer_name: str) -> dict[str, Any]:
        """The cable part of the apply request for host `side` ("a" or "b")."""
        other = "b" if side == "a" else "a"
        cables = [{
            "link": getattr(c, f"link_{side}"),
            "peer_link": getattr(c, f"link_{other}"),
            "address": getattr(c, f"address_{side}"),
            "peer_address": getattr(c, f"address_{other}"),
            "prefix": c.prefix,
            "mtu": c.mtu,
            "rdma_device": getattr(c, f"rdma_{side}"),
        } for c in self.cables]
        return {"peer": {"host_id": peer_id, "name": peer_name}, "transport": self.transport,
                "cables": cables}


def _links(probe: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {link["name"]: link for link in probe["links"] if not link.get("missing")}


def _xdomain_peer(probe: dict[str, Any], link: dict[str, Any]) -> tuple[str, str] | None:
    """(remote host uid, local host uid) for a thunderbolt-net link."""
    for xd in probe["thunderbolt"]["xdomains"]:
        if xd["name"] == link.get("xdomain"):
            local = next((d["host_uid"] for d in probe["thunderbolt"]["domains"]
                          if d["name"] == xd["domain"]), None)
            if xd["unique_id"] and local:
                return xd["unique_id"], local
    return None


def not_cable(name: str, probe: dict[str, Any],
              neighbours: dict[str, list[str]]) -> dict[str, str]:
    """{link: why it is not a cable} for the candidate links of host `name`.

    A cable is point to point: it never carries the way out (the default route) or the
    SSH session tbctl arrived on, and it sees exactly one neighbour (the peer); a link that
    sees more is a switch or a LAN.
    """
    reasons = {}
    for link in _links(probe).values():
        where = f"{link['name']} on {name}"
        seen = neighbours.get(link["name"], [])
        if link.get("ssh_session"):
            reasons[link["name"]] = f"{where} carries the SSH session tbctl uses"
        elif link.get("default_route"):
            reasons[link["name"]] = f"{where} carries the default route"
        elif len(seen) > 1:
            reasons[link["name"]] = (f"{where} sees {len(seen)} neighbours (a switch or LAN, "
                                     "not a point-to-point cable)")
    return reasons


def _without(probe: dict[str, Any], links: dict[str, str]) -> dict[str, Any]:
    return {**probe, "links": [link for link in probe["links"] if link["name"] not in links]}


def match_cables(probe_a: dict[str, Any], probe_b: dict[str, Any],
                 neighbours_a: dict[str, list[str]],
                 neighbours_b: dict[str, list[str]]) -> list[Cable]:
    """Pairs of links joined by a cable: by XDomain unique ids where both ends are Thunderbolt
    and the match is unambiguous, else by each end seeing the other's MAC over IPv6 (and
    nothing else: see not_cable)."""
    links_a, links_b = _links(probe_a), _links(probe_b)
    cables: list[Cable] = []
    used_b: set[str] = set()
    for name_a, link_a in sorted(links_a.items()):
        ends_a = _xdomain_peer(probe_a, link_a)
        if ends_a:
            hits = [n for n, lb in links_b.items()
                    if _xdomain_peer(probe_b, lb) == (ends_a[1], ends_a[0])]
            if len(hits) == 1 and hits[0] not in used_b:
                cables.append(Cable(name_a, hits[0], "xdomain"))
                used_b.add(hits[0])
                continue
        mac_a = (link_a.get("mac") or "").lower()
        for name_b, link_b in sorted(links_b.items()):
            if name_b in used_b:
                continue
            mac_b = (link_b.get("mac") or "").lower()
            seen_a, seen_b = neighbours_a.get(name_a, []), neighbours_b.get(name_b, [])
            if len(seen_a) > 1 or len(seen_b) > 1:
                continue
            if mac_b in seen_a or mac_a in seen_b:
                cables.append(Cable(name_a, name_b, "neighbour"))
                used_b.add(name_b)
                break
    return cables


def _taken_networks(probe: dict[str, Any]) -> list[ipaddress.IPv4Network]:
    taken = []
    for cidr in [*probe["addresses"], *probe["routes"]]:
        net = ipaddress.ip_network(cidr, strict=False)
        if isinstance(net, ipaddress.IPv4Network) and net.prefixlen > 0:
            taken.append(net)
    return taken


def allocate_addresses(cables: list[Cable], pool: str, probe_a: dict[str, Any],
                       probe_b: dict[str, Any]) -> None:
    """Give each cable a /31 from `pool` that overlaps no address or route on either host."""
    try:
        network = ipaddress.IPv4Network(pool)
    except ValueError as exc:
        raise PlanError(f"bad address pool '{pool}': {exc}; give an IPv4 network like "
                        f"{DEFAULT_POOL}") from None
    if network.prefixlen > 31:
        raise PlanError(f"address pool {pool} is smaller than one /31")
    taken = _taken_networks(probe_a) + _taken_networks(probe_b)
    subnets = (s for s in network.subnets(new_prefix=31)
               if not any(s.overlaps(t) for t in taken))
    for cable in cables:
        subnet = next(subnets, None)
        if subnet is None:
            raise PlanError(f"address pool {pool} is exhausted: every /31 collides with an "
                            "address or route on a host; pass a larger or other --pool")
        cable.address_a, cable.address_b = (str(a) for a in subnet)


def choose_mtu(cables: list[Cable], probe_a: dict[str, Any], probe_b: dict[str, Any],
               requested: int | None) -> None:
    links_a, links_b = _links(probe_a), _links(probe_b)
    for cable in cables:
        la, lb = links_a[cable.link_a], links_b[cable.link_b]
        if requested:
            cable.mtu = requested
        elif la.get("driver") == lb.get("driver") == "thunderbolt-net":
            cable.mtu = THUNDERBOLT_NET_MTU
        else:
            # Not a thunderbolt-net link: keep what both ends already carry.
            cable.mtu = min(la.get("mtu") or 1500, lb.get("mtu") or 1500)


def _rxe_ready(probe: dict[str, Any]) -> str | None:
    if not probe["modules"]["rdma_rxe"]["available"]:
        return "rdma_rxe is not available"
    if not probe["tools"].get("rdma"):
        return "the rdma tool (iproute2) is missing"
    return None


def _native_ready(probe: dict[str, Any]) -> str | None:
    if probe.get("native_available") or probe["modules"]["tbrdma"]["available"]:
        return None
    return "the tbrdma module is not installed"


def choose_transport(requested: str, probe_a: dict[str, Any], name_a: str,
                     probe_b: dict[str, Any], name_b: str) -> tuple[str, str]:
    """(transport, plain-words reason)."""
    def blockers(check: Any) -> list[str]:
        return [f"{name}: {why}" for name, p in ((name_a, probe_a), (name_b, probe_b))
                if (why := check(p))]

    native, rxe = blockers(_native_ready), blockers(_rxe_ready)
    if requested == "native":
        if native:
            raise PlanError(f"--transport native is not possible ({'; '.join(native)}): "
                            "install tbrdma on both hosts or use --transport auto")
        return "native", "tbrdma on both hosts"
    if requested == "rxe":
        if rxe:
            raise PlanError(f"--transport rxe is not possible ({'; '.join(rxe)}): load "
                            "rdma_rxe support on both hosts or use --transport ip")
        return "rxe", "rdma_rxe (RoCE in software) on both hosts"
    if requested == "ip":
        return "ip", "IP only, as asked"
    if not native:
        return "native", "tbrdma on both hosts"
    if not rxe:
        return "rxe", f"rdma_rxe, because tbrdma is missing ({'; '.join(native)})"
    return "ip", f"IP only, no RDMA: {'; '.join(native + rxe)}"


def assign_rdma_devices(plan: Plan, probe_a: dict[str, Any], probe_b: dict[str, Any]) -> None:
    if plan.transport != "rxe":
        return

    def existing(probe: dict[str, Any], link: str) -> str | None:
        return next((d["name"] for d in probe["rdma"] if d["netdev"] == link), None)

    for cable in plan.cables:
        cable.rdma_a = existing(probe_a, cable.link_a) or f"rxe_{cable.link_a}"
        cable.rdma_b = existing(probe_b, cable.link_b) or f"rxe_{cable.link_b}"


def make_plan(name_a: str, probe_a: dict[str, Any], neighbours_a: dict[str, list[str]],
              name_b: str, probe_b: dict[str, Any], neighbours_b: dict[str, list[str]],
              *, transport: str = "auto", pool: str = DEFAULT_POOL,
              mtu: int | None = None) -> Plan:
    rejected_a = not_cable(name_a, probe_a, neighbours_a)
    rejected_b = not_cable(name_b, probe_b, neighbours_b)
    for probe, rejected in ((probe_a, rejected_a), (probe_b, rejected_b)):
        named = [link["name"] for link in probe["links"] if link.get("source") == "option"
                 and link["name"] in rejected]
        if named:
            raise PlanError(f"refusing --links {named[0]}: {rejected[named[0]]}; name only "
                            "links that are a cable between the two hosts")
    cables = match_cables(_without(probe_a, rejected_a), _without(probe_b, rejected_b),
                          neighbours_a, neighbours_b)
    if not cables:
        seen_a = ", ".join(sorted(_links(probe_a))) or "none"
        seen_b = ", ".join(sorted(_links(probe_b))) or "none"
        why = "; ".join([*rejected_a.values(), *rejected_b.values()])
        raise PlanError(f"{name_a} and {name_b} share no cable (links on {name_a}: {seen_a}; on "
                        f"{name_b}: {seen_b}{'; ' + why if why else ''}): plug a USB4 cable "
                        "between them, or name the links with --links")
    allocate_addresses(cables, pool, probe_a, probe_b)
    choose_mtu(cables, probe_a, probe_b, mtu)
    chosen, reason = choose_transport(transport, probe_a, name_a, probe_b, name_b)
    plan = Plan(name_a, name_b, chosen, reason, cables)
    assign_rdma_devices(plan, probe_a, probe_b)
    return plan
