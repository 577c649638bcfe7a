# SPDX-License-Identifier: MIT
"""Shared-machine etiquette for anything that boots lab VMs."""

from __future__ import annotations

import fcntl
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HEAVY_LOCK = Path("/tmp/tbrdma-heavy.lock")


@contextmanager
def heavy_lock() -> Iterator[None]:
    """Holds the machine-wide lock that keeps two VM sets (or heavy builds) apart."""
    with open(HEAVY_LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def scratch_lab_dir() -> Path:
    """A fresh, short directory (unix socket paths must stay under 108 bytes)."""
    return Path(tempfile.mkdtemp(prefix="tblab-", dir="/tmp"))
