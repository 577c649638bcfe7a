# SPDX-License-Identifier: MIT
"""SSH to one host exactly where and as `ssh` would, and the node agent behind it.

Every host is resolved by OpenSSH itself (`ssh -G`, tbctl/sshconfig.py): Include, Match,
/etc/ssh/ssh_config, HostName, User, Port, IdentityFile, IdentitiesOnly, CertificateFile,
UserKnownHostsFile, GlobalKnownHostsFile, HostKeyAlias, StrictHostKeyChecking,
ProxyCommand, ProxyJump, ConnectTimeout, AddressFamily; ssh-agent; known_hosts checking with an
opt-in accept-new; non-interactive sudo when the user is not root.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import queue
import shlex
import socket
import sys
import threading
from pathlib import Path
from typing import Any

# paramiko imports `invoke` (~0.3 s with its dependencies) only for its own ssh_config
# parser's Match exec, which tbctl never uses: OpenSSH resolves hosts (tbctl/sshconfig.py).
sys.modules.setdefault("invoke", None)  # type: ignore[arg-type]

import paramiko  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from paramiko.auth_strategy import AuthSource, AuthStrategy, InMemoryPrivateKey  # noqa: E402

from tbctl import __version__  # noqa: E402
from tbctl.errors import RemoteError, SshError  # noqa: E402
from tbctl.hostspec import HostSpec, parse_host  # noqa: E402
from tbctl.node import AGENT_PROTOCOL, MIN_PYTHON  # noqa: E402
from tbctl.sshconfig import Resolved, resolve  # noqa: E402
from tbctl.zipapp import agent_zipapp, cleanup_command, install_command  # noqa: E402

# paramiko logs transport failures (a garbage banner, a reset during key exchange) with
# 20-40 lines of traceback through Python's last-resort handler; tbctl reports each failure
# as one line itself.
_paramiko_log = logging.getLogger("paramiko")
_paramiko_log.addHandler(logging.NullHandler())
_paramiko_log.propagate = False

def ssh_config_path(explicit: str | None) -> Path | None:
    """The file given with --ssh-config / TBCTL_SSH_CONFIG (ssh -F), else None: then ssh
    reads ~/.ssh/config and /etc/ssh/ssh_config itself."""
    chosen = explicit or os.environ.get("TBCTL_SSH_CONFIG")
    if not chosen:
        return None
    path = Path(chosen).expanduser()
    if not path.is_file():
        raise SshError(f"ssh config {path} does not exist: fix --ssh-config/TBCTL_SSH_CONFIG",
                       exit_code=2)
    return path


class _AcceptNew(paramiko.MissingHostKeyPolicy):
    """StrictHostKeyChecking=accept-new: record unknown keys, still refuse changed ones."""

    def __init__(self, known_hosts: Path | None) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        if self.known_hosts is None:  # UserKnownHostsFile none: accepted, not recorded
            return
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        with self.known_hosts.open("a") as f:
            f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


def _file_lines(path: str) -> list[str]:
    """A known_hosts file's lines; none when it cannot be read (ssh ignores it, too)."""
    try:
        return Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return []


def _load_known_hosts(keys: paramiko.HostKeys, path: str, revoked: set[str]) -> None:
    """Add one known_hosts file's keys. paramiko's own loader fails on `@cert-authority`
    and `@revoked` lines; certificates are not checked (their hosts count as unknown) and
    revoked keys are collected so that a host presenting one is refused."""
    for line in _file_lines(path):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if fields[0] == "@revoked" and len(fields) >= 4:
            revoked.add(fields[3])
            continue
        if fields[0].startswith("@"):
            continue
        try:
            entry = paramiko.hostkeys.HostKeyEntry.from_line(line)
        except (paramiko.hostkeys.InvalidHostKey, paramiko.SSHException, ValueError):
            continue  # ssh skips lines it cannot read, too
        if entry is not None and entry.key is not None:
            for name in entry.hostnames:
                keys.add(name, entry.key.get_name(), entry.key)


