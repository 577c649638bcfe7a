# SPDX-License-Identifier: MIT
"""`tbctl lab demo`: the README's first command, end to end on two VMs, phases timed.

Boots the two-node lab (two cables), pairs it with `tbctl pair --transport native` (one
tbrdma device pooling both cables), then runs the product's benchmark (`tbctl bench
--with-rxe`, tbctl.bench) on the same cables: tbrdma, rdma_rxe (on cable 0) and plain TCP
(cable 0), perftest for RDMA, iperf3 and qperf for TCP, transports interleaved round by
round. Prints a side-by-side table of medians with their spreads and writes a plot (PNG and
SVG).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from tbctl.bench import perf
from tbctl.bench.plot import require_matplotlib
from tbctl.bench.results import results_table, write_results
from tbctl.bench.runner import BenchOptions, bench_hosts
from tbctl.errors import TbctlError
from tbctl.hosts import SshOptions
from tbctl.lab import cluster, session

Say = Callable[[str], None]
HOST_A, HOST_B = "lab-a", "lab-b"
# Message sizes per metric; every point is measured once per round on every transport.
SIZES = {"bw": (4096, 65536, 1 << 20), "lat": (2, 1024, 16384)}
DEFAULT_ROUNDS = 3
DEFAULT_VOLUME_MIB = 16
# Target for the lab on a 2-core TCG host, from QEMU start to a verified pairing.
BOOT_TO_PAIRED_TARGET_S = 90


def ssh_runner(state: cluster.LabState, timeout: float = 300) -> perf.Run:
    def run(host: str, command: str) -> tuple[int, str]:
        argv = cluster.ssh_command(state, state.node(host), "--", "bash", "-c",
                                   shlex.quote(command))
        result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, timeout=timeout, check=False)
        return result.returncode, result.stdout

    return run


def default_out_dir() -> Path:
    return cluster.default_lab_dir().parent / "demo"


@dataclass
class Phases:
    """Wall-clock seconds per phase, in the order they ran; printed as they end."""

    say: Say
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        self.say(f"{name} ...")
        try:
            yield
        finally:
            self.add(name, time.monotonic() - started)

    def add(self, name: str, seconds: float, quiet: bool = False) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        if not quiet:
            self.say(f"phase {name}: {seconds:.1f} s")

    def report(self) -> None:
        shown = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.seconds.items())
        self.say(f"benchmark: {shown}")
        if all(name in self.seconds for name in ("boot", "ssh-ready", "pair")):
            total = self.seconds["boot"] + self.seconds["ssh-ready"] + self.seconds["pair"]
            self.say(f"benchmark: boot of 2 nodes to paired {total:.1f} s "
                     f"(target < {BOOT_TO_PAIRED_TARGET_S} s)")


def pair_command(rdma_check: bool) -> list[str]:
    command = [sys.executable, "-m", "tbctl", "pair", "--yes", "--json", "--transport",
               "native", HOST_A, HOST_B]
    return command if rdma_check else [*command, "--no-rdma-check"]


def pair_native(state: cluster.LabState, rdma_check: bool, say: Say) -> dict[str, Any]:
    """`tbctl pair --transport native` through the lab's ssh_config; its JSON report."""
    env = dict(os.environ, TBCTL_SSH_CONFIG=str(cluster.ssh_config_path(state)))
    # Its stderr (progress, errors) goes straight to the user; stdout is the JSON report.
    result = subprocess.run(pair_command(rdma_check), env=env, stdout=subprocess.PIPE,
                            text=True, timeout=900, check=False)
    # Exit 1 is "paired but not verified": the report says what failed.
    try:
        answer: dict[str, Any] = json.loads(result.stdout)  # the --json envelope
    except ValueError:
        raise TbctlError(f"tbctl pair failed (exit {result.returncode}): "
                         f"{result.stdout.strip()[-500:]}") from None
    if not answer.get("ok"):
        raise TbctlError(f"tbctl pair failed (exit {result.returncode}): "
                         f"{answer.get('error', {}).get('message', answer)}")
    report: dict[str, Any] = answer["result"]
    if report.get("transport") != "native" or not report.get("cables"):
        raise TbctlError(f"tbctl pair did not pair natively: {json.dumps(report)}")
    cables = ", ".join(f"{c['link_a']}={c['address_a']}<->{c['address_b']}"
                       for c in report["cables"])
    if not report.get("verified"):
        verdict = "[red]NOT verified[/red]: " + escape("; ".join(report.get("problems", [])))
    elif rdma_check:
        verdict = "verified (ping, ports ACTIVE, pyverbs WRITE/READ)"
    else:
        verdict = "verified (ping, ports ACTIVE; the benchmarks move the RDMA data)"
    say(f"paired {HOST_A} <-> {HOST_B}: {report['cables'][0]['rdma_a']} over {cables}, "
        f"{verdict}")
    return report


