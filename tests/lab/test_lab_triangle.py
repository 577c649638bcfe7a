# SPDX-License-Identifier: MIT
"""Three lab nodes cabled in a triangle (one cable per pair), as three boxes with two USB4
ports each: the lab wires it, and `tbctl discover` names every cable's far end.

One lab boot for the module; nothing is paired (discover needs no pairing).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tbctl.lab import cluster, session, testdriver
from tests.output import json_result

pytestmark = pytest.mark.vm
HOSTS = ("lab-a", "lab-b", "lab-c")


@pytest.fixture(scope="module")
def lab_dir() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (debootstrap, QEMU networking)")
    with session.booted_lab(3, 1, testdriver.log, "benchmark: 3 nodes") as directory:
        yield directory


def ssh(lab_dir: Path, host: str, command: str) -> str:
    state = cluster.load(lab_dir)
    result = subprocess.run(cluster.ssh_command(state, state.node(host), command),
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"{host}: {command}: {result.stderr}{result.stdout}"
    return result.stdout


def tbctl(lab_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    config = cluster.ssh_config_path(cluster.load(lab_dir))
    return subprocess.run([sys.executable, "-m", "tbctl", *args, "--ssh-config", str(config)],
                          capture_output=True, text=True, timeout=600)


def wiring(state: cluster.LabState) -> dict[tuple[str, str], tuple[str, str]]:
    """{(host, link): (far host, far link)} as the lab plugged the cables."""
    ends = {(node.hostname, end.ifname): end.cable for node in state.nodes for end in node.ends}
    return {(host, link): next((h, li) for (h, li), c in ends.items()
                               if c == cable and h != host)
            for (host, link), cable in ends.items()}


def test_three_nodes_are_a_triangle(lab_dir: Path) -> None:
    state = cluster.load(lab_dir)
    assert state.hostnames() == list(HOSTS)
    assert state.cables() == ["a-b/0", "a-c/0", "b-c/0"]
    wired = wiring(state)
    for node in state.nodes:
        # Two ports per node, one to each other node.
        assert sorted(end.peer for end in node.ends) == sorted(
            other.letter for other in state.nodes if other is not node)
        for end in node.ends:
            link = f"/sys/class/net/{end.ifname}"
            assert ssh(lab_dir, node.hostname, f"cat {link}/address").strip() == end.mac
            assert ssh(lab_dir, node.hostname, f"cat {link}/carrier").strip() == "1"
    assert len(wired) == 6


def test_discover_names_every_cables_far_end(lab_dir: Path) -> None:
    state = cluster.load(lab_dir)
    started = time.monotonic()
    done = tbctl(lab_dir, "discover", "--json", *HOSTS)
    testdriver.log(f"benchmark: tbctl discover of 3 lab nodes {time.monotonic() - started:.1f} s")
    assert done.returncode == 0, done.stderr
    result = json_result(done, "discover")
    assert result["failed"] == []
    found = {(host["name"], link["link"]): (link["peer_host"], link["peer_link"])
             for host in result["hosts"] for link in host["links"]}
    assert found == wiring(state)
    macs = {(node.hostname, end.ifname): end.mac for node in state.nodes for end in node.ends}
    for host in result["hosts"]:
        for link in host["links"]:
            assert link["matched_by"] == "neighbour" and link["up"], link
            assert link["mac"] == macs[(host["name"], link["link"])]
            assert link["neighbour_macs"] == [macs[(link["peer_host"], link["peer_link"])]]

    table = tbctl(lab_dir, "discover", *HOSTS)
    assert table.returncode == 0, table.stderr
    for host in HOSTS:
        assert f"{host} (" in table.stdout, table.stdout


def test_discover_with_a_cable_pulled(lab_dir: Path) -> None:
    """The pulled cable's two ends say so; the other two cables are still matched."""
    state = cluster.load(lab_dir)
    cluster.set_cable(state, "b-c/0", False)
    try:
        done = tbctl(lab_dir, "discover", "--json", *HOSTS)
        assert done.returncode == 0, done.stderr
        result = json_result(done, "discover")
    finally:
        cluster.set_cable(cluster.load(lab_dir), "b-c/0", True)
    wired = wiring(state)
    for host in result["hosts"]:
        for link in host["links"]:
            peer = wired[(host["name"], link["link"])]
            if {host["name"], peer[0]} == {"lab-b", "lab-c"}:
                assert not link["up"] and link["peer_host"] is None, link
            else:
                assert (link["peer_host"], link["peer_link"]) == peer, link


def test_down_leaves_nothing_behind(lab_dir: Path) -> None:
    cluster.down(lab_dir)
    assert cluster.leftovers(lab_dir) == []
    assert not (lab_dir / "state.json").exists()
