# SPDX-License-Identifier: MIT
"""`tbctl lab`: two or more QEMU VMs joined by virtual cables (see docs/lab.md)."""

from __future__ import annotations

import os
import select
import socket
import sys
import termios
import time
import tty
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tbctl.errors import TbctlError
from tbctl.lab import cluster
from tbctl.lab.image import ensure_image

console = Console(stderr=True, highlight=False)
lab_dir_option = click.option(
    "--lab-dir", type=click.Path(path_type=Path), default=None,
    help="Where the lab keeps its state (default: $TBCTL_LAB_DIR or "
         "~/.local/state/tbrdma/lab).",
)


def _say(line: str) -> None:
    # Build output holds brackets ("[/usr/src/...Makefile.build:234: main.o]"): never markup.
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {escape(line)}", markup=True)


class _BuildProgress:
    """One live status line for the noisy debootstrap/mkfs output, phases printed."""

    def __init__(self) -> None:
        self.status = console.status("building the lab image")
        self.count = 0

    def __call__(self, line: str) -> None:
        self.count += 1
        if line.startswith(("I: Retrieving", "I: Validating", "I: Extracting",
                            "I: Unpacking", "I: Configuring")) or not line.strip():
            self.status.update(f"[{self.count}] {line[:100]}")
            if not console.is_terminal and self.count % 100 == 0:
                _say(f"... {escape(line)}")
            return
        # Build output is not rich markup: a compiler's "[/path/Makefile:430: x.o]" is text.
        _say(escape(line))


@click.group()
def lab() -> None:
    """Run a local cluster of VMs joined by virtual USB4 cables."""


@lab.command("image")
@click.option("--rebuild", is_flag=True, help="Build from scratch even if cached.")
def image_command(rebuild: bool) -> None:
    """Build (or find in the cache) the node image."""
    started = time.monotonic()
    progress = _BuildProgress()
    with progress.status:
        image = ensure_image(rebuild=rebuild, progress=progress)
    _say(f"image: {image.root} (kernel {image.kernel_release}) "
         f"in {time.monotonic() - started:.1f} s")


def _print_reach(state: cluster.LabState) -> None:
    config = cluster.ssh_config_path(state)
    console.print(f"[bold]lab up[/bold]: {', '.join(state.hostnames())} ({state.accel})")
    console.print(f"  ssh_config: {config}")
    console.print(f"  export TBCTL_SSH_CONFIG={config}")
    console.print(f"  ssh -F {config} {state.nodes[0].hostname}")
    console.print(f"  tbctl pair {state.nodes[0].hostname} {state.nodes[1].hostname}")


@lab.command("up")
@click.option("--nodes", default=2, show_default=True, help="Number of VMs.")
@click.option("--cables", default=2, show_default=True, help="Cables between each pair.")
@click.option("--rebuild", is_flag=True, help="Rebuild the image first.")
@lab_dir_option
def up_command(nodes: int, cables: int, rebuild: bool, lab_dir: Path | None) -> None:
    """Boot the lab and print how to reach its nodes."""
    started = time.monotonic()
    progress = _BuildProgress()
    with progress.status:
        state = cluster.up(nodes, cables, lab_dir, progress=progress, rebuild=rebuild)
    _say(f"phase up: {time.monotonic() - started:.1f} s")
    _print_reach(state)


@lab.command("down")
@lab_dir_option
def down_command(lab_dir: Path | None) -> None:
    """Power the nodes off and remove every socket, overlay and key."""
    started = time.monotonic()
    directory = lab_dir or cluster.default_lab_dir()
    cluster.down(directory, progress=_say)
    left = cluster.leftovers(directory)
    if left:
        raise TbctlError("left behind: " + "; ".join(left))
    _say(f"phase down: {time.monotonic() - started:.1f} s")


@lab.command("status")
@lab_dir_option
def status_command(lab_dir: Path | None) -> None:
    """Nodes, their SSH ports and reachability, and every cable's state."""
    state = cluster.load(lab_dir)
    nodes = Table(title=f"lab in {state.directory} ({state.accel})")
    for column in ("node", "qemu pid", "ssh", "reachable", "cable NICs"):
        nodes.add_column(column)
    all_up = True
    for node in state.nodes:
        pid = cluster.node_pid(state, node)
        reachable = pid is not None and cluster.ssh_ready(state, node)
        all_up &= reachable
        nodes.add_row(node.hostname, str(pid or "-"), f"127.0.0.1:{node.ssh_port}",
                      "yes" if reachable else "NO",
                      ", ".join(f"{e.ifname}={e.cable}" for e in node.ends))
    cables = Table(title="cables")
    cables.add_column("cable")
    cables.add_column("state")
    for cable in state.cables():
        cables.add_row(cable, "up" if state.cable_up.get(cable, True) else "pulled")
    out = Console(highlight=False)
    out.print(nodes)
    out.print(cables)
    out.print(f"ssh_config: {cluster.ssh_config_path(state)}")
    if not all_up:
        sys.exit(1)


@lab.command("ssh", context_settings={"ignore_unknown_options": True})
@click.argument("node")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@lab_dir_option
def ssh_command(node: str, command: tuple[str, ...], lab_dir: Path | None) -> None:
    """SSH into NODE (lab-a or a), optionally running COMMAND."""
    state = cluster.load(lab_dir)
    argv = cluster.ssh_command(state, state.node(node), *command)
    os.execvp(argv[0], argv)


