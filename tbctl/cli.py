# SPDX-License-Identifier: MIT
"""The one click group behind every tbctl command, and the one place every exit is shaped.

Every failure ends as one line on stderr ("tbctl: error: ...") and its documented exit code;
with --json also as the error envelope on stdout. Click's own usage errors are made one line
too, and a Ctrl-C exits 130 at once instead of waiting for SSH threads.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from tbctl import __version__
from tbctl.commands.env import env_command
from tbctl.commands.hostfiles import render_host_files_command
from tbctl.commands.node import node_command
from tbctl.commands.pair import pair_command, unpair_command
from tbctl.commands.run import run_command
from tbctl.commands.status import doctor_command, status_command
from tbctl.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    Interrupted,
    TbctlError,
)
from tbctl.schema import envelope_error, json_schema


def _wants_json(args: Sequence[str]) -> bool:
    before_separator = list(args)[: list(args).index("--")] if "--" in args else list(args)
    return "--json" in before_separator


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _fail(code: str, message: str, exit_code: int, as_json: bool) -> NoReturn:
    message = _one_line(message)
    if as_json:
        click.echo(json.dumps(envelope_error(code, message), indent=2, sort_keys=True))
    click.echo(f"tbctl: error: {message}", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    if exit_code == EXIT_INTERRUPTED:
        # Worker threads may sit in SSH reads; waiting for them is what made Ctrl-C slow.
        os._exit(exit_code)
    sys.exit(exit_code)


class Group(click.Group):
    # Imported when used: the lab's modules are not needed to pair hosts, and every
    # import is paid on every run.
    LAZY = {"lab": ("tbctl.commands.lab", "lab"),
            "bench": ("tbctl.commands.bench", "bench_command"),
            "discover": ("tbctl.commands.discover", "discover_command")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.LAZY])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.LAZY:
            module, attribute = self.LAZY[name]
            return getattr(importlib.import_module(module), attribute)
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            # Before click's own handler turns it into Abort and prints an empty line.
            raise Interrupted("interrupted") from None

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        as_json = _wants_json(argv)
        try:
            result = super().main(argv, prog_name or "tbctl", complete_var,
                                  standalone_mode=False, **extra)
        except TbctlError as exc:
            _fail(exc.code, str(exc), exc.exit_code, as_json)
        except click.UsageError as exc:
            where = f" (see tbctl {exc.ctx.command_path.split(' ', 1)[-1]} --help)" \
                if exc.ctx and exc.ctx.parent else " (see tbctl --help)"
            _fail("usage", exc.format_message() + where, EXIT_USAGE, as_json)
        except click.ClickException as exc:
            _fail("usage", exc.format_message(), exc.exit_code, as_json)
        except (click.Abort, KeyboardInterrupt):
            _fail("interrupted", "interrupted", EXIT_INTERRUPTED, as_json)
        except (SystemExit, click.exceptions.Exit):
            raise
        except Exception as exc:  # a bug: still one line (TBCTL_DEBUG=1 shows the traceback)
            if os.environ.get("TBCTL_DEBUG"):
                traceback.print_exc()
            _fail("internal", f"internal error: {type(exc).__name__}: {exc} (a bug in tbctl; "
                  "rerun with TBCTL_DEBUG=1 for the traceback)", EXIT_INTERNAL, as_json)
        if standalone_mode:
            sys.exit(result if isinstance(result, int) else 0)
        return result


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tbctl")
def main() -> None:
    """Pair hosts joined by USB4/Thunderbolt cables into an RDMA cluster.

    Exit codes (every command): 0 done, 1 done but a check found a problem, 2 bad usage,
    3 SSH, 4 unsuitable host, 5 nothing safe to do, 6 apply failed and was rolled back,
    70 internal error, 130 interrupted. With --json, stdout holds exactly one JSON envelope
    (`tbctl schema` prints its JSON Schema).
    """


@click.command("schema")
def schema_command() -> None:
    """Print the JSON Schema of what every command prints with --json."""
    click.echo(json.dumps(json_schema(), indent=2))


for command in (pair_command, unpair_command, status_command, doctor_command, env_command,
                node_command, render_host_files_command, schema_command):
    main.add_command(command)
main.add_command(run_command)
