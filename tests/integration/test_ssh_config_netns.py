# SPDX-License-Identifier: MIT
"""tbctl connects where `ssh` would and as `ssh` would: hosts are resolved by `ssh -G`, and an
option in effect that tbctl cannot honour is refused in one line instead of ignored."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.output import json_result, one_line_error

pytestmark = pytest.mark.netns


def host_block(cluster, alias: str, body: str) -> str:
    return f"\nHost {alias}\n{body}  UserKnownHostsFile {cluster.known_hosts}\n"


def status_of(cluster, *hosts: str, env: dict[str, str] | None = None):
    return cluster.tbctl("status", *hosts, env=env)


def reached(result) -> bool:
    assert result.returncode == 0, result.stderr
    return "not paired" in result.stdout


def test_include(pair_of_hosts):
    cluster = pair_of_hosts
    a = cluster.hosts[0]
    included = cluster.workdir / "config.d"
    included.mkdir()
    (included / "lab.conf").write_text(host_block(
        cluster, "tbt-included", f"  HostName {a.mgmt_ip}\n  User root\n"
                                 f"  IdentityFile {cluster.key}\n"))
    cluster.ssh_config.write_text(f"Include {included}/*.conf\n"
                                  + cluster.ssh_config.read_text())
    (host,) = json_result(cluster.tbctl("status", "--json", "tbt-included"),
                          "status")["hosts"]
    assert host["hostname"] == a.run("hostname").strip()


def test_proxycommand(pair_of_hosts):
    """127.0.0.1 is reached through host A, so it is A's own sshd: only the ProxyCommand
    (a real `ssh -W` through tbt-a) leads there."""
    cluster = pair_of_hosts
    a = cluster.hosts[0]
    a_key = (a.workdir / "ssh/host_key.pub").read_text().split()
    with cluster.known_hosts.open("a") as f:
        f.write(f"tbt-a-loopback {a_key[0]} {a_key[1]}\n")
    with cluster.ssh_config.open("a") as f:
        f.write(host_block(cluster, "tbt-proxied",
                           "  HostName 127.0.0.1\n  User root\n  HostKeyAlias tbt-a-loopback\n"
                           f"  IdentityFile {cluster.key}\n"
                           f"  ProxyCommand ssh -F {cluster.ssh_config} -o BatchMode=yes "
                           "-W %h:%p tbt-a\n"))
    result = cluster.tbctl("pair", "--yes", "tbt-proxied", "tbt-b")
    assert result.returncode == 0, result.stderr
    assert (a.root / "var/lib/tbctl/state.json").is_file()


def test_host_key_alias(pair_of_hosts):
    """known_hosts holds A's key only under its alias: found through HostKeyAlias."""
    cluster = pair_of_hosts
    a = cluster.hosts[0]
    a_key = (a.workdir / "ssh/host_key.pub").read_text().split()
    with cluster.known_hosts.open("a") as f:
        f.write(f"strix-a-key {a_key[0]} {a_key[1]}\n")
    body = f"  HostName {a.mgmt_ip}\n  Port 22\n  User root\n  IdentityFile {cluster.key}\n"
    # A's address under another port: no known_hosts line matches it except via the alias.
    a.extra_sshd.append("Port 2022")
    a.extra_sshd.append("Port 22")
    cluster.restart_sshd(a)
    with cluster.ssh_config.open("a") as f:
        f.write(host_block(cluster, "tbt-aliased", body.replace("Port 22", "Port 2022")
                           + "  HostKeyAlias strix-a-key\n"))
        f.write(host_block(cluster, "tbt-unaliased", body.replace("Port 22", "Port 2022")))
    assert reached(status_of(cluster, "tbt-aliased"))
    one_line_error(status_of(cluster, "tbt-unaliased"), 3, "host key of tbt-unaliased",
                   "is unknown")


@pytest.fixture
def agent(tmp_path):
    sock = tmp_path / "agent.sock"
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            subprocess.run(["sleep", "0.05"])
        yield {"SSH_AUTH_SOCK": str(sock)}
    finally:
        proc.terminate()
        proc.wait()


