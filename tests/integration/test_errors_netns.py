# SPDX-License-Identifier: MIT
"""Every bad input ends in one clear line, a documented exit code, and no change."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.output import json_result, one_line_error

pytestmark = pytest.mark.netns


def add_alias(cluster, alias: str, body: str) -> None:
    with cluster.ssh_config.open("a") as f:
        f.write(f"\nHost {alias}\n{body}  UserKnownHostsFile {cluster.known_hosts}\n")


def test_same_host_twice(pair_of_hosts):
    cluster = pair_of_hosts
    a = cluster.hosts[0]
    one_line_error(cluster.tbctl("pair", "--yes", "tbt-a", "tbt-a"), 5, "the same host twice")
    before = a.snapshot()
    result = cluster.tbctl("pair", "--yes", "tbt-a", f"root@{a.mgmt_ip}")
    one_line_error(result, 5, "are the same host")
    assert a.snapshot() == before


def test_unreachable_and_auth_failure(pair_of_hosts):
    cluster = pair_of_hosts
    a = cluster.hosts[0]
    add_alias(cluster, "tbt-closed", f"  HostName {a.mgmt_ip}\n  Port 2\n  User root\n"
                                     f"  IdentityFile {cluster.key}\n")
    one_line_error(cluster.tbctl("pair", "tbt-closed", "tbt-b"), 3, "cannot reach tbt-closed")
    stranger = cluster.workdir / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)],
                   check=True)
    add_alias(cluster, "tbt-stranger", f"  HostName {a.mgmt_ip}\n  User root\n"
                                       f"  IdentityFile {stranger}\n")
    one_line_error(cluster.tbctl("pair", "tbt-stranger", "tbt-b"), 3,
                   "authentication failed for tbt-stranger")


def test_unknown_host_name(pair_of_hosts):
    """Resolved inside host A's namespace, whose resolver is its own loopback: no query
    leaves the test hosts."""
    cluster = pair_of_hosts
    a = cluster.hosts[0]
    netns_etc = Path("/etc/netns") / a.ns
    netns_etc.mkdir(parents=True)
    try:
        (netns_etc / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        result = cluster.tbctl("pair", "ghost-host.invalid", "tbt-b", netns=a.ns)
    finally:
        shutil.rmtree(netns_etc)
    one_line_error(result, 3, "unknown host ghost-host.invalid")


def test_remote_python_too_old(pair_of_hosts):
    cluster = pair_of_hosts
    b = cluster.hosts[1]
    old = cluster.workdir / "old-python"
    old.mkdir()
    (old / "python3").write_text("#!/bin/sh\necho version=3.6.15\n")
    (old / "python3").chmod(0o755)
    b.extra_env["PATH"] = f"{old}:{b.extra_env['PATH']}"
    cluster.restart_sshd(b)
    one_line_error(cluster.tbctl("pair", "--yes", "tbt-a", "tbt-b"), 4,
                   "python3 on tbt-b is 3.6.15", "3.9 or newer")


def test_sudo_needing_a_password(pair_of_hosts):
    cluster = pair_of_hosts
    a = cluster.hosts[0]
    user = f"tbctl{cluster.tag}"
    # "*": no password, but not a locked account (sshd refuses those without PAM).
    subprocess.run(["useradd", "-M", "-s", "/bin/sh", "-p", "*", user], check=True)
    keys = Path(tempfile.mkdtemp(prefix="tbctl-keys-"))
    try:
        keys.chmod(0o755)
        shutil.copy(cluster.workdir / "host0/ssh/authorized_keys", keys / "authorized_keys")
        (keys / "authorized_keys").chmod(0o644)
        config = cluster.sshd_config(a)
        config.write_text(config.read_text().replace(
            str(cluster.workdir / "host0/ssh/authorized_keys"), str(keys / "authorized_keys")))
        cluster.stop_sshd(a)
        a.sshd = subprocess.Popen(["ip", "netns", "exec", a.ns, "/usr/sbin/sshd", "-D", "-e",
                                   "-f", str(config)], stderr=subprocess.DEVNULL)
        cluster.wait_sshd(a)
        result = cluster.tbctl("pair", "--yes", f"{user}@tbt-a", "tbt-b")
    finally:
        cluster.stop_sshd(a)
        subprocess.run(["userdel", user], check=False)
        shutil.rmtree(keys)
    one_line_error(result, 4, "sudo on", "needs a password")


def test_address_pool_exhausted(pair_of_hosts):
    cluster = pair_of_hosts
    before = [h.snapshot() for h in cluster.hosts]
    one_line_error(cluster.tbctl("pair", "--yes", "--pool", "10.254.7.0/31", "tbt-a", "tbt-b"),
                   5, "address pool 10.254.7.0/31 is exhausted")
    assert [h.snapshot() for h in cluster.hosts] == before


def test_bad_ssh_config_path(pair_of_hosts):
    result = pair_of_hosts.tbctl("pair", "--ssh-config", "/nonexistent/cfg", "tbt-a", "tbt-b")
    one_line_error(result, 2, "/nonexistent/cfg", "does not exist")


@pytest.fixture
def chain(make_cluster):
    """a --thunderbolt0-- b --thunderbolt1/thunderbolt0-- c, links given in links.conf."""
    cluster = make_cluster(3)
    a, b, c = cluster.hosts
    cluster.cable(a, b, "thunderbolt0", "thunderbolt0")
    cluster.cable(b, c, "thunderbolt1", "thunderbolt0")
    cluster.declare_links(a, ["thunderbolt0"])
    cluster.declare_links(b, ["thunderbolt0", "thunderbolt1"])
    cluster.declare_links(c, ["thunderbolt0"])
    cluster.wait_link_local()
    return cluster


def test_no_shared_cable(chain):
    one_line_error(chain.tbctl("pair", "--yes", "tbt-a", "tbt-c"), 5,
                   "tbt-a and tbt-c share no cable")


def test_three_hosts_status_env_and_cable_down(chain):
    a, b, c = chain.hosts
    assert chain.tbctl("pair", "--yes", "tbt-a", "tbt-b").returncode == 0
    second = chain.tbctl("pair", "--yes", "--json", "tbt-b", "tbt-c")
    assert second.returncode == 0, second.stderr
    (cable,) = json_result(second, "pair")["cables"]
    assert (cable["link_a"], cable["link_b"]) == ("thunderbolt1", "thunderbolt0")

    status = chain.tbctl("status", "--json", "tbt-a", "tbt-b", "tbt-c")
    assert status.returncode == 0, status.stderr
    hosts = {h["name"]: h for h in json_result(status, "status")["hosts"]}
    assert [len(hosts[h]["pairings"]) for h in ("tbt-a", "tbt-b", "tbt-c")] == [1, 2, 1]
    addresses = [cab["address"] for h in hosts.values() for p in h["pairings"]
                 for cab in p["cables"]]
    assert len(addresses) == len(set(addresses)) == 4

    env = chain.tbctl("env", "tbt-a", "tbt-b")
    assert env.returncode == 0, env.stderr
    a_addr = hosts["tbt-a"]["pairings"][0]["cables"][0]["address"]
    assert f"export VLLM_HOST_IP={a_addr}" in env.stdout
    assert "export NCCL_SOCKET_IFNAME==thunderbolt0" in env.stdout  # '=': exact name
    assert "export NCCL_IB_DISABLE=1" in env.stdout  # transport ip on this kernel
    dotenv_dir = chain.workdir / "env"
    assert chain.tbctl("env", "--format", "dotenv", "--out", str(dotenv_dir), "tbt-b",
                       "tbt-c").returncode == 0
    assert "GLOO_SOCKET_IFNAME=thunderbolt1" in (dotenv_dir / "tbt-b.env").read_text()
    one_line_error(chain.tbctl("env", "tbt-a", "tbt-c"), 5, "tbt-a is not paired with tbt-c")

    c.run("ip", "link", "set", "thunderbolt0", "down")  # pulls b's thunderbolt1 carrier
    down = chain.tbctl("status", "--json", "tbt-b")
    assert down.returncode == 1
    (host_b,) = json_result(down, "status")["hosts"]
    cables = {cab["link"]: cab for p in host_b["pairings"] for cab in p["cables"]}
    assert not cables["thunderbolt1"]["up"] and cables["thunderbolt0"]["up"]
    c.run("ip", "link", "set", "thunderbolt0", "up")
    assert chain.tbctl("status", "tbt-b", "tbt-c").returncode == 0

    doctor = chain.tbctl("doctor", "--json", "tbt-b")
    findings = json_result(doctor, "doctor")["findings"]
    assert doctor.returncode == (1 if any(f["status"] == "fail" for f in findings) else 0)
    assert {"kernel", "rdma transport", "memlock", "providers"} <= {f["check"] for f in findings}
    assert all(f["fix"] for f in findings if f["status"] != "ok")

    assert chain.tbctl("unpair", "tbt-a", "tbt-b").returncode == 0
    assert chain.tbctl("unpair", "tbt-b", "tbt-c").returncode == 0
    assert not any((h.root / "var").exists() for h in chain.hosts)
    assert os.path.exists(b.root / "etc/tbctl/links.conf")