def _cert_authority_for(entry: str, files: list[str]) -> bool:
    """Whether a `@cert-authority` line in these known_hosts files covers `entry`."""
    for path in files:
        for line in _file_lines(path):
            fields = line.split()
            if len(fields) >= 2 and fields[0] == "@cert-authority":
                patterns = fields[1].split(",")
                if any(fnmatch.fnmatchcase(entry, p) for p in patterns if not p.startswith("!")):
                    return True
    return False


class _Keys(AuthStrategy):
    """Try these keys in order, as ssh does (agent first, then IdentityFile/CertificateFile)."""

    def __init__(self, sources: list[AuthSource]) -> None:
        super().__init__(ssh_config=None)
        self.sources = sources

    def get_sources(self) -> Any:
        yield from self.sources


def _public_b64(key: paramiko.PKey) -> str:
    return key.get_base64()


def _certificate_key_b64(path: str) -> str | None:
    """The base64 public key a certificate certifies (to pair it with its private key)."""
    try:
        cert = serialization.load_ssh_public_identity(Path(path).read_bytes().strip())
    except (OSError, ValueError):
        return None
    public = getattr(cert, "public_key", None)
    if public is None:
        return None
    return public().public_bytes(serialization.Encoding.OpenSSH,
                                 serialization.PublicFormat.OpenSSH).split()[1].decode()


def _file_public_b64(path: str) -> str | None:
    pub = Path(f"{path}.pub")
    if pub.is_file():
        parts = pub.read_text(errors="replace").split()
        return parts[1] if len(parts) > 1 else None
    return None