def pair_and_benchmark(state: cluster.LabState, phases: Phases, say: Say, rounds: int,
                       volume: int, out_dir: Path, rdma_check: bool) -> int:
    """Everything after boot: pair natively, then `tbctl bench --with-rxe` (the product's
    benchmark, tbctl.bench) with the lab's sizes; table, plot, results."""
    with phases("pair"):
        report = pair_native(state, rdma_check, say)
    options = BenchOptions(rounds=rounds, volume=volume, sizes=SIZES, with_rxe=True)
    ssh = SshOptions(ssh_config=str(cluster.ssh_config_path(state)))
    with phases("bench"):
        result = bench_hosts([HOST_A, HOST_B], ssh, options, say=lambda text: say(escape(text)))
    (pair,) = result["pairs"]
    out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    out.print(results_table(pair, "tbrdma vs rdma_rxe vs TCP on the lab's virtual cables: "
                                  f"median (min-max) of {rounds} interleaved rounds; TCG "
                                  "guests, so CPU-bound, not a hardware speed"))
    title = (f"{HOST_A} -> {HOST_B}, TCG lab: tbrdma over {len(report['cables'])} cables "
             f"vs rdma_rxe and TCP on {report['cables'][0]['link_a']}")
    # The demo's JSON is bench's, plus the pairing report and the phase timings.
    result = write_results(result, out_dir, stem="tbrdma-demo", title=title,
                           extra={"pair": report, "phases_s": phases.seconds})
    png, svg = (Path(f) for f in result["files"] if f.endswith((".png", ".svg")))
    out.print(f"plot: {png} {svg}")
    out.print(f"results: {out_dir / 'tbrdma-demo.json'}")
    failed = [s for s in pair["samples"] if s["value"] is None]
    for line in pair["skipped"]:
        say(f"[red]skipped[/red]: {escape(line)}")
    if failed:
        say(f"[red]{len(failed)} of {len(pair['samples'])} runs failed[/red]; first: "
            f"{failed[0]['transport']} {failed[0]['metric']} {failed[0]['size']}: "
            f"{escape(failed[0]['error'])}")
    return 0 if report.get("verified") and not failed and not pair["skipped"] else 1


def run_demo(cables: int, keep: bool, lab_dir: Path | None, say: Say, *,
             running: bool = False, rounds: int = DEFAULT_ROUNDS,
             volume_mib: int = DEFAULT_VOLUME_MIB, out_dir: Path | None = None,
             rdma_check: bool = True) -> int:
    require_matplotlib()
    out = (out_dir or default_out_dir()).resolve()
    out.mkdir(parents=True, exist_ok=True)
    phases = Phases(say)
    return on_lab(lab_dir, say, phases, running=running, cables=cables, keep=keep,
                  body=lambda state: pair_and_benchmark(state, phases, say, rounds,
                                                        volume_mib << 20, out, rdma_check))


def on_lab(lab_dir: Path | None, say: Say, phases: Phases, *, running: bool, cables: int,
           keep: bool, body: Callable[[cluster.LabState], int]) -> int:
    """`body(state)` on the lab in `lab_dir`: the one already running (its owner holds the
    heavy lock), or one booted here under the heavy lock and, unless `keep`, powered off
    afterwards. Every phase is timed; the phases are reported at the end either way."""
    directory = (lab_dir or cluster.default_lab_dir()).resolve()
    if running:
        try:
            return body(cluster.load(directory))
        finally:
            phases.report()
    with session.heavy_lock(say):
        try:
            return body(_boot(cables, directory, say, phases))
        finally:
            if not keep:
                with phases("down"):
                    cluster.down(directory, progress=say)
            phases.report()


def _boot(cables: int, directory: Path, say: Say, phases: Phases) -> cluster.LabState:
    from tbctl.commands.lab import _BuildProgress

    building = _BuildProgress()
    with phases("image"), building.status:
        cluster.ensure_image(progress=building)
    booting = _BuildProgress()
    marks: dict[str, float] = {}
    started = time.monotonic()
    say("boot ...")
    with booting.status:
        state = cluster.up(2, cables, directory, progress=booting, marks=marks)
    launched = marks.get("launched", started)
    phases.add("boot", launched - started)
    phases.add("ssh-ready", time.monotonic() - launched)
    return state
