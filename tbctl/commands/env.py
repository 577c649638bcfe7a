# SPDX-License-Identifier: MIT
"""`tbctl env`: the environment NCCL/RCCL, Gloo, UCX and vLLM need on each paired host."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from tbctl.commands.common import Progress, host_argument, json_option, print_json, ssh_options
from tbctl.commands.status import host_statuses
from tbctl.errors import PlanError
from tbctl.hosts import SshOptions
from tbctl.schema import EnvResult, HostEnv


def variables_for(status: dict[str, Any], peer_names: set[str]) -> dict[str, str]:
    cables = [c for p in status["pairings"] if p["peer_name"] in peer_names for c in p["cables"]]
    transport = next(p["transport"] for p in status["pairings"] if p["peer_name"] in peer_names)
    links = [c["link"] for c in cables]
    env = {
        "NCCL_SOCKET_IFNAME": ",".join(links),
        "GLOO_SOCKET_IFNAME": links[0],
        "VLLM_HOST_IP": cables[0]["address"],
    }
    devices = list(dict.fromkeys(c["rdma_device"] for c in cables if c.get("rdma_device")))
    if transport == "ip" or not devices:
        env["NCCL_IB_DISABLE"] = "1"
        env["UCX_NET_DEVICES"] = ",".join(links)
    else:
        gid = next((c["gid_index"] for c in cables if c["gid_index"] is not None), 0)
        env["NCCL_IB_HCA"] = ",".join(devices)
        env["NCCL_IB_GID_INDEX"] = str(gid)
        env["UCX_NET_DEVICES"] = ",".join(f"{d}:1" for d in devices)
    return dict(sorted(env.items()))


@click.command("env")
@host_argument("host_a")
@host_argument("host_b")
@click.option("--format", "fmt", type=click.Choice(["shell", "dotenv"]), default="shell",
              show_default=True, help="shell: export lines; dotenv: KEY=value lines.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write <host>.env files into this directory instead of printing.")
@ssh_options
@json_option
def env_command(host_a: str, host_b: str, fmt: str, out_dir: Path | None, ssh: SshOptions,
                as_json: bool) -> None:
    """Print per host the variables that point NCCL/RCCL, Gloo, UCX and vLLM at the cables.

    Exit codes: 0 printed, 3 SSH failure, 5 the hosts are not paired.
    """
    with Progress() as progress:
        statuses = host_statuses((host_a, host_b), ssh, progress)
    status_a, status_b = statuses[host_a], statuses[host_b]
    hosts: list[HostEnv] = []
    for (me, status), (peer, peer_status) in (((host_a, status_a), (host_b, status_b)),
                                              ((host_b, status_b), (host_a, status_a))):
        names = {p["peer_name"] for p in status["pairings"]
                 if p["peer_id"] == peer_status["host_id"]}
        if not names:
            raise PlanError(f"{me} is not paired with {peer}: run tbctl pair {host_a} {host_b}")
        hosts.append({"host": me, "peers": [peer], "variables": variables_for(status, names)})
    from tbctl.hostfiles import render_template  # jinja2 is imported only to render
    prefix = "export " if fmt == "shell" else ""
    for entry in hosts:
        variables = entry["variables"]
        transport = "rdma" if "NCCL_IB_HCA" in variables else "ip"
        text = render_template("env.j2", host=entry["host"], peers=" ".join(entry["peers"]),
                               transport=transport, variables=variables, prefix=prefix)
        if out_dir:
            out_dir.mkdir(parents=True, exist_ok=True)
            path = out_dir / f"{entry['host']}.env"
            path.write_text(text)
            entry["file"] = str(path)
            if not as_json:
                click.echo(str(path))
        elif not as_json:
            click.echo(text)
    if as_json:
        print_json(EnvResult(hosts=hosts))
