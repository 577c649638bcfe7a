# SPDX-License-Identifier: MIT
"""`tbctl bench`: perftest on each RDMA device of every paired pair of hosts, and TCP
(iperf3 bandwidth, qperf latency) on the same cable addresses, over the product's SSH
connections.

The transports come from the pairing the hosts recorded (`tbctl node status`): the RDMA
device of a native (tbrdma) or rxe pairing with its RoCE v2 GID for the cable address, and
the first cable's addresses for TCP. With `with_rxe`, an rdma_rxe device is added on the
first cable for the run (next to tbrdma: tbrdma frames have their own ethertype, rxe speaks
RoCE v2 over UDP, so both share one netdev) and removed afterwards.
"""

from __future__ import annotations

import itertools
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tbctl.bench import perf
from tbctl.connection import Connection
from tbctl.errors import EXIT_USAGE, PlanError, RemoteError, TbctlError
from tbctl.hosts import SshOptions, connected, in_parallel
from tbctl.pairing import pairing_with
from tbctl.schema import BenchPair, BenchResult, BenchSample, BenchTransport

Say = Callable[[str], None]
Run = perf.Run

# Message sizes per metric; every point is measured once per round on every transport.
DEFAULT_SIZES: dict[str, tuple[int, ...]] = {
    "bw": (4096, 16384, 65536, 262144, 1 << 20, 4 << 20),
    "lat": (2, 64, 1024, 4096, 16384, 65536),
}
DEFAULT_ROUNDS = 3
DEFAULT_VOLUME_MIB = 64
FIRST_PORT = 18600
RXE_DEVICE = "rxe_bench"
# What each measurement runs, on both hosts.
TOOLS = {("rdma", "bw"): "ib_write_bw", ("rdma", "lat"): "ib_write_lat",
         ("tcp", "bw"): "iperf3", ("tcp", "lat"): "qperf"}
PACKAGES = {"ib_write_bw": "perftest", "ib_write_lat": "perftest", "iperf3": "iperf3",
            "qperf": "qperf"}
KIND_OF_PAIRING = {"native": "tbrdma", "rxe": "rxe"}


@dataclass(frozen=True)
class BenchOptions:
    rounds: int = DEFAULT_ROUNDS
    volume: int = DEFAULT_VOLUME_MIB << 20  # bytes per bandwidth run (fewer for huge sizes)
    sizes: Mapping[str, Sequence[int]] = field(default_factory=lambda: dict(DEFAULT_SIZES))
    with_rxe: bool = False
    rdma: bool = True
    tcp: bool = True


def _no_say(text: str) -> None:
    pass


def connection_runner(conns: Mapping[str, Connection], as_root: bool = False) -> Run:
    """perf's `run(host, command)` over the open connections; stderr joins stdout in order.
    `as_root` goes through sudo where the SSH user is not root (rdma link add needs it)."""
    def run(host: str, command: str) -> tuple[int, str]:
        conn = conns[host]
        sudo = "sudo -n " if as_root and conn.sudo else ""
        status, out, err = conn.run(f"{sudo}bash -c {shlex.quote(command)} 2>&1",
                                    timeout=perf.SERVER_TIMEOUT_S + 60)
        return status, out + err

    return run


def paired_pairs(hosts: Sequence[str], statuses: Mapping[str, dict[str, Any]]
                 ) -> list[tuple[str, str]]:
    """Every two of `hosts` paired with each other (both sides recorded it), in order."""
    pairs = [(a, b) for a, b in itertools.combinations(hosts, 2)
             if pairing_with(statuses[a], statuses[b]["host_id"])
             and pairing_with(statuses[b], statuses[a]["host_id"])]
    if not pairs and len(hosts) == 2:
        raise PlanError(f"{hosts[0]} and {hosts[1]} are not paired: run tbctl pair "
                        f"{hosts[0]} {hosts[1]} first")
    if not pairs:
        raise PlanError(f"no two of {' '.join(hosts)} are paired with each other: run tbctl "
                        "pair (with the inventory, or on two cabled hosts) first")
    return pairs


def available_tools(run: Run, host: str) -> set[str]:
    words = " ".join(sorted(set(TOOLS.values())))
    _, output = run(host, f"for t in {words}; do command -v $t >/dev/null && echo $t; done; "
                          "true")
    return set(output.split())


def _peer_cable(status_b: dict[str, Any], status_a: dict[str, Any], address: str
                ) -> dict[str, Any] | None:
    pairing = pairing_with(status_b, status_a["host_id"])
    return next((c for c in (pairing or {}).get("cables", []) if c["address"] == address),
                None)


