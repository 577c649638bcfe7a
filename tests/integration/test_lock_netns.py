# SPDX-License-Identifier: MIT
"""The agent's per-host lock and intent journal, exercised on a netns host with real links.

Faults are injected from outside the product: each agent here runs in a wrapper process that
patches one of its functions (to dawdle, or to die with os._exit) before calling its main;
the agent itself has no hook for this.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import tbctl
from tbctl.hostfiles import render_host_files
from tests.output import json_result

pytestmark = pytest.mark.netns

REPO = Path(tbctl.__file__).resolve().parents[1]
STATE = "var/lib/tbctl"

WRAPPER = """
import os, sys, time
from tbctl.node import agent, net
from tests.output import json_result

fault = sys.argv[1]
if fault == "slow":
    # Widen the window between reading the state and writing it back.
    real_set_link = net.set_link
    def set_link(*args, **kwargs):
        time.sleep(1.0)
        return real_set_link(*args, **kwargs)
    net.set_link = set_link
elif fault == "die-before-files":
    # Like a SIGKILL or power loss after the links changed, before anything was recorded.
    def die(*args, **kwargs):
        os._exit(137)
    agent._write_host_files = die
elif fault == "die-before-forgetting":
    # Dies in the last unpair after the links were put back, before the files were.
    def die(*args, **kwargs):
        os._exit(137)
    agent._forget_host = die
sys.exit(agent.main(sys.argv[2:]))
"""


def start_agent(host, fault: str, *args: str, request: dict | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(
        ["ip", "netns", "exec", host.ns, "env", f"TBCTL_ROOT={host.root}",
         f"PYTHONPATH={REPO}", sys.executable, "-c", WRAPPER, fault, *args,
         "--state-dir", "/var/lib/tbctl"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(request) if request is not None else "")
    proc.stdin.close()
    return proc


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    assert proc.stdout is not None and proc.stderr is not None
    out, err = proc.stdout.read(), proc.stderr.read()
    return proc.wait(timeout=60), out + err


def apply_request(peer: str, link: str, address: str) -> dict:
    base = address.rsplit(".", 1)[0]
    return {
        "protocol": 1, "peer": {"host_id": peer, "name": peer}, "transport": "ip",
        "cables": [{"link": link, "peer_link": link, "address": address,
                    "peer_address": f"{base}.{int(address.rsplit('.', 1)[1]) + 1}",
                    "prefix": 31, "mtu": 1400, "rdma_device": None}],
        "modules": [],
        "files": render_host_files(state_dir="/var/lib/tbctl", tbctl_exec="/usr/bin/tbctl",
                                   modules=[]),
        "persist_agent": False,
    }


def test_concurrent_applies_take_turns(pair_of_hosts):
    """Two pairings applied at once on one host (or a hotplug re-apply during an apply):
    both end up recorded; neither overwrites the other's state."""
    a = pair_of_hosts.hosts[0]
    before = a.snapshot()
    first = start_agent(a, "slow", "apply",
                        request=apply_request("peer-one", "thunderbolt0", "10.254.9.0"))
    second = start_agent(a, "slow", "apply",
                         request=apply_request("peer-two", "thunderbolt1", "10.254.9.2"))
    for proc in (first, second):
        status, out = finish(proc)
        assert status == 0, out
    state = json.loads((a.root / STATE / "state.json").read_text())
    assert sorted(state["pairings"]) == ["peer-one", "peer-two"]
    assert sorted(p.name for p in (a.root / STATE / "links").iterdir()) == [
        "thunderbolt0", "thunderbolt1"]
    for peer in ("peer-one", "peer-two"):
        status, out = finish(start_agent(a, "none", "unapply", "--peer", peer))
        assert status == 0 and json.loads(out)["result"]["removed"], out
    assert a.snapshot() == before


def test_agent_killed_mid_apply_is_rolled_back(pair_of_hosts):
    """The agent dies after changing the link, before recording anything: the journal it
    wrote first lets the next command (here `tbctl status`) put the host back."""
    cluster = pair_of_hosts
    a = cluster.hosts[0]
    before = a.snapshot()
    status, out = finish(start_agent(
        a, "die-before-files", "apply",
        request=apply_request("peer-one", "thunderbolt0", "10.254.9.0")))
    assert status == 137, out
    assert "10.254.9.0/31" in a.run("ip", "-4", "addr", "show", "dev", "thunderbolt0")
    journal_left = (a.root / STATE / "journal.json").is_file()
    result = cluster.tbctl("status", "--json", "tbt-a")
    assert a.snapshot() == before, result.stdout + result.stderr
    assert journal_left
    assert json_result(result, "status")["hosts"][0]["pairings"] == []


def test_killed_apply_is_rolled_back_before_the_next_apply(pair_of_hosts):
    a = pair_of_hosts.hosts[0]
    before = a.snapshot()
    status, out = finish(start_agent(
        a, "die-before-files", "apply",
        request=apply_request("peer-one", "thunderbolt0", "10.254.9.0")))
    assert status == 137, out
    status, out = finish(start_agent(
        a, "none", "apply", request=apply_request("peer-two", "thunderbolt1", "10.254.9.2")))
    assert status == 0, out
    assert "interrupted apply with peer-one was rolled back" in json.loads(out)["result"][
        "recovered"]
    assert "10.254.9.0" not in a.run("ip", "-4", "addr", "show", "dev", "thunderbolt0")
    state = json.loads((a.root / STATE / "state.json").read_text())
    assert sorted(state["pairings"]) == ["peer-two"]
    status, out = finish(start_agent(a, "none", "unapply", "--peer", "peer-two"))
    assert status == 0, out
    assert a.snapshot() == before


def test_agent_killed_mid_unapply_is_completed(pair_of_hosts):
    """An unapply that died half way is finished by the next command: host as before."""
    a = pair_of_hosts.hosts[0]
    before = a.snapshot()
    status, out = finish(start_agent(
        a, "none", "apply", request=apply_request("peer-one", "thunderbolt0", "10.254.9.0")))
    assert status == 0, out
    status, out = finish(start_agent(a, "die-before-forgetting", "unapply", "--peer",
                                     "peer-one"))
    assert status == 137, out
    assert (a.root / "etc/systemd/system/tbctl-reapply.service").exists()
    status, out = finish(start_agent(a, "none", "status"))
    assert status == 0, out
    assert a.snapshot() == before
    assert json.loads(out)["result"]["recovered"] == (
        "an interrupted unapply with peer-one was completed")
