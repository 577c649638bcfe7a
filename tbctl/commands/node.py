# SPDX-License-Identifier: MIT
"""`tbctl node ...`: the node agent, as the controller runs it on each host."""

from __future__ import annotations

import sys

import click

from tbctl.node import agent


@click.command("node", context_settings={"ignore_unknown_options": True,
                                         "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def node_command(args: tuple[str, ...]) -> None:
    """Host side of tbctl (run by the controller over SSH; answers in JSON)."""
    sys.exit(agent.main(list(args)))
