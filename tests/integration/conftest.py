# SPDX-License-Identifier: MIT
from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator

import pytest

from tests.netns import SSHD, Cluster


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    if not os.path.exists(SSHD) or not shutil.which("ping"):
        return "needs openssh-server and iputils-ping (bash scripts/deps.sh)"
    return None


@pytest.fixture
def make_cluster(tmp_path) -> Iterator[Callable[[int], Cluster]]:
    reason = _skip_reason()
    if reason and os.environ.get("CI"):
        pytest.fail(reason)  # CI installs everything: a skip there would hide a broken setup
    if reason:
        pytest.skip(reason)
    made: list[Cluster] = []

    def make(count: int) -> Cluster:
        cluster = Cluster(tmp_path, count)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.close()


@pytest.fixture
def pair_of_hosts(make_cluster) -> Cluster:
    """Two hosts joined by two cables, declared in links.conf as an admin would."""
    cluster = make_cluster(2)
    a, b = cluster.hosts
    cluster.cable(a, b, "thunderbolt0", "thunderbolt0")
    cluster.cable(a, b, "thunderbolt1", "thunderbolt1")
    for host in (a, b):
        cluster.declare_links(host, ["thunderbolt0", "thunderbolt1"])
    cluster.wait_link_local()
    return cluster
