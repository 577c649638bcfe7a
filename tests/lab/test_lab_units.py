# SPDX-License-Identifier: MIT
"""Fast checks of the lab's planning and file generation (no VM, no root)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from tbctl.errors import TbctlError
from tbctl.lab import cluster, image, testdriver
from tbctl.lab.image import NodeImage


def fake_image(tmp_path: Path) -> NodeImage:
    return NodeImage(root=tmp_path / "root.qcow2", kernel=tmp_path / "vmlinuz",
                     initrd=tmp_path / "initrd.img", kernel_release="6.12.0-test")


def test_plan_three_nodes_two_cables(tmp_path: Path) -> None:
    state = cluster.plan(tmp_path, 3, 2, fake_image(tmp_path), "tcg")
    assert state.cables() == ["a-b/0", "a-b/1", "a-c/0", "a-c/1", "b-c/0", "b-c/1"]
    a, b, c = state.nodes
    assert [e.ifname for e in a.ends] == ["thunderbolt0", "thunderbolt1", "thunderbolt2",
                                          "thunderbolt3"]
    assert [(e.cable, e.peer) for e in b.ends] == [("a-b/0", "a"), ("a-b/1", "a"),
                                                   ("b-c/0", "c"), ("b-c/1", "c")]
    macs = [e.mac for n in state.nodes for e in n.ends] + [n.mgmt_mac for n in state.nodes]
    assert len(set(macs)) == len(macs)
    ports = [n.ssh_port for n in state.nodes]
    assert len(set(ports)) == 3
    # Each cable's two ends send to each other's socket.
    for end in a.ends[:2]:
        peer_end = next(e for e in b.ends if e.cable == end.cable)
        assert (end.local_socket, end.remote_socket) == (peer_end.remote_socket,
                                                         peer_end.local_socket)
    assert all(len(e.local_socket) < 108 for n in state.nodes for e in n.ends)
    assert c.hostname == "lab-c" and state.node("lab-c") is c and state.node("c") is c
    with pytest.raises(TbctlError):
        state.node("lab-z")


@pytest.mark.parametrize(("nodes", "cables"), [(1, 2), (9, 1), (2, 0), (2, 5)])
def test_plan_rejects_bad_sizes(tmp_path: Path, nodes: int, cables: int) -> None:
    with pytest.raises(TbctlError):
        cluster.plan(tmp_path, nodes, cables, fake_image(tmp_path), "tcg")


def test_state_round_trips_through_disk(tmp_path: Path) -> None:
    state = cluster.plan(tmp_path, 2, 2, fake_image(tmp_path), "tcg")
    state.cable_up["a-b/1"] = False
    cluster.save(state)
    loaded = cluster.load(tmp_path)
    assert loaded == state


def test_ssh_files_and_seed(tmp_path: Path) -> None:
    state = cluster.plan(tmp_path, 2, 2, fake_image(tmp_path), "tcg")
    cluster.write_ssh_files(state)
    config = (tmp_path / "ssh_config").read_text()
    assert "StrictHostKeyChecking yes" in config and "Host lab-b" in config
    assert "StrictHostKeyChecking no" not in config
    known = (tmp_path / "known_hosts").read_text().splitlines()
    a_pub = (tmp_path / "nodes" / "a" / "ssh_host_ed25519_key.pub").read_text().split()[1]
    assert f"[127.0.0.1]:{state.nodes[0].ssh_port}" in known[0] and a_pub in known[0]
    # OpenSSH itself resolves the lab's host names to the lab's ports.
    resolved = subprocess.run(["ssh", "-G", "-F", str(tmp_path / "ssh_config"), "lab-b"],
                              capture_output=True, text=True, check=True).stdout
    assert f"port {state.nodes[1].ssh_port}\n" in resolved
    assert "hostname 127.0.0.1\n" in resolved

    seed = cluster.write_seed(state, state.nodes[1])
    with tarfile.open(seed) as archive:
        members = {m.name: m for m in archive.getmembers()}
        assert archive.extractfile("etc/tbctl/links.conf").read() == (  # type: ignore[union-attr]
            b"thunderbolt0\nthunderbolt1\n")
        link = archive.extractfile("etc/systemd/network/10-tbctl-thunderbolt1.link")
        assert b"MACAddress=52:54:00:7c:01:01" in link.read()  # type: ignore[union-attr]
        mgmt = archive.extractfile("etc/tbctl-lab/mgmt-mac")
        assert mgmt.read() == f"{state.nodes[1].mgmt_mac}\n".encode()  # type: ignore[union-attr]
    assert members["etc/ssh/ssh_host_ed25519_key"].mode == 0o600
    assert members["root/.ssh"].isdir() and members["root/.ssh"].mode == 0o700
    assert "usr/local/lib/tbctl/tbctl/node/rdmacheck.py" in members
    assert not [name for name in members if "__pycache__" in name]
    assert seed.stat().st_size % 512 == 0  # QEMU wants whole sectors


def test_qemu_command_uses_restricted_user_net_and_datagram_cables(tmp_path: Path) -> None:
    state = cluster.plan(tmp_path, 2, 1, fake_image(tmp_path), "tcg")
    cmd = " ".join(cluster.qemu_command(state, state.nodes[0]))
    assert "user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:" in cmd
    assert "-netdev dgram,id=c0,local.type=unix" in cmd
    assert "-accel tcg" in cmd and "-smp 1" in cmd


def test_qemu_command_appends_debug_kernel_args(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    state = cluster.plan(tmp_path, 2, 1, fake_image(tmp_path), "tcg")
    monkeypatch.setenv("TBCTL_LAB_KERNEL_ARGS", " slub_debug=FZPU ")
    cmd = cluster.qemu_command(state, state.nodes[0])
    assert cmd[cmd.index("-append") + 1].endswith("mitigations=off quiet slub_debug=FZPU")
    monkeypatch.delenv("TBCTL_LAB_KERNEL_ARGS")
    cmd = cluster.qemu_command(state, state.nodes[0])
    assert cmd[cmd.index("-append") + 1].endswith("mitigations=off quiet")


def test_host_mirror_from_deb822_and_one_line(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\n"
        "Suites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n")
    assert image.host_debian_mirror(tmp_path) == "http://mirror.example/debian"
    other = tmp_path / "other"
    other.mkdir()
    (other / "sources.list").write_text(
        "deb https://vendor.example/apt cloud-sdk main\n"
        "deb [arch=amd64] http://one.example/debian bookworm main\n")
    assert image.host_debian_mirror(other) == "http://one.example/debian"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TbctlError):
        image.host_debian_mirror(empty)


def test_image_keys_follow_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    base = image.base_key()
    monkeypatch.setattr(image, "GUEST_PACKAGES", (*image.GUEST_PACKAGES, "strace"))
    assert image.base_key() != base
    assert image.image_key("x") != image.image_key("y")


def test_rdmacheck_rejects_bad_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    from tbctl.node import rdmacheck

    assert rdmacheck.main(["--device", "x", "--gid-index", "1", "--role", "client",
                           "--sizes", "0"]) == 2


def test_seed_unit_orders_before_udev() -> None:
    unit = (image.FILES_DIR / "tbctl-lab-seed.service").read_text()
    before = next(line for line in unit.splitlines() if line.startswith("Before="))
    assert "systemd-udevd.service" in before and "ssh.service" in before
    assert unit.count("DefaultDependencies=no") == 1


def test_boot_keeps_what_nodes_need_and_addresses_management_early() -> None:
    # What a pairing and the lab rely on must never be masked to win boot time.
    needed = {"systemd-udevd.service", "systemd-udev-trigger.service",
              "systemd-modules-load.service", "sys-kernel-config.mount",
              "modprobe@configfs.service", "systemd-journald.service",
              "systemd-tmpfiles-setup.service", "systemd-sysctl.service", "ssh.service",
              "systemd-remount-fs.service"}
    assert needed.isdisjoint(image.MASKED_UNITS)
    assert not set(image.MASKED_UNITS) & set(image.ENABLED_UNITS)
    # fstab's generator mounts the root's entries; getty's gives the serial console a login.
    assert {"systemd-fstab-generator", "systemd-getty-generator"}.isdisjoint(
        image.MASKED_GENERATORS)
    # rdma_cm users (rping, rdma-core's tests, libfabric's rxm) need rdma_ucm loaded.
    assert {"ib_uverbs", "rdma_ucm"} <= set(image.LAB_RDMA_MODULES)
    mgmt = (image.FILES_DIR / "tbctl-lab-mgmt.service").read_text()
    assert "ssh.service" in next(line for line in mgmt.splitlines()
                                 if line.startswith("Before="))
    assert image.ENABLED_UNITS["tbctl-lab-mgmt.service"] == "sysinit.target.wants"
    # sshd must not wait for the cable NICs (udev's renames); readiness checks them instead.
    links = (image.FILES_DIR / "tbctl-lab-links-up.service").read_text()
    assert "network.target" not in links
    assert "tbctl-lab-links-up" in cluster.LINKS_UP
    sshd = (image.FILES_DIR / "sshd-tbctl-lab.conf").read_text()
    assert "UsePAM no" in sshd.splitlines()


def test_prune_images_keeps_newest_and_open_ones(tmp_path: Path) -> None:
    import os
    import time as clock

    dirs = []
    for index in range(5):
        path = tmp_path / f"image-{index}"
        path.mkdir()
        (path / "root.qcow2").write_bytes(b"x")
        stamp = clock.time() - 1000 + index
        os.utime(path, (stamp, stamp))
        dirs.append(path)
    with open(dirs[0] / "root.qcow2", "rb"):  # a running VM's backing file
        image.prune_images(tmp_path, keep=dirs[1], newest=2)
    assert [path.exists() for path in dirs] == [True, True, False, True, True]


def test_failing_script_reports_each_nodes_kernel_log(tmp_path: Path) -> None:
    cluster.save(cluster.plan(tmp_path, 2, 2, fake_image(tmp_path), "tcg"))
    script = tmp_path / "fails.py"
    script.write_text("raise AssertionError('boom')\n")
    with pytest.raises(AssertionError, match="boom") as caught:
        testdriver.run_script(script, tmp_path)
    notes = "\n".join(caught.value.__notes__)
    # no VM runs here, so each attempt fails, but it is made and reported per node
    assert "--- a: dmesg | tail (exit " in notes and "--- b: dmesg | tail (exit " in notes


def _fake_perftest(tmp_path: Path, server_lines: list[str]) -> testdriver.LocalMachine:
    """A `perftest` on PATH: as server (no address) its Nth run prints server_lines[N] and
    exits 1 unless that line is "ok"; as client it succeeds."""
    tool = tmp_path / "bin" / "perftest"
    tool.parent.mkdir(parents=True)
    (tmp_path / "script").write_text("\n".join(server_lines) + "\n")
    tool.write_text(f"""#!/bin/bash
