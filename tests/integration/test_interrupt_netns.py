# SPDX-License-Identifier: MIT
"""Ctrl-C during `tbctl pair`: exit 130 with one line, and a half-applied pairing undone."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.output import one_line_error

pytestmark = pytest.mark.netns

STATE = "var/lib/tbctl/state.json"


def _start_pair(cluster, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tbctl", "pair", "--yes", "tbt-a", "tbt-b"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TBCTL_SSH_CONFIG": str(cluster.ssh_config), **env})


def _interrupt_when(proc: subprocess.Popen, ready, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the moment to interrupt never came"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)


def test_ctrl_c_between_the_applies_rolls_back_the_first(pair_of_hosts):
    cluster = pair_of_hosts
    a, b = cluster.hosts
    before = [h.snapshot() for h in (a, b)]
    # The hook holds tbctl between A's apply and B's for a minute: only Ctrl-C ends it.
    proc = _start_pair(cluster, {"TBCTL_TEST_PAUSE_BETWEEN_APPLIES": "60"})
    _interrupt_when(proc, lambda: (a.root / STATE).exists())
    sent = time.monotonic()
    out, err = proc.communicate(timeout=30)
    print(f"exit {time.monotonic() - sent:.2f}s after SIGINT")
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    one_line_error(result, 130, "interrupted", "rolled back tbt-a", "neither host is changed")
    assert "Traceback" not in err and out == ""
    assert not (a.root / STATE).exists() and not (b.root / STATE).exists()
    assert [h.snapshot() for h in (a, b)] == before
    # Nothing was left behind: pairing again works as on fresh hosts.
    again = cluster.tbctl("pair", "--yes", "tbt-a", "tbt-b")
    assert again.returncode == 0, again.stderr


def test_ctrl_c_while_connecting_exits_at_once(pair_of_hosts):
    """A host that swallows the connection (no banner, ever) does not hold up Ctrl-C."""
    cluster = pair_of_hosts
    a = cluster.hosts[0]
    # nc in the host's namespace accepts and never answers: paramiko waits for a banner.
    silent = subprocess.Popen(["ip", "netns", "exec", a.ns, "python3", "-c",
                               "import socket,time; s=socket.create_server(('0.0.0.0',2222)); "
                               "c=s.accept(); time.sleep(120)"])
    try:
        with cluster.ssh_config.open("a") as f:
            f.write(f"\nHost tbt-silent\n  HostName {a.mgmt_ip}\n  Port 2222\n")
        proc = subprocess.Popen(
            [sys.executable, "-m", "tbctl", "pair", "--yes", "tbt-silent", "tbt-b"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "TBCTL_SSH_CONFIG": str(cluster.ssh_config)})
        _interrupt_when(proc, lambda: bool(a.run("ss", "-Htn", "state", "established",
                                                  "sport = :2222", check=False).strip()))
        out, err = proc.communicate(timeout=30)
    finally:
        silent.kill()
        silent.wait()
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    one_line_error(result, 130, "interrupted")


def test_ctrl_c_during_the_second_apply_undoes_both(pair_of_hosts):
    """Ctrl-C while B's apply is running: that apply is let finish (stopping it half way
    would leave B half changed), then both hosts are rolled back."""
    cluster = pair_of_hosts
    a, b = cluster.hosts
    before = [h.snapshot() for h in (a, b)]
    # B's `ip addr replace` takes 2 s and leaves a mark when it starts: the moment to press.
    slow = cluster.workdir / "slow-ip"
    slow.mkdir()
    mark = cluster.workdir / "b-is-applying"
    (slow / "ip").write_text(f"#!/bin/sh\ncase \"$*\" in *'addr replace'*) touch {mark}; "
                             f"sleep 2;; esac\nexec {shutil.which('ip')} \"$@\"\n")
    (slow / "ip").chmod(0o755)
    b.extra_env["PATH"] = f"{slow}:{b.extra_env['PATH']}"
    cluster.restart_sshd(b)
    proc = _start_pair(cluster, {})
    _interrupt_when(proc, mark.exists)
    out, err = proc.communicate(timeout=60)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    one_line_error(result, 130, "interrupted", "rolled back tbt-a, tbt-b")
    assert not (a.root / STATE).exists() and not (b.root / STATE).exists()
    assert [h.snapshot() for h in (a, b)] == before
