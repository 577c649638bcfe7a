# SPDX-License-Identifier: MIT
"""Benchmarks over the cables: measurement (perf), orchestration over SSH (runner), the files
and table it leaves (results) and the plot (plot, needs matplotlib)."""
