# SPDX-License-Identifier: MIT
"""An inventory (tbctl.toml) of 2, 3 (triangle) and 4 (ring) hosts in network namespaces with
real sshd: pair every cabled pair, status/doctor that keep going with a host down, unpair all,
and a failing pair that rolls back the pairs applied before it."""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import signal
import subprocess
import sys
import time

import pytest

from tests.integration.test_pair_netns import run_unit
from tests.output import json_result, one_line_error

pytestmark = pytest.mark.netns

TRIANGLE = [(0, 1), (1, 2), (2, 0)]
RING = [(0, 1), (1, 2), (2, 3), (3, 0)]


def write_inventory(cluster, extra: str = "") -> str:
    path = cluster.workdir / "tbctl.toml"
    hosts = ", ".join(f'"{h.alias}"' for h in cluster.hosts)
    path.write_text(f"hosts = [{hosts}]\npool = \"10.254.0.0/16\"\n{extra}")
    return str(path)


def pair_all(cluster, inventory: str):
    return cluster.tbctl("pair", "--yes", "--json", "--inventory", inventory)


def check_paired(cluster, report, edges, wires) -> None:
    """Exactly the cabled pairs are paired, every cable answered the verify step's ping,
    and every cable has a /31 of its own, configured on both ends."""
    hosts = cluster.hosts
    assert report["verified"] is True and report["problems"] == []
    expected = {frozenset((hosts[i].alias, hosts[j].alias)) for i, j in edges}
    assert {frozenset((p["host_a"], p["host_b"])) for p in report["pairs"]} == expected
    assert len(report["pairs"]) == len(edges)
    subnets = []
    by_alias = {h.alias: h for h in hosts}
    links = {frozenset(((hosts[i].alias, a), (hosts[j].alias, b)))
             for (i, j), (a, b) in wires.items()}
    for pair in report["pairs"]:
        assert pair["verified"] and len(pair["cables"]) == 1
        (cable,) = pair["cables"]
        assert cable["ping_rtt_us"] is not None and cable["ping_rtt_us"] > 0
        assert frozenset(((pair["host_a"], cable["link_a"]),
                          (pair["host_b"], cable["link_b"]))) in links
        subnets.append(ipaddress.ip_network(f"{cable['address_a']}/31", strict=False))
        for alias, link, address in ((pair["host_a"], cable["link_a"], cable["address_a"]),
                                     (pair["host_b"], cable["link_b"], cable["address_b"])):
            (entry,) = by_alias[alias].ip_json("addr", "show", "dev", link)
            assert address in [a["local"] for a in entry["addr_info"]]
    assert len(set(subnets)) == len(subnets), subnets  # no /31 used on two cables


def check_nodes(cluster, report, edges) -> dict[str, str]:
    """Every host reaches every other host's node address over the cables: a direct cable
    where there is one, else via the one neighbour that forwards (the same one both ways);
    only that neighbour forwards, and only on the two cables involved."""
    hosts = cluster.hosts
    nodes = report["node_addresses"]
    assert sorted(nodes) == sorted(h.alias for h in hosts)
    assert len(set(nodes.values())) == len(hosts)
    cables = [ipaddress.ip_network(f"{c['address_a']}/31", strict=False)
              for p in report["pairs"] for c in p["cables"]]
    for address in nodes.values():
        assert ipaddress.ip_address(address) in ipaddress.ip_network("10.254.255.0/24")
        assert not any(ipaddress.ip_address(address) in net for net in cables)
    cabled = {frozenset((hosts[i].alias, hosts[j].alias)) for i, j in edges}
    forwarders = {host.alias: sorted(
        link for link in (e["ifname"] for e in host.ip_json("link"))
        if link.startswith("thunderbolt") and host.sysctl(f"conf/{link}/forwarding") == "1")
        for host in hosts}
    for host in hosts:
        (entry,) = host.ip_json("-4", "addr", "show", "dev", "tbnode0")
        assert [a["local"] for a in entry["addr_info"]] == [nodes[host.alias]]
        assert host.sysctl("ip_forward") == "0"
        for other in hosts:
            if other is host:
                continue
            target = nodes[other.alias]
            (route,) = host.ip_json("route", "get", target)
            # Over a cable, from this host's node address (so the reply comes back to it).
            assert route["dev"].startswith("thunderbolt"), route
            assert route["prefsrc"] == nodes[host.alias], route
            host.run("ping", "-c", "1", "-W", "2", target)
            if frozenset((host.alias, other.alias)) not in cabled:
                hop = next(h for h in hosts if h.alias not in (host.alias, other.alias)
                           and route["gateway"] in str(h.ip_json("-4", "addr")))
                back = other.ip_json("route", "get", nodes[host.alias])[0]
                assert back["gateway"] in str(hop.ip_json("-4", "addr"))
                assert len(forwarders[hop.alias]) == 2
    return {name: links for name, links in forwarders.items() if links}


