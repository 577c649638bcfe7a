# SPDX-License-Identifier: MIT
"""A running lab: N QEMU nodes, K datagram "cables" between each pair, state on disk.

Everything a lab owns lives in one directory (state.json, ssh_config, keys, overlays,
seeds, sockets, console logs), so `down` can find and remove all of it, and a second
shell can run `lab status` or `lab cable` against the same lab.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import tbctl
from tbctl.errors import TbctlError
from tbctl.lab import accel as accel_probe
from tbctl.lab.image import NodeImage, ensure_image

Progress = Callable[[str], None]
NODE_MEMORY_MIB = 1024
BOOT_TIMEOUT_S = 300
# Cable MTU as on thunderbolt-net (its default is 65520 minus headers; rxe caps at 4096).
CABLE_MTU = 9000


def default_lab_dir() -> Path:
    if os.environ.get("TBCTL_LAB_DIR"):
        return Path(os.environ["TBCTL_LAB_DIR"])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "tbrdma" / "lab"


def node_letter(index: int) -> str:
    return "abcdefghijklmnopqrstuvwxyz"[index]


@dataclass
class CableEnd:
    """One node's NIC on one cable."""

    cable: str  # "a-b/0"
    netdev: str  # QEMU netdev id, the handle for set_link
    ifname: str  # the guest's name for the NIC
    mac: str
    local_socket: str
    remote_socket: str
    peer: str  # the node at the other end ("b")


@dataclass
class Node:
    letter: str
    index: int
    ssh_port: int
    mgmt_mac: str
    ends: list[CableEnd] = field(default_factory=list)

    @property
    def hostname(self) -> str:
        return f"lab-{self.letter}"


@dataclass
class LabState:
    directory: str
    nodes: list[Node]
    cables_per_pair: int
    accel: str
    image: dict[str, str]
    cable_up: dict[str, bool] = field(default_factory=dict)

    def node(self, name: str) -> Node:
        letter = name.removeprefix("lab-")
        for node in self.nodes:
            if node.letter == letter:
                return node
        raise TbctlError(f"no lab node {name!r} (nodes: {', '.join(self.hostnames())})")

    def hostnames(self) -> list[str]:
        return [node.hostname for node in self.nodes]

    def cables(self) -> list[str]:
        return sorted({end.cable for node in self.nodes for end in node.ends})


def plan(directory: Path, nodes: int, cables: int, image: NodeImage, accel: str) -> LabState:
    """Assigns ports, MACs, NIC names and socket paths; nothing is started."""
    if not 2 <= nodes <= 8:
        raise TbctlError("a lab has 2 to 8 nodes", exit_code=2)
    if not 1 <= cables <= 4:
        raise TbctlError("1 to 4 cables per pair of nodes", exit_code=2)
    sockets = directory / "sockets"
    members = [
        Node(node_letter(i), i, _free_port(), f"52:54:00:7b:{i:02x}:00") for i in range(nodes)
    ]
    for first in members:
        for second in members[first.index + 1:]:
            for k in range(cables):
                cable = f"{first.letter}-{second.letter}/{k}"
                paths = {
                    member.letter: str(sockets / f"{first.letter}{second.letter}{k}{member.letter}")
                    for member in (first, second)
                }
                for here, there in ((first, second), (second, first)):
                    slot = len(here.ends)
                    here.ends.append(CableEnd(
                        cable=cable, netdev=f"c{slot}", ifname=f"thunderbolt{slot}",
                        mac=f"52:54:00:7c:{here.index:02x}:{slot:02x}",
                        local_socket=paths[here.letter], remote_socket=paths[there.letter],
                        peer=there.letter,
                    ))
    return LabState(
        directory=str(directory), nodes=members, cables_per_pair=cables, accel=accel,
        image={"root": str(image.root), "kernel": str(image.kernel),
               "initrd": str(image.initrd), "release": image.kernel_release},
        cable_up={cable: True for cable in sorted({e.cable for n in members for e in n.ends})},
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def save(state: LabState) -> None:
    path = Path(state.directory) / "state.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=1) + "\n")
    tmp.replace(path)


def load(directory: Path | None = None) -> LabState:
    directory = directory or default_lab_dir()
    path = directory / "state.json"
    if not path.is_file():
        raise TbctlError(f"no lab in {directory} (start one with `tbctl lab up`)")
    raw = json.loads(path.read_text())
    nodes = [
        Node(**{**node, "ends": [CableEnd(**end) for end in node["ends"]]})
        for node in raw.pop("nodes")
    ]
    return LabState(nodes=nodes, **raw)


# ---- files a lab writes -------------------------------------------------------------------


def node_dir(state: LabState, node: Node) -> Path:
    return Path(state.directory) / "nodes" / node.letter


def ssh_config_path(state: LabState) -> Path:
    return Path(state.directory) / "ssh_config"


def _keygen(path: Path, comment: str) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
    )
    return path.with_suffix(".pub").read_text().strip()


