# SPDX-License-Identifier: MIT
"""Which local link goes to which host: every host's cable candidates (thunderbolt-net links,
links.conf, --links) with what the kernel says about the far end, matched across the hosts.

The evidence is the same `tbctl pair` trusts (tbctl.plan.match_cables): a thunderbolt-net
link's XDomain names the peer host router's unique id, which the peer reports as its own;
on any other link each end sees the other's MAC answer an IPv6 all-nodes ping. The
Thunderbolt details (the peer's announced device and vendor name, lanes and per-lane speed)
come from /sys/bus/thunderbolt (Documentation/ABI/testing/sysfs-bus-thunderbolt).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tbctl.cluster import each_host, failure
from tbctl.connection import Connection
from tbctl.errors import TbctlError
from tbctl.hosts import SshOptions
from tbctl.pairing import link_neighbours
from tbctl.plan import match_cables
from tbctl.schema import DiscoverHost, DiscoverLink, DiscoverResult, HostFailure

Facts = tuple[dict[str, Any], dict[str, list[str]]]  # (probe, neighbour MACs per link)


def read_host(conn: Connection, state_dir: str, links: str) -> Facts:
    """One host's probe and, for its links that exist, the MACs at their far ends."""
    probe = conn.agent("probe", "--state-dir", state_dir, "--links", links)
    return probe, link_neighbours(conn, probe)


def _xdomain(probe: dict[str, Any], name: str | None) -> dict[str, Any]:
    return next((x for x in probe["thunderbolt"]["xdomains"] if x["name"] == name), {}) \
        if name else {}


def host_links(probe: dict[str, Any], neighbours: dict[str, list[str]]) -> list[DiscoverLink]:
    """Every existing candidate link of one host, far end not yet matched."""
    found = []
    for link in probe["links"]:
        if link.get("missing"):
            continue
        xd = _xdomain(probe, link.get("xdomain"))
        found.append(DiscoverLink(
            link=link["name"], mac=link.get("mac"), mtu=link.get("mtu"),
            up=bool(link.get("carrier")), speed_mbps=link.get("speed_mbps"),
            source=link.get("source", ""), xdomain=link.get("xdomain"),
            device_name=xd.get("device_name"), vendor_name=xd.get("vendor_name"),
            rx_speed_gbps=xd.get("rx_speed_gbps"), rx_lanes=xd.get("rx_lanes"),
            tx_speed_gbps=xd.get("tx_speed_gbps"), tx_lanes=xd.get("tx_lanes"),
            neighbour_macs=sorted(m.lower() for m in neighbours.get(link["name"], [])),
            peer_host=None, peer_link=None, matched_by=None))
    return found


def match_hosts(names: Sequence[str], facts: Sequence[Facts]) -> list[DiscoverHost]:
    """Every host's links, each with the host and link at its far end where one of the
    other hosts is there (by XDomain ids, else by neighbour MACs)."""
    hosts = [DiscoverHost(name=name, hostname=probe["hostname"],
                          links=host_links(probe, neighbours))
             for name, (probe, neighbours) in zip(names, facts, strict=True)]
    by_link = [{link["link"]: link for link in host["links"]} for host in hosts]
    for i, j in itertools.combinations(range(len(hosts)), 2):
        (probe_i, seen_i), (probe_j, seen_j) = facts[i], facts[j]
        for cable in match_cables(probe_i, probe_j, seen_i, seen_j):
            near, far = by_link[i][cable.link_a], by_link[j][cable.link_b]
            near.update(peer_host=names[j], peer_link=cable.link_b, matched_by=cable.matched_by)
            far.update(peer_host=names[i], peer_link=cable.link_a, matched_by=cable.matched_by)
    return hosts


def discover(names: Sequence[str], ssh: SshOptions, links: Mapping[str, str] | None = None,
             step: Callable[[str], None] | None = None) -> DiscoverResult:
    """Read every host on its own (one that is down gets a `failed` row) and match them;
    `links` names more links to look at per host (comma-separated)."""
    if step:
        step(f"reading {', '.join(names)}")
    answers = each_host(names, ssh, lambda c: read_host(c, ssh.state_dir,
                                                        (links or {}).get(c.name, "")))
    if answers and all(isinstance(a, TbctlError) for a in answers):
        raise answers[0]  # type: ignore[misc]
    good = [(n, a) for n, a in zip(names, answers, strict=True)
            if not isinstance(a, TbctlError)]
    failed: list[HostFailure] = [failure(n, a) for n, a in zip(names, answers, strict=True)
                                 if isinstance(a, TbctlError)]
    hosts = match_hosts([n for n, _ in good], [a for _, a in good])  # type: ignore[misc]
    return DiscoverResult(hosts=hosts, failed=failed)


def far_end(link: DiscoverLink) -> str:
    """What the table shows as the far end: the host and link, else the Thunderbolt name or
    the MACs seen there, else nothing."""
    if link["peer_host"]:
        return f"{link['peer_host']} {link['peer_link']}"
    if link["device_name"]:
        return f"not a given host: {link['device_name']} (Thunderbolt)"
    if link["neighbour_macs"]:
        return f"not a given host: {', '.join(link['neighbour_macs'])}"
    return "nothing answered" if link["up"] else "no carrier"


def thunderbolt_link(link: DiscoverLink) -> str:
    """`Peer Name (Vendor), 2 x 20 Gb/s` from the XDomain attributes that exist."""
    if not link["xdomain"]:
        return ""
    who = link["device_name"] or link["xdomain"]
    if link["vendor_name"]:
        who += f" ({link['vendor_name']})"
    lanes, speed = link["rx_lanes"], link["rx_speed_gbps"]
    if lanes and speed:
        who += f", {lanes} x {speed:g} Gb/s"
    return who