# Rank 0 listens on its node address; every other rank connects to MASTER_ADDR from its own
# node address, as the bootstrap of torch.distributed, Gloo or NCCL does.
RENDEZVOUS = """
import os, socket, time
count, rank = int(os.environ["TBCTL_NNODES"]), int(os.environ["TBCTL_NODE_RANK"])
me, port = os.environ["VLLM_HOST_IP"], int(os.environ["MASTER_PORT"])
if rank == 0:
    server = socket.create_server((me, port))
    server.settimeout(30)
    seen = []
    for _ in range(count - 1):
        conn, (peer, _) = server.accept()
        seen.append(conn.recv(64).decode() + "@" + peer)
    print("rank 0 saw", " ".join(sorted(seen)))
else:
    for _ in range(200):
        try:
            conn = socket.create_connection((os.environ["MASTER_ADDR"], port), timeout=2,
                                            source_address=(me, 0))
            break
        except OSError:
            time.sleep(0.1)
    conn.sendall(os.environ["TBCTL_HOST"].encode())
"""


def check_env_and_run(cluster, nodes: dict[str, str]) -> None:
    """env and run read the hosts from ./tbctl.toml and bind every host to its node
    address; rank 0's is MASTER_ADDR for all, also where no cable joins them."""
    aliases = [h.alias for h in cluster.hosts]
    for alias in aliases:
        result = cluster.tbctl("env", "--host", alias, "--format", "json", cwd=cluster.workdir)
        assert result.returncode == 0, result.stderr
        env = json.loads(result.stdout)
        assert (env["VLLM_HOST_IP"], env["MASTER_ADDR"]) == (nodes[alias], nodes["tbt-a"])
        assert (env["GLOO_SOCKET_IFNAME"], env["NCCL_SOCKET_IFNAME"]) == ("tbnode0", "=tbnode0")
    port = str(20000 + secrets.randbelow(20000))
    script = cluster.workdir / "rendezvous.py"
    script.write_text(RENDEZVOUS)
    result = cluster.tbctl("run", "--json", "--master-port", port, "--", "python3",
                           str(script), cwd=cluster.workdir)
    report = json_result(result, "run")
    assert result.returncode == 0 and report["exit_code"] == 0, result.stderr
    assert report["hosts"] == aliases and report["node_addresses"] == nodes
    assert [launch["host"] for launch in report["launches"]] == aliases
    expected = " ".join(sorted(f"{a}@{nodes[a]}" for a in aliases[1:]))
    assert f"[tbt-a] rank 0 saw {expected}\n" in result.stderr


def test_two_hosts_from_the_inventory_in_the_current_directory(pair_of_hosts):
    cluster = pair_of_hosts
    before = [h.snapshot() for h in cluster.hosts]
    write_inventory(cluster)
    # Paired by name first: no node addresses. The inventory's dry run plans pairing again
    # with them, and changes nothing; the real run does it.
    named = cluster.tbctl("pair", "--yes", "tbt-a", "tbt-b")
    assert named.returncode == 0, named.stderr
    by_name = [h.snapshot() for h in cluster.hosts]
    assert all("tbnode0" not in s["links"] for s in by_name)
    dry = cluster.tbctl("pair", "--dry-run", "--json", cwd=cluster.workdir)
    planned = json_result(dry, "pair (inventory)")
    assert planned["dry_run"] and planned["verified"] is None
    assert len(planned["pairs"][0]["cables"]) == 2
    assert sorted(planned["node_addresses"]) == ["tbt-a", "tbt-b"]
    assert [h.snapshot() for h in cluster.hosts] == by_name
    result = cluster.tbctl("pair", "--yes", "--json", cwd=cluster.workdir)
    assert result.returncode == 0, result.stderr
    report = json_result(result, "pair (inventory)")
    assert report["hosts"] == ["tbt-a", "tbt-b"]
    ((pair),) = report["pairs"]
    assert pair["verified"] and len(pair["cables"]) == 2 and not pair["already_paired"]
    check_nodes(cluster, report, [(0, 1)])
    assert all(c["ping_rtt_us"] > 0 for c in pair["cables"])
    again = cluster.tbctl("pair", "--yes", cwd=cluster.workdir)
    assert again.returncode == 0, again.stderr
    assert "Paired 1 pair(s)" in again.stdout
    result = cluster.tbctl("unpair", "--json", cwd=cluster.workdir)
    removed = json_result(result, "unpair (inventory)")
    assert removed["pairs"] == [{"host_a": "tbt-a", "host_b": "tbt-b", "removed_a": True,
                                 "removed_b": True}]
    assert [h.snapshot() for h in cluster.hosts] == before


