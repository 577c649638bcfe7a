# SPDX-License-Identifier: MIT
"""`tbctl lab bench`: the data-path benchmark, tbrdma against rdma_rxe on the same cable.

Under TCG both drivers are CPU-bound and wall-clock numbers swing severalfold between runs,
so single numbers mean little. This runs the two devices in pairs (tbrdma then rxe, N
times), each run moving at least 100 MiB with `ib_write_bw` 64 KiB plus an `ib_write_lat`
2 B, and reports the median and spread of the per-pair ratios tbrdma/rxe of:
- host CPU-seconds per GiB: both QEMU processes' utime+stime (host /proc) over the transfer;
- bandwidth and latency (perftest's own figures);
and, per device, from its counters over the bandwidth run (both hosts summed):
- frames retransmitted per 1,000 data frames sent (tbrdma `retransmits`/`tx_data_frames`;
  rxe counts retry events, not frames: `completer_retry_err` per 1,000 `sent_pkts`);
- duplicates received per 1,000 data frames (tbrdma `rx_duplicates`, rxe
  `duplicate_request`): what the peer got twice, comparable across both;
- spurious retransmits per 1,000 (any tbrdma counter named `spurious*`, if the module has one);
and syscalls per `ib_write_lat` iteration on the client (strace -c of two runs of different
length, differenced, so set-up and tear-down cancel out).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tbctl.bench import perf, runner
from tbctl.errors import TbctlError
from tbctl.hosts import SshOptions, connected, in_parallel
from tbctl.lab import cluster
from tbctl.lab.demo import HOST_A, HOST_B, Phases, on_lab, pair_native

Say = Callable[[str], None]
DEFAULT_PAIRS = 3
DEFAULT_VOLUME_MIB = 128
BW_SIZE = 65536
LAT_SIZE = 2
# Two ib_write_lat lengths whose syscall counts are differenced (per-iteration cost only).
STRACE_COUNTS = (100, 400)
FIRST_PORT = 18900
GIB = 1 << 30


@dataclass
class DeviceRun:
    """One device's share of one pair: bandwidth run, latency run, counter deltas."""

    device: str
    bw_mbit: float | None
    lat_us: float | None
    cpu_s_per_gib: float | None
    counters: dict[str, int] = field(default_factory=dict)
    error: str = ""


def qemu_cpu_seconds(state: cluster.LabState) -> float:
    """utime+stime of every node's QEMU process (all its threads), in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for node in state.nodes:
        pid = cluster.node_pid(state, node)
        if pid is None:
            raise TbctlError(f"{node.hostname}: its QEMU process is gone: run tbctl lab status")
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / ticks


def read_counters(run: perf.Run, host: str, device: str) -> dict[str, int]:
    """The device's port counters (`rdma statistic` reads the same sysfs files)."""
    status, output = run(host, f"cd /sys/class/infiniband/{device}/ports/1/hw_counters && "
                               "grep -H . *")
    if status != 0:
        return {}
    counters = {}
    for line in output.splitlines():
        name, _, value = line.partition(":")
        if value.strip().lstrip("-").isdigit():
            counters[name.strip()] = int(value)
    return counters


# tbrdma hw counters that are a state, not a count: their value after the run, per host.
GAUGES = ("cwnd_rail", "rails_up", "link_state", "srtt_ns", "rto_ns")


def counter_delta(before: Sequence[Mapping[str, int]], after: Sequence[Mapping[str, int]]
                  ) -> dict[str, int]:
    """after - before, summed over the hosts; gauges (GAUGES) as their value after, per host
    (`name@host-index`)."""
    delta: dict[str, int] = {}
    for host, (old, new) in enumerate(zip(before, after, strict=True)):
        for name, value in new.items():
            if name.startswith(GAUGES):
                delta[f"{name}@{host}"] = value
            else:
                delta[name] = delta.get(name, 0) + value - old.get(name, 0)
    return delta


def per_thousand(counters: Mapping[str, int], numerator: str, denominator: str
                 ) -> float | None:
    sent = counters.get(denominator, 0)
    if numerator not in counters or sent <= 0:
        return None
    return 1000.0 * counters[numerator] / sent


def loss_figures(kind: str, counters: Mapping[str, int]) -> dict[str, float | None]:
    """Retransmitted, duplicate and spurious frames per 1,000 data frames of one run."""
    if kind == "rxe":
        return {"retransmits": per_thousand(counters, "completer_retry_err", "sent_pkts"),
                "duplicates": per_thousand(counters, "duplicate_request", "sent_pkts"),
                "spurious": None}
    spurious = next((name for name in counters if name.startswith("spurious")), None)
    return {"retransmits": per_thousand(counters, "retransmits", "tx_data_frames"),
            "duplicates": per_thousand(counters, "rx_duplicates", "tx_data_frames"),
            "spurious": (per_thousand(counters, spurious, "tx_data_frames")
                         if spurious else None)}


