# SPDX-License-Identifier: MIT
"""Host resolution through the real `ssh -G` (no connection is made): what OpenSSH decides
is what tbctl uses, and what tbctl cannot honour is refused in one line."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from tbctl.errors import SshConfigRefused, SshError
from tbctl.hostspec import parse_host
from tbctl.sshconfig import expand_tokens, resolve

pytestmark = pytest.mark.skipif(not shutil.which("ssh"), reason="needs the OpenSSH client")


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ssh_config"
    path.write_text(text)
    return path


def test_include_match_and_tokens(tmp_path):
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d/a.conf").write_text(
        "Host strix-*\n  User admin\n  IdentityFile %d/keys/%r@%h\n  IdentitiesOnly yes\n"
        "  CertificateFile ~/certs/%n.pub\n  HostKeyAlias strix-alias\n")
    path = config(tmp_path, f"Include {tmp_path}/conf.d/*.conf\n"
                            "Host strix-a\n  HostName 192.0.2.10\n  Port 2200\n"
                            "  ProxyCommand ip netns exec x nc %h %p # %%\n")
    r = resolve(parse_host("strix-a"), path)
    assert (r.hostname, r.port, r.user) == ("192.0.2.10", 2200, "admin")
    assert r.identity_files == [str(Path.home() / "keys/admin@192.0.2.10")]
    assert r.certificate_files == [str(Path.home() / "certs/strix-a.pub")]
    assert r.identities_only and r.host_key_alias == "strix-alias"
    assert r.known_hosts_name == ("strix-alias", 22)
    assert r.proxy_command == "ip netns exec x nc 192.0.2.10 2200 # %"
    # The command line wins over the config, as with ssh -l / -p.
    r = resolve(parse_host("root@strix-a:23"), path)
    assert (r.user, r.port) == ("root", 23)


def test_defaults_and_options(tmp_path):
    path = config(tmp_path, "Host plain\n  AddressFamily inet\n  ConnectTimeout 4\n"
                            "  StrictHostKeyChecking accept-new\n  ProxyJump hop1,hop2\n"
                            "  UserKnownHostsFile /x/known /y/known\n")
    r = resolve(parse_host("plain"), path)
    assert not r.identities_explicit and r.address_family == socket.AF_INET
    assert r.connect_timeout == 4 and r.strict_host_key_checking == "accept-new"
    assert r.proxy_jump == "hop1,hop2" and r.proxy_command is None
    assert r.user_known_hosts == ["/x/known", "/y/known"]
    assert r.known_hosts_name == ("plain", 22)


@pytest.mark.parametrize("line", ["BindAddress 127.0.0.1", "ProxyUseFdpass yes",
                                  "IdentityAgent /tmp/other.sock", "CanonicalizeHostname yes",
                                  "VerifyHostKeyDNS yes", "ProxyCommand nc %h %Z"])
def test_refused(tmp_path, line):
    path = config(tmp_path, f"Host odd\n  {line}\n")
    with pytest.raises(SshConfigRefused) as refused:
        resolve(parse_host("odd"), path)
    assert "\n" not in str(refused.value)
    assert refused.value.exit_code == 3 and refused.value.code == "ssh_config_unsupported"


def test_security_key_is_refused(tmp_path):
    key = tmp_path / "id_ed25519_sk"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    Path(f"{key}.pub").write_text("sk-ssh-ed25519@openssh.com AAAAGnNr user@host\n")
    path = config(tmp_path, f"Host fido\n  IdentityFile {key}\n")
    with pytest.raises(SshConfigRefused, match="FIDO"):
        resolve(parse_host("fido"), path)


def test_config_ssh_rejects(tmp_path):
    path = config(tmp_path, "Host x\n  NoSuchOption yes\n")
    with pytest.raises(SshError, match="Bad configuration option: nosuchoption"):
        resolve(parse_host("x"), path)


def test_a_host_is_never_an_option(tmp_path):
    """After "--" ssh takes it as a host name (and refuses it), never as -o ProxyCommand."""
    path = config(tmp_path, "")
    with pytest.raises(SshError, match="invalid characters"):
        resolve(parse_host("-oProxyCommand=true"), path)


def test_unknown_token():
    with pytest.raises(SshConfigRefused, match="%Z"):
        expand_tokens("nc %h %Z", {"h": "x"}, "ProxyCommand")
