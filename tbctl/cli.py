# SPDX-License-Identifier: MIT
"""The one click group behind every tbctl command."""

from __future__ import annotations

import sys

import click

from tbctl import __version__
from tbctl.commands.env import env_command
from tbctl.commands.hostfiles import render_host_files_command
from tbctl.commands.lab import lab
from tbctl.commands.node import node_command
from tbctl.commands.pair import pair_command, unpair_command
from tbctl.commands.run import run_command
from tbctl.commands.status import doctor_command, status_command
from tbctl.errors import TbctlError


class Group(click.Group):
    """Turns TbctlError into one line on stderr and its exit code."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except TbctlError as exc:
            click.echo(f"tbctl: error: {exc}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tbctl")
def main() -> None:
    """Pair hosts joined by USB4/Thunderbolt cables into an RDMA cluster."""


for command in (pair_command, unpair_command, status_command, doctor_command, env_command,
                node_command, render_host_files_command, lab):
    main.add_command(command)
main.add_command(run_command)
