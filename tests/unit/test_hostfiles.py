# SPDX-License-Identifier: MIT
import fnmatch
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tbctl.cli import main
from tbctl.hostfiles import render_host_files


def test_render_host_files_command_matches_library(tmp_path):
    result = CliRunner().invoke(
        main,
        ["render-host-files", "--out", str(tmp_path), "--state-dir", "/srv/tb",
         "--tbctl-exec", "/opt/tbctl", "--module", "rdma_rxe", "--module", "rdma_rxe"],
    )
    assert result.exit_code == 0, result.output
    expected = render_host_files(state_dir="/srv/tb", tbctl_exec="/opt/tbctl", modules=["rdma_rxe"])
    for rel, content in expected.items():
        assert (tmp_path / rel).read_text() == content
    unit = expected["etc/systemd/system/tbctl-reapply.service"]
    assert "ExecStart=/opt/tbctl node reapply --state-dir /srv/tb\n" in unit
    assert expected["etc/modules-load.d/tbctl.conf"].splitlines()[-1] == "rdma_rxe"


# ------------------------------------------------------------ the hotplug rule, evaluated

RULE_TOKEN = re.compile(r'\s*([A-Z]+(?:\{[^}]*\})?)\s*(==|!=|\+=|=)\s*"([^"]*)"\s*(?:,|$)')


def udev_wants(rules: str, device: dict, root: Path) -> list[str]:
    """The SYSTEMD_WANTS a net device's "add" event gets from `rules`, evaluated like
    udev(7) does for the keys this rule uses; any other key fails the test, so the rule cannot
    grow a match this evaluator would wrongly skip."""
    wants: list[str] = []
    for line in rules.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        tokens = RULE_TOKEN.findall(line)
        assert "".join(f'{k}{op}"{v}",' for k, op, v in tokens).rstrip(",") == \
            line.replace(", ", ","), f"unparsed rule: {line}"
        matched, actions = True, []
        for key, op, value in tokens:
            if op in ("==", "!="):
                if key == "ACTION":
                    hit = fnmatch.fnmatchcase(device["action"], value)
                elif key == "SUBSYSTEM":
                    hit = fnmatch.fnmatchcase(device["subsystem"], value)
                elif key == "DRIVERS":
                    hit = any(fnmatch.fnmatchcase(d, value) for d in device["drivers"])
                elif key == "TEST":
                    path = value.replace("$name", device["name"]).replace("%k", device["name"])
                    hit = (root / path.lstrip("/")).exists()
                else:
                    raise AssertionError(f"the evaluator does not know {key}: {line}")
                matched = matched and (hit if op == "==" else not hit)
            else:
                actions.append((key, op, value))
        if matched:
            wants += [v for k, _, v in actions if k == "ENV{SYSTEMD_WANTS}"]
    return wants


def test_hotplug_rule_fires_only_for_cable_links(tmp_path):
    rules = render_host_files(state_dir="/var/lib/tbctl", tbctl_exec="/usr/bin/tbctl",
                              modules=[])["etc/udev/rules.d/90-tbctl-hotplug.rules"]
    (tmp_path / "var/lib/tbctl/links").mkdir(parents=True)
    (tmp_path / "var/lib/tbctl/links/enp5s0").touch()  # a paired Ethernet cable

    def wants(name: str, drivers: list[str], action: str = "add") -> list[str]:
        device = {"action": action, "subsystem": "net", "name": name, "drivers": drivers}
        return udev_wants(rules, device, tmp_path)

    # The template with an empty instance: systemd instantiates it once per link (below).
    assert wants("thunderbolt0", ["thunderbolt-net"]) == ["tbctl-reapply@.service"]
    assert wants("enp5s0", ["r8169"]) == ["tbctl-reapply@.service"]
    for name, drivers in (("veth1a2b", []), ("tun0", ["tun"]), ("eth0", ["e1000e"]),
                          ("docker0", []), ("wg0", [])):
        assert wants(name, drivers) == [], name
    assert wants("thunderbolt0", ["thunderbolt-net"], action="remove") == []


