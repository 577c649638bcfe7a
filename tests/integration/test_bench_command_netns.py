# SPDX-License-Identifier: MIT
"""`tbctl bench` between two paired hosts (network namespaces with sshd, veth cables): TCP
with iperf3 and qperf on the cable addresses, written as JSON, CSV, PNG and SVG; a second run
overlays the first with --compare. The namespaces have no RDMA device, so the pairing is
`ip` and bench says RDMA was skipped; perftest runs in the lab (tbctl lab demo)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from tests.lab import demo_output
from tests.output import json_result, one_line_error

pytestmark = pytest.mark.netns

QUICK = ("--rounds", "1", "--volume-mib", "2", "--bw-sizes", "64k,1m", "--lat-sizes", "64,1k")


@pytest.fixture
def paired(pair_of_hosts):
    missing = [tool for tool in ("iperf3", "qperf") if not shutil.which(tool)]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: bash scripts/deps.sh (.ci/apt-packages)")
    cluster = pair_of_hosts
    done = cluster.tbctl("pair", "--yes", "--json", "tbt-a", "tbt-b")
    assert done.returncode == 0, done.stderr
    return cluster, json_result(done, "pair")


def test_bench_measures_tcp_on_the_cable_and_writes_json_csv_and_plot(paired, tmp_path
                                                                       ) -> None:
    cluster, pairing = paired
    assert pairing["transport"] == "ip"
    first = pairing["cables"][0]
    out = tmp_path / "run1"
    done = cluster.tbctl("bench", "--json", "--out", str(out), *QUICK, "tbt-a", "tbt-b")
    assert done.returncode == 0, done.stderr
    result = json_result(done, "bench")
    assert result["out_dir"] == str(out.resolve()) and result["plot_error"] is None
    (pair,) = result["pairs"]
    assert (pair["host_a"], pair["host_b"]) == ("tbt-a", "tbt-b")
    (tcp,) = pair["transports"]
    # TCP runs on the cable: b's address on the first cable of the pairing.
    assert (tcp["kind"], tcp["link"], tcp["address_b"]) == ("tcp", first["link_a"],
                                                            first["address_b"])
    assert any("RDMA" in line and "transport ip" in line for line in pair["skipped"])
    got = {(s["metric"], s["size"]) for s in pair["samples"]}
    assert got == {("bw", 65536), ("bw", 1 << 20), ("lat", 64), ("lat", 1024)}
    for sample in pair["samples"]:
        assert sample["value"] is not None and sample["value"] > 0, sample
        assert sample["unit"] == ("Mb/s" if sample["metric"] == "bw" else "us")
    # Every file is where the result says, and says the same.
    files = {Path(f).suffix: Path(f) for f in result["files"]}
    assert set(files) == {".json", ".csv", ".png", ".svg"}
    assert all(path.parent == out.resolve() for path in files.values())
    assert json.loads(files[".json"].read_text())["pairs"] == result["pairs"]
    rows = list(csv.DictReader(files[".csv"].open()))
    assert [(r["metric"], int(r["size"]), float(r["value"])) for r in rows] == [
        (s["metric"], s["size"], s["value"]) for s in pair["samples"]]
    demo_output.check_plot(files[".png"], files[".svg"])
    # No server is left listening on b.
    b = cluster.hosts[1]
    assert not b.run("ss", "-Hltn", "sport >= :18600 and sport < :18800").strip()

    # A second run overlays the first: dashed lines labelled "earlier".
    again = cluster.tbctl("bench", "--out", str(tmp_path / "run2"), "--compare",
                          str(files[".json"]), *QUICK, "tbt-a", "tbt-b")
    assert again.returncode == 0, again.stderr
    assert "tcp" in again.stdout and "bandwidth [Mb/s]" in again.stdout
    assert f"results: {(tmp_path / 'run2').resolve()}" in again.stdout
    second = json.loads((tmp_path / "run2" / "bench.json").read_text())
    assert second["compare"] == str(files[".json"])
    svg = (tmp_path / "run2" / "bench.svg").read_text()
    assert "TCP (thunderbolt0) (earlier: tbt-a -&gt; tbt-b)" in svg


def test_bench_refuses_unpaired_hosts_and_a_bad_compare_file(pair_of_hosts, tmp_path
                                                             ) -> None:
    cluster = pair_of_hosts
    out = tmp_path / "never"
    done = cluster.tbctl("bench", "--out", str(out), "tbt-a", "tbt-b")
    one_line_error(done, 5, "tbt-a and tbt-b are not paired", "run tbctl pair tbt-a tbt-b")
    one_line_error(cluster.tbctl("bench", "tbt-a"), 2, "name two paired hosts")
    bad = tmp_path / "bad.json"
    bad.write_text('{"hosts": []}')
    done = cluster.tbctl("bench", "--compare", str(bad), "--out", str(out), "tbt-a", "tbt-b")
    one_line_error(done, 2, "--compare", "no tbctl bench results")
    done = cluster.tbctl("bench", "--bw-sizes", "0", "tbt-a", "tbt-b")
    one_line_error(done, 2, "not a message size")
    assert not out.exists()


def test_bench_over_a_triangle_inventory_measures_every_pair(make_cluster, tmp_path) -> None:
    cluster = make_cluster(3)
    cluster.wire([(0, 1), (1, 2), (2, 0)])
    names = [h.alias for h in cluster.hosts]
    inventory = cluster.workdir / "tbctl.toml"
    inventory.write_text(f"hosts = {json.dumps(names)}\n")
    paired = cluster.tbctl("pair", "--yes", "--inventory", str(inventory))
    assert paired.returncode == 0, paired.stderr
    out = tmp_path / "triangle"
    done = cluster.tbctl("bench", "--json", "--inventory", str(inventory), "--out", str(out),
                         "--rounds", "1", "--volume-mib", "1", "--bw-sizes", "64k",
                         "--lat-sizes", "64")
    assert done.returncode == 0, done.stderr
    result = json_result(done, "bench")
    pairs = [(p["host_a"], p["host_b"]) for p in result["pairs"]]
    assert pairs == [(names[0], names[1]), (names[0], names[2]), (names[1], names[2])]
    for pair in result["pairs"]:
        assert [s["value"] is not None for s in pair["samples"]] == [True, True], pair
    # One figure per pair; one JSON and one CSV for the whole run.
    assert sorted(Path(f).name for f in result["files"]) == sorted(
        ["bench.json", "bench.csv"] + [f"bench-{a}-{b}.{ext}" for a, b in pairs
                                       for ext in ("png", "svg")])
    rows = list(csv.DictReader((out / "bench.csv").open()))
    assert sorted({(r["host_a"], r["host_b"]) for r in rows}) == pairs
