# SPDX-License-Identifier: MIT
"""What `tbctl bench` leaves behind: bench.json (the BenchResult, which --compare reads back),
bench.csv (one row per run), the plot, and the table it prints.

Only the plot needs matplotlib; without it the JSON and CSV are still written and the result
says why there is no plot.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from tbctl.bench import perf
from tbctl.bench.plot import MATPLOTLIB_MISSING, Summary, have_matplotlib, write_plot
from tbctl.errors import EXIT_USAGE, TbctlError
from tbctl.schema import BenchPair, BenchPoint, BenchResult, BenchSample

CSV_FIELDS = ("host_a", "host_b", "transport", "kind", "device", "link", "metric", "size",
              "round", "value", "unit", "seconds", "error")


def points(samples: Sequence[BenchSample]) -> list[BenchPoint]:
    """Median, minimum and maximum of every (transport, metric, size), in run order."""
    runs = [perf.Sample(s["transport"], s["metric"], s["size"], s["value"], s["seconds"],
                        s["error"]) for s in samples]
    found: list[BenchPoint] = []
    for (transport, metric, size), got in perf.summarize(runs).items():
        found.append(BenchPoint(transport=transport, metric=metric,  # type: ignore[typeddict-item]
                                size=size, median=got.median if got else None,
                                low=got.low if got else None, high=got.high if got else None,
                                count=got.count if got else 0))
    return found


def summary_of(pair: BenchPair) -> Summary:
    """(transport, metric, size) -> Spread, as the plot and the table take it."""
    return {(p["transport"], p["metric"], p["size"]):
            perf.Spread(p["median"], p["low"], p["high"], p["count"])  # type: ignore[arg-type]
            if p["median"] is not None else None
            for p in pair["summary"]}


def csv_rows(result: BenchResult) -> list[dict[str, Any]]:
    rows = []
    for pair in result["pairs"]:
        transports = {t["name"]: t for t in pair["transports"]}
        for sample in pair["samples"]:
            transport = transports[sample["transport"]]
            rows.append({"host_a": pair["host_a"], "host_b": pair["host_b"],
                         "transport": sample["transport"], "kind": transport["kind"],
                         "device": transport["device"] or "", "link": transport["link"],
                         "metric": sample["metric"], "size": sample["size"],
                         "round": sample["round"],
                         "value": "" if sample["value"] is None else sample["value"],
                         "unit": sample["unit"], "seconds": sample["seconds"],
                         "error": sample["error"]})
    return rows


def load_compare(path: Path) -> BenchResult:
    """An earlier run's bench.json (or its `--json` envelope); read before anything runs, so
    a wrong file costs no benchmark."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise TbctlError(f"--compare {path}: {exc.strerror}: give the bench.json of an "
                         "earlier tbctl bench run", EXIT_USAGE) from None
    except ValueError as exc:
        raise TbctlError(f"--compare {path} is not JSON ({exc}): give the bench.json of an "
                         "earlier tbctl bench run", EXIT_USAGE) from None
    if isinstance(data, dict) and isinstance(data.get("result"), dict):
        data = data["result"]  # the --json envelope
    pairs = data.get("pairs") if isinstance(data, dict) else None
    if not isinstance(pairs, list) or not all(
            isinstance(p, dict) and isinstance(p.get("summary"), list) for p in pairs):
        raise TbctlError(f"--compare {path} holds no tbctl bench results (no pairs with a "
                         "summary): give the bench.json of an earlier tbctl bench run",
                         EXIT_USAGE)
    return data  # type: ignore[no-any-return]


def earlier_pair(earlier: BenchResult, pair: BenchPair) -> BenchPair | None:
    """The earlier run's results for the same two hosts, else its first pair (a run on other
    hosts, or on the lab, is a fair comparison too)."""
    for candidate in earlier["pairs"]:
        if {candidate.get("host_a"), candidate.get("host_b")} == {pair["host_a"],
                                                                   pair["host_b"]}:
            return candidate
    return earlier["pairs"][0] if earlier["pairs"] else None


def write_results(result: BenchResult, out_dir: Path, stem: str = "bench",
                  earlier: BenchResult | None = None, title: str | None = None,
                  extra: dict[str, Any] | None = None) -> BenchResult:
    """Writes <stem>.json, <stem>.csv and, with matplotlib, <stem>[-A-B].png/.svg (one
    figure per pair); returns the result with `files` and `plot_error` filled in. `extra`
    keys go into the JSON file only (the lab demo adds its pairing report)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[str] = []
    plot_error = None
    if have_matplotlib():
        several = len(result["pairs"]) > 1
        for pair in result["pairs"]:
            name = f"{stem}-{pair['host_a']}-{pair['host_b']}" if several else stem
            before = earlier_pair(earlier, pair) if earlier else None
            heading = title or (f"{pair['host_a']} -> {pair['host_b']}: "
                                + ", ".join(t["label"] for t in pair["transports"]))
            if pair["transports"]:
                paths = write_plot(summary_of(pair),
                                   [(t["name"], t["label"]) for t in pair["transports"]],
                                   heading, out_dir / name,
                                   earlier=summary_of(before) if before else None,
                                   earlier_label=f"earlier: {before['host_a']} -> "
                                                 f"{before['host_b']}" if before else "")
                files += [str(p) for p in paths]
    else:
        plot_error = MATPLOTLIB_MISSING
    table = out_dir / f"{stem}.csv"
    with table.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(csv_rows(result))
    results = out_dir / f"{stem}.json"
    done = BenchResult(**{**result, "out_dir": str(out_dir),  # type: ignore[typeddict-item]
                          "files": [str(results), str(table), *files],
                          "plot_error": plot_error})
    results.write_text(json.dumps({**done, **(extra or {})}, indent=1) + "\n")
    return done


def results_table(pair: BenchPair, title: str) -> Table:
    """Median (min-max) per transport and metric, one column per message size."""
    summary = summary_of(pair)
    sizes = {metric: sorted({p["size"] for p in pair["summary"] if p["metric"] == metric})
             for metric in ("bw", "lat")}
    every_size = sorted({*sizes["bw"], *sizes["lat"]})
    table = Table(title=title)
    table.add_column("transport")
    table.add_column("metric")
    for size in every_size:
        table.add_column(perf.human_size(size), justify="right")
    for transport in pair["transports"]:
        for metric, heading in (("bw", "bandwidth"), ("lat", "latency")):
            if not any((transport["name"], metric, s) in summary for s in sizes[metric]):
                continue  # not measured (skipped says why)
            cells = []
            for size in every_size:
                if (transport["name"], metric, size) not in summary:
                    cells.append("")
                    continue
                got = summary[(transport["name"], metric, size)]
                cells.append(got.show() if got else "[red]failed[/red]")
            table.add_row(transport["name"], escape(f"{heading} [{perf.UNITS[metric]}]"),
                          *cells)
    return table
