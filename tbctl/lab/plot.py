# SPDX-License-Identifier: MIT
"""The demo's figure: bandwidth and latency vs message size, one line per transport.

Each point is the median of the demo's rounds; the shaded band spans their minimum to
maximum, so TCG noise shows instead of hiding behind one number.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tbctl.errors import TbctlError
from tbctl.lab.perf import UNITS, Spread, human_size

MATPLOTLIB_MISSING = ("matplotlib is missing on this host: run `make deps` "
                      "(or pip install -e '.[lab]')")


def require_matplotlib() -> None:
    """Fails before the lab boots rather than after its benchmarks ran."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise TbctlError(MATPLOTLIB_MISSING) from None


def write_plot(summary: dict[tuple[str, str, int], Spread | None],
               transports: Sequence[tuple[str, str]], title: str, stem: Path
               ) -> list[Path]:
    """Writes `stem`.png and `stem`.svg; `transports` is [(name, legend label)]."""
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
        for name, label in transports:
            points = sorted((size, got) for (who, what, size), got in summary.items()
                            if who == name and what == metric and got is not None)
            if not points:
                continue
            xs = [size for size, _ in points]
            sizes.update(xs)
            line, = ax.plot(xs, [got.median for _, got in points], marker="o", label=label)
            ax.fill_between(xs, [got.low for _, got in points], [got.high for _, got in points],
                            color=line.get_color(), alpha=0.2, linewidth=0)
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
    figure.suptitle(f"{title}\n(median of the rounds; shaded: their min-max)")
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix in (".png", ".svg"):
        path = stem.with_suffix(suffix)
        figure.savefig(path, dpi=100)
        written.append(path)
    pyplot.close(figure)
    return written