def write_ssh_files(state: LabState) -> None:
    """A client key, a fresh host key per node, and the known_hosts/ssh_config using them."""
    directory = Path(state.directory)
    _keygen(directory / "id_ed25519", "tbctl-lab")
    known = []
    config = [f"# Written by `tbctl lab up`; host keys are in {directory / 'known_hosts'}.\n"]
    for node in state.nodes:
        ndir = node_dir(state, node)
        ndir.mkdir(parents=True, exist_ok=True)
        host_pub = _keygen(ndir / "ssh_host_ed25519_key", f"root@{node.hostname}")
        key_type, key_data = host_pub.split()[:2]
        names = f"{node.hostname},[{node.hostname}]:{node.ssh_port},[127.0.0.1]:{node.ssh_port}"
        known.append(f"{names} {key_type} {key_data}\n")
        config.append(
            f"\nHost {node.hostname}\n"
            f"    HostName 127.0.0.1\n"
            f"    Port {node.ssh_port}\n"
            f"    User root\n"
            f"    IdentityFile {directory / 'id_ed25519'}\n"
            f"    IdentitiesOnly yes\n"
            f"    UserKnownHostsFile {directory / 'known_hosts'}\n"
            f"    StrictHostKeyChecking yes\n"
            f"    BatchMode yes\n"
            f"    ConnectTimeout 10\n"
            f"    ServerAliveInterval 5\n"
            f"    ServerAliveCountMax 3\n"
            f"    LogLevel ERROR\n"
            # A TCG guest needs 1-2 s per SSH handshake; one shared connection per node
            # makes each later command cheap. `lab down` closes the masters.
            f"    ControlMaster auto\n"
            f"    ControlPath {directory / 'sockets'}/ssh-%C\n"
            f"    ControlPersist 120\n"
        )
    (directory / "known_hosts").write_text("".join(known))
    ssh_config_path(state).write_text("".join(config))


def _tbctl_source_files() -> list[tuple[str, Path]]:
    """The tbctl package tbctl itself runs from, as (path inside package root, file)."""
    package = Path(tbctl.__file__).resolve().parent
    found = []
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            found.append((str(Path("tbctl") / path.relative_to(package)), path))
    return found


# `tbctl node ...` (the agent, run by pair for every step) goes straight to the agent's own
# entry point, and `tbctl --version` (pair's probe of every host) prints what the CLI
# would: importing the CLI (click, rich, paramiko) costs 4-7 s per call in a busy TCG guest.
LAUNCHER = """#!/bin/sh
export PYTHONPATH=/usr/local/lib/tbctl
if [ "$1" = node ]; then
    shift
    exec python3 -m tbctl.node "$@"
fi
if [ "$*" = --version ]; then
    exec python3 -c 'import tbctl; print("tbctl, version " + tbctl.__version__)'
fi
exec python3 -m tbctl "$@"
"""


