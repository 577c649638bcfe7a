# SPDX-License-Identifier: MIT
"""Where the agent keeps what it changed, so boot, hotplug and unpair can act on it.

Every command that changes the host holds an exclusive flock on the state directory itself,
so two pairings, or a hotplug re-apply during an apply, take turns instead of losing a state
update. Before an apply or unapply changes anything it writes its intent to `journal.json`
(fsynced); the next command that finds a journal finishes or undoes that work first.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tbctl.node import AGENT_PROTOCOL

DEFAULT_STATE_DIR = "/var/lib/tbctl"
STATE_FILE = "state.json"
JOURNAL_FILE = "journal.json"


def host_root() -> Path:
    """Prefix for every path the agent writes (like DESTDIR); "/" on a real host.

    Test hosts in network namespaces share one filesystem, so each gets its own root.
    """
    return Path(os.environ.get("TBCTL_ROOT", "/"))


def under_root(path: str) -> Path:
    return host_root() / path.lstrip("/")


def empty_state() -> dict[str, Any]:
    return {"protocol": AGENT_PROTOCOL, "pairings": {}, "files": {}, "agent": None}


def load(state_dir: str) -> dict[str, Any]:
    path = under_root(state_dir) / STATE_FILE
    if not path.exists():
        return empty_state()
    state = json.loads(path.read_text())
    if state.get("protocol") != AGENT_PROTOCOL:
        raise ValueError(f"{path} has state protocol {state.get('protocol')}, "
                         f"this tbctl reads {AGENT_PROTOCOL}: upgrade tbctl on this host")
    return state


def write_private(path: Path, data: bytes) -> None:
    """Replace `path` atomically and durably with a 0600 file (state may hold a pairing key)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(state_dir: str, state: dict[str, Any]) -> None:
    """Record the state; with no pairings left, remove the record (never the directory:
    it may be a mount point, and only the agent's own bookkeeping removes directories)."""
    path = under_root(state_dir) / STATE_FILE
    if not state["pairings"]:
        path.unlink(missing_ok=True)
        return
    write_private(path, (json.dumps(state, indent=2, sort_keys=True) + "\n").encode())


def check_private(directory: Path) -> None:
    """The state directory holds what runs as root at boot: only its owner may write it."""
    info = directory.lstat()
    if not directory.is_dir() or directory.is_symlink():
        raise ValueError(f"state directory {directory} is not a directory: remove it or "
                         "pass another --state-dir")
    if info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise ValueError(f"state directory {directory} is writable by users other than root "
                         f"(owner uid {info.st_uid}, mode {info.st_mode & 0o7777:o}): "
                         f"run chown root {directory} && chmod 0700 {directory}")


def _make_private_dir(directory: Path) -> list[str]:
    """mkdir -p with the last directory 0700; returns the directories it made."""
    missing = [d for d in [directory, *directory.parents] if not d.exists()]
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700 if d == directory else 0o755)
        except FileExistsError:
            continue
    return [str(d) for d in missing]


@contextmanager
def locked(state_dir: str, create: bool) -> Iterator[list[str] | None]:
    """Hold the host's lock (flock on the state directory) for one changing command.

    Yields the directories made to hold the lock (for the caller to record), or None when
    `create` is false and there is no state directory (so nothing to change either).
    A waiter can end up holding a directory that the previous holder removed (its last
    unpair): it notices that the path no longer names what it locked, and starts over.
    """
    directory = under_root(state_dir)
    made: list[str] = []
    while True:
        if create:
            made += _make_private_dir(directory)
        try:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except FileNotFoundError:
            if create:
                continue
            yield None
            return
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            now, held = os.stat(directory), os.fstat(fd)
            same = (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        check_private(directory)
        yield made
    finally:
        os.close(fd)


def read_journal(state_dir: str) -> dict[str, Any] | None:
    path = under_root(state_dir) / JOURNAL_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def write_journal(state_dir: str, intent: dict[str, Any]) -> None:
    write_private(under_root(state_dir) / JOURNAL_FILE, json.dumps(intent).encode())


def clear_journal(state_dir: str) -> None:
    path = under_root(state_dir) / JOURNAL_FILE
    if path.exists():
        path.unlink()
        _fsync_dir(path.parent)