def frames_per_tick(counters: Mapping[str, int]) -> float | None:
    """Frames the module's core took per tick: the rail hands them over in batches."""
    batches = counters.get("rx_batches")
    return counters.get("rx_frames", 0) / batches if batches else None


def strace_calls(output: str) -> int | None:
    """The calls column of `strace -c`'s total line."""
    for line in reversed(output.splitlines()):
        words = line.split()
        if words and words[-1] == "total" and len(words) >= 5 and words[3].isdigit():
            return int(words[3])
    return None


def syscalls_per_iteration(run: perf.Run, transport: perf.Transport, port: int
                           ) -> float | None:
    """Client syscalls per ib_write_lat iteration: two run lengths, differenced."""
    calls = []
    for offset, count in enumerate(STRACE_COUNTS):
        sample = perf.rdma(run, HOST_A, HOST_B, transport, "lat", LAT_SIZE, 0, port + offset,
                           count=count, client_prefix="strace -f -c ")
        calls.append(strace_calls(sample.output) if sample.ok else None)
    if calls[0] is None or calls[1] is None:
        return None
    return (calls[1] - calls[0]) / (STRACE_COUNTS[1] - STRACE_COUNTS[0])


def measure_device(run: perf.Run, state: cluster.LabState, transport: perf.Transport,
                   kind: str, volume: int, port: int) -> DeviceRun:
    hosts = (HOST_A, HOST_B)
    before = [read_counters(run, host, transport.device or "") for host in hosts]
    cpu_before = qemu_cpu_seconds(state)
    bw = perf.rdma(run, HOST_A, HOST_B, transport, "bw", BW_SIZE, volume, port)
    cpu = qemu_cpu_seconds(state) - cpu_before
    after = [read_counters(run, host, transport.device or "") for host in hosts]
    lat = perf.rdma(run, HOST_A, HOST_B, transport, "lat", LAT_SIZE, volume, port + 1)
    moved = perf.iterations(BW_SIZE, volume) * BW_SIZE
    return DeviceRun(device=kind, bw_mbit=bw.value, lat_us=lat.value,
                     cpu_s_per_gib=cpu / (moved / GIB) if bw.ok else None,
                     counters=counter_delta(before, after),
                     error="; ".join(s.error for s in (bw, lat) if s.error))


def ratio_spread(pairs: Sequence[tuple[DeviceRun, DeviceRun]], metric: str
                 ) -> perf.Spread | None:
    ratios = [getattr(t, metric) / getattr(r, metric) for t, r in pairs
              if getattr(t, metric) and getattr(r, metric)]
    if not ratios:
        return None
    return perf.Spread(statistics.median(ratios), min(ratios), max(ratios), len(ratios))


def value_spread(values: Sequence[float | None]) -> perf.Spread | None:
    known = [v for v in values if v is not None]
    if not known:
        return None
    return perf.Spread(statistics.median(known), min(known), max(known), len(known))


@dataclass
class LabBench:
    pairs: list[tuple[DeviceRun, DeviceRun]]
    syscalls: dict[str, float | None]
    volume: int
    commit: str


def table(result: LabBench) -> Table:
    def show(spread: perf.Spread | None) -> str:
        return spread.show() if spread else "-"

    grid = Table(title=f"tbrdma vs rdma_rxe, same cable, {len(result.pairs)} interleaved "
                       f"pairs of ib_write_bw {BW_SIZE >> 10} KiB x "
                       f"{result.volume >> 20} MiB and ib_write_lat {LAT_SIZE} B; median "
                       f"(min-max); {result.commit}")
    for column in ("metric", "tbrdma", "rdma_rxe", "tbrdma/rxe (paired)"):
        grid.add_column(column, justify="left" if column == "metric" else "right")
    rows = (("host CPU-s per GiB", "cpu_s_per_gib"), ("bandwidth [Mb/s]", "bw_mbit"),
            ("latency [us]", "lat_us"))
    for label, metric in rows:
        per_device = [show(value_spread([getattr(pair[i], metric) for pair in result.pairs]))
                      for i in (0, 1)]
        grid.add_row(escape(label), *per_device, show(ratio_spread(result.pairs, metric)))
    for label, key in (("retransmitted per 1000 data frames", "retransmits"),
                       ("duplicates received per 1000", "duplicates"),
                       ("spurious retransmits per 1000", "spurious")):
        cells = [show(value_spread([loss_figures(kind, p[i].counters)[key]
                                    for p in result.pairs]))
                 for i, kind in ((0, "tbrdma"), (1, "rxe"))]
        grid.add_row(label, *cells, "")
    grid.add_row("received frames per core tick",
                 show(value_spread([frames_per_tick(p[0].counters) for p in result.pairs])),
                 "-", "")
    grid.add_row("syscalls per ib_write_lat iteration",
                 *(f"{v:.2f}" if v is not None else "-"
                   for v in (result.syscalls.get("tbrdma"), result.syscalls.get("rxe"))), "")
    return grid