def seed_members(state: LabState, node: Node) -> list[tuple[str, bytes | None, int]]:
    """(path in guest, content or None for a directory, mode) for one node's seed."""
    ndir = node_dir(state, node)
    client_pub = (Path(state.directory) / "id_ed25519.pub").read_bytes()
    members: list[tuple[str, bytes | None, int]] = [
        ("etc/hostname", f"{node.hostname}\n".encode(), 0o644),
        ("etc/ssh/ssh_host_ed25519_key", (ndir / "ssh_host_ed25519_key").read_bytes(), 0o600),
        ("etc/ssh/ssh_host_ed25519_key.pub",
         (ndir / "ssh_host_ed25519_key.pub").read_bytes(), 0o644),
        ("root/.ssh", None, 0o700),
        ("root/.ssh/authorized_keys", client_pub, 0o600),
        # The management NIC (QEMU user-mode network, restrict=on): tbctl-lab-mgmt.service
        # gives the NIC with this MAC its address.
        ("etc/tbctl-lab/mgmt-mac", f"{node.mgmt_mac}\n".encode(), 0o644),
        ("etc/tbctl/links.conf", "".join(f"{end.ifname}\n" for end in node.ends).encode(),
         0o644),
        ("usr/local/bin/tbctl", LAUNCHER.encode(), 0o755),
    ]
    for end in node.ends:
        members.append((
            f"etc/systemd/network/10-tbctl-{end.ifname}.link",
            (f"# Lab cable {end.cable} (to lab-{end.peer}).\n"
             f"[Match]\nMACAddress={end.mac}\n\n"
             f"[Link]\nName={end.ifname}\nMTUBytes={CABLE_MTU}\n").encode(),
            0o644,
        ))
    for relative, path in _tbctl_source_files():
        members.append((f"usr/local/lib/tbctl/{relative}", path.read_bytes(), 0o644))
    return members


def write_seed(state: LabState, node: Node) -> Path:
    """A tar archive the guest's tbctl-lab-seed.service extracts over / at every boot."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for name, content, mode in seed_members(state, node):
            info = tarfile.TarInfo(name)
            info.mode = mode
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = int(time.time())
            if content is None:
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            else:
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
    path = node_dir(state, node) / "seed.tar"
    path.write_bytes(buffer.getvalue())
    return path


# ---- QEMU ---------------------------------------------------------------------------------


def guest_kernel_args() -> str:
    """Extra guest kernel arguments for debugging a lab (e.g. slub_debug=FZPU to catch a
    slab corruption where it happens, not where it crashes): `TBCTL_LAB_KERNEL_ARGS`."""
    extra = os.environ.get("TBCTL_LAB_KERNEL_ARGS", "").strip()
    return f" {extra}" if extra else ""


def qemu_command(state: LabState, node: Node) -> list[str]:
    ndir = node_dir(state, node)
    image = state.image
    accel = ["-accel", "kvm", "-cpu", "host"] if state.accel == "kvm" else [
        "-accel", "tcg", "-cpu", "max"]
    cmd = [
        "qemu-system-x86_64", "-name", node.hostname, *accel, "-smp", "1",
        "-m", str(NODE_MEMORY_MIB), "-nodefaults", "-display", "none",
        "-kernel", image["kernel"], "-initrd", image["initrd"],
        "-append", f"root=/dev/vda rw console=ttyS0 systemd.hostname={node.hostname} "
                   f"panic=-1 mitigations=off quiet{guest_kernel_args()}",
        "-drive", f"file={ndir / 'root.qcow2'},if=virtio,format=qcow2,cache=unsafe",
        "-drive", f"file={ndir / 'seed.tar'},if=virtio,format=raw,readonly=on",
        "-netdev", f"user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:{node.ssh_port}-:22",
        "-device", f"virtio-net-pci,netdev=mgmt,mac={node.mgmt_mac}",
    ]
    for end in node.ends:
        cmd += [
            "-netdev", f"dgram,id={end.netdev},local.type=unix,local.path={end.local_socket},"
                       f"remote.type=unix,remote.path={end.remote_socket}",
            "-device", f"virtio-net-pci,netdev={end.netdev},mac={end.mac}",
        ]
    cmd += [
        "-chardev", f"socket,id=console,path={ndir / 'console.sock'},server=on,wait=off,"
                    f"logfile={ndir / 'console.log'},logappend=on",
        "-serial", "chardev:console",
        "-monitor", f"unix:{ndir / 'monitor.sock'},server=on,wait=off",
        "-pidfile", str(ndir / "qemu.pid"), "-daemonize",
    ]
    return cmd


def start_node(state: LabState, node: Node) -> None:
    ndir = node_dir(state, node)
    for stale in ("qemu.pid", "monitor.sock", "console.sock"):
        (ndir / stale).unlink(missing_ok=True)
    for end in node.ends:
        Path(end.local_socket).unlink(missing_ok=True)
    result = subprocess.run(qemu_command(state, node), capture_output=True, text=True)
    if result.returncode != 0:
        raise TbctlError(f"QEMU for {node.hostname} failed: {result.stderr.strip()}")
    # The socket a cable pull needs is a sign QEMU is set up; wait for it briefly.
    for _ in range(50):
        if (ndir / "monitor.sock").exists():
            break
        time.sleep(0.1)
    if not state.cable_up:
        return
    for end in node.ends:
        if not state.cable_up.get(end.cable, True):
            monitor(state, node, f"set_link {end.netdev} off")


def node_pid(state: LabState, node: Node) -> int | None:
    try:
        pid = int((node_dir(state, node) / "qemu.pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return None
    # A recycled pid belongs to another program; ours names this node's directory.
    if str(node_dir(state, node)).encode() not in cmdline:
        return None
    state_of = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return None if state_of == "Z" else pid


def monitor(state: LabState, node: Node, command: str, timeout: float = 10.0) -> str:
    """One HMP command on the node's monitor socket; returns what QEMU printed."""
    path = node_dir(state, node) / "monitor.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        try:
            conn.connect(str(path))
        except OSError as exc:
            raise TbctlError(f"{node.hostname} monitor unreachable: {exc}") from exc
        _read_until_prompt(conn)
        conn.sendall(command.encode() + b"\n")
        if command.strip() == "quit":
            return ""
        return _read_until_prompt(conn).split("\n", 1)[-1].strip()


