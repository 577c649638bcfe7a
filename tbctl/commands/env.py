# SPDX-License-Identifier: MIT
"""`tbctl env`: the environment NCCL/RCCL, Gloo, UCX, Open MPI, torchrun and vLLM need on each
paired host (computed in tbctl.envvars)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from tbctl.commands.common import inventory_option, json_option, print_json, ssh_options
from tbctl.commands.run import job_hosts
from tbctl.commands.status import host_statuses
from tbctl.envvars import DEFAULT_MASTER_PORT, FORMATS, cluster_env, down_cables, render
from tbctl.errors import EXIT_USAGE, TbctlError
from tbctl.hosts import SshOptions
from tbctl.schema import EnvResult
from tbctl.schema import HostEnv as HostEnvResult


@click.command("env")
@click.argument("hosts", nargs=-1)
@click.option("--host", "only", metavar="HOST",
              help="Print only this host's variables (one of HOSTS): what `eval` on it needs.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="shell",
              show_default=True, help="shell: export lines; dotenv: KEY=value lines; json.")
@click.option("--master-port", type=click.IntRange(1, 65535), default=DEFAULT_MASTER_PORT,
              show_default=True, help="MASTER_PORT (torch.distributed rendezvous on rank 0).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write <host>.env files into this directory instead of printing.")
@inventory_option
@ssh_options
@json_option
def env_command(hosts: tuple[str, ...], only: str | None, fmt: str, master_port: int,
                out_dir: Path | None, inventory: str | None, ssh: SshOptions,
                as_json: bool) -> None:
    """Print the variables that point NCCL/RCCL, Gloo, UCX, Open MPI and vLLM at the cables.

    HOSTS are the paired hosts of one job, rank 0 first (its address is MASTER_ADDR); with
    none, the hosts of the inventory (./tbctl.toml or --inventory), in its order. Hosts
    paired from an inventory use their node address (reachable from every host); hosts
    paired by name a cable address. On each host: eval "$(tbctl env --host THAT_HOST)".
    Without --host every host's block is printed, each applied by eval only on the host
    that owns its address.

    Exit codes: 0 printed, 2 bad usage, 3 SSH failure, 5 the hosts are not paired.
    """
    hosts = job_hosts(hosts, inventory)
    if only is not None and only not in hosts:
        raise TbctlError(f"--host {only} is not one of the hosts {' '.join(hosts)}: "
                         "name it among them", EXIT_USAGE)
    states = host_statuses(hosts, ssh)
    for warning in down_cables(states, list(hosts)):
        click.echo(f"tbctl env: warning: {warning}", err=True)
    envs = cluster_env(states, list(hosts), master_port)
    chosen = [only] if only else list(hosts)
    if as_json and not out_dir:
        print_json(EnvResult(hosts=[
            HostEnvResult(host=h, peers=[p for p in hosts if p != h],
                          variables=envs[h].variables) for h in chosen]))
        return
    if fmt == "json" and not out_dir:
        # The variables themselves (what a job reads), not the --json envelope.
        click.echo(json.dumps(envs[only].variables if only
                              else {h: envs[h].variables for h in chosen},
                              indent=2, sort_keys=True))
        return
    written: list[HostEnvResult] = []
    for i, host in enumerate(chosen):
        # Several hosts' exports in one stream: each block applies only on its own host.
        text = render(envs[host], fmt, [h for h in hosts if h != host],
                      guard=only is None and not out_dir)
        if out_dir:
            out_dir.mkdir(parents=True, exist_ok=True)
            path = out_dir / f"{host}.{'json' if fmt == 'json' else 'env'}"
            path.write_text(text)
            written.append(HostEnvResult(host=host, peers=[p for p in hosts if p != host],
                                         variables=envs[host].variables, file=str(path)))
            if not as_json:
                click.echo(str(path))
        else:
            click.echo(("\n" if i else "") + text, nl=False)
    if as_json:
        print_json(EnvResult(hosts=written))