def plan_transports(a: str, b: str, status_a: dict[str, Any], status_b: dict[str, Any],
                    options: BenchOptions) -> tuple[list[BenchTransport], list[str]]:
    """The pairing's RDMA devices and TCP on its first working cable; and what is skipped."""
    pairing = pairing_with(status_a, status_b["host_id"])
    assert pairing is not None
    cables = [c for c in pairing["cables"] if c.get("up", True)]
    skipped: list[str] = []
    if not cables:
        return [], [f"{a}-{b}: no cable is up: run tbctl status {a} {b}"]
    chosen: list[BenchTransport] = []
    kind = KIND_OF_PAIRING.get(pairing["transport"])
    if options.rdma and kind is None:
        skipped.append(f"{a}-{b}: RDMA: the pairing has no RDMA device (transport "
                       f"{pairing['transport']})")
    elif options.rdma:
        devices = list(dict.fromkeys(c["rdma_device"] for c in cables if c.get("rdma_device")))
        for device in devices:
            cable = next(c for c in cables if c["rdma_device"] == device)
            far = _peer_cable(status_b, status_a, cable["peer_address"])
            gid_b = far.get("gid_index") if far else None
            if cable.get("gid_index") is None or gid_b is None:
                skipped.append(f"{a}-{b}: {device}: no RoCE v2 GID for the cable addresses "
                               f"{cable['address']}/{cable['peer_address']}: run tbctl "
                               f"status {a} {b}")
                continue
            pooled = sum(1 for c in cables if c["rdma_device"] == device)
            chosen.append(BenchTransport(
                name=kind, kind=kind,  # type: ignore[typeddict-item]
                label=f"{kind} {device}" + (f" ({pooled} cables pooled)" if pooled > 1
                                            else f" ({cable['link']})"),
                device=device, link=cable["link"], address_b=cable["peer_address"],
                gid_index_a=cable["gid_index"], gid_index_b=gid_b))
    if options.tcp:
        first = cables[0]
        chosen.append(BenchTransport(name="tcp", kind="tcp", label=f"TCP ({first['link']})",
                                     device=None, link=first["link"],
                                     address_b=first["peer_address"], gid_index_a=None,
                                     gid_index_b=None))
    return _unique_names(chosen), skipped


def _unique_names(transports: list[BenchTransport]) -> list[BenchTransport]:
    """A kind that appears twice (an rxe device per cable) is told apart by its device."""
    counts: dict[str, int] = {}
    for t in transports:
        counts[t["kind"]] = counts.get(t["kind"], 0) + 1
    return [BenchTransport(**{**t, "name": f"{t['kind']}:{t['device']}"})  # type: ignore[typeddict-item]
            if counts[t["kind"]] > 1 and t["device"] else t for t in transports]


def add_rxe(root_run: Run, run: Run, a: str, b: str, status_a: dict[str, Any],
            status_b: dict[str, Any]) -> BenchTransport:
    """rdma_rxe on the pair's first cable for the run; remove_rxe takes it away again."""
    pairing = pairing_with(status_a, status_b["host_id"])
    assert pairing is not None
    cable = pairing["cables"][0]
    for host, netdev in ((a, cable["link"]), (b, cable["peer_link"])):
        status, output = root_run(host, f"rdma link delete {RXE_DEVICE} 2>/dev/null; "
                                        f"rdma link add {RXE_DEVICE} type rxe netdev "
                                        f"{shlex.quote(netdev)}")
        if status != 0:
            raise RemoteError(f"{host}: rdma link add {RXE_DEVICE} on {netdev}: "
                              f"{' '.join(output.split())} (is rdma_rxe available?)")
    return BenchTransport(
        name="rxe", kind="rxe", label=f"rdma_rxe ({cable['link']})", device=RXE_DEVICE,
        link=cable["link"], address_b=cable["peer_address"],
        gid_index_a=perf.roce_v2_ipv4_gid_index(run, a, RXE_DEVICE),
        gid_index_b=perf.roce_v2_ipv4_gid_index(run, b, RXE_DEVICE))


def remove_rxe(root_run: Run, hosts: Sequence[str]) -> None:
    for host in hosts:
        root_run(host, f"rdma link delete {RXE_DEVICE} 2>/dev/null; true")


def _perf_transport(t: BenchTransport) -> perf.Transport:
    return perf.Transport(t["name"], t["label"], t["address_b"], t["device"],
                          t["gid_index_a"], t["gid_index_b"])