def test_status_of_named_hosts_keeps_going(pair_of_hosts):
    cluster = pair_of_hosts
    a, b = cluster.hosts
    cluster.stop_sshd(b)
    result = cluster.tbctl("status", "--json", "tbt-a", "tbt-b")
    assert result.returncode == 1, result.stderr
    report = json_result(result, "status")
    assert [h["name"] for h in report["hosts"]] == ["tbt-a"]
    assert [(f["name"], f["error"]["code"]) for f in report["failed"]] == [("tbt-b", "ssh")]
    assert "tbt-b" in report["failed"][0]["error"]["message"]
    cluster.stop_sshd(a)
    # No host answered: nothing to show, the first host's error and exit code, as for one.
    one_line_error(cluster.tbctl("status", "tbt-a", "tbt-b"), 3, "tbt-a")


def test_triangle_pair_status_with_a_host_down_and_unpair(make_cluster):
    cluster = make_cluster(3)
    wires = cluster.wire(TRIANGLE)
    before = [h.snapshot() for h in cluster.hosts]
    inventory = write_inventory(cluster)
    result = pair_all(cluster, inventory)
    assert result.returncode == 0, result.stderr
    report = json_result(result, "pair (inventory)")
    check_paired(cluster, report, TRIANGLE, wires)
    assert check_nodes(cluster, report, TRIANGLE) == {}  # a triangle forwards nothing

    c = cluster.hosts[2]
    cluster.stop_sshd(c)
    status = cluster.tbctl("status", "--json", "--inventory", inventory)
    assert status.returncode == 1, status.stderr
    report = json_result(status, "status")
    assert [h["name"] for h in report["hosts"]] == ["tbt-a", "tbt-b"]
    for host in report["hosts"]:
        # Each of the two reachable hosts has both its cables, up.
        assert len(host["pairings"]) == 2
        assert all(cable["up"] for p in host["pairings"] for cable in p["cables"])
    ((down),) = report["failed"]
    assert down["name"] == "tbt-c" and down["error"]["code"] == "ssh"
    table = cluster.tbctl("status", "--inventory", inventory)
    assert table.returncode == 1
    assert "tbt-c: not read" in table.stdout and "tbt-a" in table.stdout
    doctor = cluster.tbctl("doctor", "--json", "--inventory", inventory)
    checked = json_result(doctor, "doctor (several hosts)")
    assert [h["host"] for h in checked["hosts"]] == ["tbt-a", "tbt-b"]
    assert [f["name"] for f in checked["failed"]] == ["tbt-c"]
    assert doctor.returncode == 1
    cluster.start_sshd(c)

    result = cluster.tbctl("unpair", "--json", "--inventory", inventory)
    assert result.returncode == 0, result.stderr
    assert len(json_result(result, "unpair (inventory)")["pairs"]) == 3
    assert [h.snapshot() for h in cluster.hosts] == before


