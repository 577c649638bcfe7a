# SPDX-License-Identifier: MIT
"""Resolve a host exactly as OpenSSH does, by asking it: `ssh -G [-F FILE] [-l U] [-p P] HOST`.

OpenSSH itself then applies Include, Match, Host patterns, /etc/ssh/ssh_config and its
defaults; tbctl reads the effective options it prints. tbctl honours the options that decide
where it connects, how it authenticates and which host keys it trusts; an option in effect
that it cannot honour is refused with one line (never silently ignored), and options that
only shape an interactive session (forwardings, TTY, escape characters, multiplexing) do not
apply to tbctl's own commands. docs/tbctl.md lists both.
"""

from __future__ import annotations

import getpass
import os
import re
import shlex
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tbctl.errors import SshConfigRefused, SshError
from tbctl.hostspec import HostSpec

SSH_G_TIMEOUT = 15.0
DEFAULT_CONNECT_TIMEOUT = 10.0
# Options whose values may repeat (ssh -G prints one line per value).
_MULTI = {"identityfile", "certificatefile", "localforward", "remoteforward", "dynamicforward",
          "sendenv", "setenv", "canonicaldomains"}
# What ssh -G prints for IdentityFile when the config names none: OpenSSH's defaults.
_DEFAULT_IDENTITIES = ("~/.ssh/id_rsa", "~/.ssh/id_ecdsa", "~/.ssh/id_ecdsa_sk",
                       "~/.ssh/id_ed25519", "~/.ssh/id_ed25519_sk", "~/.ssh/id_xmss",
                       "~/.ssh/id_dsa")
_NO = ("no", "false", "off")


# (ssh -G key, directive, is the value one tbctl cannot honour?, what it would need)
_RULES: tuple[tuple[str, str, Callable[[str], bool], str], ...] = (
    ("proxyusefdpass", "ProxyUseFdpass", lambda v: v not in _NO, "fd passing"),
    ("bindaddress", "BindAddress", lambda v: True, "binding the local address"),
    ("bindinterface", "BindInterface", lambda v: True, "binding the local interface"),
    ("pubkeyauthentication", "PubkeyAuthentication", lambda v: v in _NO,
     "tbctl authenticates with keys only"),
    ("hostbasedauthentication", "HostbasedAuthentication", lambda v: v not in _NO,
     "host-based authentication"),
    ("pkcs11provider", "PKCS11Provider", lambda v: v != "none", "PKCS#11 tokens"),
    ("knownhostscommand", "KnownHostsCommand", lambda v: v != "none",
     "host keys from a command"),
    ("revokedhostkeys", "RevokedHostKeys", lambda v: v != "none", "key revocation lists"),
    ("verifyhostkeydns", "VerifyHostKeyDNS", lambda v: v not in _NO, "SSHFP records"),
    ("canonicalizehostname", "CanonicalizeHostname", lambda v: v not in _NO,
     "host name canonicalization"),
    ("identityagent", "IdentityAgent",
     lambda v: v not in ("none", "SSH_AUTH_SOCK", "$SSH_AUTH_SOCK"),
     "an agent socket other than $SSH_AUTH_SOCK"),
)


@dataclass
class Resolved:
    """The effective options of one host, as `ssh -G` printed them (tokens expanded)."""

    alias: str  # the name given on the command line
    hostname: str
    port: int
    user: str
    identity_files: list[str] = field(default_factory=list)
    identities_explicit: bool = True  # False: the config named none, OpenSSH's defaults
    identities_only: bool = False
    certificate_files: list[str] = field(default_factory=list)
    user_known_hosts: list[str] = field(default_factory=list)
    global_known_hosts: list[str] = field(default_factory=list)
    strict_host_key_checking: str = "ask"
    host_key_alias: str | None = None
    proxy_command: str | None = None
    proxy_jump: str | None = None
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    address_family: int = socket.AF_UNSPEC
    use_agent: bool = True

    @property
    def known_hosts_name(self) -> tuple[str, int]:
        """(name, port) under which known_hosts holds this host's key (HostKeyAlias wins,
        and then without a port, as in OpenSSH)."""
        if self.host_key_alias:
            return self.host_key_alias, 22
        return self.hostname, self.port


def run_ssh_g(spec: HostSpec, config: Path | None) -> dict[str, list[str]]:
    command = ["ssh", "-G"]
    if config:
        command += ["-F", str(config)]
    if spec.user:
        command += ["-l", spec.user]
    if spec.port:
        command += ["-p", str(spec.port)]
    command += ["--", spec.host]  # "--": a host name never becomes an ssh option
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=SSH_G_TIMEOUT,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise SshError("the OpenSSH client (ssh) is not installed; tbctl reads the ssh "
                       "configuration through `ssh -G`: install openssh-client") from None
    except subprocess.TimeoutExpired:
        raise SshError(f"`ssh -G {spec.host}` did not answer within {SSH_G_TIMEOUT:.0f}s "
                       "(a Match exec in the ssh config?)") from None
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()
                 and not line.startswith("Pseudo-terminal")]
        why = lines[0] if lines else f"exit status {proc.returncode}"
        raise SshError(f"ssh refuses the configuration of {spec}: {why}")
    options: dict[str, list[str]] = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition(" ")
        options.setdefault(key.lower(), []).append(value)
    return options