def missing_tools(transports: Sequence[BenchTransport], tools: Mapping[str, set[str]],
                  a: str, b: str, sizes: Mapping[str, Sequence[int]]) -> dict[tuple[str, str], str]:
    """(transport, metric) -> why it cannot run (its tool is missing on a host)."""
    why = {}
    for t in transports:
        for metric in sizes:
            tool = TOOLS[("tcp" if t["kind"] == "tcp" else "rdma", metric)]
            lacking = [h for h in (a, b) if tool not in tools[h]]
            if lacking:
                why[(t["name"], metric)] = (f"{a}-{b}: {t['name']} {metric}: {tool} is not "
                                            f"installed on {', '.join(lacking)} (package "
                                            f"{PACKAGES[tool]})")
    return why


def measure_pair(run: Run, a: str, b: str, transports: Sequence[BenchTransport],
                 options: BenchOptions, skip: Mapping[tuple[str, str], str], say: Say
                 ) -> list[BenchSample]:
    """Every point of every transport, interleaved round by round (perf.schedule)."""
    by_name = {t["name"]: _perf_transport(t) for t in transports}
    plan = [step for step in perf.schedule(list(by_name), dict(options.sizes), options.rounds)
            if (step[3], step[1]) not in skip]
    samples: list[BenchSample] = []
    for index, (number, metric, size, name) in enumerate(plan):
        # A fresh port per run: a server that has not quite let go never blocks the next.
        port = FIRST_PORT + index % 200
        sample = perf.measure(run, a, b, by_name[name], metric, size, options.volume, port)
        samples.append(BenchSample(transport=name, metric=metric,  # type: ignore[typeddict-item]
                                   size=size, round=number + 1, value=sample.value,
                                   unit=perf.UNITS[metric], seconds=sample.seconds,
                                   error=sample.error))
        shown = (f"{sample.value:.2f} {perf.UNITS[metric]}" if sample.ok
                 else f"FAILED {sample.error}")
        say(f"{a}->{b} round {number + 1}/{options.rounds} {name} {metric} "
            f"{perf.human_size(size)}: {shown} ({sample.seconds:.1f} s)")
    return samples


def bench_pair(conns: Mapping[str, Connection], a: str, b: str,
               statuses: Mapping[str, dict[str, Any]], options: BenchOptions,
               say: Say = _no_say) -> BenchPair:
    from tbctl.bench.results import points

    run, root_run = connection_runner(conns), connection_runner(conns, as_root=True)
    transports, skipped = plan_transports(a, b, statuses[a], statuses[b], options)
    tools = {host: available_tools(run, host) for host in (a, b)}
    added = False
    try:
        if options.with_rxe:
            added = True
            rxe = add_rxe(root_run, run, a, b, statuses[a], statuses[b])
            # RDMA devices first, then TCP: the table and the legend read in that order.
            transports = _unique_names([*(t for t in transports if t["kind"] != "tcp"), rxe,
                                        *(t for t in transports if t["kind"] == "tcp")])
        skip = missing_tools(transports, tools, a, b, options.sizes)
        skipped += sorted(set(skip.values()))
        for line in skipped:
            say(f"skipped: {line}")
        samples = measure_pair(run, a, b, transports, options, skip, say)
    finally:
        if added:
            remove_rxe(root_run, (a, b))
    return BenchPair(host_a=a, host_b=b, transports=list(transports), samples=samples,
                     summary=points(samples), skipped=skipped)


def bench_hosts(hosts: Sequence[str], ssh: SshOptions, options: BenchOptions,
                say: Say = _no_say) -> BenchResult:
    """Benchmark every paired pair among `hosts` in turn (clients on the first of each)."""
    if len(hosts) < 2:
        raise TbctlError("name two paired hosts (or give an inventory) to benchmark between",
                         EXIT_USAGE)
    if len(set(hosts)) != len(hosts):
        raise TbctlError(f"a host is named twice in {' '.join(hosts)}: name each host once",
                         EXIT_USAGE)
    say(f"connecting to {', '.join(hosts)}")
    with connected(list(hosts), ssh) as conns:
        statuses = dict(zip(hosts, in_parallel(
            lambda c: c.agent("status", "--state-dir", ssh.state_dir), conns), strict=True))
        by_name = dict(zip(hosts, conns, strict=True))
        pairs = []
        for a, b in paired_pairs(hosts, statuses):
            started = time.monotonic()
            pairs.append(bench_pair(by_name, a, b, statuses, options, say))
            say(f"{a}->{b}: {time.monotonic() - started:.1f} s")
    return BenchResult(out_dir="", files=[], plot_error=None, compare=None,
                       rounds=options.rounds, volume_bytes=options.volume,
                       sizes={m: list(s) for m, s in options.sizes.items()}, pairs=pairs)
