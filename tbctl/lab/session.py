# SPDX-License-Identifier: MIT
"""Shared-machine etiquette for anything that boots lab VMs."""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

HEAVY_LOCK = Path("/tmp/tbrdma-heavy.lock")


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])


def held_by_an_ancestor(path: Path) -> bool:
    """Whether a process this one runs under holds the flock on `path`.

    `flock LOCK bash -c 'tbctl lab demo; ...'` (how docs/lab.md tells a shared machine's
    users to keep a lab to themselves) would otherwise wait for itself forever.
    """
    try:
        info = os.stat(path)
        table = Path("/proc/locks").read_text()
    except OSError:
        return False
    where = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    holders = set()
    for line in table.splitlines():
        # "3: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF"; waiters carry "->" and shift
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == where:
            holders.add(int(fields[4]))
    pid = os.getppid()
    while pid > 1:
        if pid in holders:
            return True
        pid = _parent(pid)
    return False


@contextmanager
def heavy_lock(say: Callable[[str], None] | None = None,
               path: Path = HEAVY_LOCK) -> Iterator[None]:
    """Holds the machine-wide lock that keeps two VM sets (or heavy builds) apart."""
    if held_by_an_ancestor(path):
        yield
        return
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if say:
                say(f"waiting for {path} (another VM session or heavy build runs)")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def scratch_lab_dir() -> Path:
    """A fresh, short directory (unix socket paths must stay under 108 bytes)."""
    return Path(tempfile.mkdtemp(prefix="tblab-", dir="/tmp"))


@contextmanager
def booted_lab(nodes: int, cables: int, say: Callable[[str], None],
               title: str) -> Iterator[Path]:
    """A lab of its own for a test module: under the heavy lock, booted in a scratch
    directory (`title: image + boot N s` reported), taken down at the end."""
    from tbctl.lab import cluster

    with heavy_lock(say):
        directory = scratch_lab_dir()
        started = time.monotonic()
        cluster.up(nodes, cables, directory, progress=say)
        say(f"{title}: image + boot {time.monotonic() - started:.1f} s")
        try:
            yield directory
        finally:
            cluster.down(directory)
