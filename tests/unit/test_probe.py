# SPDX-License-Identifier: MIT
"""The node probe over recorded sysfs trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from tbctl.node import probe
from tbctl.node.agent import roce_gid_index
from tests.unit import sysfs_tree as tree

UID_A = "a1b2c3d4-0000-4000-8000-00000000000a"
UID_B = "a1b2c3d4-0000-4000-8000-00000000000b"


def host(root: Path, me: str, peer: str, lanes: int = 2, mtu: int = 65520) -> Path:
    tree.thunderbolt_host(root, me, [
        {"uid": peer, "name": "strix-b", "netdev": "thunderbolt0", "mac": "02:00:00:00:00:01",
         "port": 1, "lanes": lanes, "speed": 20, "mtu": mtu},
    ])
    tree.netdev(root, "eth0", "52:54:00:00:00:01")
    tree.netdev(root, "enp1", "52:54:00:00:00:02", operstate="down")
    return root


def test_thunderbolt_domains_and_xdomain_peers(tmp_path):
    root = host(tmp_path, UID_A, UID_B, lanes=1)
    tb = probe.thunderbolt(root)
    assert tb["present"]
    assert tb["domains"] == [{"name": "domain0", "security": "user",
                              "iommu_dma_protection": True, "host_uid": UID_A}]
    (xd,) = tb["xdomains"]
    assert xd["unique_id"] == UID_B and xd["domain"] == "domain0"
    assert (xd["rx_speed_gbps"], xd["rx_lanes"], xd["tx_lanes"]) == (20.0, 1, 1)
    assert xd["device_name"] == "strix-b"


def test_no_thunderbolt_bus(tmp_path):
    assert probe.thunderbolt(tmp_path) == {"present": False, "domains": [], "xdomains": []}


def test_candidate_links_thunderbolt_net_declared_and_option(tmp_path):
    root = host(tmp_path, UID_A, UID_B)
    links = probe.candidate_links(root, ["eth0", "nope0"], ["enp1"])
    by_name = {link["name"]: link for link in links}
    assert by_name["thunderbolt0"]["source"] == "thunderbolt-net"
    assert by_name["thunderbolt0"]["xdomain"] == "0-1"
    assert by_name["thunderbolt0"]["mtu"] == 65520
    assert by_name["eth0"]["source"] == "option" and by_name["eth0"]["driver"] is None
    assert by_name["enp1"]["source"] == "declared" and not by_name["enp1"]["carrier"]
    assert by_name["nope0"] == {"name": "nope0", "missing": True, "source": "option"}


def test_declared_links_file_ignores_comments(tmp_path):
    tree.write(tmp_path / probe.DECLARED_LINKS_FILE, "# lab cables\nthunderbolt0\n\n tb1 # x")
    assert probe.declared_links(tmp_path) == ["thunderbolt0", "tb1"]


def test_rdma_devices_ports_and_roce_gid(tmp_path):
    mapped = "0000:0000:0000:0000:0000:ffff:0afe:0000"
    tree.rxe_device(tmp_path, "rxe_thunderbolt0", "thunderbolt0", mapped)
    (dev,) = probe.rdma_devices(tmp_path)
    assert dev["netdev"] == "thunderbolt0"
    (port,) = dev["ports"]
    assert port["state"] == "ACTIVE" and port["link_layer"] == "Ethernet"
    assert [g["index"] for g in port["gids"]] == [0, 1, 2, 3]  # the all-zero GID is skipped
    assert roce_gid_index(port["gids"], "10.254.0.0") == 3
    assert roce_gid_index(port["gids"], "10.254.0.1") is None


@pytest.mark.parametrize("shipped, loaded, expect", [
    (["infiniband/sw/rxe/rdma_rxe", "infiniband/core/ib_uverbs"], [],
     {"rdma_rxe": (True, False), "tbrdma": (False, False)}),
    (["infiniband/core/ib_uverbs"], ["tbrdma"], {"rdma_rxe": (False, False),
                                                "tbrdma": (True, True)}),
    (["net/thunderbolt/thunderbolt-net"], [], {"thunderbolt_net": (True, False)}),
])
def test_modules(tmp_path, shipped, loaded, expect):
    tree.kernel(tmp_path, "6.12.0-1-amd64", shipped, loaded)
    mods = probe.modules(tmp_path, "6.12.0-1-amd64")
    for name, (available, is_loaded) in expect.items():
        assert (mods[name]["available"], mods[name]["loaded"]) == (available, is_loaded)


def test_iommu(tmp_path):
    tree.kernel(tmp_path, "6.1.0", [], [])
    info = probe.iommu(tmp_path)
    assert info["units"] == ["ivhd0"] and not info["disabled"] and not info["passthrough"]
