# SPDX-License-Identifier: MIT
"""tbrdma in the lab: two TCG nodes, two cables, the module and provider installed by
driver/lab-hook.sh, running vm-tests/tbrdma_*.py through the lab's runner."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.vm
VM_TESTS = Path(__file__).resolve().parents[2] / "vm-tests"


@pytest.fixture(scope="module")
def lab_dir() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (debootstrap, build chroots, QEMU networking)")
    from tbctl.lab import cluster, session, testdriver

    with session.heavy_lock():
        directory = session.scratch_lab_dir()
        started = time.monotonic()
        cluster.up(2, 2, directory, progress=testdriver.log)
        testdriver.log(f"tbrdma lab: image + boot {time.monotonic() - started:.1f} s")
        try:
            yield directory
        finally:
            cluster.down(directory)
            left = cluster.leftovers(directory)
            assert not left, left


def test_tbrdma_verbs_end_to_end(lab_dir: Path) -> None:
    from tbctl.lab import testdriver

    testdriver.run_script(VM_TESTS / "tbrdma_verbs.py", lab_dir)


def test_tbctl_pair_native(lab_dir: Path) -> None:
    from tbctl.lab import testdriver

    testdriver.run_script(VM_TESTS / "tbrdma_pair.py", lab_dir)


def test_tbrdma_third_party_on_cable(lab_dir: Path) -> None:
    """Forged and replayed frames injected on cable 0 change nothing and are counted."""
    from tbctl.lab import testdriver

    testdriver.run_script(VM_TESTS / "tbrdma_spoof.py", lab_dir)


# Runs last on its lab: it leaves netem history and a pulled-and-restored cable behind.
def test_tbrdma_faults_and_benchmark(lab_dir: Path) -> None:
    from tbctl.lab import testdriver

    testdriver.run_script(VM_TESTS / "tbrdma_bench.py", lab_dir)
