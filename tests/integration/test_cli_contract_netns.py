# SPDX-License-Identifier: MIT
"""The scripting contract on real hosts: with --json stdout is one envelope valid against
`tbctl schema` for every command, success or error; bad input is one line and exit 2 before
anything connects; paramiko never prints tracebacks; non-root says so in one line."""

from __future__ import annotations

import json
import os
import pty
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from tests.output import envelope, json_result, one_line_error

pytestmark = pytest.mark.netns


def test_every_command_prints_one_envelope(pair_of_hosts, tmp_path):
    cluster = pair_of_hosts
    dry = json_result(cluster.tbctl("pair", "--dry-run", "--json", "tbt-a", "tbt-b"), "pair")
    paired = cluster.tbctl("pair", "--yes", "--json", "tbt-a", "tbt-b")
    assert paired.returncode == 0, paired.stderr
    applied = json_result(paired, "pair")
    # A dry run and an apply answer in the same shape; the dry run leaves observations null.
    assert dry.keys() == applied.keys()
    assert [c.keys() for c in dry["cables"]] == [c.keys() for c in applied["cables"]]
    assert dry["dry_run"] and dry["verified"] is None
    assert all(c["ping_rtt_us"] is None for c in dry["cables"])
    assert [(c["address_a"], c["address_b"]) for c in dry["cables"]] == \
        [(c["address_a"], c["address_b"]) for c in applied["cables"]]
    again = json_result(cluster.tbctl("pair", "--yes", "--json", "tbt-a", "tbt-b"), "pair")
    assert again["already_paired"] and again.keys() == applied.keys()

    status = json_result(cluster.tbctl("status", "--json", "tbt-a", "tbt-b"), "status")
    assert [h["name"] for h in status["hosts"]] == ["tbt-a", "tbt-b"]
    local_root = tmp_path / "local-root"
    local_root.mkdir()
    local = json_result(cluster.tbctl("status", "--json", env={"TBCTL_ROOT": str(local_root)}),
                        "status")
    assert local["hosts"][0]["pairings"] == []
    doctor = cluster.tbctl("doctor", "--json", "tbt-a")
    assert {f["check"] for f in json_result(doctor, "doctor")["findings"]} >= {"kernel"}
    env = json_result(cluster.tbctl("env", "--json", "tbt-a", "tbt-b"), "env")
    assert [h["host"] for h in env["hosts"]] == ["tbt-a", "tbt-b"]
    out = tmp_path / "envs"
    files = json_result(cluster.tbctl("env", "--json", "--out", str(out), "tbt-a", "tbt-b"),
                        "env")
    assert [Path(h["file"]).name for h in files["hosts"]] == ["tbt-a.env", "tbt-b.env"]
    rendered = json_result(cluster.tbctl("render-host-files", "--json", "--out",
                                         str(tmp_path / "tree")), "render-host-files")
    assert all(Path(f).is_file() for f in rendered["files"])
    unpaired = json_result(cluster.tbctl("unpair", "--yes", "--json", "tbt-a", "tbt-b"),
                           "unpair")
    assert unpaired["removed_a"] and unpaired["removed_b"]

    schema = cluster.tbctl("schema")
    assert schema.returncode == 0 and json.loads(schema.stdout)["$defs"]["PairResult"]


@pytest.mark.parametrize("args, code, error", [
    (("pair", "tbt-a", "tbt-nowhere"), 3, "ssh"),
    (("pair", "--pool", "10.0.0.0/33", "tbt-a", "tbt-b"), 2, "usage"),
    (("pair", "tbt-a", "tbt-a"), 5, "plan"),
    (("env", "tbt-a", "tbt-b"), 5, "plan"),
    (("status", "bad@@host"), 2, "usage"),
    (("doctor", "--links", "no/such", "tbt-a"), 2, "usage"),
    (("unpair", "--bogus", "tbt-a", "tbt-b"), 2, "usage"),
])
def test_errors_are_envelopes(pair_of_hosts, args, code, error):
    cluster = pair_of_hosts
    with cluster.ssh_config.open("a") as f:
        f.write("\nHost tbt-nowhere\n  HostName 10.255.255.254\n  ConnectTimeout 1\n")
    result = cluster.tbctl(*args[:1], "--json", *args[1:])
    message = one_line_error(result, code)
    data = envelope(result)
    assert not data["ok"] and data["error"]["code"] == error
    assert message == f"tbctl: error: {data['error']['message']}"


def test_prompt_on_a_terminal_keeps_stdout_json(pair_of_hosts):
    """Without --yes on a terminal, the plan and the question go to stderr."""
    cluster = pair_of_hosts
    leader, follower = pty.openpty()
    os.write(leader, b"n\n")
    try:
        result = subprocess.run(
            [sys.executable, "-m", "tbctl", "pair", "--json", "tbt-a", "tbt-b"],
            stdin=follower, capture_output=True, text=True, timeout=120,
            env={**os.environ, "TBCTL_SSH_CONFIG": str(cluster.ssh_config)})
    finally:
        os.close(follower)
        os.close(leader)
    assert "Apply this plan" in result.stderr
    data = envelope(result)
    assert data["error"]["code"] == "plan" and "declined" in data["error"]["message"]
    assert result.returncode == 5


