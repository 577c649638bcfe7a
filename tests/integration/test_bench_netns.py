# SPDX-License-Identifier: MIT
"""Wall time of `tbctl pair` (two hosts, two cables, no RDMA round trip; target < 3 s) and
of `tbctl status` over three hosts. Printed by pytest-benchmark, with pair's time per phase
(TBCTL_TIMINGS) printed per round; never asserted."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.netns


def test_bench_pair_two_hosts(pair_of_hosts, benchmark):
    cluster = pair_of_hosts

    def unpair() -> None:
        assert cluster.tbctl("unpair", "tbt-a", "tbt-b").returncode == 0

    def pair() -> None:
        result = cluster.tbctl("pair", "--yes", "--no-rdma-check", "tbt-a", "tbt-b",
                               env={"TBCTL_TIMINGS": "1"})
        assert result.returncode == 0, result.stderr
        timings = [line for line in result.stderr.splitlines() if "timings:" in line]
        print(f"\npair phases: {timings[-1] if timings else result.stderr}")

    benchmark.pedantic(pair, setup=unpair, rounds=3, iterations=1)


def test_bench_status_three_hosts(make_cluster, benchmark):
    cluster = make_cluster(3)
    a, b, c = cluster.hosts
    cluster.cable(a, b, "thunderbolt0", "thunderbolt0")
    cluster.cable(b, c, "thunderbolt1", "thunderbolt0")
    cluster.wait_link_local()
    links = "--links=thunderbolt0,thunderbolt1"
    assert cluster.tbctl("pair", "--yes", links, "tbt-a", "tbt-b").returncode == 0
    assert cluster.tbctl("pair", "--yes", links, "tbt-b", "tbt-c").returncode == 0

    def status() -> None:
        assert cluster.tbctl("status", "tbt-a", "tbt-b", "tbt-c").returncode == 0

    benchmark.pedantic(status, rounds=3, iterations=1)
