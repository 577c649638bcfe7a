# SPDX-License-Identifier: MIT
"""Benchmarks between two hosts: perftest on an RDMA device, iperf3/qperf over TCP.

Works through a `run(host, command) -> (status, output)` callable, so `tbctl bench` (SSH
connections), the lab demo and tests share it. Every measurement returns a `Sample`; a failed one
says why instead of raising, so one broken transport never hides the others' numbers.
Numbers are printed, never asserted: TCG wall-clock figures vary severalfold.
"""

from __future__ import annotations

import json
import re
import shlex
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Run = Callable[[str, str], tuple[int, str]]

# Bandwidth in Mb/s (10^6 bit/s) and one-way latency in us for every transport: perftest's
# ib_write_lat and qperf's tcp_lat both report half the round trip.
UNITS = {"bw": "Mb/s", "lat": "us"}
# ib_write_lat polls memory on both ends: on a one-vCPU guest that keeps the receive path
# waiting for a scheduler tick (ms per round trip on a busy host), so a few hundred suffice.
LAT_ITERATIONS = 200
# perftest's "MB/sec" is 2^20 bytes per second.
MIB_PER_S_IN_MBIT = 8 * 1.048576
# A server that never sees its client must not outlive the benchmark.
SERVER_TIMEOUT_S = 120


@dataclass(frozen=True)
class Transport:
    """One way to move bytes from host a to host b.

    `device` is None for plain TCP; the RDMA fields follow perftest's `-d`/`-x` options.
    `address_b` is b's IPv4 address on the cable that carries perftest's own TCP handshake
    (RDMA) or the traffic itself (TCP).
    """

    name: str
    label: str
    address_b: str
    device: str | None = None
    gid_index_a: int | None = None
    gid_index_b: int | None = None


@dataclass
class Sample:
    transport: str
    metric: str  # "bw" or "lat"
    size: int
    value: float | None
    seconds: float
    error: str = ""
    output: str = ""  # the client's own output (perf.rdma), for callers that parse more

    @property
    def ok(self) -> bool:
        return self.value is not None


GID_SCRIPT = r"""
dev={device}
for gid in /sys/class/infiniband/$dev/ports/1/gids/*; do
  idx=${{gid##*/}}
  type=$(cat /sys/class/infiniband/$dev/ports/1/gid_attrs/types/$idx 2>/dev/null)
  case "$(cat $gid)" in 0000:0000:0000:0000:0000:ffff:*)
    [ "$type" = "RoCE v2" ] && echo $idx && exit 0;;
  esac
done
exit 1
"""


def roce_v2_ipv4_gid_index(run: Run, host: str, device: str) -> int:
    status, output = run(host, GID_SCRIPT.format(device=shlex.quote(device)))
    if status != 0 or not output.strip().isdigit():
        raise RuntimeError(f"{host}: no RoCEv2 IPv4 GID on {device}: {output.strip()}")
    return int(output.strip())


def ipv4_address(run: Run, host: str, netdev: str) -> str:
    status, output = run(host, f"ip -4 -o addr show dev {shlex.quote(netdev)}")
    match = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", output)
    if status != 0 or not match:
        raise RuntimeError(f"{host}: {netdev} has no IPv4 address: {output.strip()}")
    return match.group(1)


def parse_perftest(output: str, column: int) -> float | None:
    """The figure in `column` of perftest's result row (the first all-numeric row)."""
    for line in output.splitlines():
        fields = line.split()
        if len(fields) > column and all(re.fullmatch(r"[\d.]+", f) for f in fields[:column + 1]):
            return float(fields[column])
    return None


_QPERF_SCALE = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "sec": 1e6, "s": 1e6}


def parse_qperf_latency(output: str) -> float | None:
    """qperf's `latency = 52.3 us` line, in microseconds."""
    match = re.search(r"latency\s*=\s*([\d.]+)\s*(ns|us|ms|sec|s)\b", output)
    return float(match.group(1)) * _QPERF_SCALE[match.group(2)] if match else None