def test_usage_is_checked_before_connecting(make_cluster):
    """Exit 2 for a bad --pool/--ssh-config/--mtu/--links/--state-dir even though the
    hosts cannot be reached (connecting first would end in exit 3)."""
    cluster = make_cluster(1)
    for bad in (["--pool", "10.1.2.0/40"], ["--pool", "fe80::/64"], ["--mtu", "70000"],
                ["--ssh-config", "/nonexistent"], ["--links", "a b"],
                ["--state-dir", "relative/dir"], ["--transport", "carrier-pigeon"]):
        result = cluster.tbctl("pair", *bad, "unreachable-a.invalid", "unreachable-b.invalid")
        one_line_error(result, 2, bad[0])
    one_line_error(cluster.tbctl("pair", "-x", "a", "b"), 2, "No such option")
    one_line_error(cluster.tbctl("pair", "only-one-host"), 2, "HOST_B")


@pytest.fixture
def garbage_server():
    """A TCP server that answers every connection with a line that is not an SSH banner."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def test_garbage_banner_is_one_line(pair_of_hosts, garbage_server):
    cluster = pair_of_hosts
    with cluster.ssh_config.open("a") as f:
        f.write(f"\nHost tbt-http\n  HostName 127.0.0.1\n  Port {garbage_server}\n"
                f"  IdentityFile {cluster.key}\n  UserKnownHostsFile {cluster.known_hosts}\n")
    result = cluster.tbctl("pair", "--yes", "tbt-http", "tbt-b")
    one_line_error(result, 3, "tbt-http", "banner")
    assert "Traceback" not in result.stderr


def _reachable_by_others(path: Path) -> bool:
    return all(os.stat(p).st_mode & 0o001 for p in [path, *path.parents])


def test_status_as_non_root_says_so():
    """A state file only root may read (as pair leaves it): one line, exit 4."""
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to another user")
    work = Path(tempfile.mkdtemp(prefix="tbctl-nonroot-"))
    try:
        work.chmod(0o755)
        state = work / "root/var/lib/tbctl"
        state.mkdir(parents=True)
        (state / "state.json").write_text('{"protocol": 1, "pairings": {}, "files": {}}\n')
        (state / "state.json").chmod(0o600)
        prefix = Path(sys.prefix).resolve()
        command = (f"setpriv --reuid 65534 --regid 65534 --clear-groups env "
                   f"TBCTL_ROOT={work}/root HOME=/tmp PYTHONPATH={Path.cwd()} "
                   f"{prefix}/bin/python3 -m tbctl status")
        if not _reachable_by_others(prefix):
            # This python lives under a private directory (pyenv in /root): in a mount
            # namespace of its own, a world-readable skeleton over the top directory holds
            # just the python tree, bind-mounted read-only.
            top = Path("/", prefix.parts[1])
            shadow = work / "shadow"
            (shadow / prefix.relative_to("/")).mkdir(parents=True)
            for d in [shadow, *(shadow / prefix.relative_to("/")).parents]:
                if d.is_relative_to(shadow):
                    d.chmod(0o755)
            command = (f"set -e; mount --bind -o ro {prefix} {shadow}{prefix}; "
                       f"mount --rbind {shadow}{top} {top}; exec {command}")
        result = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                 command], capture_output=True, text=True, timeout=60)
    finally:
        shutil.rmtree(work)
    one_line_error(result, 4, "needs root", "sudo tbctl status")


STEPS = ["tbctl: connecting to tbt-a, tbt-b", "tbctl: probing", "tbctl: neighbour discovery",
         "tbctl: applying on tbt-a", "tbctl: applying on tbt-b", "tbctl: checking the cables"]


def test_progress_one_line_per_step(pair_of_hosts):
    """Plain lines when stderr is not a terminal; rich's status line when it is."""
    cluster = pair_of_hosts
    plain = cluster.tbctl("pair", "--yes", "--json", "tbt-a", "tbt-b")
    assert plain.returncode == 0, plain.stderr
    assert plain.stderr.splitlines() == STEPS
    assert cluster.tbctl("unpair", "tbt-a", "tbt-b").returncode == 0

    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "tbctl", "pair", "--yes", "--json", "tbt-a",
                             "tbt-b"], stdout=subprocess.PIPE, stderr=follower, text=True,
                            env={**os.environ, "TBCTL_SSH_CONFIG": str(cluster.ssh_config),
                                 "TERM": "xterm"})
    os.close(follower)
    terminal = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        terminal += chunk
    os.close(leader)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and envelope(subprocess.CompletedProcess(proc.args, 0, out, ""))
    text = terminal.decode(errors="replace")
    assert "probing" in text and "applying on tbt-b" in text
    assert "tbctl: probing" not in text  # the spinner, not plain lines
