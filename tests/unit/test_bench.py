# SPDX-License-Identifier: MIT
"""tbctl.bench without hosts: tool output parsing, the interleaved schedule, transports from a
recorded pairing, the JSON/CSV it writes, --compare, and the plot (a real PNG and SVG)."""

from __future__ import annotations

import copy
import csv
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tbctl.bench import perf, results
from tbctl.bench.runner import BenchOptions, paired_pairs, plan_transports
from tbctl.errors import TbctlError
from tbctl.schema import BenchPair, BenchResult, BenchSample, BenchTransport
from tests.lab import demo_output

DATA = Path(__file__).with_name("data")

PERFTEST_BW_OUTPUT = """\
 #bytes     #iterations    BW peak[Gb/sec]    BW average[Gb/sec]   MsgRate[Mpps]
 65536      200              0.18               0.17   		   0.000330
---------------------------------------------------------------------------------------
"""
PERFTEST_LAT_OUTPUT = """\
 #bytes #iterations    t_min[usec]    t_max[usec]  t_typical[usec]    t_avg[usec]
 2       200          151.20         2210.07      211.43             240.50
"""


def test_perftest_result_parsing() -> None:
    assert perf.parse_perftest(PERFTEST_BW_OUTPUT, 3) == 0.17
    assert perf.parse_perftest(PERFTEST_LAT_OUTPUT, 5) == 240.50
    assert perf.parse_perftest("Couldn't connect to 10.0.0.2:18515\n", 3) is None


def test_tcp_tool_output_parsing() -> None:
    assert perf.parse_qperf_latency("tcp_lat:\n    latency  =  58.6 us\n") == 58.6
    assert perf.parse_qperf_latency("tcp_lat:\n    latency  =  1.5 ms\n") == 1500.0
    assert perf.parse_qperf_latency("failed to connect: Connection refused") is None
    report = {"end": {"sum_sent": {"bits_per_second": 9e8},
                      "sum_received": {"bits_per_second": 8.5e8}}}
    assert perf.parse_iperf3(json.dumps(report)) == 850.0
    assert perf.parse_iperf3('{"error": "unable to connect to server"}') is None
    assert perf.parse_iperf3("iperf3: error") is None


def test_schedule_interleaves_and_rotates_transports() -> None:
    order = perf.schedule(["tbrdma", "rxe", "tcp"], {"bw": [4096], "lat": [2]}, rounds=3)
    assert len(order) == 3 * 2 * 3
    firsts = [order[i][3] for i in range(0, len(order), 3)]
    # each point runs all three back to back, and who goes first changes every round
    assert firsts == ["tbrdma", "tbrdma", "rxe", "rxe", "tcp", "tcp"]
    for i in range(0, len(order), 3):
        assert sorted(name for *_, name in order[i:i + 3]) == ["rxe", "tbrdma", "tcp"]


def test_spread_is_median_and_range_of_successful_runs() -> None:
    samples = [perf.Sample("rxe", "bw", 4096, value, 1.0) for value in (30.0, 10.0, None, 20.0)]
    got = perf.summarize(samples)[("rxe", "bw", 4096)]
    assert got == perf.Spread(median=20.0, low=10.0, high=30.0, count=3)
    assert got.show() == "20.0 (10.0-30.0)"
    assert perf.spread([perf.Sample("rxe", "bw", 4096, None, 1.0, "boom")]) is None
    assert perf.iterations(1 << 20, 16 << 20) == 20 and perf.iterations(4096, 16 << 20) == 4096


