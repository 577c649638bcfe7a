# SPDX-License-Identifier: MIT
"""Where the agent keeps what it changed, so boot, hotplug and unpair can act on it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tbctl.node import AGENT_PROTOCOL

DEFAULT_STATE_DIR = "/var/lib/tbctl"


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
    path = under_root(state_dir) / "state.json"
    if not path.exists():
        return empty_state()
    state = json.loads(path.read_text())
    if state.get("protocol") != AGENT_PROTOCOL:
        raise ValueError(f"{path} has state protocol {state.get('protocol')}, "
                         f"this tbctl reads {AGENT_PROTOCOL}: upgrade tbctl on this host")
    return state


def save(state_dir: str, state: dict[str, Any]) -> None:
    directory = under_root(state_dir)
    path = directory / "state.json"
    if not state["pairings"]:
        if path.exists():
            path.unlink()
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
        return
    directory.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    # 0600 from the start: the state holds the native pairing key.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(state, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
