# SPDX-License-Identifier: MIT
"""tbctl.discover on recorded sysfs trees (Documentation/ABI/testing/sysfs-bus-thunderbolt):
Thunderbolt peers matched by XDomain ids with their names, lanes and speed; other links by
neighbour MACs; a far end that is none of the hosts shown as what was seen there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tbctl.discover import far_end, match_hosts, thunderbolt_link
from tbctl.node import probe
from tests.unit import sysfs_tree as tree
from tests.unit.test_probe import UID_A, UID_B


def facts(root: Path, hostname: str, links: list[str]) -> dict[str, Any]:
    return {"hostname": hostname, "links": probe.candidate_links(root, links, []),
            "thunderbolt": probe.thunderbolt(root)}


def test_thunderbolt_peers_and_a_direct_ethernet_cable(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    tree.thunderbolt_host(a, UID_A, [
        {"uid": UID_B, "name": "strix-b", "netdev": "thunderbolt0",
         "mac": "02:aa:00:00:00:00", "port": 1, "lanes": 2, "speed": 20}])
    tree.thunderbolt_host(b, UID_B, [
        {"uid": UID_A, "name": "strix-a", "netdev": "thunderbolt3",
         "mac": "02:bb:00:00:00:00", "port": 3, "lanes": 2, "speed": 20}])
    # a plain Ethernet cable between them too, and one on a to a box that is not given
    tree.netdev(a, "enp1s0", "02:aa:00:00:01:00")
    tree.netdev(b, "enp2s0", "02:bb:00:00:01:00")
    tree.netdev(a, "enp3s0", "02:aa:00:00:02:00")
    pa = facts(a, "strix-a", ["enp1s0", "enp3s0"])
    pb = facts(b, "strix-b", ["enp2s0"])
    seen_a = {"thunderbolt0": [], "enp1s0": ["02:BB:00:00:01:00"],
              "enp3s0": ["02:cc:00:00:00:01"]}
    seen_b = {"thunderbolt3": [], "enp2s0": ["02:aa:00:00:01:00"]}

    host_a, host_b = match_hosts(["a", "b"], [(pa, seen_a), (pb, seen_b)])
    assert (host_a["name"], host_a["hostname"]) == ("a", "strix-a")
    links_a = {link["link"]: link for link in host_a["links"]}
    links_b = {link["link"]: link for link in host_b["links"]}
    assert set(links_a) == {"thunderbolt0", "enp1s0", "enp3s0"}

    tb = links_a["thunderbolt0"]
    assert (tb["peer_host"], tb["peer_link"], tb["matched_by"]) == ("b", "thunderbolt3",
                                                                     "xdomain")
    assert (tb["xdomain"], tb["device_name"], tb["vendor_name"]) == ("0-1", "strix-b",
                                                                      "tbrdma")
    assert (tb["rx_lanes"], tb["rx_speed_gbps"], tb["tx_lanes"], tb["tx_speed_gbps"]) == (
        2, 20.0, 2, 20.0)
    assert tb["source"] == "thunderbolt-net" and tb["mac"] == "02:aa:00:00:00:00"
    assert thunderbolt_link(tb) == "strix-b (tbrdma), 2 x 20 Gb/s"
    assert far_end(tb) == "b thunderbolt3"
    back = links_b["thunderbolt3"]
    assert (back["peer_host"], back["peer_link"], back["device_name"]) == ("a", "thunderbolt0",
                                                                           "strix-a")

    eth = links_a["enp1s0"]
    assert (eth["peer_host"], eth["peer_link"], eth["matched_by"]) == ("b", "enp2s0",
                                                                       "neighbour")
    assert eth["neighbour_macs"] == ["02:bb:00:00:01:00"] and thunderbolt_link(eth) == ""
    assert links_b["enp2s0"]["peer_host"] == "a"

    stray = links_a["enp3s0"]
    assert stray["peer_host"] is None and stray["matched_by"] is None
    assert far_end(stray) == "not a given host: 02:cc:00:00:00:01"


def test_a_link_with_nothing_behind_it(tmp_path: Path) -> None:
    tree.netdev(tmp_path, "enp1s0", "02:aa:00:00:01:00", operstate="down")
    (host,) = match_hosts(["a"], [(facts(tmp_path, "a", ["enp1s0", "gone0"]), {})])
    (link,) = host["links"]  # gone0 does not exist: not listed
    assert not link["up"] and far_end(link) == "no carrier"