def auth_sources(r: Resolved) -> list[AuthSource]:
    """ssh's key order: agent keys (with IdentitiesOnly, only those matching an IdentityFile
    or CertificateFile), then each IdentityFile, with its certificate first."""
    sources: list[AuthSource] = []
    files = [p for p in r.identity_files if Path(p).is_file()]
    certs = {b64: p for p in r.certificate_files if (b64 := _certificate_key_b64(p))}
    wanted = {b64 for p in files if (b64 := _file_public_b64(p))} | set(certs)
    if r.use_agent:
        agent = paramiko.Agent()
        # The agent stays connected while keys from it may sign; it ends with the process.
        for key in agent.get_keys():
            if r.identities_only and _public_b64(key) not in wanted:
                continue
            if _public_b64(key) in certs:
                with_cert = paramiko.AgentKey(key.agent, key.asbytes())
                with_cert.load_certificate(certs[_public_b64(key)])
                sources.append(InMemoryPrivateKey(r.user, with_cert))
            sources.append(InMemoryPrivateKey(r.user, key))
    for path in files:
        try:
            key = paramiko.PKey.from_path(path)  # loads <path>-cert.pub too, as ssh does
        except paramiko.PasswordRequiredException:
            continue  # ssh would prompt; tbctl cannot, the agent may hold it
        except (paramiko.SSHException, ValueError, OSError):
            continue  # ssh skips keys it cannot load, too
        cert = certs.get(_public_b64(key))
        if cert:
            key.load_certificate(cert)
        if key.public_blob is not None:
            sources.append(InMemoryPrivateKey(r.user, key))
            key = paramiko.PKey.from_path(path)
            key.public_blob = None
        sources.append(InMemoryPrivateKey(r.user, key))
    return sources


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

    def _lookup(self) -> Resolved:
        return resolve(self.spec, self.ssh_config)

    def _socket(self, r: Resolved, where: str) -> Any:
        """The byte stream to the host's sshd: ProxyJump, ProxyCommand, or TCP."""
        if r.proxy_jump:
            return self._jump(r.proxy_jump, r.hostname, r.port)
        if r.proxy_command:
            # As OpenSSH: the command runs through the shell, exec'd so that closing the
            # connection ends it.
            return paramiko.ProxyCommand(shlex.join(["/bin/sh", "-c",
                                                     f"exec {r.proxy_command}"]))
        try:
            infos = socket.getaddrinfo(r.hostname, r.port, r.address_family,
                                       socket.SOCK_STREAM)
        except socket.gaierror:
            raise SshError(f"unknown host {self.name}: '{r.hostname}' does not resolve; "
                           "check the name or add a Host entry to your ssh config") from None
        last: OSError | None = None
        for family, kind, proto, _, address in infos:
            sock = socket.socket(family, kind, proto)
            sock.settimeout(r.connect_timeout)
            try:
                sock.connect(address)
                return sock
            except OSError as exc:
                sock.close()
                last = exc
        reason = (last.strerror if last and last.strerror else str(last)) or "no address"
        raise SshError(f"cannot reach {where}: {reason}")

    def open(self, sock: Any = None) -> Connection:
        r = self._lookup()
        where = f"{self.name} ({r.user}@{r.hostname}:{r.port})"
        client = paramiko.SSHClient()
        revoked: set[str] = set()
        for path in [*r.global_known_hosts, *r.user_known_hosts]:
            _load_known_hosts(client.get_host_keys(), path, revoked)
        record = Path(r.user_known_hosts[0]) if r.user_known_hosts else None
        accept = self.accept_new or r.strict_host_key_checking in ("accept-new", "no", "off",
                                                                   "false")
        client.set_missing_host_key_policy(_AcceptNew(record) if accept
                                           else paramiko.RejectPolicy())
        key_name, key_port = r.known_hosts_name
        try:
            try:
                if sock is None:
                    sock = self._socket(r, where)
                client.connect(key_name, port=key_port, username=r.user, sock=sock,
                               timeout=r.connect_timeout, banner_timeout=r.connect_timeout,
                               auth_timeout=r.connect_timeout,
                               auth_strategy=_Keys(auth_sources(r)))
            except BaseException:
                client.close()  # also ends a ProxyCommand's process
                if sock is not None:
                    sock.close()
                raise
        except SshError:
            raise
        except paramiko.BadHostKeyException:
            entry = key_name if key_port == 22 else f"[{key_name}]:{key_port}"
            raise SshError(f"host key of {where} does not match known_hosts: if the host was "
                           f"reinstalled, run: ssh-keygen -R '{entry}'"
                           f"{' -f ' + str(record) if record else ''}") from None
        except paramiko.AuthenticationException:
            raise SshError(f"authentication failed for {where}: load your key into ssh-agent "
                           "or set IdentityFile in your ssh config") from None
        except paramiko.SSHException as exc:
            if "known_hosts" in str(exc):
                entry = key_name if key_port == 22 else f"[{key_name}]:{key_port}"
                if _cert_authority_for(entry, [*r.user_known_hosts, *r.global_known_hosts]):
                    raise SshError(f"host key of {where} is vouched for only by a "
                                   "@cert-authority line, and tbctl cannot check host "
                                   "certificates: add the host's own key to known_hosts "
                                   f"(ssh-keyscan {r.hostname}, checked)") from None
                raise SshError(f"host key of {where} is unknown: check it with a plain ssh "
                               "login first, or pass --accept-new-host-keys") from None
            via = " through its ProxyCommand" if r.proxy_command else ""
            raise SshError(f"ssh to {where}{via} failed: {exc}") from None
        except (OSError, EOFError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise SshError(f"cannot reach {where}: {reason}") from None
        server_key = client.get_transport().get_remote_server_key()  # type: ignore[union-attr]
        if server_key.get_base64() in revoked:
            client.close()
            raise SshError(f"host key of {where} is marked @revoked in known_hosts: "
                           "refusing it, as ssh does")
        self.client = client
        return self

    def _jump(self, proxyjump: str, hostname: str, port: int) -> paramiko.Channel:
        previous: Connection | None = None
        for hop in proxyjump.split(","):
            conn = Connection(hop.strip(), self.ssh_config, self.accept_new)
            self.jumps.append(conn)
            if previous is None:
                conn.open()
            else:
                conn.open(sock=previous._channel_to(conn))
            previous = conn
        assert previous is not None
        return previous._direct_tcpip(hostname, port)

    def _channel_to(self, target: Connection) -> paramiko.Channel:
        r = target._lookup()
        return self._direct_tcpip(r.hostname, r.port)

    def _direct_tcpip(self, hostname: str, port: int) -> paramiko.Channel:
        assert self.client is not None
        transport = self.client.get_transport()
        assert transport is not None
        try:
            return transport.open_channel("direct-tcpip", (hostname, port), ("127.0.0.1", 0))
        except paramiko.ChannelException as exc:
            raise SshError(f"jump host {self.name} cannot reach {hostname}:{port}: "
                           f"{exc.text}") from None

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
