# SPDX-License-Identifier: MIT
"""Host files: written with their prior content remembered, restored exactly; left alone
where the NixOS module owns them."""

from __future__ import annotations

import json

from tbctl.hostfiles import render_host_files
from tbctl.node import agent


def test_write_then_restore(tmp_path, monkeypatch):
    monkeypatch.setenv("TBCTL_ROOT", str(tmp_path))
    existing = tmp_path / "etc/modules-load.d/tbctl.conf"
    existing.parent.mkdir(parents=True)
    existing.write_text("admin's own\n")
    files = render_host_files(state_dir="/var/lib/tbctl", tbctl_exec="/usr/bin/tbctl",
                              modules=["rdma_rxe"])
    state = {"files": {}}
    assert sorted(agent._write_host_files(state, files)) == sorted(files)
    assert agent._write_host_files(state, files) == []  # idempotent
    for rel, content in files.items():
        assert (tmp_path / rel).read_text() == content
    agent._restore_host_files(state)
    assert existing.read_text() == "admin's own\n"
    assert not (tmp_path / "etc/systemd/system/tbctl-reapply.service").exists()
    assert not (tmp_path / "etc/systemd/system/tbctl-reapply@.service").exists()
    agent._remove_created_dirs(state)
    assert sorted(p.name for p in (tmp_path / "etc").iterdir()) == ["modules-load.d"]


OLD_RULE = """ACTION=="add", SUBSYSTEM=="net", DRIVERS=="thunderbolt-net", TAG+="systemd", \
ENV{SYSTEMD_WANTS}+="tbctl-reapply.service"
"""


def test_upgrade_from_the_single_unit_leaves_nothing_behind(tmp_path, monkeypatch):
    """A host paired by a tbctl that installed only tbctl-reapply.service, then paired again
    by this one (which adds the hotplug template and rewrites the rule): the last unpair
    removes every file either version installed."""
    monkeypatch.setenv("TBCTL_ROOT", str(tmp_path))
    old = {"etc/systemd/system/tbctl-reapply.service": "[Service]\nExecStart=/old\n",
           "etc/udev/rules.d/90-tbctl-hotplug.rules": OLD_RULE,
           "etc/modules-load.d/tbctl.conf": "rdma_rxe\n"}
    state = {"files": {}}
    agent._write_host_files(state, old)
    new = render_host_files(state_dir="/var/lib/tbctl", tbctl_exec="/usr/bin/tbctl",
                            modules=["rdma_rxe"])
    changed = agent._write_host_files(state, new)
    assert "etc/systemd/system/tbctl-reapply@.service" in changed
    assert "tbctl-reapply@.service" in (tmp_path / "etc/udev/rules.d/90-tbctl-hotplug.rules"
                                        ).read_text()
    agent._restore_host_files(state)
    agent._remove_created_dirs(state)
    assert not (tmp_path / "etc").exists()


def test_nixos_owned_files_are_left_alone(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TBCTL_ROOT", str(tmp_path))
    files = render_host_files(state_dir="/srv/tbctl", tbctl_exec="/run/current-system/sw/bin/tbctl",
                              modules=["tbrdma"])
    manifest = tmp_path / agent.NIXOS_MANIFEST
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"state_dir": "/srv/tbctl", "files": sorted(files)}))
    state = {"files": {}}
    assert agent._write_host_files(state, files) == []
    assert state["files"] == {}
    assert not (tmp_path / "etc/systemd").exists()
    # The agent reads the module's state directory whatever the controller passed.
    state_file = tmp_path / "srv/tbctl/state.json"
    state_file.parent.mkdir(parents=True)
    state_file.write_text(json.dumps({"protocol": 1, "files": {}, "agent": None, "pairings": {
        "peer-id": {"peer_name": "strix-b", "transport": "ip", "cables": [
            {"link": "tbnone0", "peer_link": "tbnone0", "address": "10.254.0.0",
             "peer_address": "10.254.0.1", "prefix": 31, "mtu": 1500}]}}}))
    assert agent.main(["status", "--state-dir", "/var/lib/tbctl"]) == 0
    answer = json.loads(capsys.readouterr().out)
    (pairing,) = answer["result"]["pairings"]
    assert pairing["peer_name"] == "strix-b" and not pairing["cables"][0]["present"]


