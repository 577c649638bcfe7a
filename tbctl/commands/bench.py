# SPDX-License-Identifier: MIT
"""`tbctl bench`: RDMA (perftest) and TCP (iperf3, qperf) between paired hosts, written as
JSON, CSV and a plot (tbctl.bench)."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import click

from tbctl.bench.results import load_compare, results_table, write_results
from tbctl.bench.runner import (
    DEFAULT_ROUNDS,
    DEFAULT_SIZES,
    DEFAULT_VOLUME_MIB,
    BenchOptions,
    bench_hosts,
)
from tbctl.commands.common import (
    check_hosts,
    console,
    err_console,
    inventory_for,
    inventory_option,
    json_option,
    print_json,
    ssh_options,
)
from tbctl.errors import EXIT_FAILED
from tbctl.hosts import SshOptions

_SCALE = {"": 1, "k": 1 << 10, "m": 1 << 20}
MAX_SIZE = 64 << 20


def _sizes(ctx: click.Context, param: click.Parameter, value: str | None
           ) -> tuple[int, ...] | None:
    """`4k,64k,1m` -> bytes; every size a positive whole number of bytes up to 64 MiB."""
    if value is None:
        return None
    sizes = []
    for word in value.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*([kKmM]?)i?[bB]?\s*", word)
        size = int(match.group(1)) * _SCALE[match.group(2).lower()] if match else 0
        if not 0 < size <= MAX_SIZE:
            raise click.BadParameter(f"'{word}' is not a message size: give sizes like "
                                     "2,1k,64k,1m (bytes, at most 64m)")
        sizes.append(size)
    return tuple(sorted(set(sizes)))


def _shown(sizes: tuple[int, ...]) -> str:
    return ",".join(f"{s >> 20}m" if s % (1 << 20) == 0 else f"{s >> 10}k" if s % 1024 == 0
                    else str(s) for s in sizes)


@click.command("bench")
@click.argument("hosts", nargs=-1, callback=check_hosts)
@inventory_option
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Directory for bench.json, bench.csv and the plot "
                   "[default: ./tbctl-bench-<UTC time>].")
@click.option("--compare", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="An earlier run's bench.json, drawn dashed on the plot.")
@click.option("--rounds", type=click.IntRange(1, 50), default=DEFAULT_ROUNDS,
              show_default=True, help="Runs per point; the plot shows their median and range.")
@click.option("--volume-mib", type=click.IntRange(1, 4096), default=DEFAULT_VOLUME_MIB,
              show_default=True, help="MiB moved per bandwidth run.")
@click.option("--bw-sizes", callback=_sizes, metavar="SIZES",
              help=f"Bandwidth message sizes [default: {_shown(DEFAULT_SIZES['bw'])}].")
@click.option("--lat-sizes", callback=_sizes, metavar="SIZES",
              help=f"Latency message sizes [default: {_shown(DEFAULT_SIZES['lat'])}].")
@click.option("--with-rxe", is_flag=True,
              help="Also add an rdma_rxe device on the first cable for the run (removed "
                   "afterwards), to compare it with the pairing's own device.")
@click.option("--no-rdma", is_flag=True, help="TCP only.")
@click.option("--no-tcp", is_flag=True, help="RDMA only.")
@ssh_options
@json_option
def bench_command(hosts: tuple[str, ...], inventory: str | None, out_dir: Path | None,
                  compare: Path | None, rounds: int, volume_mib: int,
                  bw_sizes: tuple[int, ...] | None, lat_sizes: tuple[int, ...] | None,
                  with_rxe: bool, no_rdma: bool, no_tcp: bool, ssh: SshOptions,
                  as_json: bool) -> None:
    """Measure bandwidth and latency vs message size between paired hosts.

    Each RDMA device of the pairing (tbrdma, or rdma_rxe) with perftest (ib_write_bw,
    ib_write_lat), and TCP on the same cable addresses with iperf3 (bandwidth) and qperf
    (latency), interleaved round by round. With no hosts: the inventory's hosts
    (./tbctl.toml or --inventory); every paired pair among the hosts is measured, clients
    on the first of the two. Writes bench.json, bench.csv and a plot (PNG and SVG, needs
    matplotlib) into the directory it prints. A tool missing on a host skips what needs it,
    and says so.

    Exit codes: 0 every run gave a number, 1 a run failed or a pair had nothing to measure,
    2 bad usage, 3 SSH failure, 4 host error, 5 the hosts are not paired.
    """
    if no_rdma and no_tcp:
        raise click.UsageError("--no-rdma and --no-tcp leave nothing to measure: drop one")
    earlier = load_compare(compare) if compare else None
    found = inventory_for(inventory, hosts)
    names = found.hosts if found else hosts
    sizes = {"bw": bw_sizes or DEFAULT_SIZES["bw"], "lat": lat_sizes or DEFAULT_SIZES["lat"]}
    options = BenchOptions(rounds=rounds, volume=volume_mib << 20, sizes=sizes,
                           with_rxe=with_rxe, rdma=not no_rdma, tcp=not no_tcp)
    out = (out_dir or Path(time.strftime("tbctl-bench-%Y%m%dT%H%M%SZ", time.gmtime())))
    result = bench_hosts(names, ssh, options,
                         say=lambda text: err_console.print(f"tbctl: {text}", markup=False,
                                                            highlight=False))
    result["compare"] = str(compare) if compare else None
    result = write_results(result, out.resolve(), earlier=earlier)
    if as_json:
        print_json(result)
    else:
        for pair in result["pairs"]:
            console.print(results_table(pair, f"{pair['host_a']} -> {pair['host_b']}: median "
                                              f"(min-max) of {rounds} round(s)"))
            for line in pair["skipped"]:
                console.print(f"skipped: {line}", markup=False)
        if result["plot_error"]:
            console.print(f"no plot: {result['plot_error']}", markup=False)
        console.print(f"results: {result['out_dir']}", markup=False, highlight=False)
        for path in result["files"]:
            console.print(f"  {path}", markup=False, highlight=False)
    failed = [s for p in result["pairs"] for s in p["samples"] if s["value"] is None]
    if failed or any(not p["samples"] for p in result["pairs"]):
        sys.exit(EXIT_FAILED)