@lab.command("cable")
@click.argument("cable")
@click.argument("action", type=click.Choice(["down", "up"]))
@lab_dir_option
def cable_command(cable: str, action: str, lab_dir: Path | None) -> None:
    """Pull (down) or plug in (up) CABLE, e.g. `a-b/1`: both ends lose carrier."""
    state = cluster.load(lab_dir)
    cable = cable.replace("lab-", "")
    cluster.set_cable(state, cable, action == "up")
    _say(f"cable {cable} {'plugged in' if action == 'up' else 'pulled'}")


@lab.command("console")
@click.argument("node")
@lab_dir_option
def console_command(node: str, lab_dir: Path | None) -> None:
    """Attach to NODE's serial console (Ctrl-] detaches); its log is console.log."""
    state = cluster.load(lab_dir)
    target = state.node(node)
    path = cluster.node_dir(state, target) / "console.sock"
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(path))
    except OSError as exc:
        raise TbctlError(f"{target.hostname} console unreachable: {exc}") from exc
    console.print(f"connected to {target.hostname}'s serial console; Ctrl-] detaches")
    interactive = sys.stdin.isatty()
    saved = termios.tcgetattr(sys.stdin) if interactive else None
    inputs: list[object] = [conn, sys.stdin]
    # Piped input: after it ends, show the console's answer for a few quiet seconds.
    linger_s = 5.0
    try:
        if interactive:
            tty.setraw(sys.stdin.fileno())
        while True:
            readable, _, _ = select.select(inputs, [], [], None if sys.stdin in inputs
                                           else linger_s)
            if not readable:
                break
            if conn in readable:
                data = conn.recv(4096)
                if not data:
                    break
                os.write(sys.stdout.fileno(), data)
            if sys.stdin in readable:
                data = os.read(sys.stdin.fileno(), 1024)
                if b"\x1d" in data or (not data and interactive):
                    break
                if not data:
                    inputs.remove(sys.stdin)
                    continue
                conn.sendall(data)
    finally:
        if saved is not None:
            termios.tcsetattr(sys.stdin, termios.TCSADRAIN, saved)
        conn.close()


@lab.command("demo")
@click.option("--cables", default=2, show_default=True)
@click.option("--keep", is_flag=True, help="Leave the lab running (and paired) afterwards.")
@click.option("--running", is_flag=True,
              help="Use the lab already running in --lab-dir (booted with `lab up`, whose "
                   "owner holds the heavy lock) instead of booting one; it stays up.")
@click.option("--rounds", type=click.IntRange(1, 20), default=3, show_default=True,
              help="Interleaved rounds per transport and message size (spreads need >= 2).")
@click.option("--volume-mib", type=click.IntRange(1, 1024), default=16, show_default=True,
              help="Bytes moved per bandwidth run, in MiB.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False),
              default=None, help="Where the plot (PNG, SVG) and results JSON go "
                                 "(default: ~/.local/state/tbrdma/demo).")
@click.option("--rdma-check/--no-rdma-check", default=True, show_default=True,
              help="Whether `tbctl pair` runs its pyverbs WRITE/READ round trip (about 6 s "
                   "in the lab; the benchmarks move data over tbrdma0 either way).")
@lab_dir_option
def demo_command(cables: int, keep: bool, running: bool, rounds: int, volume_mib: int,
                 out_dir: Path | None, rdma_check: bool, lab_dir: Path | None) -> None:
    """Boot two VMs, pair them over tbrdma, benchmark tbrdma vs rdma_rxe vs TCP, plot."""
    from tbctl.lab.demo import run_demo

    sys.exit(run_demo(cables=cables, keep=keep, lab_dir=lab_dir, say=_say, running=running,
                      rounds=rounds, volume_mib=volume_mib, out_dir=out_dir,
                      rdma_check=rdma_check))


@lab.command("bench")
@click.option("--pairs", type=click.IntRange(1, 20), default=3, show_default=True,
              help="Interleaved (tbrdma, rdma_rxe) pairs of runs; spreads need >= 2.")
@click.option("--volume-mib", type=click.IntRange(1, 4096), default=128, show_default=True,
              help="MiB each ib_write_bw run moves (100 or more for a CPU-per-GiB figure).")
@click.option("--keep", is_flag=True, help="Leave the lab running (and paired) afterwards.")
@click.option("--running", is_flag=True,
              help="Use the natively paired lab already running in --lab-dir instead of "
                   "booting and pairing one; it stays up.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also write the results as JSON to this file.")
@lab_dir_option
def bench_command(pairs: int, volume_mib: int, keep: bool, running: bool, out: Path | None,
                  lab_dir: Path | None) -> None:
    """tbrdma vs rdma_rxe on the same cable in paired runs: CPU per GiB, bandwidth, latency
    (median of paired ratios, spread), retransmits per 1,000 frames, syscalls per verb."""
    from tbctl.lab.bench import run_lab_bench

    sys.exit(run_lab_bench(lab_dir, _say, running=running, keep=keep, pairs=pairs,
                           volume_mib=volume_mib, out=out))