def _read_until_prompt(conn: socket.socket) -> str:
    data = b""
    while not data.endswith(b"(qemu) "):
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").replace("\r", "").removesuffix("(qemu) ")


def ssh_command(state: LabState, node: Node, *args: str) -> list[str]:
    return ["ssh", "-F", str(ssh_config_path(state)), node.hostname, *args]


def close_ssh_master(state: LabState, node: Node) -> None:
    """Ends the shared SSH connection so no ssh process or socket outlives the node."""
    subprocess.run(
        ["ssh", "-F", str(ssh_config_path(state)), "-O", "exit", node.hostname],
        capture_output=True, timeout=30, check=False,
    )


# sshd starts before udev has named the cable NICs; a node is ready once they are up too.
LINKS_UP = ("systemctl is-active --quiet tbctl-lab-links-up.service"
            " || ! test -s /etc/tbctl/links.conf")


def ssh_ready(state: LabState, node: Node, command: str = "true") -> bool:
    """The node answers SSH and `command` succeeds there."""
    try:
        result = subprocess.run(
            ["ssh", "-F", str(ssh_config_path(state)), "-o", "ConnectTimeout=3",
             node.hostname, command], capture_output=True, timeout=30, check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


def wait_for_ssh(state: LabState, nodes: list[Node], timeout: float = BOOT_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    pending = list(nodes)
    while pending:
        for node in list(pending):
            if node_pid(state, node) is None:
                raise TbctlError(
                    f"{node.hostname} stopped while booting; see "
                    f"{node_dir(state, node) / 'console.log'}")
            if ssh_ready(state, node, LINKS_UP):
                pending.remove(node)
        if pending and time.monotonic() > deadline:
            names = ", ".join(node.hostname for node in pending)
            raise TbctlError(f"{names}: no SSH, or cable links not up, after {timeout:.0f} s "
                             "(see console.log)")
        if pending:
            time.sleep(1)


# ---- lifecycle ----------------------------------------------------------------------------


def up(nodes: int = 2, cables: int = 2, directory: Path | None = None,
       progress: Progress | None = None, rebuild: bool = False,
       marks: dict[str, float] | None = None) -> LabState:
    """Boots the lab; `marks["launched"]` gets the monotonic time every QEMU was running
    (the rest of the wait is the guests booting to SSH)."""
    say = progress or (lambda line: None)
    directory = (directory or default_lab_dir()).resolve()
    if (directory / "state.json").exists():
        existing = load(directory)
        if any(node_pid(existing, node) for node in existing.nodes):
            raise TbctlError(f"a lab is already running in {directory} (`tbctl lab down`)")
        teardown_files(existing)
    if shutil.which("qemu-system-x86_64") is None:
        raise TbctlError("qemu-system-x86_64 not found (run `make deps`)")
    others = other_qemu_processes()
    if others:
        say(f"note: {len(others)} other QEMU process(es) already share this machine's CPUs "
            f"(pids {', '.join(others)}); expect a slower lab")
    image = ensure_image(rebuild=rebuild, progress=say)
    accel = accel_probe.choose(image, say)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sockets").mkdir(exist_ok=True)
    state = plan(directory, nodes, cables, image, accel)
    save(state)
    write_ssh_files(state)
    for node in state.nodes:
        ndir = node_dir(state, node)
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image.root), "-F", "qcow2",
             str(ndir / "root.qcow2")], check=True,
        )
        write_seed(state, node)
    try:
        for node in state.nodes:
            say(f"starting {node.hostname} ({accel}, 1 vCPU, {NODE_MEMORY_MIB} MiB)")
            start_node(state, node)
        if marks is not None:
            marks["launched"] = time.monotonic()
        say("waiting for SSH on " + ", ".join(state.hostnames()))
        wait_for_ssh(state, state.nodes)
    except BaseException:
        down(directory)
        raise
    return state