def test_plot_is_a_png_and_an_svg(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from tbctl.bench import plot

    summary: dict[tuple[str, str, int], perf.Spread | None] = {}
    for name, scale in (("tbrdma", 1.0), ("rxe", 2.0), ("tcp", 3.0)):
        for size in (4096, 65536):
            summary[(name, "bw", size)] = perf.Spread(scale * size / 1000, 1, scale * 99, 3)
        summary[(name, "lat", 2)] = perf.Spread(scale * 100, scale * 90, scale * 120, 3)
    summary[("tcp", "lat", 1024)] = None
    paths = plot.write_plot(summary, [("tbrdma", "tbrdma"), ("rxe", "rxe"), ("tcp", "TCP")],
                            "unit test", tmp_path / "fig")
    assert [p.name for p in paths] == ["fig.png", "fig.svg"]
    assert demo_output.check_plot(*paths) == (1100, 450)


def test_a_refused_client_is_retried_even_when_it_exits_0() -> None:
    """`iperf3 -J` reports "Connection refused" in its JSON and exits 0 (iperf3 3.12): a
    server not yet listening must be waited for, not recorded as a failed run."""
    answers = [(0, '{"end": {}, "error": "unable to connect to server: Connection refused"}'),
               (0, json.dumps({"end": {"sum_received": {"bits_per_second": 2e9}}}))]
    calls = []

    def run(host: str, command: str) -> tuple[int, str]:
        calls.append((host, command))
        if command.startswith("d=$(mktemp"):
            return 0, "/tmp/tbctl-bench.abc123\n"  # the server started
        if command.startswith(("for i", "kill", "cat")):
            return 0, ""  # stopping and reading the server
        return answers.pop(0)

    sample = perf.tcp(run, "a", "b", perf.Transport("tcp", "TCP", "10.0.0.1"), "bw", 65536,
                      1 << 20, 18600)
    assert sample.ok and sample.value == 2000.0, sample
    assert answers == []


def local_run(host: str, command: str) -> tuple[int, str]:
    """perf's `run` on this machine: the same bash a host's SSH session runs."""
    done = subprocess.run(["bash", "-c", command], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=30, check=False)
    return done.returncode, done.stdout


def test_a_server_log_is_private_and_no_symlink_in_tmp_is_followed(tmp_path: Path) -> None:
    """Security: the servers' logs once went to /tmp/tbctl-demo-<port>.log, a name any local
    user could plant as a symlink to a file of root's (which the log then overwrote). Each
    server now gets a fresh mktemp -d directory of its own, removed when it stops."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    planted = [Path(f"/tmp/tbctl-{kind}-18600.log") for kind in ("demo", "bench")]
    for link in planted:
        link.unlink(missing_ok=True)
        link.symlink_to(victim)
    try:
        directory = perf._start_server(local_run, "here", "echo served")
        path = Path(directory)
        assert path.parent == Path("/tmp") and path.name.startswith("tbctl-bench.")
        assert path.stat().st_mode & 0o777 == 0o700 and not path.is_symlink()
        for _ in range(50):
            if (path / "log").exists() and (path / "log").read_text():
                break
            time.sleep(0.1)
        assert (path / "log").read_text() == "served\n"
        perf._stop_server(local_run, "here", directory, wait=True)
        assert not path.exists()
    finally:
        for link in planted:
            link.unlink(missing_ok=True)
    assert victim.read_text() == "precious\n"


# ------------------------------------------------------------------ transports


def statuses(transport: str = "ip", device: str | None = None,
             gid: int | None = None) -> dict[str, dict[str, Any]]:
    """The recorded two-cable pairing of tests/unit/data, made native or rxe as asked."""
    found = json.loads((DATA / "status_ip_two_cables.json").read_text())
    for status in found.values():
        for pairing in status["pairings"]:
            pairing["transport"] = transport
            for cable in pairing["cables"]:
                cable["rdma_device"], cable["gid_index"] = device, gid
    return found


def test_native_pairing_gives_one_pooled_tbrdma_device_and_tcp() -> None:
    found = statuses("native", "tbrdma0", 1)
    assert paired_pairs(["tbt-a", "tbt-b"], found) == [("tbt-a", "tbt-b")]
    chosen, skipped = plan_transports("tbt-a", "tbt-b", found["tbt-a"], found["tbt-b"],
                                      BenchOptions())
    assert skipped == []
    tbrdma, tcp = chosen
    assert (tbrdma["name"], tbrdma["device"], tbrdma["address_b"]) == ("tbrdma", "tbrdma0",
                                                                        "10.254.0.1")
    assert (tbrdma["gid_index_a"], tbrdma["gid_index_b"]) == (1, 1)
    assert "2 cables pooled" in tbrdma["label"]
    assert (tcp["kind"], tcp["link"], tcp["address_b"]) == ("tcp", "thunderbolt1",
                                                            "10.254.0.1")


def test_an_rdma_device_without_gid_is_skipped_and_ip_has_no_rdma() -> None:
    found = statuses("rxe", "rxe_tb1", None)
    chosen, skipped = plan_transports("tbt-a", "tbt-b", found["tbt-a"], found["tbt-b"],
                                      BenchOptions())
    assert [t["name"] for t in chosen] == ["tcp"]
    assert "no RoCE v2 GID" in skipped[0] and "tbctl status tbt-a tbt-b" in skipped[0]
    found = statuses()
    chosen, skipped = plan_transports("tbt-a", "tbt-b", found["tbt-a"], found["tbt-b"],
                                      BenchOptions())
    assert [t["name"] for t in chosen] == ["tcp"] and "transport ip" in skipped[0]


def test_hosts_that_are_not_paired_are_refused() -> None:
    found = statuses()
    found["tbt-b"]["pairings"] = []
    with pytest.raises(TbctlError, match="run tbctl pair tbt-a tbt-b"):
        paired_pairs(["tbt-a", "tbt-b"], found)


# ------------------------------------------------------------------ results


def transport(name: str, kind: str, device: str | None) -> BenchTransport:
    return BenchTransport(name=name, kind=kind, label=f"{name} label",  # type: ignore[typeddict-item]
                          device=device, link="thunderbolt0", address_b="10.254.0.1",
                          gid_index_a=1 if device else None, gid_index_b=1 if device else None)


def a_result(scale: float = 1.0) -> BenchResult:
    """Two rounds of tbrdma and TCP; TCP latency at 1 KiB failed in round 2."""
    transports = [transport("tbrdma", "tbrdma", "tbrdma0"), transport("tcp", "tcp", None)]
    samples: list[BenchSample] = []
    for number in (1, 2):
        for t, factor in (("tbrdma", 2.0), ("tcp", 1.0)):
            for size in (4096, 65536, 1 << 20):
                samples.append(BenchSample(transport=t, metric="bw", size=size, round=number,
                                           value=scale * factor * size / 100 + number,
                                           unit="Mb/s", seconds=0.5, error=""))
            for size in (2, 1024):
                failed = t == "tcp" and size == 1024 and number == 2
                samples.append(BenchSample(transport=t, metric="lat", size=size, round=number,
                                           value=None if failed else scale * (30 / factor
                                                                              + number),
                                           unit="us", seconds=0.5,
                                           error="qperf exit 1: boom" if failed else ""))
    pair = BenchPair(host_a="a", host_b="b", transports=transports, samples=samples,
                     summary=results.points(samples), skipped=[])
    return BenchResult(out_dir="", files=[], plot_error=None, compare=None, rounds=2,
                       volume_bytes=1 << 20, sizes={"bw": [4096, 65536, 1 << 20],
                                                    "lat": [2, 1024]}, pairs=[pair])


def test_summary_is_median_low_high_per_point() -> None:
    (pair,) = a_result()["pairs"]
    by_key = {(p["transport"], p["metric"], p["size"]): p for p in pair["summary"]}
    assert by_key[("tbrdma", "bw", 4096)] == {
        "transport": "tbrdma", "metric": "bw", "size": 4096, "median": 83.42,
        "low": 82.92, "high": 83.92, "count": 2}
    assert by_key[("tcp", "lat", 1024)]["count"] == 1  # the failed round does not count
    assert len(by_key) == 2 * 5


def test_json_and_csv_hold_every_run(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    done = results.write_results(a_result(), tmp_path / "out")
    files = {Path(f).suffix: Path(f) for f in done["files"]}
    assert set(files) == {".json", ".csv", ".png", ".svg"} and done["plot_error"] is None
    assert done["out_dir"] == str(tmp_path / "out")
    assert json.loads(files[".json"].read_text()) == done
    rows = list(csv.DictReader(files[".csv"].open()))
    assert list(rows[0]) == list(results.CSV_FIELDS)
    (pair,) = done["pairs"]
    assert len(rows) == len(pair["samples"]) == 20
    failed = [r for r in rows if not r["value"]]
    assert [(r["transport"], r["metric"], r["size"], r["round"], r["error"]) for r in failed] \
        == [("tcp", "lat", "1024", "2", "qperf exit 1: boom")]
    assert {r["device"] for r in rows} == {"tbrdma0", ""}
    assert float(rows[0]["value"]) == pair["samples"][0]["value"]
    # The PNG is a real image of the figure's size, the SVG parses.
    assert demo_output.check_plot(files[".png"], files[".svg"]) == (1100, 450)


def test_compare_overlays_the_earlier_run(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    first = results.write_results(a_result(), tmp_path / "one")
    envelope = tmp_path / "envelope.json"
    envelope.write_text(json.dumps({"tbctl": 1, "ok": True, "result": first}))
    for source in (Path(first["files"][0]), envelope):
        earlier = results.load_compare(source)
        assert earlier["pairs"] == first["pairs"]
    second = results.write_results(a_result(scale=0.5), tmp_path / "two", earlier=earlier)
    svg = Path(next(f for f in second["files"] if f.endswith(".svg"))).read_text()
    plain = Path(next(f for f in first["files"] if f.endswith(".svg"))).read_text()
    assert "tcp label (earlier: a -&gt; b)" in svg and "tbrdma label (earlier: a -&gt; b)" in svg
    assert "earlier" not in plain and "dashed: the earlier run" in svg


@pytest.mark.parametrize(("text", "why"), [("not json", "is not JSON"),
                                           ('{"pairs": [{"samples": []}]}', "no tbctl bench"),
                                           ('[1, 2]', "no tbctl bench")])
def test_a_wrong_compare_file_is_one_clear_error(tmp_path: Path, text: str, why: str) -> None:
    path = tmp_path / "old.json"
    path.write_text(text)
    with pytest.raises(TbctlError, match=why) as raised:
        results.load_compare(path)
    assert "\n" not in str(raised.value) and "earlier tbctl bench run" in str(raised.value)
    with pytest.raises(TbctlError, match="No such file"):
        results.load_compare(tmp_path / "missing.json")


def test_without_matplotlib_json_and_csv_are_still_written(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails
    done = results.write_results(a_result(), tmp_path)
    assert sorted(Path(f).name for f in done["files"]) == ["bench.csv", "bench.json"]
    assert done["plot_error"] is not None and "matplotlib is missing" in done["plot_error"]
    assert "\n" not in done["plot_error"]
    assert json.loads((tmp_path / "bench.json").read_text())["plot_error"] == done["plot_error"]


def test_table_has_a_row_per_transport_and_metric() -> None:
    import io

    from rich.console import Console

    result = a_result()
    pair = copy.deepcopy(result["pairs"][0])
    for sample in pair["samples"]:  # every round of one point failed
        if (sample["transport"], sample["metric"], sample["size"]) == ("tcp", "lat", 1024):
            sample["value"] = None
    pair["summary"] = results.points(pair["samples"])
    text = io.StringIO()
    Console(file=text, width=200).print(results.results_table(pair, "unit test"))
    rows = demo_output.table_rows(text.getvalue())
    assert set(rows) == {(t, m) for t in ("tbrdma", "tcp") for m in ("bandwidth", "latency")}
    assert [c for c in rows[("tcp", "latency")] if c] == ["31.5 (31.0-32.0)", "failed"]
    assert "latency [us]" in text.getvalue() and "bandwidth [Mb/s]" in text.getvalue()
