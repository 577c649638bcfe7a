# SPDX-License-Identifier: MIT
"""`tbctl lab bench`'s arithmetic and parsing, on recorded tool output (no VM)."""

from __future__ import annotations

from rich.console import Console

from tbctl.lab import bench

# The tail of `strace -f -c ib_write_lat ...` in a trixie guest (strace 6.13).
STRACE_TAIL = """\
 2       1000          0.08           0.91          1.35        0.50         ...
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 61.52    0.049137          34      1426           write
 20.11    0.016064          21       741           read
  0.04    0.000031           3         9         3 openat
------ ----------- ----------- --------- --------- ----------------
100.00    0.079872          36      2176         3 total
"""


def run(device: str, bw: float, lat: float, cpu: float, **counters: int) -> bench.DeviceRun:
    return bench.DeviceRun(device=device, bw_mbit=bw, lat_us=lat, cpu_s_per_gib=cpu,
                           counters=dict(counters))


def test_strace_total_calls() -> None:
    assert bench.strace_calls(STRACE_TAIL) == 2176
    no_errors = STRACE_TAIL.replace("2176         3 total", "2176           total")
    assert bench.strace_calls(no_errors) == 2176
    assert bench.strace_calls("ib_write_lat: Couldn't connect") is None


def test_counter_delta_sums_hosts() -> None:
    before = [{"retransmits": 5, "tx_data_frames": 100}, {"retransmits": 1}]
    after = [{"retransmits": 7, "tx_data_frames": 1100}, {"retransmits": 4,
                                                            "tx_data_frames": 50}]
    assert bench.counter_delta(before, after) == {"retransmits": 5, "tx_data_frames": 1050}


def test_counter_delta_keeps_gauges_per_host() -> None:
    before = [{"cwnd_rail0": 32, "retransmits": 1}, {"cwnd_rail0": 32, "rto_ns": 900}]
    after = [{"cwnd_rail0": 20, "retransmits": 2}, {"cwnd_rail0": 48, "rto_ns": 400}]
    assert bench.counter_delta(before, after) == {
        "cwnd_rail0@0": 20, "retransmits": 1, "cwnd_rail0@1": 48, "rto_ns@1": 400}


def test_loss_figures_per_device_kind() -> None:
    tbrdma = bench.loss_figures("tbrdma", {"retransmits": 3, "rx_duplicates": 2,
                                           "tx_data_frames": 1500, "spurious_retransmits": 1})
    assert tbrdma == {"retransmits": 2.0, "duplicates": 4 / 3, "spurious": 2 / 3}
    rxe = bench.loss_figures("rxe", {"completer_retry_err": 0, "duplicate_request": 4,
                                     "sent_pkts": 2000})
    assert rxe == {"retransmits": 0.0, "duplicates": 2.0, "spurious": None}
    # A module without the counter, or a run that sent nothing, has no figure (not 0).
    assert bench.loss_figures("tbrdma", {"tx_data_frames": 0, "retransmits": 0}) == {
        "retransmits": None, "duplicates": None, "spurious": None}


def test_frames_per_tick() -> None:
    assert bench.frames_per_tick({"rx_frames": 900, "rx_batches": 300}) == 3.0
    # an older module has no batch counter: no figure rather than a made-up one
    assert bench.frames_per_tick({"rx_frames": 900}) is None


def test_paired_ratios_and_table() -> None:
    pairs = [(run("tbrdma", 400, 500, 50, rx_frames=70, rx_batches=10),
              run("rxe", 400, 1000, 40)),
             (run("tbrdma", 300, 450, 60), run("rxe", 200, 500, 30)),
             (run("tbrdma", 100, 100, 10), run("rxe", 0, 100, 10))]  # a failed rxe run
    ratio = bench.ratio_spread(pairs, "cpu_s_per_gib")
    assert ratio is not None and (ratio.median, ratio.low, ratio.high) == (1.25, 1.0, 2.0)
    bw = bench.ratio_spread(pairs, "bw_mbit")
    assert bw is not None and bw.count == 2 and bw.median == 1.25
    result = bench.LabBench(pairs=pairs, syscalls={"tbrdma": 3.5, "rxe": None},
                            volume=100 << 20, commit="commit abc")
    console = Console(width=200, record=True)
    console.print(bench.table(result))
    text = console.export_text()
    assert "latency [us]" in text and "bandwidth [Mb/s]" in text  # not eaten as markup
    assert "1.25 (1.00-2.00)" in text and "3.50" in text
    assert "received frames per core tick" in text and "7.00" in text
