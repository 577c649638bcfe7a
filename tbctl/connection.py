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
from tbctl.zipapp import agent_zipapp, cleanup_command, install_command

DEFAULT_SSH_CONFIG = Path("~/.ssh/config")
CONNECT_TIMEOUT = 10.0
GLOBAL_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"

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
        # The agent archive's sha256 when the boot unit needs a persisted copy, else False.
        self.persist_agent: str | bool = False
        self.agent_path: str | None = None  # this session's root-owned private copy
        self.sudo = False
        self.hello: dict[str, Any] = {}
        self.ssh_address = ""

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
        self._cleanup_agent()
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
        """Deliver the agent as root and run its `hello`, in one SSH round trip.

        The archive goes over the channel's stdin into a fresh root-owned directory and is
        checked against its sha256 before it runs (see tbctl.zipapp); the python3 that runs it
        is resolved as root and must be root-owned and writable by nobody else.
        """
        data, digest = agent_zipapp()
        command = install_command(digest, __version__, MIN_PYTHON)
        status, out, err = self._run_bytes(command, data)
        facts: dict[str, str] = {}
        answer = ""
        for line in out.splitlines():
            if line.startswith("{"):
                answer = line
            elif "=" in line:
                key, value = line.split("=", 1)
                facts.setdefault(key, value)
        sudo = [] if facts.get("uid") == "0" else ["sudo", "-n"]
        version = facts.get("version", "")
        if version and tuple(int(v) for v in version.split(".")[:2] if v.isdigit()) < MIN_PYTHON:
            raise RemoteError(self._install_error(f"old-python {version}"))
        if "tbctl-error" in facts:
            raise RemoteError(self._install_error(facts["tbctl-error"]))
        if not answer:
            if sudo and "sudo" in err:
                raise RemoteError(f"sudo on {self.name} needs a password: allow this user "
                                  "passwordless sudo (NOPASSWD) or connect as root")
            last = (err.strip().splitlines() or [f"exit status {status}"])[-1]
            raise RemoteError(f"{self.name}: starting the tbctl agent failed: {last}")
        self.hello = self._answer("hello", answer, err, status)
        self.ssh_address = self.hello.get("ssh_address") or ""
        options = ["node", "--ssh-address", self.ssh_address]
        if "tbctl" in facts:
            self.agent_command = [*sudo, facts["tbctl"], *options]
            self.tbctl_exec = facts["tbctl"]
            self.persist_agent = False
            return
        python, self.agent_path = facts["python"], facts["agent"]
        self.sudo = bool(sudo)
        self.agent_command = [*sudo, python, "-I", self.agent_path, *options]
        # The boot unit runs the persisted copy, stored under its own digest so the unit can
        # check it before running it (templates/tbctl-reapply.service.j2).
        self.tbctl_exec = f"{python} -I {state_dir.rstrip('/')}/tbctl-{digest}.pyz"
        self.persist_agent = digest

    def _install_error(self, error: str) -> str:
        kind, _, detail = error.partition(" ")
        minimum = ".".join(map(str, MIN_PYTHON))
        if kind == "no-python":
            return f"{self.name} has no python3: install python3 (>= {minimum}) there"
        if kind == "old-python":
            return (f"python3 on {self.name} is {detail}; tbctl needs {minimum} or newer: "
                    "install it there")
        if kind == "no-sudo":
            return (f"{self.name}: this user is not root and sudo is not installed: connect "
                    "as root or install sudo (NOPASSWD for this user)")
        if kind == "untrusted":
            path, _, culprit = detail.partition(" ")
            return (f"{self.name}: refusing to run {path} as root: {culprit} is not root-owned "
                    "or is writable by other users; install python3 from the distribution "
                    "(root-owned, e.g. /usr/bin/python3) or fix that path's owner and mode")
        if kind == "untrusted-tmp":
            return (f"{self.name}: {detail} is writable by other users and not sticky: "
                    "refusing to install the agent there; fix its mode (1777 for /tmp)")
        if kind == "checksum":
            return (f"{self.name}: the tbctl agent arrived corrupted (sha256 {detail[:16]}...): "
                    "nothing was run; check the connection and retry")
        return f"{self.name}: cannot install the tbctl agent: {detail or kind}"

    def _run_bytes(self, command: str, stdin: bytes) -> tuple[int, str, str]:
        """Like run(), but a command that exits before reading all of stdin (sudo refusing)
        is not an error: its output says what happened."""
        assert self.client is not None, "open() first"
        try:
            chan_in, chan_out, chan_err = self.client.exec_command(command, timeout=120)
            try:
                chan_in.write(stdin)
                chan_in.channel.shutdown_write()
            except OSError:
                pass
            out = chan_out.read().decode(errors="replace")
            err = chan_err.read().decode(errors="replace")
            return chan_out.channel.recv_exit_status(), out, err
        except (TimeoutError, paramiko.SSHException) as exc:
            raise RemoteError(f"{self.name}: installing the tbctl agent did not finish: "
                              f"{exc or 'timed out'}") from None

    def _cleanup_agent(self) -> None:
        """Remove this session's private copy of the agent (best effort: /tmp is cleared at
        boot anyway, and the copy is root's alone)."""
        if not self.agent_path or self.client is None:
            return
        try:
            self.run(cleanup_command(self.agent_path, self.sudo), timeout=10)
        except (RemoteError, OSError, paramiko.SSHException):
            pass
        self.agent_path = None

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
        lines = out.strip().splitlines()
        return self._answer(command, lines[-1] if lines else "", err, status)

    def _answer(self, command: str, line: str, err: str, status: int) -> Any:
        """The result of one agent answer line, or RemoteError with its one line."""
        try:
            answer = json.loads(line)
        except json.JSONDecodeError:
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
