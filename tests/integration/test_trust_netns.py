# SPDX-License-Identifier: MIT
"""Running as root on a host other users share: nothing they plant is ever executed; a state
directory that is a mount point survives unpair; a LAN link is not a cable."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import tbctl
from tbctl.zipapp import agent_zipapp
from tests.integration.test_errors_netns import one_line_error
from tests.integration.test_pair_netns import STATE, run_unit
from tests.output import json_result

pytestmark = pytest.mark.netns

NOBODY = 65534
REPO = Path(tbctl.__file__).resolve().parents[1]


def evil_zipapp(marker: Path) -> bytes:
    """A zipapp that records that it ran (as whoever ran it) and answers like an agent."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("__main__.py", (
            "import os\n"
            f"open({str(marker)!r}, 'a').write('ran as uid %d\\n' % os.geteuid())\n"
            "print('{\"protocol\": 1, \"ok\": false, \"error\": \"planted\"}')\n"))
    return buffer.getvalue()


def plant(path: Path, data: bytes, owner: int = NOBODY, mode: int = 0o755) -> None:
    """A file another local user made (owned by them, as if they had written it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chown(path, owner, owner)
    path.chmod(mode)


def evil_bin(cluster, name: str, marker: Path, owner: int, mode: int) -> Path:
    """A directory on the host's PATH holding a `name` that records it ran, then behaves."""
    directory = cluster.workdir / f"evil-{name}-{owner}-{mode:o}"
    directory.mkdir()
    real = "/usr/bin/python3" if name == "python3" else None
    body = f'exec {real} "$@"' if real else 'echo "tbctl, version 0.1.0"'
    plant(directory / name, f"#!/bin/sh\necho ran >> {marker}\n{body}\n".encode())
    os.chown(directory, owner, owner)
    directory.chmod(mode)
    return directory


def test_planted_agent_and_tbctl_are_never_run(pair_of_hosts):
    """Today's agent path /tmp/tbctl-agent-<hash>.pyz (and others like it), and a tbctl of the
    right version on the SSH user's PATH, planted by another user: pair and status run the
    genuine agent only."""
    cluster = pair_of_hosts
    a, b = cluster.hosts
    marker = cluster.workdir / "planted-code-ran"
    data, digest = agent_zipapp()
    planted = [Path(f"/tmp/tbctl-agent-{digest[:16]}.pyz"), Path("/tmp/tbctl-agent.pyz"),
               Path(f"/var/tmp/tbctl-agent-{digest[:16]}.pyz"), Path("/tmp/tbctl.pyz")]
    try:
        for path in planted:
            plant(path, evil_zipapp(marker))
        directory = evil_bin(cluster, "tbctl", marker, NOBODY, 0o755)
        for host in (a, b):
            host.extra_env["PATH"] = f"{directory}:{host.extra_env['PATH']}"
            cluster.restart_sshd(host)
        result = cluster.tbctl("pair", "--yes", "--json", "tbt-a", "tbt-b")
        status = cluster.tbctl("status", "--json", "tbt-a", "tbt-b")
    finally:
        for path in planted:
            path.unlink(missing_ok=True)
    assert not marker.exists(), f"planted code ran: {marker.read_text()}"
    assert result.returncode == 0, result.stderr
    assert status.returncode == 0, status.stderr
    for host in (a, b):
        (persisted,) = (host.root / STATE).glob("tbctl-*.pyz")
        assert persisted.read_bytes() == data
        assert persisted.name == f"tbctl-{digest}.pyz"
        assert persisted.stat().st_uid == 0 and persisted.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(("owner", "mode"), [(NOBODY, 0o755), (0, 0o777)],
                         ids=["owned-by-another-user", "world-writable-dir"])
def test_untrusted_python_is_refused(pair_of_hosts, owner, mode):
    """The python3 first on PATH lives where another user can replace it: tbctl does not run
    it (not even for its version) and says so in one line."""
    cluster = pair_of_hosts
    b = cluster.hosts[1]
    marker = cluster.workdir / "planted-python-ran"
    directory = evil_bin(cluster, "python3", marker, owner, mode)
    b.extra_env["PATH"] = f"{directory}:{b.extra_env['PATH']}"
    cluster.restart_sshd(b)
    before = [h.snapshot() for h in cluster.hosts]
    one_line_error(cluster.tbctl("pair", "--yes", "tbt-a", "tbt-b"), 4,
                   f"tbt-b: refusing to run {directory}/python3 as root",
                   "writable by other users")
    assert not marker.exists()
    assert [h.snapshot() for h in cluster.hosts] == before