def test_ring_pairs_only_the_cabled_pairs(make_cluster):
    cluster = make_cluster(4)
    wires = cluster.wire(RING)
    before = [h.snapshot() for h in cluster.hosts]
    # A topology naming a diagonal that has no cable is refused before anything changes.
    wrong = write_inventory(cluster, 'topology = [["tbt-a", "tbt-c"]]\n')
    refused = pair_all(cluster, wrong)
    one_line_error(refused, 5, "tbt-a and tbt-c share no cable")
    assert [h.snapshot() for h in cluster.hosts] == before

    inventory = write_inventory(cluster)
    result = pair_all(cluster, inventory)
    assert result.returncode == 0, result.stderr
    report = json_result(result, "pair (inventory)")
    check_paired(cluster, report, RING, wires)
    # a-c goes via b (the first host both are cabled to), b-d via a.
    assert sorted(check_nodes(cluster, report, RING)) == ["tbt-a", "tbt-b"]
    check_env_and_run(cluster, report["node_addresses"])
    # A reboot of b, a forwarder: the link, its address, the routes and forwarding are gone
    # until the boot unit re-applies them.
    b = cluster.hosts[1]
    b.run("ip", "link", "del", "tbnode0")
    for link in ("thunderbolt0", "thunderbolt1"):
        b.run("ip", "addr", "flush", "dev", link)
        b.run("sh", "-c", f"echo 0 > /proc/sys/net/ipv4/conf/{link}/forwarding")
    status, out = run_unit(b)
    assert status == 0, out
    assert sorted(check_nodes(cluster, report, RING)) == ["tbt-a", "tbt-b"]
    status = cluster.tbctl("status", "--json", "--inventory", inventory)
    assert status.returncode == 0, status.stderr
    assert json_result(status, "status")["failed"] == []
    d = cluster.hosts[3]
    cluster.stop_sshd(d)
    status = cluster.tbctl("status", "--json", "--inventory", inventory)
    assert status.returncode == 1, status.stderr
    read = json_result(status, "status")
    assert [h["name"] for h in read["hosts"]] == ["tbt-a", "tbt-b", "tbt-c"]
    assert [f["name"] for f in read["failed"]] == ["tbt-d"]
    for host in read["hosts"]:
        nodes = {p["node"]["address"] for p in host["pairings"]}
        assert nodes == {report["node_addresses"][host["name"]]}
        assert all(p["node"]["address_set"] for p in host["pairings"])
    cluster.start_sshd(d)
    result = cluster.tbctl("unpair", "--inventory", inventory)
    assert result.returncode == 0, result.stderr
    assert [h.snapshot() for h in cluster.hosts] == before


def test_a_failing_pair_rolls_back_the_pairs_applied_before_it(make_cluster):
    cluster = make_cluster(3)
    cluster.wire(TRIANGLE)
    a, b, c = cluster.hosts
    # C cannot write its unit: its etc/systemd is a file. Pairs go a-b, a-c, b-c: a-b is
    # applied, then a-c fails on C.
    blocker = c.root / "etc/systemd"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a directory\n")
    before = [h.snapshot() for h in cluster.hosts]
    result = pair_all(cluster, write_inventory(cluster))
    one_line_error(result, 6, "applying on tbt-c failed and tbt-a was rolled back",
                   "rolled back the pairs this run had applied (tbt-a-tbt-b)")
    assert json.loads(result.stdout)["error"]["code"] == "apply"
    assert [h.snapshot() for h in cluster.hosts] == before


def test_ctrl_c_in_the_second_pair_rolls_back_the_first(make_cluster):
    """Ctrl-C between A's and C's apply of the pair a-c: that pair is undone by pair's own
    rollback, and a-b, applied before it in this run, is unpaired again."""
    cluster = make_cluster(3)
    cluster.wire(TRIANGLE)
    a = cluster.hosts[0]
    before = [h.snapshot() for h in cluster.hosts]
    inventory = write_inventory(cluster)
    # Every pair holds 3 s between its two applies; the second pair's hold is the moment.
    proc = subprocess.Popen(
        [sys.executable, "-m", "tbctl", "pair", "--yes", "--inventory", inventory],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TBCTL_SSH_CONFIG": str(cluster.ssh_config),
             "TBCTL_TEST_PAUSE_BETWEEN_APPLIES": "3"})

    def a_has_two_pairings() -> bool:
        try:
            state = json.loads((a.root / "var/lib/tbctl/state.json").read_text())
        except (OSError, ValueError):
            return False
        return len(state["pairings"]) == 2

    deadline = time.monotonic() + 60
    while not a_has_two_pairings():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the second pair never started"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    one_line_error(result, 130, "interrupted; rolled back tbt-a",
                   "rolled back the pairs this run had applied (tbt-a-tbt-b)")
    assert [h.snapshot() for h in cluster.hosts] == before
