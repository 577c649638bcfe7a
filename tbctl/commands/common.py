# SPDX-License-Identifier: MIT
"""Options every host-facing command shares, and output helpers."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console

from tbctl.hosts import SshOptions

# Piped output (logs, CI) gets wide tables instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 160)


def ssh_options(command: Callable[..., Any]) -> Callable[..., Any]:
    @click.option("--ssh-config", metavar="FILE", envvar="TBCTL_SSH_CONFIG",
                  help="ssh_config to read instead of ~/.ssh/config [env: TBCTL_SSH_CONFIG].")
    @click.option("--accept-new-host-keys", is_flag=True,
                  help="Record host keys of hosts not yet in known_hosts (changed keys are "
                       "still refused), like StrictHostKeyChecking=accept-new.")
    @click.option("--state-dir", default="/var/lib/tbctl", show_default=True,
                  help="Where hosts keep tbctl's pairing state.")
    @functools.wraps(command)
    def wrapper(*args: Any, ssh_config: str | None, accept_new_host_keys: bool,
                state_dir: str, **kwargs: Any) -> Any:
        options = SshOptions(ssh_config, accept_new_host_keys, state_dir)
        return command(*args, ssh=options, **kwargs)

    return wrapper


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def fmt(value: Any, suffix: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}{suffix}"
    return f"{value}{suffix}"
