# SPDX-License-Identifier: MIT
"""Running Debian's nix-instantiate (nix-bin) on this repository's Nix files, offline.

tests/nix has no __init__.py on purpose: pytest then puts this directory on sys.path, so the
tests import this helper as `nixtool` whatever the rest of tests/ looks like.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def nix_instantiate() -> str:
    tool = shutil.which("nix-instantiate")
    if tool is None:
        pytest.fail(
            "nix-instantiate is not installed: `apt-get install nix-bin` (it is listed in "
            ".ci/apt-packages, so `bash scripts/deps.sh` installs it)"
        )
    return tool


def run_nix(args: list[str], cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [nix_instantiate(), *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def nix_string(value: str) -> str:
    """A Nix string literal for value (JSON string syntax is valid Nix for these characters)."""
    if "${" in value or "\\" in value:
        raise ValueError(f"refusing to embed {value!r} in a Nix expression")
    return json.dumps(value)


def eval_json(expression: str, cwd: Path = REPO) -> Any:
    """Evaluate a Nix expression strictly, offline, and return its JSON value."""
    done = run_nix(["--eval", "--strict", "--json", "-E", expression], cwd=cwd)
    if done.returncode != 0:
        raise NixEvalError(done.stderr.strip())
    return json.loads(done.stdout)


class NixEvalError(Exception):
    """nix-instantiate rejected the expression; the message is its stderr."""