if [ $# -eq 0 ]; then
  line=$(head -n 1 {tmp_path}/script); sed -i 1d {tmp_path}/script; echo "$line"
  [ "$line" = ok ]; exit
fi
echo client-result
""")
    tool.chmod(0o755)
    environment = dict(os.environ, PATH=f"{tool.parent}:{os.environ['PATH']}")
    return testdriver.LocalMachine(environment)


def test_perftest_runs_again_only_when_its_clock_calibration_failed(tmp_path: Path) -> None:
    machine = _fake_perftest(tmp_path, ["Can't produce a report", "ok"])
    assert testdriver.perftest(machine, machine, "perftest", "10.0.0.1",
                               scratch=str(tmp_path)).strip() == "client-result"

    machine = _fake_perftest(tmp_path / "device", ["Failed to modify QP to RTR", "ok"])
    with pytest.raises(AssertionError, match="Failed to modify QP to RTR"):
        testdriver.perftest(machine, machine, "perftest", "10.0.0.1",
                            scratch=str(tmp_path / "device"))


# Recorded in CI (lab-a, 6.12.117+deb13-amd64, TCG): the emulator's spurious debug trap.
TCG_DEBUG_TRAP = """\
[  327.008488] ------------[ cut here ]------------
[  327.011078] WARNING: CPU: 0 PID: 837 at arch/x86/kernel/traps.c:1120 exc_debug_kernel+0xca/0x160
[  327.016277] CPU: 0 UID: 0 PID: 837 Comm: ib_write_bw Tainted: G OE 6.12.117+deb13-amd64 #1
[  327.018014] RSP: 0000:fffffe1a104a5f28 EFLAGS: c2e02002
[  327.021146] RIP: 0010:__kmalloc_noprof+0x134/0x400
[  327.022712]  ib_uverbs_post_send+0x11b/0x790 [ib_uverbs]
"""


def test_kernel_trouble_ignores_only_the_tcg_debug_trap() -> None:
    assert testdriver.kernel_trouble(TCG_DEBUG_TRAP) is None
    ours = "[  12.0] WARNING: CPU: 0 PID: 9 at drivers/infiniband/sw/tbrdma/qp.c:80 x+0x1/0x2\n"
    assert testdriver.kernel_trouble(TCG_DEBUG_TRAP + ours) == "WARNING:"
    assert testdriver.kernel_trouble("[ 1.0] BUG: unable to handle page fault\n") == "BUG:"
    hung = "[ 99.0] INFO: task ib_write_bw:123 blocked for more than 120 seconds.\n"
    assert testdriver.kernel_trouble(hung) is None
    assert testdriver.kernel_trouble(hung, also=("INFO: task",)) == "INFO: task"


def test_lab_launcher_runs_the_agent_and_the_cli(tmp_path: Path) -> None:
    """The guests' /usr/local/bin/tbctl: `node` goes to the agent's own entry point (no CLI
    imports), anything else to the CLI; both from the tree the seed installs."""
    root = Path(__file__).resolve().parents[2]
    launcher = tmp_path / "tbctl"
    launcher.write_text(cluster.LAUNCHER.replace("/usr/local/lib/tbctl", str(root)))
    launcher.chmod(0o755)
    hello = subprocess.run([str(launcher), "node", "hello"], capture_output=True, text=True,
                           timeout=60, env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"})
    answer = json.loads(hello.stdout.strip().splitlines()[-1])
    assert hello.returncode == 0 and answer["ok"], hello.stderr
    imported = {line.split("|")[-1].strip() for line in hello.stderr.splitlines()}
    assert "tbctl.node.agent" in imported
    assert not imported & {"click", "rich", "paramiko", "tbctl.cli"}, imported
    version = subprocess.run([str(launcher), "--version"], capture_output=True, text=True,
                             timeout=60, env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"})
    cli = subprocess.run([sys.executable, "-m", "tbctl", "--version"], capture_output=True,
                         text=True, timeout=60, cwd=root)
    assert version.returncode == 0 and version.stdout == cli.stdout, (version, cli)
    assert "click" not in version.stderr
    usage = subprocess.run([str(launcher), "lab", "--help"], capture_output=True, text=True,
                           timeout=60)
    assert usage.returncode == 0 and "demo" in usage.stdout, usage.stderr


def test_build_progress_prints_bracketed_build_output_as_text(
        capsys: pytest.CaptureFixture[str]) -> None:
    """A failing kbuild's "[/path/Makefile.build:430: x.o]" once crashed `lab image`
    (rich read it as a markup closing tag) and hid the compiler's error."""
    from tbctl.commands.lab import _BuildProgress

    line = ("make[2]: *** [/usr/src/linux-headers-6.12-common/scripts/Makefile.build:430: "
            "/build/tbrdma/kernel/tbrdma.o] Error 1")
    _BuildProgress()(line)
    assert "Makefile.build:430" in capsys.readouterr().err.replace("\n", "")


def test_heavy_lock_held_by_a_parent_flock_is_not_waited_for(tmp_path: Path) -> None:
    """`flock LOCK tbctl lab demo` (docs/lab.md's advice for shared machines) must run, not
    wait for its own parent; a lock held by anyone else is still waited for."""
    lock = tmp_path / "heavy.lock"
    lock.touch()
    inner = (f"from pathlib import Path; from tbctl.lab.session import heavy_lock\n"
             f"with heavy_lock(path=Path({str(lock)!r})): print('inside')\n")
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": root}
    nested = subprocess.run(["flock", str(lock), sys.executable, "-c", inner],
                            capture_output=True, text=True, timeout=60, env=env)
    assert nested.returncode == 0 and nested.stdout.strip() == "inside", nested.stderr
    holder = subprocess.Popen(["flock", str(lock), "sleep", "60"])
    try:
        for _ in range(100):
            if f" {holder.pid} " in Path("/proc/locks").read_text():
                break
            time.sleep(0.05)
        with pytest.raises(subprocess.TimeoutExpired):
            subprocess.run([sys.executable, "-c", inner], capture_output=True, timeout=5,
                           env=env)
    finally:
        holder.kill()
        holder.wait()


def test_demo_phase_lines_hold_no_markup(capsys: pytest.CaptureFixture[str]) -> None:
    """The demo's say() escapes markup, so its phase headers printed a literal "[bold]"."""
    from tbctl.commands.lab import _say
    from tbctl.lab.demo import Phases

    with Phases(say=_say)("image"):
        pass
    printed = capsys.readouterr().err
    assert "image ..." in printed and "[" not in printed


# Recorded in the driver lab (lab-a, 6.12.117+deb13-amd64): a user-space program's crash,
# which the kernel reports through its traps handler, and a kernel general protection fault.
USER_TRAP = ("[ 1207.187745] traps: ib_write_bw[1913] general protection fault "
             "ip:7fcaead4d930 sp:7ffce45fe8a8 error:0 in libc.so.6[99930,7fcaeacdc000+163000]\n")
KERNEL_GPF = ("[  88.0] Oops: general protection fault, probably for non-canonical address "
              "0xdead000000000122: 0000 [#1] PREEMPT SMP NOPTI\n")


def test_kernel_trouble_leaves_a_user_program_crash_to_the_program() -> None:
    """A program's own crash is that program's failure (its exit status says so), not the
    kernel's: it must not fail every later step of the lab. A kernel fault still counts."""
    assert testdriver.kernel_trouble(USER_TRAP) is None
    assert testdriver.kernel_trouble(USER_TRAP + KERNEL_GPF) == "Oops"
    assert testdriver.kernel_trouble("[ 1.0] general protection fault: 0000 [#1] SMP\n") == \
        "general protection"