def stop_node(state: LabState, node: Node, graceful_timeout: float = 60.0) -> None:
    """Powers the guest off over SSH; the monitor's `quit`, then SIGKILL, if it hangs."""
    pid = node_pid(state, node)
    if pid is None:
        close_ssh_master(state, node)
        return
    subprocess.run(
        ["ssh", "-F", str(ssh_config_path(state)), "-o", "ConnectTimeout=3", node.hostname,
         "systemctl poweroff --no-block"], capture_output=True, timeout=30, check=False,
    )
    close_ssh_master(state, node)
    if _wait_gone(state, node, graceful_timeout):
        return
    try:
        monitor(state, node, "quit")
    except TbctlError:
        pass
    if _wait_gone(state, node, 10):
        return
    os.kill(pid, signal.SIGKILL)
    _wait_gone(state, node, 10)


def _wait_gone(state: LabState, node: Node, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node_pid(state, node) is None:
            return True
        time.sleep(0.3)
    return node_pid(state, node) is None


def teardown_files(state: LabState) -> None:
    """Removes every socket, overlay, key and seed; console logs stay for post-mortems."""
    directory = Path(state.directory)
    shutil.rmtree(directory / "sockets", ignore_errors=True)
    for node in state.nodes:
        ndir = node_dir(state, node)
        for name in ("root.qcow2", "seed.tar", "qemu.pid", "monitor.sock", "console.sock",
                     "ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"):
            (ndir / name).unlink(missing_ok=True)
    for name in ("state.json", "ssh_config", "known_hosts", "id_ed25519", "id_ed25519.pub"):
        (directory / name).unlink(missing_ok=True)


def down(directory: Path | None = None, progress: Progress | None = None) -> None:
    say = progress or (lambda line: None)
    directory = directory or default_lab_dir()
    if not (directory / "state.json").exists():
        say(f"no lab in {directory}")
        return
    state = load(directory)
    running = [node for node in state.nodes if node_pid(state, node) is not None]
    for node in running:
        say(f"powering off {node.hostname}")
        subprocess.run(
            ["ssh", "-F", str(ssh_config_path(state)), "-o", "ConnectTimeout=3",
             node.hostname, "systemctl poweroff --no-block"],
            capture_output=True, timeout=30, check=False,
        )
    for node in running:
        stop_node(state, node, graceful_timeout=45)
    for node in state.nodes:
        close_ssh_master(state, node)
    teardown_files(state)


def set_cable(state: LabState, cable: str, up_: bool) -> None:
    """Pulls or replugs a cable: both ends lose or regain carrier, as with a real cable."""
    if cable not in state.cable_up:
        raise TbctlError(f"no cable {cable!r} (cables: {', '.join(state.cables())})",
                         exit_code=2)
    for node in state.nodes:
        for end in node.ends:
            if end.cable == cable:
                monitor(state, node, f"set_link {end.netdev} {'on' if up_ else 'off'}")
    state.cable_up[cable] = up_
    save(state)


def other_qemu_processes() -> list[str]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes().startswith(b"qemu-system"):
                pids.append(proc.name)
        except OSError:
            continue
    return pids


def leftovers(directory: Path) -> list[str]:
    """Processes (QEMU, SSH masters) or sockets of this lab still present."""
    found = []
    marker = str(directory.resolve()).encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        program = cmdline.split(b"\0")[0]
        if program.startswith((b"qemu-system", b"ssh")) and marker in cmdline:
            shown = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"process {proc.name}: {shown}")
    if directory.exists():
        for path in directory.rglob("*"):
            if path.is_socket():
                found.append(f"socket {path}")
    return found
