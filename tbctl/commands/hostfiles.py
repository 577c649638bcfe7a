# SPDX-License-Identifier: MIT
"""`tbctl render-host-files`: the unit, hotplug rule and module list, rendered into a tree."""

from __future__ import annotations

from pathlib import Path

import click

from tbctl.commands.common import json_option, print_json
from tbctl.schema import FilesResult


@click.command("render-host-files")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write the root-relative tree into (e.g. $out in a Nix build).")
@click.option("--state-dir", default="/var/lib/tbctl", show_default=True,
              help="State directory the unit re-applies from.")
@click.option("--tbctl-exec", default="tbctl", show_default=True,
              help="Command that runs tbctl on the host (its absolute path on NixOS).")
@click.option("--module", "modules", multiple=True,
              help="Kernel module to load at boot (repeatable).")
@json_option
def render_host_files_command(out_dir: Path, state_dir: str, tbctl_exec: str,
                              modules: tuple[str, ...], as_json: bool) -> None:
    """Write the files a pairing installs on a host, exactly as `tbctl pair` writes them."""
    from tbctl.hostfiles import render_host_files  # jinja2 is imported only to render
    written = []
    for rel, content in render_host_files(
        state_dir=state_dir, tbctl_exec=tbctl_exec, modules=modules
    ).items():
        target = out_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        written.append(str(target))
        if not as_json:
            click.echo(str(target))
    if as_json:
        print_json(FilesResult(files=written))
