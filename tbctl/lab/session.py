# SPDX-License-Identifier: MIT
"""Shared-machine etiquette for anything that boots lab VMs."""

from __future__ import annotations

import fcntl
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

HEAVY_LOCK = Path("/tmp/tbrdma-heavy.lock")


@contextmanager
def heavy_lock(say: Callable[[str], None] | None = None) -> Iterator[None]:
    """Holds the machine-wide lock that keeps two VM sets (or heavy builds) apart."""
    with open(HEAVY_LOCK, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if say:
                say(f"waiting for {HEAVY_LOCK} (another VM session or heavy build runs)")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def scratch_lab_dir() -> Path:
    """A fresh, short directory (unix socket paths must stay under 108 bytes)."""
    return Path(tempfile.mkdtemp(prefix="tblab-", dir="/tmp"))
