# SPDX-License-Identifier: MIT
"""Checks of what `tbctl lab demo` leaves behind, shared by the unit and the lab tests."""

from __future__ import annotations

import re
import struct
from pathlib import Path
from xml.etree import ElementTree


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, after checking the signature."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:8]
    assert data[12:16] == b"IHDR", data[12:16]
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def check_plot(png: Path, svg: Path) -> tuple[int, int]:
    """A real PNG of a sensible size and an SVG that parses; returns the PNG's size."""
    width, height = png_size(png.read_bytes())
    assert 600 <= width <= 4000 and 300 <= height <= 3000, (width, height)
    # a plotted figure, not an empty canvas: lines and text make it tens of KB
    assert png.stat().st_size > 10_000, png.stat().st_size
    root = ElementTree.parse(svg).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg", root.tag
    return width, height


def plot_paths(stdout: str) -> tuple[Path, Path]:
    """The `plot: <png> <svg>` line the demo prints."""
    match = re.search(r"^plot: (\S+\.png) (\S+\.svg)$", stdout, re.M)
    assert match, stdout
    return Path(match.group(1)), Path(match.group(2))


def table_rows(stdout: str) -> dict[tuple[str, str], list[str]]:
    """(transport, metric) -> the cells of that row of the demo's results table."""
    rows = {}
    for line in stdout.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("│┃").split("│")]
        if len(cells) > 2 and cells[1].startswith(("bandwidth", "latency")):
            rows[(cells[0], cells[1].split()[0])] = cells[2:]
    return rows
