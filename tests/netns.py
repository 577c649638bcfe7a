# SPDX-License-Identifier: MIT
"""Test hosts: network namespaces, each running its own real OpenSSH server, joined by veth
"cables". The controller (the test process) reaches each over a management veth.

Namespaces share one filesystem, so each host gets its own TBCTL_ROOT (set by its sshd's
SetEnv), where tbctl keeps state and writes unit files.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SSHD = "/usr/sbin/sshd"


def sh(*args: str, check: bool = True, input: str | None = None) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, input=input)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


@dataclass
class Host:
    alias: str
    ns: str
    index: int
    workdir: Path
    net: int = 199  # second octet of the management network (its cluster picks it)
    sshd: subprocess.Popen | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    extra_sshd: list[str] = field(default_factory=list)  # more sshd_config lines

    @property
    def mgmt_ip(self) -> str:
        return f"10.{self.net}.{self.index}.2"

    @property
    def root(self) -> Path:
        return self.workdir / "root"

    def run(self, *args: str, check: bool = True) -> str:
        return sh("ip", "netns", "exec", self.ns, *args, check=check)

    def ip_json(self, *args: str) -> Any:
        return json.loads(self.run("ip", "-j", *args) or "[]")

    def sysctl(self, name: str) -> str:
        return self.run("cat", f"/proc/sys/net/ipv4/{name}").strip()

    def snapshot(self) -> dict[str, Any]:
        """What pairing may change: links (MTU, up), addresses, routes and IPv4 forwarding
        (global and per link), plus the files under root."""
        links = {e["ifname"]: (e["mtu"], "UP" in e["flags"]) for e in self.ip_json("link")}
        addrs = sorted((e["ifname"], a["local"], a["prefixlen"]) for e in self.ip_json("addr")
                       for a in e.get("addr_info", []) if a["family"] == "inet")
        routes = sorted((r["dst"], r.get("gateway", ""), r.get("dev", ""), r.get("prefsrc", ""))
                        for r in self.ip_json("-4", "route", "show", "table", "main"))
        forwarding = {"ip_forward": self.sysctl("ip_forward"),
                      **{link: self.sysctl(f"conf/{link}/forwarding") for link in links}}
        files = sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*"))
        return {"links": links, "addresses": addrs, "routes": routes,
                "forwarding": forwarding, "files": files}


class Cluster:
    """Hosts named <prefix>-a, -b, ... with an ssh_config, a client key and known_hosts."""

    def __init__(self, workdir: Path, count: int) -> None:
        self.workdir = workdir
        self.tag = secrets.token_hex(3)
        self.key = workdir / "id_ed25519"
        self.ssh_config = workdir / "ssh_config"
        self.known_hosts = workdir / "known_hosts"
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key))
        self.hosts = [Host(f"tbt-{chr(ord('a') + i)}", f"tbt{self.tag}{i}", i + 1,
                           workdir / f"host{i}") for i in range(count)]
        Path("/run/sshd").mkdir(exist_ok=True)
        # Other test runs on this machine build clusters too: a management network no other
        # cluster uses keeps this run from reaching (and trusting) another run's sshd. The
        # lock makes picking a free network and taking it (its addresses) one step.
        with open("/tmp/tbctl-netns-mgmt.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            used = {int(n) for n in re.findall(r"inet 10\.(\d+)\.",
                                               sh("ip", "-4", "-o", "addr", "show"))}
            self.net = secrets.choice([n for n in range(100, 250) if n not in used])
            for host in self.hosts:
                host.net = self.net
                self._create(host)
        self.write_ssh_config()
        for host in self.hosts:
            self.start_sshd(host)

    def _create(self, host: Host) -> None:
        host.root.mkdir(parents=True)
        # A plain host: its own HOME (no pyenv, no tbctl), the distribution's PATH.
        (host.workdir / "home").mkdir()
        host.extra_env = {"HOME": str(host.workdir / "home"),
                          "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"}
        sh("ip", "netns", "add", host.ns)
        host.run("ip", "link", "set", "lo", "up")
        outer = f"tbm{self.tag}{host.index}"
        sh("ip", "link", "add", outer, "type", "veth", "peer", "name", "mgmt0",
           "netns", host.ns)
        sh("ip", "addr", "add", f"10.{self.net}.{host.index}.1/30", "dev", outer)
        sh("ip", "link", "set", outer, "up")
        host.run("ip", "addr", "add", f"{host.mgmt_ip}/30", "dev", "mgmt0")
        host.run("ip", "link", "set", "mgmt0", "up")
        keydir = host.workdir / "ssh"
        keydir.mkdir()
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keydir / "host_key"))
        shutil.copy(f"{self.key}.pub", keydir / "authorized_keys")
        with self.known_hosts.open("a") as f:
            f.write(f"{host.mgmt_ip} {(keydir / 'host_key.pub').read_text().strip()}\n")

    def sshd_config(self, host: Host) -> Path:
        keydir = host.workdir / "ssh"
        env = {"TBCTL_ROOT": str(host.root), **host.extra_env}
        config = keydir / "sshd_config"
        config.write_text("\n".join([
            f"ListenAddress {host.mgmt_ip}",
            "ListenAddress 127.0.0.1",  # reached through a ProxyJump via the host itself
            f"HostKey {keydir / 'host_key'}",
            f"PidFile {keydir / 'sshd.pid'}",
            f"AuthorizedKeysFile {keydir / 'authorized_keys'}",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "Subsystem sftp internal-sftp",
            "SetEnv " + " ".join(f"{k}={v}" for k, v in env.items()),
            *host.extra_sshd,
            "",
        ]))
        return config

    def start_sshd(self, host: Host) -> None:
        config = self.sshd_config(host)
        host.sshd = subprocess.Popen(
            ["ip", "netns", "exec", host.ns, SSHD, "-D", "-e", "-f", str(config)],
            stdout=subprocess.DEVNULL, stderr=(host.workdir / "sshd.log").open("w"))
        self.wait_sshd(host)

    def wait_sshd(self, host: Host) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if host.run("ss", "-Hltn", "sport = :22", check=False).strip():
                return
            time.sleep(0.05)
        raise RuntimeError(f"sshd in {host.ns} did not start: "
                           f"{(host.workdir / 'sshd.log').read_text()}")

    def restart_sshd(self, host: Host) -> None:
        self.stop_sshd(host)
        self.start_sshd(host)

    def stop_sshd(self, host: Host) -> None:
        if host.sshd:
            host.sshd.terminate()
            host.sshd.wait(timeout=10)
            host.sshd = None

    def write_ssh_config(self) -> None:
        blocks = [f"Host {h.alias}\n  HostName {h.mgmt_ip}\n  User root\n"
                  f"  IdentityFile {self.key}\n  UserKnownHostsFile {self.known_hosts}\n"
                  for h in self.hosts]
        blocks.append(f"Host 10.{self.net}.*\n  IdentityFile {self.key}\n"
                      f"  UserKnownHostsFile {self.known_hosts}\n")
        self.ssh_config.write_text("\n".join(blocks))

    def cable(self, a: Host, b: Host, name_a: str, name_b: str, mtu: int = 1500) -> None:
        """A veth pair standing in for a thunderbolt-net link, up with IPv6 link-local."""
        tmp_a, tmp_b = f"c{self.tag}{secrets.token_hex(2)}", f"c{self.tag}{secrets.token_hex(2)}"
        sh("ip", "link", "add", tmp_a, "mtu", str(mtu), "type", "veth", "peer", "name", tmp_b,
           "mtu", str(mtu))
        sh("ip", "link", "set", tmp_a, "netns", a.ns, "name", name_a)
        sh("ip", "link", "set", tmp_b, "netns", b.ns, "name", name_b)
        for host, name in ((a, name_a), (b, name_b)):
            host.run("ip", "link", "set", name, "up")

    def wire(self, edges: list[tuple[int, int]]) -> dict[tuple[int, int], tuple[str, str]]:
        """One cable per edge (host indexes), named thunderbolt0, 1, ... on each host in
        turn and declared in links.conf: a triangle is [(0, 1), (1, 2), (2, 0)]. Returns
        edge -> (link on the first host, link on the second)."""
        used = [0] * len(self.hosts)
        names: dict[tuple[int, int], tuple[str, str]] = {}
        for i, j in edges:
            names[(i, j)] = (f"thunderbolt{used[i]}", f"thunderbolt{used[j]}")
            used[i] += 1
            used[j] += 1
            self.cable(self.hosts[i], self.hosts[j], *names[(i, j)])
        for host, count in zip(self.hosts, used, strict=True):
            self.declare_links(host, [f"thunderbolt{n}" for n in range(count)])
        self.wait_link_local()
        return names

    def declare_links(self, host: Host, names: list[str]) -> None:
        conf = host.root / "etc/tbctl/links.conf"
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text("# cables of this test host\n" + "\n".join(names) + "\n")

    def wait_link_local(self) -> None:
        """Cables need a non-tentative IPv6 link-local address before discovery."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if all(not h.run("ip", "-6", "addr", "show", "tentative").strip()
                   for h in self.hosts):
                return
            time.sleep(0.1)

    def tbctl(self, *args: str, env: dict[str, str] | None = None,
              netns: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
        command = ["python3", "-m", "tbctl", *args]
        if netns:
            command = ["ip", "netns", "exec", netns, *command]
        if cwd is not None:
            # The package is imported from the checkout, wherever the command runs.
            env = {"PYTHONPATH": str(Path(__file__).parents[1]), **(env or {})}
        return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=cwd,
                              env={**os.environ, "TBCTL_SSH_CONFIG": str(self.ssh_config),
                                   **(env or {})})

    def close(self) -> None:
        for host in self.hosts:
            self.stop_sshd(host)
            sh("ip", "netns", "del", host.ns, check=False)
            sh("ip", "link", "del", f"tbm{self.tag}{host.index}", check=False)
