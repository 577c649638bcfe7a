# SPDX-License-Identifier: MIT
"""Node addresses (tbctl.nodes): one stable /32 per host, never a cable's, routed over a
direct cable or via one shared neighbour; a pool that runs out is one clear line."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from tbctl.errors import PlanError, UsageError
from tbctl.inventory import parse_inventory
from tbctl.nodes import (
    NodeSide,
    allocate_node_addresses,
    default_node_pool,
    middles,
    node_sides,
)
from tbctl.plan import Cable, allocate_addresses

HOSTS = ("strix-a", "strix-b", "root@strix-c:2222", "strix-d")
RING = [("strix-a", "strix-b"), ("strix-b", "root@strix-c:2222"),
        ("root@strix-c:2222", "strix-d"), ("strix-d", "strix-a")]


def test_default_node_pool_is_the_top_of_the_cable_pool():
    assert default_node_pool("10.254.0.0/16") == "10.254.255.0/24"
    assert default_node_pool("10.77.0.0/24") == "10.77.0.128/25"
    assert default_node_pool("10.77.0.0/30") == "10.77.0.2/31"


def test_addresses_are_stable_per_host_name():
    pool = "10.254.255.0/24"
    first = allocate_node_addresses(HOSTS, pool)
    assert len(set(first.values())) == len(HOSTS)
    assert all(ipaddress.ip_address(a) in ipaddress.ip_network(pool) for a in first.values())
    # Neither the order of the inventory nor a host more or less moves anyone's address
    # (these names do not collide in a /24, so each is its name's own slot).
    assert allocate_node_addresses(tuple(reversed(HOSTS)), pool) == first
    assert allocate_node_addresses(HOSTS[:2], pool) == {h: first[h] for h in HOSTS[:2]}
    # An address a host already holds is kept, even if its slot is free again.
    kept = allocate_node_addresses(HOSTS, pool, recorded={"strix-a": "10.254.255.77"})
    assert kept["strix-a"] == "10.254.255.77"
    assert {h: kept[h] for h in HOSTS[1:]} == {h: first[h] for h in HOSTS[1:]}


def test_addresses_taken_on_a_host_are_skipped():
    pool = "10.254.255.0/24"
    first = allocate_node_addresses(HOSTS, pool)
    busy = first["strix-b"]
    again = allocate_node_addresses(HOSTS, pool, taken=[f"{busy}/32", "192.168.1.0/24"])
    assert again["strix-b"] != busy and again["strix-a"] == first["strix-a"]
    # tbctl's own routes to recorded node addresses are not "taken".
    recorded = {"strix-b": busy}
    assert allocate_node_addresses(HOSTS, pool, taken=[f"{busy}/32"],
                                   recorded=recorded)["strix-b"] == busy


def test_cables_never_take_a_node_address():
    """pair over an inventory reserves the node pool: the /31 allocator skips it, even when
    the cable pool has nothing else left."""
    probe = {"addresses": [], "routes": []}
    cables = [Cable("tb0", "tb0", "neighbour"), Cable("tb1", "tb1", "neighbour")]
    node_pool = default_node_pool("10.77.0.0/30")
    allocate_addresses(cables[:1], "10.77.0.0/30", {**probe, "routes": [node_pool]}, probe)
    assert cables[0].address_a == "10.77.0.0"
    with pytest.raises(PlanError, match="address pool 10.77.0.0/30 is exhausted"):
        allocate_addresses(cables, "10.77.0.0/30", {**probe, "routes": [node_pool]}, probe)


def test_an_exhausted_node_pool_is_one_clear_line():
    with pytest.raises(PlanError) as caught:
        allocate_node_addresses(HOSTS[:3], "10.254.255.0/30")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("node address pool 10.254.255.0/30 is exhausted: no free "
                              "address for ")
    assert "give a larger or other node_pool in the inventory" in message
    with pytest.raises(PlanError, match="exhausted"):
        allocate_node_addresses(HOSTS[:2], "10.254.255.0/24", taken=["10.254.255.0/25",
                                                                      "10.254.255.128/25"])


def test_ring_routes_the_opposite_corner_via_one_neighbour_both_ways():
    a, b, c, d = HOSTS
    assert middles(HOSTS, RING) == {frozenset((a, c)): b, frozenset((b, d)): a}
    assert middles(HOSTS[:3], RING[:2] + [(c, a)]) == {}  # a triangle: all direct
    nodes = allocate_node_addresses(HOSTS, "10.254.255.0/24")
    sides = node_sides(HOSTS, RING, nodes)
    side_a, side_b = sides[(a, b)]
    # a reaches b and, through b, c; b reaches a and, through a, d; both forward there.
    assert side_a == NodeSide(nodes[a], (nodes[b], nodes[c]), True)
    assert side_b == NodeSide(nodes[b], (nodes[a], nodes[d]), True)
    side_c, side_d = sides[(c, d)]
    assert side_c == NodeSide(nodes[c], (nodes[d],), False)
    assert side_d == NodeSide(nodes[d], (nodes[c],), False)
    assert sides[(b, c)][1] == NodeSide(nodes[c], (nodes[b], nodes[a]), False)
    request = side_a.request("thunderbolt0", "10.254.0.1")
    assert request == {"link": "tbnode0", "address": nodes[a], "forward_link": "thunderbolt0",
                       "routes": [{"to": nodes[b], "via": "10.254.0.1", "link": "thunderbolt0"},
                                  {"to": nodes[c], "via": "10.254.0.1",
                                   "link": "thunderbolt0"}]}


def test_more_than_one_hop_is_refused():
    a, b, c, d = HOSTS
    with pytest.raises(PlanError, match=f"{a} and {d} are more than one hop apart"):
        middles(HOSTS, RING[:3])  # a line a-b-c-d


def test_inventory_node_pool():
    path = Path("tbctl.toml")
    inv = parse_inventory(path, 'hosts = ["a", "b"]\npool = "10.77.0.0/16"\n')
    assert inv.nodes == "10.77.255.0/24"
    inv = parse_inventory(path, 'hosts = ["a", "b"]\nnode_pool = "10.9.9.0/29"\n')
    assert inv.nodes == "10.9.9.0/29"
    with pytest.raises(UsageError, match="tbctl.toml: node_pool: '10.9.9.300/24' is not an "):
        parse_inventory(path, 'hosts = ["a", "b"]\nnode_pool = "10.9.9.300/24"\n')
