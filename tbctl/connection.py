# SPDX-License-Identifier: MIT
"""SSH to one host the way a user expects, and the node agent behind it.

Honours ~/.ssh/config (or --ssh-config / TBCTL_SSH_CONFIG): Host aliases, HostName, User,
Port, IdentityFile, UserKnownHostsFile, ProxyJump; ssh-agent; known_hosts checking with an
opt-in accept-new; and non-interactive sudo when the user is not root.
"""

from __future__ import annotations

import getpass
import json
import os
import queue
import secrets
import shlex
import socket
import threading
from pathlib import Path
from typing import Any

import paramiko

from tbctl import __version__
from tbctl.errors import RemoteError, SshError
from tbctl.hostspec import HostSpec, parse_host
from tbctl.node import AGENT_PROTOCOL, MIN_PYTHON
from tbctl.zipapp import agent_zipapp

DEFAULT_SSH_CONFIG = Path("~/.ssh/config")
CONNECT_TIMEOUT = 10.0
GLOBAL_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"

# Runs on the host before anything else: which python, which tbctl, which user.
BOOTSTRAP = (
    'p=$(command -v python3) || p=""; echo "python=$p"; '
    '[ -n "$p" ] && "$p" -c \'import sys; print("version=%d.%d.%d" % sys.version_info[:3])\'; '
    't=$(command -v tbctl) && echo "tbctl=$t" && '
    'echo "tbctl_version=$(tbctl --version 2>/dev/null)"; '
    'echo "uid=$(id -u)"'
)


def ssh_config_path(explicit: str | None) -> Path | None:
    chosen = explicit or os.environ.get("TBCTL_SSH_CONFIG")
    if chosen:
        path = Path(chosen).expanduser()
        if not path.is_file():
            raise SshError(f"ssh config {path} does not exist: fix --ssh-config/TBCTL_SSH_CONFIG")
        return path
    default = DEFAULT_SSH_CONFIG.expanduser()
    return default if default.is_file() else None


class _AcceptNew(paramiko.MissingHostKeyPolicy):
    """StrictHostKeyChecking=accept-new: record unknown keys, still refuse changed ones."""

    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        with self.known_hosts.open("a") as f:
            f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


class AgentProcess:
    """A long-running agent command exchanging JSON lines (used for the RDMA round trip)."""

    def __init__(self, channel: paramiko.Channel, label: str) -> None:
        self.channel = channel
        self.label = label
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self) -> None:
        for line in self.channel.makefile("r"):
            self.lines.put(line)
        self.lines.put(None)

    def send(self, obj: dict[str, Any]) -> None:
        self.channel.sendall((json.dumps(obj) + "\n").encode())

    def recv(self, timeout: float = 60) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise RemoteError(f"{self.label}: no answer within {timeout:.0f}s") from None
        if line is None:
            err = self.channel.makefile_stderr("r").read().decode(errors="replace").strip()
            raise RemoteError(f"{self.label}: ended early: {err.splitlines()[-1] if err else ''}")
        return json.loads(line)

    def close(self) -> int:
        self.channel.shutdown_write()
        status = self.channel.recv_exit_status()
        self.channel.close()
        return status


