# SPDX-License-Identifier: MIT
"""Cable matching, address allocation, MTU and transport choice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tbctl.errors import PlanError
from tbctl.node import probe
from tbctl.plan import Cable, allocate_addresses, choose_transport, make_plan, match_cables
from tests.unit import sysfs_tree as tree
from tests.unit.test_probe import UID_A, UID_B


def facts(root: Path, links: list[str] | None = None, rxe: bool = False,
          tbrdma: bool = False, addresses: list[str] | None = None) -> dict[str, Any]:
    shipped = (["infiniband/sw/rxe/rdma_rxe"] if rxe else []) + (["extra/tbrdma"] if tbrdma
                                                                 else [])
    tree.kernel(root, "6.12.0", shipped, [])
    return {
        "links": probe.candidate_links(root, links or [], []),
        "thunderbolt": probe.thunderbolt(root),
        "modules": probe.modules(root, "6.12.0"),
        "native_available": tbrdma,
        "rdma": probe.rdma_devices(root),
        "tools": {"rdma": True},
        "addresses": addresses or ["127.0.0.1/8"],
        "routes": [],
    }


def two_cable_hosts(tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A and B joined by two Thunderbolt cables on two domains... of one router each."""
    a, b = tmp_path / "a", tmp_path / "b"
    tree.thunderbolt_host(a, UID_A, [
        {"uid": UID_B, "name": "b", "netdev": "thunderbolt0", "mac": "02:aa:00:00:00:00",
         "port": 1, "lanes": 2, "speed": 20}])
    tree.thunderbolt_host(b, UID_B, [
        {"uid": UID_A, "name": "a", "netdev": "thunderbolt3", "mac": "02:bb:00:00:00:00",
         "port": 3, "lanes": 2, "speed": 20}])
    return facts(a, rxe=True), facts(b, rxe=True)


def test_xdomain_unique_ids_match_cables(tmp_path):
    pa, pb = two_cable_hosts(tmp_path)
    (cable,) = match_cables(pa, pb, {}, {})
    assert (cable.link_a, cable.link_b, cable.matched_by) == (
        "thunderbolt0", "thunderbolt3", "xdomain")


