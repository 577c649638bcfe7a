# SPDX-License-Identifier: MIT
"""Options every host-facing command shares (validated at parse time), output and progress.

With --json, stdout carries exactly one JSON envelope and nothing else; everything for humans
(progress, prompts, the plan table of a prompt) goes to stderr.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console
from rich.status import Status

from tbctl.hosts import SshOptions
from tbctl.hostspec import parse_host
from tbctl.inventory import Inventory, find_inventory, ifname_problem, load_inventory, pool_problem
from tbctl.schema import envelope_ok

# Piped output (logs, CI) gets wide tables instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

# ------------------------------------------------------------------ parse-time validation


def host_argument(name: str) -> Callable[..., Any]:
    """A `[user@]host[:port]` argument, rejected with exit 2 before anything connects."""
    def check(ctx: click.Context, param: click.Parameter, value: str) -> str:
        try:
            parse_host(value)
        except Exception as exc:
            raise click.BadParameter(str(exc)) from None
        return value

    return click.argument(name, callback=check)


def check_hosts(ctx: click.Context, param: click.Parameter,
                value: tuple[str, ...]) -> tuple[str, ...]:
    for spec in value:
        try:
            parse_host(spec)
        except Exception as exc:
            raise click.BadParameter(str(exc)) from None
    return value


def check_pool(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if problem := pool_problem(value):
        raise click.BadParameter(problem)
    return value


def check_links(ctx: click.Context, param: click.Parameter, value: str) -> str:
    problems = [p for name in value.split(",") if name and (p := ifname_problem(name))]
    if problems:
        raise click.BadParameter(problems[0])
    return value


def check_state_dir(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not value.startswith("/") or "\n" in value:
        raise click.BadParameter(f"'{value}' is not an absolute path")
    return value


def ssh_options(command: Callable[..., Any]) -> Callable[..., Any]:
    @click.option("--ssh-config", metavar="FILE", envvar="TBCTL_SSH_CONFIG",
                  type=click.Path(exists=True, dir_okay=False, readable=True),
                  help="ssh_config to read instead of ~/.ssh/config and /etc/ssh/ssh_config "
                       "(like ssh -F) [env: TBCTL_SSH_CONFIG].")
    @click.option("--accept-new-host-keys", is_flag=True,
                  help="Record host keys of hosts not yet in known_hosts (changed keys are "
                       "still refused), like StrictHostKeyChecking=accept-new.")
    @click.option("--state-dir", default="/var/lib/tbctl", show_default=True,
                  callback=check_state_dir, help="Where hosts keep tbctl's pairing state.")
    @functools.wraps(command)
    def wrapper(*args: Any, ssh_config: str | None, accept_new_host_keys: bool,
                state_dir: str, **kwargs: Any) -> Any:
        options = SshOptions(ssh_config, accept_new_host_keys, state_dir)
        return command(*args, ssh=options, **kwargs)

    return wrapper


inventory_option = click.option(
    "--inventory", metavar="FILE",
    help="The cluster's inventory, used when no hosts are named (default: ./tbctl.toml if "
         "present).")


def inventory_for(given: str | None, hosts: tuple[str, ...]) -> Inventory | None:
    """The inventory to use when no hosts are named; naming hosts and --inventory is
    ambiguous, and an inventory in the current directory is then not read."""
    if hosts:
        if given:
            raise click.UsageError("name hosts or give --inventory, not both")
        return None
    path = find_inventory(given)
    return load_inventory(path) if path else None


json_option = click.option(
    "--json", "as_json", is_flag=True,
    help="Print one JSON envelope on stdout (see `tbctl schema`) instead of tables.")


def print_json(result: Any) -> None:
    """The success envelope; errors get theirs from the top-level handler (tbctl.cli)."""
    click.echo(json.dumps(envelope_ok(result), indent=2, sort_keys=True))


def fmt(value: Any, suffix: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}{suffix}"
    return f"{value}{suffix}"


# ------------------------------------------------------------------ progress


class Progress:
    """One status line per step on stderr: rich's spinner on a terminal, plain lines
    ("tbctl: probing tbt-a, tbt-b") otherwise. With TBCTL_TIMINGS=1 it ends with one line
    giving the seconds each step took (the netns benchmark prints it)."""

    def __init__(self) -> None:
        self.live = sys.stderr.isatty()
        self.status: Status | None = None
        self.current: str | None = None
        self.started = self.begin = time.monotonic()
        self.timings: list[tuple[str, float]] = []

    def __call__(self, text: str) -> None:
        self._finish_step()
        self.current = text
        if self.live:
            if self.status is None:
                self.status = err_console.status(text)
                self.status.start()
            else:
                self.status.update(text)
        else:
            click.echo(f"tbctl: {text}", err=True)

    def _finish_step(self) -> None:
        now = time.monotonic()
        if self.current is not None:
            self.timings.append((self.current, now - self.started))
        self.current, self.started = None, now

    def close(self) -> None:
        self._finish_step()
        if self.status is not None:
            self.status.stop()
            self.status = None
        if os.environ.get("TBCTL_TIMINGS") and self.timings:
            steps = ", ".join(f"{name} {seconds:.2f}s" for name, seconds in self.timings)
            click.echo(f"tbctl: timings: {steps}; total {time.monotonic() - self.begin:.2f}s",
                       err=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