class Connection:
    """One SSH session to a host plus the means to run the node agent there."""

    def __init__(self, spec: str, ssh_config: Path | None = None,
                 accept_new_host_keys: bool = False) -> None:
        self.spec: HostSpec = parse_host(spec)
        self.name = spec
        self.ssh_config = ssh_config
        self.accept_new = accept_new_host_keys
        self.client: paramiko.SSHClient | None = None
        self.jumps: list[Connection] = []
        self.agent_command: list[str] | None = None
        self.tbctl_exec: str | None = None
        self.persist_agent = False

    # ------------------------------------------------------------ ssh

    def _lookup(self) -> dict[str, Any]:
        config = paramiko.SSHConfig()
        if self.ssh_config:
            config = paramiko.SSHConfig.from_path(str(self.ssh_config))
        return config.lookup(self.spec.host)

    def open(self, sock: Any = None) -> Connection:
        entry = self._lookup()
        hostname = entry.get("hostname", self.spec.host)
        port = self.spec.port or int(entry.get("port", 22))
        user = self.spec.user or entry.get("user") or getpass.getuser()
        where = f"{self.name} ({user}@{hostname}:{port})"
        if sock is None and entry.get("proxyjump") and entry["proxyjump"].lower() != "none":
            sock = self._jump(entry["proxyjump"], hostname, port)
        known = [Path(p).expanduser() for p in
                 shlex.split(entry.get("userknownhostsfile", "~/.ssh/known_hosts"))]
        client = paramiko.SSHClient()
        if Path(GLOBAL_KNOWN_HOSTS).is_file():
            client.load_system_host_keys(GLOBAL_KNOWN_HOSTS)
        for path in known:
            if path.is_file():
                client.load_host_keys(str(path))
        client.set_missing_host_key_policy(
            _AcceptNew(known[0]) if self.accept_new else paramiko.RejectPolicy())
        keys = [str(Path(k).expanduser()) for k in entry.get("identityfile", [])]
        try:
            client.connect(hostname, port=port, username=user,
                           key_filename=[k for k in keys if Path(k).is_file()] or None,
                           timeout=CONNECT_TIMEOUT, banner_timeout=CONNECT_TIMEOUT,
                           auth_timeout=CONNECT_TIMEOUT, sock=sock, allow_agent=True,
                           look_for_keys=not keys)
        except socket.gaierror:
            raise SshError(f"unknown host {self.name}: '{hostname}' does not resolve; "
                           "check the name or add a Host entry to your ssh config") from None
        except paramiko.BadHostKeyException:
            entry_name = hostname if port == 22 else f"[{hostname}]:{port}"
            raise SshError(f"host key of {where} does not match known_hosts: if the host was "
                           f"reinstalled, run: ssh-keygen -R '{entry_name}' -f {known[0]}"
                           ) from None
        except paramiko.AuthenticationException:
            raise SshError(f"authentication failed for {where}: load your key into ssh-agent "
                           "or set IdentityFile in your ssh config") from None
        except paramiko.SSHException as exc:
            if "known_hosts" in str(exc):
                raise SshError(f"host key of {where} is unknown: check it with a plain ssh "
                               "login first, or pass --accept-new-host-keys") from None
            raise SshError(f"ssh to {where} failed: {exc}") from None
        except (OSError, paramiko.ssh_exception.NoValidConnectionsError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise SshError(f"cannot reach {where}: {reason}") from None
        self.client = client
        return self

    def _jump(self, proxyjump: str, hostname: str, port: int) -> paramiko.Channel:
        previous: Connection | None = None
        for hop in proxyjump.split(","):
            conn = Connection(hop.strip(), self.ssh_config, self.accept_new)
            if previous is None:
                conn.open()
            else:
                conn.open(sock=previous._channel_to(conn))
            self.jumps.append(conn)
            previous = conn
        assert previous is not None
        return previous._direct_tcpip(hostname, port)

    def _channel_to(self, target: Connection) -> paramiko.Channel:
        entry = target._lookup()
        return self._direct_tcpip(entry.get("hostname", target.spec.host),
                                  target.spec.port or int(entry.get("port", 22)))

    def _direct_tcpip(self, hostname: str, port: int) -> paramiko.Channel:
        assert self.client is not None
        transport = self.client.get_transport()
        assert transport is not None
        return transport.open_channel("direct-tcpip", (hostname, port), ("127.0.0.1", 0))

    def close(self) -> None:
        if self.client:
            self.client.close()
        for jump in reversed(self.jumps):
            jump.close()

    def run(self, command: str, stdin: bytes | None = None,
            timeout: float = 120) -> tuple[int, str, str]:
        assert self.client is not None, "open() first"
        try:
            chan_in, chan_out, chan_err = self.client.exec_command(command, timeout=timeout)
            if stdin is not None:
                chan_in.write(stdin)
            chan_in.channel.shutdown_write()
            out = chan_out.read().decode(errors="replace")
            err = chan_err.read().decode(errors="replace")
            return chan_out.channel.recv_exit_status(), out, err
        except (TimeoutError, paramiko.SSHException) as exc:
            raise RemoteError(f"{self.name}: '{command[:60]}' did not finish: "
                              f"{exc or 'timed out'}") from None

    # ------------------------------------------------------------ agent

    def prepare_agent(self, state_dir: str) -> None:
        """Find python3 and tbctl on the host, ship the agent if needed, check sudo."""
        status, out, err = self.run(f"sh -c {shlex.quote(BOOTSTRAP)}")
        facts = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        python = facts.get("python", "")
        if not python:
            raise RemoteError(f"{self.name} has no python3: install python3 (>= "
                              f"{'.'.join(map(str, MIN_PYTHON))}) there")
        version = tuple(int(v) for v in facts.get("version", "0.0.0").split("."))
        if version[:2] < MIN_PYTHON:
            raise RemoteError(f"python3 on {self.name} is {'.'.join(map(str, version))}; tbctl "
                              f"needs {'.'.join(map(str, MIN_PYTHON))} or newer: install it there")
        sudo = [] if facts.get("uid") == "0" else ["sudo", "-n"]
        if facts.get("tbctl") and facts.get("tbctl_version", "").endswith(__version__):
            self.agent_command = [*sudo, facts["tbctl"], "node"]
            self.tbctl_exec = facts["tbctl"]
        else:
            data, digest = agent_zipapp()
            path = f"/tmp/tbctl-agent-{digest[:16]}.pyz"
            status, _, _ = self.run(f"test -s {path}")
            if status != 0:
                tmp = f"{path}.{secrets.token_hex(6)}"
                assert self.client is not None
                with self.client.open_sftp() as sftp:
                    with sftp.open(tmp, "wb") as f:
                        f.write(data)
                    sftp.posix_rename(tmp, path)
            self.agent_command = [*sudo, python, path, "node"]
            self.tbctl_exec = f"{python} {state_dir.rstrip('/')}/tbctl.pyz"
            self.persist_agent = True
        if sudo:
            status, _, err = self.run("sudo -n true")
            if status != 0:
                raise RemoteError(f"sudo on {self.name} needs a password: allow this user "
                                  "passwordless sudo (NOPASSWD) or connect as root")

    def _agent_cmdline(self, command: str, args: list[str]) -> str:
        assert self.agent_command is not None, "prepare_agent() first"
        return shlex.join([*self.agent_command, command, *args])

    def agent(self, command: str, *args: str, payload: dict[str, Any] | None = None,
              timeout: float = 120) -> Any:
        """Run one agent command; return its result or raise RemoteError with its one line."""
        stdin = None
        if payload is not None:
            stdin = json.dumps({"protocol": AGENT_PROTOCOL, **payload}).encode()
        status, out, err = self.run(self._agent_cmdline(command, list(args)), stdin, timeout)
        try:
            answer = json.loads(out.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            last = (err.strip().splitlines() or [f"exit status {status}"])[-1]
            raise RemoteError(f"{self.name}: tbctl node {command} failed: {last}") from None
        if answer.get("protocol") != AGENT_PROTOCOL:
            raise RemoteError(f"{self.name}: agent speaks protocol {answer.get('protocol')}, "
                              f"this tbctl {AGENT_PROTOCOL}: upgrade tbctl on both ends")
        if not answer["ok"]:
            raise RemoteError(f"{self.name}: {answer['error']}")
        return answer["result"]

    def start_agent(self, args: list[str]) -> AgentProcess:
        assert self.client is not None and self.agent_command is not None
        transport = self.client.get_transport()
        assert transport is not None
        channel = transport.open_session()
        channel.exec_command(shlex.join([*self.agent_command, *args]))
        return AgentProcess(channel, f"{self.name}: tbctl node {args[0] if args else ''}")

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
