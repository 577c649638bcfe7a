# SPDX-License-Identifier: MIT
"""tbctl.toml: parsed into an Inventory; every bad field is one line naming file and field,
exit 2, before anything connects."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tbctl.errors import EXIT_USAGE, UsageError
from tbctl.inventory import Inventory, find_inventory, load_inventory, parse_inventory
from tests.output import json_result, one_line_error

P = Path("tbctl.toml")


def test_full_inventory():
    inv = parse_inventory(P, """
hosts = ["strix-a", "root@strix-b:2222", "strix-c"]
pool = "10.77.0.0/24"
transport = "rxe"
mtu = 9000
topology = [["strix-a", "root@strix-b:2222"], ["strix-c", "strix-a"]]
[links]
strix-a = ["usb4net0", "enp1s0"]
""")
    assert inv == Inventory(P, ("strix-a", "root@strix-b:2222", "strix-c"), "10.77.0.0/24",
                            "rxe", 9000, (("strix-a", "root@strix-b:2222"),
                                          ("strix-c", "strix-a")),
                            {"strix-a": ("usb4net0", "enp1s0")})
    assert inv.links_of("strix-a") == ("usb4net0", "enp1s0") and inv.links_of("strix-c") == ()


def test_defaults():
    inv = parse_inventory(P, 'hosts = ["a", "b"]\n')
    assert (inv.pool, inv.transport, inv.mtu, inv.topology) == ("10.254.0.0/16", "auto",
                                                                None, None)


@pytest.mark.parametrize(("text", "phrase"), [
    ("hosts = [", "tbctl.toml: not valid TOML: "),
    ('host = ["a", "b"]', "tbctl.toml: host: unknown field (known: hosts, pool"),
    ('pool = "10.0.0.0/8"', "hosts: missing"),
    ('hosts = "a b"', "hosts: must be a list of strings"),
    ('hosts = ["a"]', "hosts: names 1 host(s); a cluster needs at least two"),
    ('hosts = ["a", "a"]', "hosts: a is listed twice"),
    ('hosts = ["a", "b:99999"]', "hosts: bad host 'b:99999': port 99999 is not 1-65535"),
    ('hosts = ["a", "b"]\npool = "10.0.0.300/24"', "pool: '10.0.0.300/24' is not an IPv4"),
    ('hosts = ["a", "b"]\npool = "10.0.0.1/32"', "pool: 10.0.0.1/32 is smaller than one /31"),
    ('hosts = ["a", "b"]\npool = 10', "pool: must be a string"),
    ('hosts = ["a", "b"]\ntransport = "roce"', "transport: 'roce' is not one of auto, "),
    ('hosts = ["a", "b"]\nmtu = 100', "mtu: 100 is not a number 1280-65535"),
    ('hosts = ["a", "b"]\nmtu = true', "mtu: True is not a number"),
    ('hosts = ["a", "b"]\ntopology = [["a", "c"]]', "topology: c is not one of hosts"),
    ('hosts = ["a", "b"]\ntopology = [["a", "a"]]', "joins a host to itself"),
    ('hosts = ["a", "b"]\ntopology = [["a", "b"], ["b", "a"]]', "is listed twice"),
    ('hosts = ["a", "b"]\ntopology = ["a", "b"]', "topology: 'a' is not a pair of host"),
    ('hosts = ["a", "b"]\ntopology = []', "topology: must be a list of host pairs"),
    ('hosts = ["a", "b"]\n[links]\nc = ["x"]', "links.c: is not one of hosts"),
    ('hosts = ["a", "b"]\n[links]\na = ["x/y"]', "links.a: 'x/y' is not an interface name"),
    ('hosts = ["a", "b"]\n[links]\na = "x"', "links.a: must be a list of strings"),
])
def test_bad_fields_are_one_line(text, phrase):
    with pytest.raises(UsageError) as caught:
        parse_inventory(P, text)
    message = str(caught.value)
    assert phrase in message and "\n" not in message
    assert caught.value.exit_code == EXIT_USAGE


def test_find_and_load(tmp_path):
    assert find_inventory(None, tmp_path) is None
    (tmp_path / "tbctl.toml").write_text('hosts = ["a", "b"]\n')
    assert find_inventory(None, tmp_path) == tmp_path / "tbctl.toml"
    assert find_inventory("other.toml", tmp_path) == Path("other.toml")
    assert load_inventory(tmp_path / "tbctl.toml").hosts == ("a", "b")
    with pytest.raises(UsageError, match="cannot read inventory .*missing.toml: No such file"):
        load_inventory(tmp_path / "missing.toml")
    (tmp_path / "latin1.toml").write_bytes(b"hosts = ['\xe9']\n")
    with pytest.raises(UsageError, match="not valid TOML"):
        load_inventory(tmp_path / "latin1.toml")


def tbctl(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    return subprocess.run([sys.executable, "-m", "tbctl", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=60)


def test_cli_usage(tmp_path):
    """Refused with exit 2 before any host is contacted (the hosts do not exist)."""
    (tmp_path / "tbctl.toml").write_text('hosts = ["nowhere-a", "nowhere-b"]\nmtu = 7\n')
    bad = tbctl("pair", "--yes", "--json", cwd=tmp_path)
    one_line_error(bad, 2, "tbctl.toml: mtu: 7 is not a number 1280-65535")
    assert '"code": "usage"' in bad.stdout
    one_line_error(tbctl("status", "--inventory", "no.toml", cwd=tmp_path), 2,
                   "cannot read inventory no.toml")
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(tbctl("pair", cwd=empty), 2, "name two hosts, or write a tbctl.toml here")
    one_line_error(tbctl("unpair", "a", cwd=empty), 2, "missing HOST_B: name two hosts (or none")
    one_line_error(tbctl("pair", "a", "b", "c", cwd=empty), 2, "3 hosts named")
    one_line_error(tbctl("pair", "--inventory", "x.toml", "a", "b", cwd=empty), 2,
                   "name hosts or give --inventory, not both")
    (tmp_path / "tbctl.toml").write_text('hosts = ["nowhere-a", "nowhere-b"]\n')
    one_line_error(tbctl("pair", "--links", "eth9", cwd=tmp_path), 2,
                   "with an inventory, list them under [links]")


def test_doctor_runs_here_without_a_host(tmp_path):
    result = tbctl("doctor", "--json", cwd=tmp_path)
    assert result.returncode in (0, 1), result.stderr
    report = json_result(result, "doctor")
    assert report["hostname"] == socket.gethostname()
    assert {f["check"] for f in report["findings"]} >= {"kernel"}
