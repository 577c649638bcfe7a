# SPDX-License-Identifier: MIT
"""`tbctl discover` on real hosts (network namespaces with sshd) cabled in a triangle: every
link's far end is named, a host left out shows as MACs only, and a host that is down gets a
row of its own while the others are still matched."""

from __future__ import annotations

import pytest

from tests.output import json_result

pytestmark = pytest.mark.netns

TRIANGLE = [(0, 1), (1, 2), (2, 0)]


def far_ends(result) -> dict[tuple[str, str], tuple[str | None, str | None, str | None]]:
    return {(host["name"], link["link"]): (link["peer_host"], link["peer_link"],
                                           link["matched_by"])
            for host in result["hosts"] for link in host["links"]}


def mac_of(host, link: str) -> str:
    (entry,) = host.ip_json("link", "show", "dev", link)
    return entry["address"].lower()


def test_discover_names_every_cables_far_end_in_a_triangle(make_cluster) -> None:
    cluster = make_cluster(3)
    wires = cluster.wire(TRIANGLE)
    hosts = cluster.hosts
    names = [h.alias for h in hosts]
    before = [h.snapshot() for h in hosts]

    done = cluster.tbctl("discover", "--json", *names)
    assert done.returncode == 0, done.stderr
    result = json_result(done, "discover")
    expected = {}
    for (i, j), (link_i, link_j) in wires.items():
        expected[(names[i], link_i)] = (names[j], link_j, "neighbour")
        expected[(names[j], link_j)] = (names[i], link_i, "neighbour")
    assert far_ends(result) == expected
    assert result["failed"] == []
    for host, report in zip(hosts, result["hosts"], strict=True):
        assert report["name"] == host.alias
        for link in report["links"]:
            assert link["mac"] == mac_of(host, link["link"])
            assert link["up"] and link["source"] == "declared"
            assert link["speed_mbps"] == 10000  # what veth reports
            peer = hosts[names.index(link["peer_host"])]
            assert link["neighbour_macs"] == [mac_of(peer, link["peer_link"])]
            assert link["xdomain"] is None and link["device_name"] is None
    # Looking changed nothing: links, addresses and files are as they were.
    assert [h.snapshot() for h in hosts] == before

    table = cluster.tbctl("discover", *names)
    assert table.returncode == 0, table.stderr
    a_to_b = wires[(0, 1)]
    row = next(line for line in table.stdout.splitlines()
               if line.strip("│ ").startswith(f"{a_to_b[0]} "))
    assert f"{names[1]} {a_to_b[1]}" in row and "neighbour" in row, table.stdout


def test_discover_without_one_host_and_with_one_host_down(make_cluster) -> None:
    cluster = make_cluster(3)
    wires = cluster.wire(TRIANGLE)
    a, b, c = cluster.hosts

    # c not named: a's cable to c is listed with c's MAC, its far end not one of the hosts.
    done = cluster.tbctl("discover", "--json", a.alias, b.alias)
    assert done.returncode == 0, done.stderr
    ends = far_ends(json_result(done, "discover"))
    a_to_c = wires[(2, 0)][1]  # the edge (c, a): a's end
    assert ends[(a.alias, a_to_c)] == (None, None, None)
    (link,) = [link for host in json_result(done, "discover")["hosts"] if host["name"] == a.alias
               for link in host["links"] if link["link"] == a_to_c]
    assert link["neighbour_macs"] == [mac_of(c, wires[(2, 0)][0])]
    assert ends[(a.alias, wires[(0, 1)][0])] == (b.alias, wires[(0, 1)][1], "neighbour")
    table = cluster.tbctl("discover", a.alias, b.alias)
    assert f"not a given host: {mac_of(c, wires[(2, 0)][0])}" in table.stdout, table.stdout

    # c down (sshd stopped): its row says why, a and b are still matched; exit 1.
    inventory = cluster.workdir / "tbctl.toml"
    inventory.write_text(f'hosts = ["{a.alias}", "{b.alias}", "{c.alias}"]\n')
    cluster.stop_sshd(c)
    down = cluster.tbctl("discover", "--json", "--inventory", str(inventory))
    assert down.returncode == 1, down.stderr
    result = json_result(down, "discover")
    assert [f["name"] for f in result["failed"]] == [c.alias]
    assert result["failed"][0]["error"]["code"] == "ssh"
    assert far_ends(result)[(b.alias, wires[(0, 1)][1])] == (a.alias, wires[(0, 1)][0],
                                                             "neighbour")