def test_tampered_persisted_agent_is_refused_at_boot(pair_of_hosts):
    cluster = pair_of_hosts
    a = cluster.hosts[0]
    assert cluster.tbctl("pair", "--yes", "tbt-a", "tbt-b").returncode == 0
    unit = (a.root / "etc/systemd/system/tbctl-reapply.service").read_text()
    exec_start = next(x for x in unit.splitlines() if x.startswith("ExecStart="))
    archive = next(w for w in exec_start.split() if w.endswith(".pyz"))
    marker = cluster.workdir / "tampered-agent-ran"
    (a.root / archive.lstrip("/")).write_bytes(evil_zipapp(marker))
    a.run("ip", "addr", "flush", "dev", "thunderbolt0")
    status, out = run_unit(a)
    assert status != 0, out
    assert not marker.exists()
    assert "inet " not in a.run("ip", "-4", "addr", "show", "dev", "thunderbolt0")


def test_unpair_keeps_a_mounted_state_dir(pair_of_hosts):
    """NixOS with impermanence: /var/lib/tbctl is a mount point. unpair removes only what
    tbctl created in it; `--yes` is accepted as by pair."""
    cluster = pair_of_hosts
    a = cluster.hosts[0]
    state_dir = a.root / STATE
    state_dir.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0700,size=8m", "tbctl-state",
                    str(state_dir)], check=True)
    try:
        cluster.restart_sshd(a)  # its mount namespace is copied when it starts
        assert cluster.tbctl("pair", "--yes", "tbt-a", "tbt-b").returncode == 0
        assert a.run("sh", "-c", f"ls {state_dir}").split()
        result = cluster.tbctl("unpair", "--yes", "--json", "tbt-a", "tbt-b")
        assert result.returncode == 0, result.stderr
        assert json_result(result, "unpair")["removed_a"]
        assert a.run("findmnt", "-n", "-o", "TARGET", str(state_dir)).strip() == str(state_dir)
        assert a.run("sh", "-c", f"ls -A {state_dir}").split() == []
    finally:
        cluster.stop_sshd(a)
        subprocess.run(["umount", "-l", str(state_dir)], check=False)


def test_links_on_a_switch_are_refused(make_cluster):
    """Three hosts on one bridge (tbt-c is the switch): tbt-a's and tbt-b's eth0 see each
    other, but not only each other, so `--links eth0` is no cable."""
    cluster = make_cluster(3)
    a, b, c = cluster.hosts
    cluster.cable(a, c, "eth0", "port-a")
    cluster.cable(b, c, "eth0", "port-b")
    c.run("ip", "link", "add", "br0", "type", "bridge", "forward_delay", "0")
    for port in ("port-a", "port-b"):
        c.run("ip", "link", "set", port, "master", "br0")
    c.run("ip", "link", "set", "br0", "up")
    cluster.wait_link_local()
    before = [h.snapshot() for h in (a, b)]
    one_line_error(cluster.tbctl("pair", "--yes", "--links", "eth0", "tbt-a", "tbt-b"), 5,
                   "refusing --links eth0: eth0 on tbt-a sees 2 neighbours")
    assert [h.snapshot() for h in (a, b)] == before
    # The link tbctl reached the host on is refused the same way.
    one_line_error(cluster.tbctl("pair", "--yes", "--links", "mgmt0", "tbt-a", "tbt-b"), 5,
                   "refusing --links mgmt0: mgmt0 on tbt-a carries the SSH session")


@pytest.mark.parametrize("owner", [0, NOBODY], ids=["root-owned", "owned-by-another-user"])
def test_host_without_python3_uses_a_trusted_installed_tbctl(pair_of_hosts, owner):
    """No python3 on PATH (NixOS without a system python): an installed tbctl of the same
    version runs the agent, if root owns it; one another user could have written is refused."""
    cluster = pair_of_hosts
    b = cluster.hosts[1]
    bin_dir = cluster.workdir / "no-python-bin"
    bin_dir.mkdir()
    for directory in ("/usr/sbin", "/usr/bin"):
        for entry in Path(directory).iterdir():
            if not entry.name.startswith("python") and not (bin_dir / entry.name).exists():
                (bin_dir / entry.name).symlink_to(entry)
    (bin_dir / "tbctl").unlink(missing_ok=True)
    plant(bin_dir / "tbctl", f'#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m tbctl "$@"\n'
          .encode(), owner=owner)
    b.extra_env["PATH"] = str(bin_dir)
    cluster.restart_sshd(b)
    result = cluster.tbctl("pair", "--yes", "--json", "tbt-a", "tbt-b")
    if owner != 0:
        one_line_error(result, 4, f"refusing to run {bin_dir}/tbctl as root")
        return
    assert result.returncode == 0, result.stderr
    status = json_result(cluster.tbctl("status", "--json", "tbt-b"), "status")["hosts"][0]
    assert len(status["pairings"]) == 1
    unit = (b.root / "etc/systemd/system/tbctl-reapply.service").read_text()
    assert f"ExecStart={bin_dir}/tbctl node reapply" in unit and "ExecStartPre" not in unit
    assert not list((b.root / STATE).glob("*.pyz"))
