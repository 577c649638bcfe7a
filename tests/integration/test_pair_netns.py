# SPDX-License-Identifier: MIT
"""`tbctl pair` end to end against hosts in network namespaces with real sshd."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from ipaddress import ip_address

import pytest

from tbctl.hostfiles import render_host_files
from tbctl.zipapp import agent_zipapp
from tests.output import json_result, one_line_error

pytestmark = pytest.mark.netns

STATE = "var/lib/tbctl"


def pair(cluster, *extra: str):
    return cluster.tbctl("pair", "--yes", "--json", *extra, "tbt-a", "tbt-b")


def test_pair_configures_both_hosts_and_persists(pair_of_hosts):
    cluster = pair_of_hosts
    a, b = cluster.hosts
    result = pair(cluster)
    assert result.returncode == 0, result.stderr
    report = json_result(result, "pair")
    assert report["transport"] == "ip"  # this kernel has no rdma_rxe: RDMA is the lab's job
    assert report["verified"] and len(report["cables"]) == 2
    for cable in report["cables"]:
        assert cable["link_a"] == cable["link_b"]  # the veths join equal names
        assert cable["ping_rtt_us"] > 0
        for host, link, addr in ((a, cable["link_a"], cable["address_a"]),
                                 (b, cable["link_b"], cable["address_b"])):
            (entry,) = host.ip_json("addr", "show", "dev", link)
            assert f"{addr}/31" in [f"{x['local']}/{x['prefixlen']}" for x in entry["addr_info"]]
            assert entry["mtu"] == cable["mtu"] == 1500
    # Each end has the other's address on the same /31.
    for cable in report["cables"]:
        assert ip_address(cable["address_b"]) == ip_address(cable["address_a"]) + 1

    digest = agent_zipapp()[1]
    for host in (a, b):
        state_file = host.root / STATE / "state.json"
        assert state_file.stat().st_mode & 0o777 == 0o600  # it may hold a pairing key
        assert (host.root / STATE).stat().st_mode & 0o777 == 0o700
        state = json.loads(state_file.read_text())
        assert len(state["pairings"]) == 1
        archive = f"/var/lib/tbctl/tbctl-{digest}.pyz"
        expected = render_host_files(state_dir="/var/lib/tbctl",
                                     tbctl_exec=f"/usr/bin/python3 -I {archive}", modules=[])
        for rel, content in expected.items():
            assert (host.root / rel).read_text() == content
        assert (host.root / archive.lstrip("/")).read_bytes() == agent_zipapp()[0]
        # The hotplug rule's markers: exactly the paired links.
        assert sorted(p.name for p in (host.root / STATE / "links").iterdir()) == [
            "thunderbolt0", "thunderbolt1"]

    # What the boot unit runs brings a flushed link back (as after a reboot).
    a.run("ip", "addr", "flush", "dev", "thunderbolt0")
    status, out = run_unit(a)
    assert status == 0, out
    assert json.loads(out)["result"]["applied"] == ["thunderbolt0", "thunderbolt1"]
    a_addr = report["cables"][0]["address_a"]
    assert a_addr in a.run("ip", "-4", "addr", "show", "dev", "thunderbolt0")
    b.run("ping", "-c", "1", "-W", "2", a_addr)

    # What the hotplug instance for one link runs (the rule starts one per link that
    # appears) brings back that link and leaves the others to their own instances.
    for link in ("thunderbolt0", "thunderbolt1"):
        a.run("ip", "addr", "flush", "dev", link)
    device = a.run("readlink", "-f", "/sys/class/net/thunderbolt1").strip()
    assert device.startswith("/sys/devices/") and device.endswith("/net/thunderbolt1")
    status, out = run_unit(a, "tbctl-reapply@.service", device)
    assert status == 0, out
    assert json.loads(out)["result"]["applied"] == ["thunderbolt1"]
    assert "inet " in a.run("ip", "-4", "addr", "show", "dev", "thunderbolt1")
    assert "inet " not in a.run("ip", "-4", "addr", "show", "dev", "thunderbolt0")


def run_unit(host, unit_file: str = "tbctl-reapply.service",
             device: str | None = None) -> tuple[int, str]:
    """Run a unit's ExecStartPre= and ExecStart= lines in order, as systemd does (stopping
    at the first failure), with the host's paths below its TBCTL_ROOT; for an instance of
    the hotplug template, `device` is the sysfs path systemd's %f gives."""
    unit = (host.root / "etc/systemd/system" / unit_file).read_text()
    out = ""
    for line in unit.splitlines():
        key, _, command = line.partition("=")
        if key not in ("ExecStartPre", "ExecStart"):
            continue
        if device is not None:
            command = command.replace("%f", device)
        assert "%" not in command, f"unexpanded specifier in {line}"
        command = re.sub(r"/var/lib/tbctl/\S*?\.pyz", lambda m: f"{host.root}{m.group(0)}",
                         command)
        proc = subprocess.run(["ip", "netns", "exec", host.ns, "env", f"TBCTL_ROOT={host.root}",
                               *shlex.split(command)], capture_output=True, text=True)
        out += proc.stdout
        if proc.returncode != 0:
            return proc.returncode, out + proc.stderr
    return 0, out