def test_boot_unit_checks_the_persisted_archive():
    digest = "ab" * 32
    archive = f"/var/lib/tbctl/tbctl-{digest}.pyz"
    unit = render_host_files(state_dir="/var/lib/tbctl",
                             tbctl_exec=f"/usr/bin/python3 -I {archive}",
                             modules=[])["etc/systemd/system/tbctl-reapply.service"]
    lines = unit.splitlines()
    pre = lines.index(next(x for x in lines if x.startswith("ExecStartPre=")))
    start = lines.index(f"ExecStart=/usr/bin/python3 -I {archive} node reapply "
                        "--state-dir /var/lib/tbctl")
    assert pre < start
    assert f'echo "{digest}  {archive}" | sha256sum --check --status' in lines[pre]
    # An installed tbctl (NixOS) has no archive to check.
    plain = render_host_files(state_dir="/var/lib/tbctl", tbctl_exec="/usr/bin/tbctl",
                              modules=[])["etc/systemd/system/tbctl-reapply.service"]
    assert "ExecStartPre" not in plain


def _persisted_agent_unit(name: str) -> str:
    """A unit as rendered for a host that runs the persisted agent archive."""
    archive = f"/var/lib/tbctl/tbctl-{'cd' * 32}.pyz"
    return render_host_files(state_dir="/var/lib/tbctl",
                             tbctl_exec=f"{sys.executable} -I {archive}",
                             modules=[])[f"etc/systemd/system/{name}"]


def _systemd_verifies(unit: Path) -> None:
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                            text=True)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd-analyze")
def test_boot_unit_parses_as_systemd_reads_it(tmp_path):
    """systemd's own parser accepts the unit (quoting of the ExecStartPre= check included)."""
    (tmp_path / "tbctl-reapply.service").write_text(
        _persisted_agent_unit("tbctl-reapply.service"))
    _systemd_verifies(tmp_path / "tbctl-reapply.service")


def test_hotplug_unit_runs_once_per_link():
    """Issue 10: the rule used to start the boot unit itself, and a link that appeared while
    that unit ran only merged its start into the running one. It now starts the template,
    which systemd instantiates per device (systemd.device(5)), so each link has its own unit;
    that instance re-applies its own link and lives as long as the link does."""
    files = render_host_files(state_dir="/srv/tb", tbctl_exec="/opt/tbctl", modules=[])
    rules = files["etc/udev/rules.d/90-tbctl-hotplug.rules"]
    assert "tbctl-reapply.service" not in rules
    assert all('ENV{SYSTEMD_WANTS}+="tbctl-reapply@.service"' in line and 'TAG+="systemd"' in line
               for line in rules.splitlines() if line.startswith("ACTION=="))
    template = files["etc/systemd/system/tbctl-reapply@.service"].splitlines()
    # %i is the escaped sysfs path (the device unit's own name), %f that path unescaped.
    assert "ExecStart=/opt/tbctl node reapply --state-dir /srv/tb --device %f" in template
    assert "BindsTo=%i.device" in template
    assert "RemainAfterExit=yes" in template
    assert "ConditionPathExists=/srv/tb/state.json" in template
    assert not any(line.startswith("WantedBy=") for line in template)  # only udev starts it
    # The boot unit still re-applies everything, and stays what the boot enables.
    boot = files["etc/systemd/system/tbctl-reapply.service"]
    assert "ExecStart=/opt/tbctl node reapply --state-dir /srv/tb\n" in boot
    assert "WantedBy=multi-user.target" in boot


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd-analyze")
def test_hotplug_instance_parses_as_systemd_reads_it(tmp_path):
    """systemd's parser accepts an instance of the template, named as systemd names it."""
    (tmp_path / "tbctl-reapply@.service").write_text(
        _persisted_agent_unit("tbctl-reapply@.service"))
    escaped = subprocess.run(["systemd-escape", "--path", "--template=tbctl-reapply@.service",
                              "/sys/devices/virtual/net/tb-0"], capture_output=True, text=True,
                             check=True).stdout.strip()
    assert escaped == "tbctl-reapply@sys-devices-virtual-net-tb\\x2d0.service"
    _systemd_verifies(tmp_path / escaped)