def test_state_dir_others_can_write_is_refused(tmp_path, monkeypatch, capsys):
    """What the boot unit runs as root lives in the state directory: one that users other
    than root may write is refused before anything changes, with the fix."""
    monkeypatch.setenv("TBCTL_ROOT", str(tmp_path))
    state_dir = tmp_path / "var/lib/tbctl"
    state_dir.mkdir(parents=True)
    (state_dir / "state.json").write_text(json.dumps(
        {"protocol": 1, "files": {}, "agent": None, "pairings": {}}))
    state_dir.chmod(0o777)
    assert agent.main(["unapply", "--peer", "someone", "--state-dir", "/var/lib/tbctl"]) == 1
    error = json.loads(capsys.readouterr().out)["error"]
    assert "writable by users other than root" in error and "chmod 0700" in error
    state_dir.chmod(0o700)
    assert agent.main(["unapply", "--peer", "someone", "--state-dir", "/var/lib/tbctl"]) == 0
    assert json.loads(capsys.readouterr().out)["result"]["removed"] is False


def test_reapply_configures_a_link_that_appears_while_it_runs(monkeypatch) -> None:
    """A cable NIC that appears while a boot re-apply is busy gets no run of its own (systemd
    merges the hotplug start into the running one): the same run must pick it up."""
    present = {"thunderbolt0"}
    configured = []

    def configure(cable, transport):
        configured.append(cable["link"])
        present.add("thunderbolt1")  # udev renames the second NIC meanwhile

    monkeypatch.setattr(agent.net, "link_present", lambda link: link in present)
    monkeypatch.setattr(agent, "_configure_cable", configure)
    state = {"pairings": {"peer": {"transport": "ip", "cables": [
        {"link": "thunderbolt0"}, {"link": "thunderbolt1"}, {"link": "thunderbolt2"}]}}}
    assert agent._reapply(state) == {"applied": ["thunderbolt0", "thunderbolt1"],
                                     "absent": ["thunderbolt2"]}
    assert configured == ["thunderbolt0", "thunderbolt1"]


def test_hotplug_reapply_configures_only_its_own_link(monkeypatch) -> None:
    """A tbctl-reapply@ instance (--device, the sysfs path of the link that appeared)
    configures that link's cable; the other cables are the boot run's or their own
    instance's business."""
    configured = []
    monkeypatch.setattr(agent.net, "link_present", lambda link: True)
    monkeypatch.setattr(agent, "_configure_cable",
                        lambda cable, transport: configured.append(cable["link"]))
    state = {"pairings": {
        "peer": {"transport": "ip", "cables": [{"link": "thunderbolt0"}, {"link": "tb-1"}]},
        "other": {"transport": "ip", "cables": [{"link": "enp5s0"}]}}}
    only = agent.link_of_device("/sys/devices/virtual/net/tb-1")
    assert agent._reapply(state, only) == {"applied": ["tb-1"], "absent": []}
    assert configured == ["tb-1"]
    assert agent._reapply(state, "wlan0") == {"applied": [], "absent": []}  # not a cable


def test_hotplug_reapply_refuses_a_path_that_is_no_netdev(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TBCTL_ROOT", str(tmp_path))
    for bad in ("/etc/passwd", "thunderbolt0", "/sys/devices/virtual/net/../../../etc"):
        assert agent.main(["reapply", "--device", bad]) == 1
        error = json.loads(capsys.readouterr().out)["error"]
        assert error.startswith(f"--device {bad} is not the sysfs path of a network interface")


def test_reapply_recreates_a_native_device_on_its_usb4_ring_pairs(monkeypatch) -> None:
    """After a reboot a pairing made over USB4 ring pairs comes back over them (the first
    cable's netdev lending the addresses), not over the cables' netdevs; a pairing made over
    netdevs comes back over the present ones."""
    created = []

    class Native:
        @staticmethod
        def create(device, rails, key, initiator, port=None):
            created.append((device, rails, port))

    monkeypatch.setattr(agent.net, "link_present", lambda link: link != "thunderbolt1")
    monkeypatch.setattr(agent, "_configure_cable", lambda cable, transport: None)
    monkeypatch.setattr(agent, "_native", lambda: Native)
    native = {"transport": "native", "native_key": "00" * 32, "native_initiator": True,
              "cables": [{"link": "thunderbolt0"}, {"link": "thunderbolt1"}]}
    state = {"pairings": {
        "usb4": {**native, "native_device": "tbrdma0", "native_rails": ["tb:peer-uuid"]},
        "nets": {**native, "native_device": "tbrdma1"}}}
    agent._reapply(state)
    assert created == [("tbrdma0", ["tb:peer-uuid"], "thunderbolt0"),
                       ("tbrdma1", ["thunderbolt0"], "thunderbolt0")]
