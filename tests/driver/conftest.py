# SPDX-License-Identifier: MIT
"""Shared fixtures for the driver tests: the build cache and the machine-wide heavy lock."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DRIVER = REPO / "driver"
HEAVY_LOCK = Path("/tmp/tbrdma-heavy.lock")


def buildenv_cache() -> Path:
    path = Path(os.environ.get("TBRDMA_BUILDENV_CACHE", Path.home() / ".cache" / "tbrdma"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def heavy_lock() -> Iterator[None]:
    """Serialises heavy builds and VM sessions with every other engineer's and CI job's."""
    with HEAVY_LOCK.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture
def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("building in Debian chroots needs root (CI runs as root)")