def test_neighbour_macs_match_cables(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for root, macs in ((a, ("02:00:00:00:0a:00", "02:00:00:00:0a:01")),
                       (b, ("02:00:00:00:0b:00", "02:00:00:00:0b:01"))):
        tree.netdev(root, "tb0", macs[0])
        tree.netdev(root, "tb1", macs[1])
    pa, pb = facts(a, ["tb0", "tb1"]), facts(b, ["tb0", "tb1"])
    # Crossed: A's tb0 sees B's tb1, A's tb1 sees B's tb0 (only B's view for the second).
    cables = match_cables(pa, pb, {"tb0": ["02:00:00:00:0b:01"]}, {"tb0": ["02:00:00:00:0a:01"]})
    assert [(c.link_a, c.link_b) for c in cables] == [("tb0", "tb1"), ("tb1", "tb0")]
    assert match_cables(pa, pb, {}, {}) == []


def test_no_shared_cable_is_refused(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    tree.netdev(a, "tb0", "02:00:00:00:0a:00")
    tree.netdev(b, "tb0", "02:00:00:00:0b:00")
    with pytest.raises(PlanError, match="share no cable"):
        make_plan("a", facts(a, ["tb0"]), {}, "b", facts(b, ["tb0"]), {})


def test_addresses_avoid_every_address_and_route(tmp_path):
    pa, pb = two_cable_hosts(tmp_path)
    pa["addresses"] = ["10.254.0.1/32"]
    pb["routes"] = ["10.254.0.2/31", "0.0.0.0/0"]
    cables = [Cable("tb0", "tb0", "neighbour"), Cable("tb1", "tb1", "neighbour")]
    allocate_addresses(cables, "10.254.0.0/29", pa, pb)
    assert [(c.address_a, c.address_b) for c in cables] == [("10.254.0.4", "10.254.0.5"),
                                                           ("10.254.0.6", "10.254.0.7")]


def test_pool_exhausted(tmp_path):
    pa, pb = two_cable_hosts(tmp_path)
    pa["addresses"] = ["10.254.0.0/31"]
    with pytest.raises(PlanError, match="exhausted"):
        allocate_addresses(match_cables(pa, pb, {}, {}), "10.254.0.0/31", pa, pb)
    with pytest.raises(PlanError, match="bad address pool"):
        allocate_addresses([], "10.254.0.300/24", pa, pb)


def test_thunderbolt_net_gets_65520_and_rxe_names(tmp_path):
    pa, pb = two_cable_hosts(tmp_path)
    plan = make_plan("a", pa, {}, "b", pb, {})
    (cable,) = plan.cables
    assert cable.mtu == 65520
    assert plan.transport == "rxe" and "tbrdma is missing" in plan.transport_reason
    assert (cable.rdma_a, cable.rdma_b) == ("rxe_thunderbolt0", "rxe_thunderbolt3")
    request = plan.request_for("b", "id-a", "a")
    assert request["cables"][0]["address"] == cable.address_b
    assert request["cables"][0]["peer_link"] == "thunderbolt0"


@pytest.mark.parametrize("requested, a, b, expect", [
    ("auto", dict(tbrdma=True), dict(tbrdma=True), "native"),
    ("auto", dict(tbrdma=True, rxe=True), dict(rxe=True), "rxe"),
    ("auto", dict(rxe=True), dict(), "ip"),
    ("ip", dict(rxe=True), dict(rxe=True), "ip"),
    ("rxe", dict(rxe=True), dict(), PlanError),
    ("native", dict(tbrdma=True), dict(), PlanError),
])
def test_transport_choice(tmp_path, requested, a, b, expect):
    pa, pb = facts(tmp_path / "a", **a), facts(tmp_path / "b", **b)
    if expect is PlanError:
        with pytest.raises(PlanError, match=f"--transport {requested} is not possible"):
            choose_transport(requested, pa, "a", pb, "b")
    else:
        chosen, reason = choose_transport(requested, pa, "a", pb, "b")
        assert chosen == expect and reason


def test_a_link_seeing_several_neighbours_is_no_cable(tmp_path):
    """Two hosts behind one switch see each other's MAC, and everyone else's."""
    a, b = tmp_path / "a", tmp_path / "b"
    tree.netdev(a, "eth0", "02:00:00:00:0a:00")
    tree.netdev(b, "eth0", "02:00:00:00:0b:00")
    pa, pb = facts(a, ["eth0"]), facts(b, ["eth0"])
    for host_facts in (pa, pb):
        host_facts["links"][0]["source"] = "declared"
    lan = ({"eth0": ["02:00:00:00:0b:00", "02:00:00:00:0c:00"]},
           {"eth0": ["02:00:00:00:0a:00", "02:00:00:00:0c:00"]})
    assert match_cables(pa, pb, *lan) == []
    with pytest.raises(PlanError, match="eth0 on a sees 2 neighbours"):
        make_plan("a", pa, lan[0], "b", pb, lan[1])
    # Named with --links: refused outright, in one line.
    pa, pb = facts(a, ["eth0"]), facts(b, ["eth0"])
    with pytest.raises(PlanError, match=r"refusing --links eth0: eth0 on a sees 2 neighbours"):
        make_plan("a", pa, lan[0], "b", pb, lan[1])


@pytest.mark.parametrize(("flag", "why"), [("default_route", "carries the default route"),
                                           ("ssh_session", "carries the SSH session")])
def test_the_way_out_is_no_cable(tmp_path, flag, why):
    """Even with exactly one neighbour: a link carrying the default route or the SSH
    session is how the host is reached, not a cable."""
    a, b = tmp_path / "a", tmp_path / "b"
    tree.netdev(a, "eth0", "02:00:00:00:0a:00")
    tree.netdev(b, "eth0", "02:00:00:00:0b:00")
    pa, pb = facts(a, ["eth0"]), facts(b, ["eth0"])
    pb["links"][0][flag] = True
    seen = ({"eth0": ["02:00:00:00:0b:00"]}, {"eth0": ["02:00:00:00:0a:00"]})
    with pytest.raises(PlanError, match=f"refusing --links eth0: eth0 on b {why}"):
        make_plan("a", pa, seen[0], "b", pb, seen[1])
    pb["links"][0].pop(flag)
    (cable,) = make_plan("a", pa, seen[0], "b", pb, seen[1]).cables
    assert (cable.link_a, cable.link_b) == ("eth0", "eth0")