def parse_iperf3(output: str) -> float | None:
    """Receiver-side bandwidth of an `iperf3 -J` run, in Mb/s."""
    try:
        report = json.loads(output)
        return float(report["end"]["sum_received"]["bits_per_second"]) / 1e6
    except (ValueError, KeyError, TypeError):
        return None


def iterations(size: int, volume: int, least: int = 20, most: int = 20000) -> int:
    """How many messages of `size` bytes move about `volume` bytes."""
    return max(least, min(most, volume // size))


def _quoted(words: Sequence[str]) -> str:
    return " ".join(shlex.quote(word) for word in words)


def _client_until_server_listens(run: Run, host: str, command: str, tries: int = 30
                                 ) -> tuple[int, str]:
    """The servers are started in the background just before; none of the clients retry.
    A refused connection is retried whatever the exit status: `iperf3 -J` reports it in its
    JSON and exits 0."""
    status, output = 1, ""
    for _ in range(tries):
        status, output = run(host, command)
        if not re.search(r"[Cc]ouldn't connect|[Cc]onnection refused|unable to connect|"
                         r"failed to connect", output):
            break
        time.sleep(0.3)
    return status, output


def _start_server(run: Run, host: str, command: str) -> str:
    """Starts `command` in the background on `host`; returns the private directory (mktemp
    -d, mode 0700) holding its log and pid. A fixed name in /tmp would let any local user
    point it at a file of the SSH user's (root's) with a symlink and have it overwritten."""
    status, output = run(host, f"d=$(mktemp -d /tmp/tbctl-bench.XXXXXXXX) && "
                               f"(timeout {SERVER_TIMEOUT_S} {command} < /dev/null "
                               f"> \"$d/log\" 2>&1 & echo $! > \"$d/pid\") && echo \"$d\"")
    directory = output.strip().splitlines()[-1] if output.strip() else ""
    if status != 0 or not re.fullmatch(r"/tmp/tbctl-bench\.[A-Za-z0-9]+", directory):
        raise RuntimeError(f"{host}: could not start '{command}': {output.strip()}")
    return directory


def _stop_server(run: Run, host: str, directory: str, wait: bool) -> None:
    """Lets a server that ends with its client finish (so the next run finds the port
    free), then stops whatever is left of it and removes its files."""
    pid = f"$(cat {directory}/pid 2>/dev/null || echo 0)"
    settle = f"for i in $(seq 50); do kill -0 {pid} 2>/dev/null || break; sleep 0.2; done; " \
        if wait else ""
    run(host, f"{settle}kill {pid} 2>/dev/null; rm -rf {directory}; true")


def _tail(output: str, lines: int = 6) -> str:
    return " | ".join(line.strip() for line in output.strip().splitlines()[-lines:])


def _failure(run: Run, host_b: str, directory: str, tool: str, status: int, output: str
             ) -> str:
    """One line with the client's and the server's last words."""
    _, server_output = run(host_b, f"cat {directory}/log")
    return f"{tool} exit {status}: {_tail(output)}; server: {_tail(server_output)}"


def rdma(run: Run, host_a: str, host_b: str, transport: Transport, metric: str, size: int,
         volume: int, port: int, count: int | None = None, client_prefix: str = ""
         ) -> Sample:
    """ib_write_bw (bandwidth) or ib_write_lat (latency): server on b, client on a.
    `count` overrides the iterations; `client_prefix` wraps the client (e.g. strace -c),
    whose output then follows perftest's."""
    assert transport.device is not None
    tool = "ib_write_bw" if metric == "bw" else "ib_write_lat"
    if count is None:
        count = iterations(size, volume) if metric == "bw" else LAT_ITERATIONS
    common = [tool, "-d", transport.device, "-p", str(port), "-F", "-s", str(size),
              "-n", str(count)]
    if metric == "bw":
        # A send queue deeper than the run is long makes perftest refuse some sizes. The
        # default MB/sec column (2^20 bytes) keeps precision that --report_gbits's two
        # decimals of Gb/s lose below 10 Mb/s.
        common += ["-t", str(min(128, count))]
    server = _quoted([*common, "-x", str(transport.gid_index_b)])
    server_dir = _start_server(run, host_b, server)
    client = _quoted([*common, "-x", str(transport.gid_index_a), transport.address_b])
    started = time.monotonic()
    status, output = _client_until_server_listens(
        run, host_a, f"timeout {SERVER_TIMEOUT_S} {client_prefix}{client}")
    elapsed = time.monotonic() - started
    # bw: BW average [MB/sec] in column 3; lat: t_avg [us] in column 5 (qperf reports a mean).
    value = parse_perftest(output, 3 if metric == "bw" else 5)
    error = ""
    if status != 0 or value is None:
        value, error = None, _failure(run, host_b, server_dir, tool, status, output)
    elif metric == "bw":
        value *= MIB_PER_S_IN_MBIT
    _stop_server(run, host_b, server_dir, wait=True)
    return Sample(transport.name, metric, size, value, round(elapsed, 2), error, output)


def tcp(run: Run, host_a: str, host_b: str, transport: Transport, metric: str, size: int,
        volume: int, port: int) -> Sample:
    """iperf3 (bandwidth, `size`-byte writes) or qperf tcp_lat (latency): server on b."""
    if metric == "bw":
        server = f"iperf3 -s -1 -p {port}"
        client = (f"iperf3 -J -c {shlex.quote(transport.address_b)} -p {port} -l {size} "
                  f"-n {iterations(size, volume) * size}")
        name = "iperf3"
    else:
        server = f"qperf -lp {port}"
        client = (f"qperf -lp {port} -m {size} -t 2 {shlex.quote(transport.address_b)} "
                  "tcp_lat")
        name = "qperf"
    server_dir = _start_server(run, host_b, server)
    started = time.monotonic()
    status, output = _client_until_server_listens(
        run, host_a, f"timeout {SERVER_TIMEOUT_S} {client} 2>&1")
    elapsed = time.monotonic() - started
    value = parse_iperf3(output) if metric == "bw" else parse_qperf_latency(output)
    error = ""
    if status != 0 or value is None:
        value, error = None, _failure(run, host_b, server_dir, name, status, output)
    # qperf's server serves until stopped; iperf3 -1 ends after one client.
    _stop_server(run, host_b, server_dir, wait=metric == "bw")
    return Sample(transport.name, metric, size, value, round(elapsed, 2), error)


def measure(run: Run, host_a: str, host_b: str, transport: Transport, metric: str,
            size: int, volume: int, port: int) -> Sample:
    bench = rdma if transport.device else tcp
    try:
        return bench(run, host_a, host_b, transport, metric, size, volume, port)
    except Exception as exc:  # noqa: BLE001 - an ssh timeout must not end the comparison
        return Sample(transport.name, metric, size, None, 0.0, f"{type(exc).__name__}: {exc}")


def schedule(transports: Sequence[str], metrics: dict[str, Sequence[int]], rounds: int
             ) -> list[tuple[int, str, int, str]]:
    """(round, metric, size, transport) in run order.

    Transports are interleaved per point and their order rotates every round, so slow
    phases of a noisy TCG host spread over all of them instead of landing on one.
    """
    order = []
    for number in range(rounds):
        for metric, sizes in metrics.items():
            for size in sizes:
                shift = number % len(transports)
                rotated = [*transports[shift:], *transports[:shift]]
                order += [(number, metric, size, name) for name in rotated]
    return order


@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float
    count: int

    def show(self) -> str:
        digits = 1 if self.median >= 10 else 2
        if self.count == 1:
            return f"{self.median:.{digits}f}"
        return f"{self.median:.{digits}f} ({self.low:.{digits}f}-{self.high:.{digits}f})"


def spread(samples: Sequence[Sample]) -> Spread | None:
    values = [sample.value for sample in samples if sample.value is not None]
    if not values:
        return None
    return Spread(statistics.median(values), min(values), max(values), len(values))


def summarize(samples: Sequence[Sample]) -> dict[tuple[str, str, int], Spread | None]:
    """(transport, metric, size) -> the spread of its rounds (None if every round failed)."""
    grouped: dict[tuple[str, str, int], list[Sample]] = {}
    for sample in samples:
        grouped.setdefault((sample.transport, sample.metric, sample.size), []).append(sample)
    return {key: spread(group) for key, group in grouped.items()}


def human_size(size: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} B"