def source_commit() -> str:
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty"],
                              capture_output=True, text=True, timeout=10, check=True)
        return f"commit {head.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        return "commit unknown"


def bench_lab(state: cluster.LabState, pairs: int, volume: int, say: Say) -> LabBench:
    """Pairs of (tbrdma, rxe) runs on a natively paired lab; rxe on the first cable."""
    ssh = SshOptions(ssh_config=str(cluster.ssh_config_path(state)))
    hosts = [HOST_A, HOST_B]
    with connected(hosts, ssh) as conns:
        by_name = dict(zip(hosts, conns, strict=True))
        statuses = dict(zip(hosts, in_parallel(
            lambda c: c.agent("status", "--state-dir", ssh.state_dir), conns), strict=True))
        run = runner.connection_runner(by_name)
        root_run = runner.connection_runner(by_name, as_root=True)
        transports, skipped = runner.plan_transports(
            HOST_A, HOST_B, statuses[HOST_A], statuses[HOST_B], runner.BenchOptions(tcp=False))
        if [t["kind"] for t in transports] != ["tbrdma"]:
            raise TbctlError(f"the lab is not paired over tbrdma ({'; '.join(skipped)}): "
                             "run tbctl lab bench without --running, or pair it first")
        native = transports[0]
        try:
            rxe = runner.add_rxe(root_run, run, HOST_A, HOST_B, statuses[HOST_A],
                                 statuses[HOST_B])
            devices = {kind: perf.Transport(t["name"], t["label"], t["address_b"], t["device"],
                                            t["gid_index_a"], t["gid_index_b"])
                       for kind, t in (("tbrdma", native), ("rxe", rxe))}
            runs = []
            for number in range(pairs):
                pair = []
                for offset, kind in enumerate(("tbrdma", "rxe")):
                    port = FIRST_PORT + 4 * (2 * number + offset)
                    result = measure_device(run, state, devices[kind], kind, volume, port)
                    pair.append(result)
                    say(f"pair {number + 1}/{pairs} {kind}: {_brief(result)}")
                runs.append((pair[0], pair[1]))
            syscalls = {kind: syscalls_per_iteration(run, devices[kind], FIRST_PORT + 100 + 4 * i)
                        for i, kind in enumerate(("tbrdma", "rxe"))}
            say("syscalls per ib_write_lat iteration: " + ", ".join(
                f"{kind} {value:.2f}" if value is not None else f"{kind} unknown"
                for kind, value in syscalls.items()))
        finally:
            runner.remove_rxe(root_run, hosts)
    return LabBench(pairs=runs, syscalls=syscalls, volume=volume, commit=source_commit())


def _brief(result: DeviceRun) -> str:
    if result.error:
        return f"FAILED {result.error}"
    retransmits = loss_figures(result.device, result.counters)["retransmits"]
    return (f"{result.bw_mbit:.1f} Mb/s, {result.lat_us:.1f} us, "
            f"{result.cpu_s_per_gib:.1f} CPU-s/GiB, retransmitted per 1000: "
            + (f"{retransmits:.2f}" if retransmits is not None else "-"))


def to_json(result: LabBench) -> dict[str, Any]:
    return {"commit": result.commit, "volume_bytes": result.volume,
            "bw_size": BW_SIZE, "lat_size": LAT_SIZE,
            "pairs": [{"tbrdma": asdict(t), "rxe": asdict(r)} for t, r in result.pairs],
            "syscalls_per_iteration": result.syscalls}


def run_lab_bench(lab_dir: Path | None, say: Say, *, running: bool, keep: bool, pairs: int,
                  volume_mib: int, out: Path | None) -> int:
    phases = Phases(say)

    def body(state: cluster.LabState) -> int:
        if not running:
            with phases("pair"):
                pair_native(state, rdma_check=False, say=say)
        with phases("bench"):
            result = bench_lab(state, pairs, volume_mib << 20, say)
        Console(highlight=False, width=None if sys.stdout.isatty() else 160).print(
            table(result))
        if out:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(to_json(result), indent=2) + "\n")
            say(f"results: {out}")
        failed = [r.error for p in result.pairs for r in p if r.error]
        for error in failed:
            say(f"failed run: {error}")
        return 1 if failed else 0

    return on_lab(lab_dir, say, phases, running=running, cables=2, keep=keep, body=body)