def test_pair_twice_changes_nothing(pair_of_hosts):
    cluster = pair_of_hosts
    a, b = cluster.hosts
    assert pair(cluster).returncode == 0
    before = [h.snapshot() for h in (a, b)]
    states = [(h.root / STATE / "state.json").read_text() for h in (a, b)]
    again = cluster.tbctl("pair", "--yes", "tbt-a", "tbt-b")
    assert again.returncode == 0, again.stderr
    assert "already paired" in again.stdout
    assert [h.snapshot() for h in (a, b)] == before
    assert [(h.root / STATE / "state.json").read_text() for h in (a, b)] == states


def test_unpair_restores_prior_state(pair_of_hosts):
    cluster = pair_of_hosts
    a, b = cluster.hosts
    a.run("ip", "link", "set", "thunderbolt1", "mtu", "1400")
    b.run("ip", "link", "set", "thunderbolt1", "mtu", "1400")
    before = [h.snapshot() for h in (a, b)]
    assert pair(cluster, "--mtu", "9000").returncode == 0
    assert a.ip_json("link", "show", "thunderbolt1")[0]["mtu"] == 9000
    result = cluster.tbctl("unpair", "tbt-a", "tbt-b")
    assert result.returncode == 0, result.stderr
    assert "Unpaired" in result.stdout
    assert [h.snapshot() for h in (a, b)] == before
    second = cluster.tbctl("unpair", "tbt-a", "tbt-b")
    assert second.returncode == 0 and "were not paired" in second.stdout


def test_dry_run_changes_nothing(pair_of_hosts):
    cluster = pair_of_hosts
    a, b = cluster.hosts
    a.run("ip", "link", "set", "thunderbolt1", "down")
    before = [h.snapshot() for h in (a, b)]
    result = cluster.tbctl("pair", "--dry-run", "tbt-a", "tbt-b")
    assert result.returncode == 0, result.stderr
    assert "Dry run: nothing was changed." in result.stdout
    as_json = cluster.tbctl("pair", "--dry-run", "--json", "tbt-a", "tbt-b")
    plan = json_result(as_json, "pair")
    assert plan["dry_run"] and plan["transport"] == "ip"
    # thunderbolt1 was found although it was down, and left down.
    assert sorted(c["link_a"] for c in plan["cables"]) == ["thunderbolt0", "thunderbolt1"]
    assert [h.snapshot() for h in (a, b)] == before


def test_second_host_failing_rolls_back_the_first(pair_of_hosts):
    cluster = pair_of_hosts
    a, b = cluster.hosts
    before = [h.snapshot() for h in (a, b)]
    # B cannot write its unit: its etc/systemd/system is a file.
    blocker = b.root / "etc/systemd"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a directory\n")
    before[1] = b.snapshot()
    result = pair(cluster)
    assert result.returncode == 6, result.stderr
    one_line_error(result, 6, "applying on tbt-b failed and tbt-a was rolled back")
    assert [h.snapshot() for h in (a, b)] == before


def test_changed_host_key_is_refused(pair_of_hosts):
    cluster = pair_of_hosts
    a, b = cluster.hosts
    lines = cluster.known_hosts.read_text().splitlines()
    forged = lines[0].split()[2]  # host A's key, claimed for host B
    cluster.known_hosts.write_text(f"{lines[0]}\n{b.mgmt_ip} ssh-ed25519 {forged}\n")
    before = a.snapshot()
    result = pair(cluster)
    assert result.returncode == 3
    assert "does not match known_hosts" in result.stderr and "ssh-keygen -R" in result.stderr
    assert a.snapshot() == before


def test_unknown_host_key_needs_opt_in(pair_of_hosts):
    cluster = pair_of_hosts
    cluster.known_hosts.write_text("")
    refused = pair(cluster)
    assert refused.returncode == 3
    assert "--accept-new-host-keys" in refused.stderr
    accepted = pair(cluster, "--accept-new-host-keys")
    assert accepted.returncode == 0, accepted.stderr
    recorded = cluster.known_hosts.read_text()
    assert all(h.mgmt_ip in recorded for h in cluster.hosts)


def test_host_specs_and_links_option(make_cluster):
    """user@host:port specs resolve through the ssh_config's Host entries; --links names
    links the host did not declare."""
    cluster = make_cluster(2)
    a, b = cluster.hosts
    cluster.cable(a, b, "usb4net0", "usb4net1")
    cluster.wait_link_local()
    result = cluster.tbctl("pair", "--yes", "--json", "--links", "usb4net0,usb4net1",
                           "root@tbt-a:22", "tbt-b")
    assert result.returncode == 0, result.stderr
    (cable,) = json_result(result, "pair")["cables"]
    assert (cable["link_a"], cable["link_b"]) == ("usb4net0", "usb4net1")


def test_proxyjump(pair_of_hosts):
    """An alias reached through a jump host: tbt-a's own loopback sshd via tbt-a."""
    cluster = pair_of_hosts
    a = cluster.hosts[0]
    host_key = (a.workdir / "ssh/host_key.pub").read_text().split()
    with cluster.known_hosts.open("a") as f:
        f.write(f"127.0.0.1 {host_key[0]} {host_key[1]}\n")
    with cluster.ssh_config.open("a") as f:
        f.write(f"\nHost tbt-a-jumped\n  HostName 127.0.0.1\n  User root\n  ProxyJump tbt-a\n"
                f"  IdentityFile {cluster.key}\n  UserKnownHostsFile {cluster.known_hosts}\n")
    result = cluster.tbctl("pair", "--yes", "--json", "tbt-a-jumped", "tbt-b")
    assert result.returncode == 0, result.stderr
    assert json_result(result, "pair")["host_a"] == "tbt-a-jumped"
    assert (a.root / STATE / "state.json").is_file()