def test_identities_only(pair_of_hosts, agent):
    """The agent holds the host's authorized key, the config names another: with
    IdentitiesOnly, ssh does not offer the agent's key, so neither does tbctl."""
    cluster = pair_of_hosts
    a = cluster.hosts[0]
    other = cluster.workdir / "id_other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    subprocess.run(["ssh-add", "-q", str(cluster.key)], env={**os.environ, **agent}, check=True)
    body = f"  HostName {a.mgmt_ip}\n  User root\n  IdentityFile {other}\n"
    with cluster.ssh_config.open("a") as f:
        f.write(host_block(cluster, "tbt-agent", body))
        f.write(host_block(cluster, "tbt-only", body + "  IdentitiesOnly yes\n"))
    assert reached(status_of(cluster, "tbt-agent", env=agent))
    ssh = subprocess.run(["ssh", "-F", str(cluster.ssh_config), "-o", "BatchMode=yes",
                          "tbt-only", "true"], capture_output=True, text=True,
                         env={**os.environ, **agent})
    assert ssh.returncode == 255  # OpenSSH's verdict, which tbctl must share
    one_line_error(status_of(cluster, "tbt-only", env=agent), 3,
                   "authentication failed for tbt-only")


def test_certificate_file(pair_of_hosts):
    """A user certificate named by CertificateFile (not at the implicit <key>-cert.pub), for
    a host that trusts the CA and has no authorized key for it."""
    cluster = pair_of_hosts
    a = cluster.hosts[0]
    ca, user = cluster.workdir / "user_ca", cluster.workdir / "id_certified"
    for key in (ca, user):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                       check=True)
    subprocess.run(["ssh-keygen", "-q", "-s", str(ca), "-I", "tbctl-test", "-n", "root",
                    f"{user}.pub"], check=True)
    cert = cluster.workdir / "certs/root-at-a.pub"
    cert.parent.mkdir()
    (cluster.workdir / "id_certified-cert.pub").rename(cert)
    a.extra_sshd.append(f"TrustedUserCAKeys {ca}.pub")
    cluster.restart_sshd(a)
    with cluster.ssh_config.open("a") as f:
        f.write(host_block(cluster, "tbt-cert", f"  HostName {a.mgmt_ip}\n  User root\n"
                                                f"  IdentityFile {user}\n"
                                                f"  CertificateFile {cert}\n"
                                                "  IdentitiesOnly yes\n"))
    assert reached(status_of(cluster, "tbt-cert"))


@pytest.mark.parametrize("directive", ["ProxyUseFdpass yes", "PKCS11Provider /usr/lib/p11.so",
                                       "KnownHostsCommand /bin/true %H",
                                       "PubkeyAuthentication no"])
def test_directive_it_cannot_honour_is_refused(pair_of_hosts, directive):
    cluster = pair_of_hosts
    a = cluster.hosts[0]
    with cluster.ssh_config.open("a") as f:
        f.write(host_block(cluster, "tbt-odd", f"  HostName {a.mgmt_ip}\n  User root\n"
                                               f"  IdentityFile {cluster.key}\n"
                                               f"  {directive}\n"))
    before = a.snapshot()
    result = cluster.tbctl("pair", "--yes", "--json", "tbt-odd", "tbt-b")
    message = one_line_error(result, 3, directive.split()[0], "cannot honour")
    assert "tbt-odd" in message
    assert a.snapshot() == before


def test_config_ssh_rejects_is_one_line(pair_of_hosts):
    cluster = pair_of_hosts
    cluster.ssh_config.write_text(cluster.ssh_config.read_text() + "\nHost x\n  Bogus yes\n")
    one_line_error(cluster.tbctl("status", "tbt-a"), 3, "Bad configuration option: bogus")


def test_host_certificate_only_is_explained(pair_of_hosts):
    """A host known only through a @cert-authority line: tbctl cannot check host
    certificates and says so, rather than calling the key merely unknown."""
    cluster = pair_of_hosts
    ca = cluster.workdir / "host_ca"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ca)], check=True)
    cluster.known_hosts.write_text(f"@cert-authority 10.* {(ca.with_suffix('.pub')).read_text()}")
    one_line_error(status_of(cluster, "tbt-a"), 3, "@cert-authority", "host certificates")


def test_revoked_host_key_is_refused(pair_of_hosts):
    """A key both listed and @revoked is refused, as ssh refuses it; a garbled line is
    skipped, as ssh skips it."""
    cluster = pair_of_hosts
    a = cluster.hosts[0]
    a_key = (a.workdir / "ssh/host_key.pub").read_text().split()
    with cluster.known_hosts.open("a") as f:
        f.write("garbage line without a key\n")
    assert reached(status_of(cluster, "tbt-a"))
    with cluster.known_hosts.open("a") as f:
        f.write(f"@revoked * {a_key[0]} {a_key[1]}\n")
    one_line_error(status_of(cluster, "tbt-a"), 3, "@revoked")
