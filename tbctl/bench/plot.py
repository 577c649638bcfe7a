# SPDX-License-Identifier: MIT
"""The benchmark's figure: bandwidth and latency vs message size, one line per transport.

Each point is the median of the rounds; the shaded band spans their minimum to maximum, so
noise shows instead of hiding behind one number. An earlier run (`tbctl bench --compare`)
is overlaid as dashed lines without bands. matplotlib is optional (the `plot` extra): the
JSON and CSV never need it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tbctl.bench.perf import UNITS, Spread, human_size
from tbctl.errors import TbctlError

MATPLOTLIB_MISSING = ("matplotlib is missing on this host, so no plot: "
                      "pip install 'tbctl[plot]' (or apt install python3-matplotlib)")
Summary = dict[tuple[str, str, int], Spread | None]


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def require_matplotlib() -> None:
    """Fails before the lab boots rather than after its benchmarks ran."""
    if not have_matplotlib():
        raise TbctlError(MATPLOTLIB_MISSING)


def write_plot(summary: Summary, transports: Sequence[tuple[str, str]], title: str,
               stem: Path, earlier: Summary | None = None,
               earlier_label: str = "earlier") -> list[Path]:
    """Writes `stem`.png and `stem`.svg; `transports` is [(name, legend label)]. `earlier`
    (same keys) is drawn dashed in the same colour as its transport, labelled
    "<label> (<earlier_label>)"; its transports missing from this run get their own colour."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot
    from matplotlib.ticker import FixedLocator, LogFormatter, NullLocator

    figure, axes = pyplot.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
    panels = (("bw", "bandwidth", f"bandwidth [{UNITS['bw']}]"),
              ("lat", "latency (one way)", f"latency [{UNITS['lat']}]"))
    for ax, (metric, heading, ylabel) in zip(axes, panels, strict=True):
        sizes: set[int] = set()
        colours: dict[str, str] = {}
        for name, label in transports:
            points = _points(summary, name, metric)
            if not points:
                continue
            xs = [size for size, _ in points]
            sizes.update(xs)
            line, = ax.plot(xs, [got.median for _, got in points], marker="o", label=label)
            colours[name] = line.get_color()
            ax.fill_between(xs, [got.low for _, got in points], [got.high for _, got in points],
                            color=line.get_color(), alpha=0.2, linewidth=0)
        labels = dict(transports)
        for name in sorted({who for who, _, _ in (earlier or {})}):
            points = _points(earlier or {}, name, metric)
            if not points:
                continue
            xs = [size for size, _ in points]
            sizes.update(xs)
            ax.plot(xs, [got.median for _, got in points], marker="x", linestyle="--",
                    color=colours.get(name), label=f"{labels.get(name, name)} ({earlier_label})")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ticks = sorted(sizes)
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticks(ticks, [human_size(size) for size in ticks])
        # plain numbers on the log axis (10^2 notation reads badly for 300 us)
        ax.yaxis.set_major_formatter(LogFormatter())
        ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.4)))
        ax.set_xlabel("message size")
        ax.set_ylabel(ylabel)
        ax.set_title(heading)
        ax.grid(True, which="both", alpha=0.3)
        if sizes:
            ax.legend()
    note = "; dashed: the earlier run" if earlier else ""
    figure.suptitle(f"{title}\n(median of the rounds; shaded: their min-max{note})")
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix in (".png", ".svg"):
        path = stem.with_suffix(suffix)
        figure.savefig(path, dpi=100)
        written.append(path)
    pyplot.close(figure)
    return written


def _points(summary: Summary, name: str, metric: str) -> list[tuple[int, Spread]]:
    return sorted((size, got) for (who, what, size), got in summary.items()
                  if who == name and what == metric and got is not None)