def expand_tokens(value: str, tokens: dict[str, str], what: str) -> str:
    """OpenSSH's %-tokens (ssh_config(5) TOKENS); an unknown one is refused, not guessed."""
    def one(match: re.Match[str]) -> str:
        token = match.group(1)
        if token not in tokens:
            raise SshConfigRefused(f"{what} uses %{token}, which tbctl does not expand: write "
                                   "the value out in the ssh config")
        return tokens[token]

    return re.sub(r"%(.)", one, value)


def _path(value: str, tokens: dict[str, str], what: str) -> str:
    return os.path.expanduser(expand_tokens(value, tokens, what))


def _first(options: dict[str, list[str]], key: str) -> str | None:
    values = options.get(key)
    return values[0] if values else None


def refuse_unsupported(options: dict[str, list[str]], name: str) -> None:
    """One line for the first option in effect that would make tbctl connect, authenticate or
    trust keys differently from ssh."""
    def refuse(directive: str, value: str, why: str) -> None:
        raise SshConfigRefused(f"{name}: ssh config sets {directive} {value}, which tbctl "
                               f"cannot honour ({why}): remove it for this host or use "
                               "--ssh-config with a config without it")

    for key, directive, bad, why in _RULES:
        value = _first(options, key)
        if value is not None and bad(value if key == "identityagent" else value.lower()):
            refuse(directive, value, why)


def _is_security_key(path: str) -> bool:
    """FIDO (sk-) keys: paramiko has no FIDO support."""
    pub = Path(f"{path}.pub")
    if pub.is_file():
        return pub.read_text(errors="replace").lstrip().startswith("sk-")
    try:
        return b"sk-ssh-ed25519@openssh.com" in Path(path).read_bytes() \
            or b"sk-ecdsa-sha2-nistp256@openssh.com" in Path(path).read_bytes()
    except OSError:
        return False


def resolve(spec: HostSpec, config: Path | None) -> Resolved:
    options = run_ssh_g(spec, config)
    name = str(spec)
    refuse_unsupported(options, name)
    hostname = _first(options, "hostname") or spec.host
    port = int(_first(options, "port") or 22)
    user = _first(options, "user") or getpass.getuser()
    alias = _first(options, "hostkeyalias")
    tokens = {
        "%": "%", "h": hostname, "p": str(port), "r": user, "n": spec.host,
        "d": str(Path.home()), "u": getpass.getuser(), "i": str(os.getuid()),
        "l": socket.gethostname(), "L": socket.gethostname().split(".")[0],
        "k": alias or spec.host,
    }
    identities = options.get("identityfile", [])
    explicit = tuple(identities) != _DEFAULT_IDENTITIES
    identity_files = [_path(v, tokens, "IdentityFile") for v in identities]
    for path in identity_files:
        if explicit and Path(path).is_file() and _is_security_key(path):
            raise SshConfigRefused(f"{name}: IdentityFile {path} is a FIDO security key "
                                   "(sk-), which tbctl cannot use: give tbctl's hosts a "
                                   "non-sk key (ed25519, ecdsa or rsa)")
    user_known = [_path(v, tokens, "UserKnownHostsFile")
                  for v in shlex.split(_first(options, "userknownhostsfile") or "")]
    global_known = [_path(v, tokens, "GlobalKnownHostsFile")
                    for v in shlex.split(_first(options, "globalknownhostsfile") or "")]
    proxy = _first(options, "proxycommand")
    jump = _first(options, "proxyjump")
    timeout = _first(options, "connecttimeout")
    family = {"inet": socket.AF_INET, "inet6": socket.AF_INET6}.get(
        (_first(options, "addressfamily") or "any").lower(), socket.AF_UNSPEC)
    return Resolved(
        alias=spec.host, hostname=hostname, port=port, user=user,
        identity_files=identity_files, identities_explicit=explicit,
        identities_only=(_first(options, "identitiesonly") or "no").lower() in ("yes", "true"),
        certificate_files=[_path(v, tokens, "CertificateFile")
                           for v in options.get("certificatefile", [])],
        user_known_hosts=[p for p in user_known if p != "none"],
        global_known_hosts=[p for p in global_known if p != "none"],
        strict_host_key_checking=(_first(options, "stricthostkeychecking") or "ask").lower(),
        host_key_alias=alias,
        proxy_command=expand_tokens(proxy, tokens, "ProxyCommand")
        if proxy and proxy != "none" else None,
        proxy_jump=jump if jump and jump != "none" else None,
        connect_timeout=float(timeout) if timeout and timeout != "none"
        else DEFAULT_CONNECT_TIMEOUT,
        address_family=family,
        use_agent=(_first(options, "identityagent") or "SSH_AUTH_SOCK") != "none",
    )
