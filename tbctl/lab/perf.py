# SPDX-License-Identifier: MIT
"""perftest between two lab nodes on one cable, over the rdma_rxe device tbctl pair made.

Works through a `run(host, command) -> (status, output)` callable, so the demo (ssh
subprocesses) and tests can share it. Numbers are printed, never asserted.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass

Run = Callable[[str, str], tuple[int, str]]

# name -> (extra arguments, column of the figure reported, unit)
PERFTESTS = {
    "ib_write_bw": (["-s", "65536", "-n", "200", "--report_gbits"], 3, "Gb/s"),
    "ib_send_bw": (["-s", "65536", "-n", "200", "--report_gbits"], 3, "Gb/s"),
    "ib_read_lat": (["-s", "2", "-n", "200"], 4, "us"),
    "ib_write_lat": (["-s", "2", "-n", "200"], 4, "us"),
}


@dataclass
class CableEndpoints:
    """What perftest needs on one cable: each side's RDMA device, GID index and address."""

    netdev: str
    device: str
    gid_index_a: int
    gid_index_b: int
    address_b: str


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


def endpoints(run: Run, host_a: str, host_b: str, netdev: str) -> CableEndpoints:
    device = f"rxe_{netdev}"
    status, output = run(host_b, f"ip -4 -o addr show dev {shlex.quote(netdev)}")
    match = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", output)
    if status != 0 or not match:
        raise RuntimeError(f"{host_b}: {netdev} has no IPv4 address: {output.strip()}")
    return CableEndpoints(
        netdev=netdev, device=device,
        gid_index_a=roce_v2_ipv4_gid_index(run, host_a, device),
        gid_index_b=roce_v2_ipv4_gid_index(run, host_b, device),
        address_b=match.group(1),
    )


def parse_result(output: str, column: int) -> float | None:
    """The figure in `column` of perftest's result row (the first all-numeric row)."""
    for line in output.splitlines():
        fields = line.split()
        if len(fields) > column and all(re.fullmatch(r"[\d.]+", f) for f in fields[:column + 1]):
            return float(fields[column])
    return None


def run_perftest(run: Run, host_a: str, host_b: str, ends: CableEndpoints, test: str,
                 port: int = 18515) -> dict[str, object]:
    """Server on b, client on a; returns {"test", "ok", "value", "unit", "seconds"}."""
    extra, column, unit = PERFTESTS[test]
    common = [test, "-d", ends.device, "-p", str(port), "-F", *extra]
    server_log = f"/tmp/tbctl-lab-{test}-{port}.log"
    server = " ".join(shlex.quote(word) for word in [*common, "-x", str(ends.gid_index_b)])
    run(host_b, f"rm -f {server_log}; (timeout 120 {server} > {server_log} 2>&1 &)")
    client = " ".join(shlex.quote(word) for word in [*common, "-x", str(ends.gid_index_a),
                                                     ends.address_b])
    started = time.monotonic()
    status, output = 1, ""
    # The server needs a moment to listen; perftest's client does not retry by itself.
    for _ in range(20):
        time.sleep(0.5)
        status, output = run(host_a, f"timeout 120 {client}")
        if status == 0 or "Couldn't connect" not in output:
            break
    elapsed = time.monotonic() - started
    for _ in range(20):
        done, _ = run(host_b, f"! pgrep -x {test} >/dev/null")
        if done == 0:
            break
        time.sleep(0.5)
    _, server_output = run(host_b, f"cat {server_log}; rm -f {server_log}")
    value = parse_result(output, column)
    return {"test": test, "ok": status == 0 and value is not None, "value": value,
            "unit": unit, "seconds": round(elapsed, 1),
            "output": output if status != 0 else "", "server_output":
                server_output if status != 0 else ""}
