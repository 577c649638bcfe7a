# SPDX-License-Identifier: MIT
"""Shows the numbers the VM tests print (perftest rows, phase times, the tbrdma vs rxe table)
at the end of the run, even when the tests pass and pytest keeps their output to itself."""

from __future__ import annotations

import re

import pytest

NUMBERS = re.compile(r"^(benchmark: .*|.*\bphase \S+: [\d.]+ s|side by side .*|\|.*\|)$")
_collected: list[tuple[str, str]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "call":
        return
    for line in (report.capstdout + report.capstderr).splitlines():
        if NUMBERS.match(line.strip()):
            _collected.append((report.nodeid, line.strip()))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _collected:
        return
    terminalreporter.section("numbers printed by the VM tests")
    last = None
    for nodeid, line in _collected:
        if nodeid != last:
            terminalreporter.write_line(nodeid)
            last = nodeid
        terminalreporter.write_line(f"  {line}")
