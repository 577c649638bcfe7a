# SPDX-License-Identifier: MIT
"""`tbctl run`: start a workload on every paired host with that host's environment.

    tbctl run [--dry-run] A B -- PROGRAM ARGS...        the same program on every host
    tbctl run -- PROGRAM ARGS...                        ... on the hosts of ./tbctl.toml
    tbctl run mpi -n N A B -- PROGRAM ARGS...           one mpirun on A
    tbctl run torchrun A B -- SCRIPT ARGS...            torchrun on every host
    tbctl run ray A B                                   Ray head on A, workers on the rest
    tbctl run vllm A B -- serve MODEL --tensor-parallel-size 2 ...
"""

from __future__ import annotations

import functools
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import click

from tbctl.commands.common import (
    inventory_for,
    inventory_option,
    json_option,
    print_json,
    ssh_options,
)
from tbctl.connection import Connection
from tbctl.envvars import DEFAULT_MASTER_PORT, HostEnv, cluster_env, down_cables
from tbctl.errors import UsageError
from tbctl.hosts import SshOptions, connected, in_parallel
from tbctl.inventory import INVENTORY_FILE
from tbctl.launch import (
    DEFAULT_RAY_PORT,
    MPI_TRANSPORTS,
    Plan,
    RunResult,
    describe,
    exec_plan,
    mpi_plan,
    ray_plan,
    run_plan,
    torchrun_plan,
    vllm_plan,
)
from tbctl.schema import LaunchReport, RunReport

PROGRAM_KEY = "tbctl_program"


class ProgramCommand(click.Command):
    """Hosts before `--`, the program and its arguments after it (click drops the `--`)."""

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return [*super().collect_usage_pieces(ctx), "-- PROGRAM [ARGS]..."]

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            split = args.index("--")
            ctx.meta[PROGRAM_KEY] = args[split + 1:]
            args = args[:split]
        else:
            ctx.meta[PROGRAM_KEY] = []
        return super().parse_args(ctx, args)


class RunGroup(click.Group):
    """`tbctl run A B -- PROGRAM` is `tbctl run exec A B -- PROGRAM`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["exec", *args]
        return super().parse_args(ctx, args)


def _emitter(labels: list[str], all_to_stderr: bool = False) -> Callable[[str, str, bool], None]:
    lock = threading.Lock()
    width = max(len(label) for label in labels)

    def emit(label: str, line: str, stderr: bool) -> None:
        with lock:  # whole lines, never two hosts' output mixed within one
            click.echo(f"{f'[{label}]':<{width + 2}} {line}", err=stderr or all_to_stderr)

    return emit


def job_hosts(hosts: tuple[str, ...], inventory: str | None) -> tuple[str, ...]:
    """The hosts named, else the inventory's (./tbctl.toml or --inventory), rank 0 first."""
    found = inventory_for(inventory, hosts)
    if found is not None:
        return found.hosts
    if not hosts:
        raise UsageError(f"no hosts: name the job's paired hosts (rank 0 first), or run where "
                         f"a {INVENTORY_FILE} is (or give --inventory FILE)")
    return hosts


def _report(plan: Plan, envs: dict[str, HostEnv], dry_run: bool,
            result: RunResult | None) -> RunReport:
    launches: list[LaunchReport] = [
        {"stage": number, "host": launch.host, "role": "service" if launch.service else "main",
         "argv": launch.argv, "env": launch.env, "cwd": launch.cwd,
         "command_line": launch.command_line(), "ready": launch.ready,
         "cleanup": launch.cleanup}
        for number, stage in enumerate(plan, 1) for launch in stage]
    ordered = sorted(envs.values(), key=lambda e: e.rank)
    return {"dry_run": dry_run, "hosts": [e.host for e in ordered],
            "node_addresses": {e.host: e.node_address for e in ordered},
            "launches": launches, "exit_code": result.exit_code if result else None,
            "codes": result.codes if result else {}, "stopped": result.stopped if result else [],
            "reason": result.reason if result else None}


def launch_options(command: Callable[..., Any]) -> Callable[..., Any]:
    @click.argument("hosts", nargs=-1)
    @click.option("--dry-run", is_flag=True, help="Print what would run where; start nothing.")
    @click.option("--master-port", type=click.IntRange(1, 65535), default=DEFAULT_MASTER_PORT,
                  show_default=True, help="MASTER_PORT on rank 0 (the first host).")
    @inventory_option
    @ssh_options
    @json_option
    @functools.wraps(command)
    def wrapper(*args: Any, hosts: tuple[str, ...], dry_run: bool, master_port: int,
                inventory: str | None, ssh: SshOptions, as_json: bool, **kwargs: Any) -> None:
        program = click.get_current_context().meta.get(PROGRAM_KEY, [])
        hosts = job_hosts(hosts, inventory)
        # One connection per host: it reads the pairings, then carries the processes.
        with connected(list(hosts), ssh) as conns:
            states = in_parallel(lambda c: c.agent("status", "--state-dir", ssh.state_dir),
                                 conns)
            by_host = dict(zip(hosts, states, strict=True))
            for warning in down_cables(by_host, list(hosts)):
                click.echo(f"tbctl run: warning: {warning}", err=True)
            envs = cluster_env(by_host, list(hosts), master_port)
            plan = command(*args, envs=envs, program=program, **kwargs)
            if dry_run:
                if as_json:
                    print_json(_report(plan, envs, True, None))
                    return
                for line in describe(plan):
                    click.echo(line)
                click.echo("Dry run: nothing was started.")
                return
            result = execute(plan, dict(zip(hosts, conns, strict=True)), as_json)
        if as_json:
            print_json(_report(plan, envs, False, result))
            sys.exit(result.exit_code)
        summary = ", ".join(f"{k} exited {v}" for k, v in result.codes.items())
        if result.stopped:
            summary += ("; " if summary else "") + "stopped " + ", ".join(result.stopped)
        click.echo(f"tbctl run: {result.reason}: {summary}", err=True)
        sys.exit(result.exit_code)

    return wrapper


def execute(plan: Plan, conns: dict[str, Connection], as_json: bool = False) -> RunResult:
    # SIGTERM (systemd, a CI timeout) stops the remote processes like Ctrl-C does.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        # With --json stdout holds the envelope alone: the programs' output goes to stderr.
        return run_plan(plan, conns, _emitter(list(conns), all_to_stderr=as_json))
    finally:
        signal.signal(signal.SIGTERM, previous)


@click.group("run", cls=RunGroup)
def run_command() -> None:
    """Start a workload on every paired host with that host's tbctl env.

    HOSTS are the paired hosts of the job, rank 0 first; with none, the hosts of the
    inventory (./tbctl.toml or --inventory), in its order. Hosts paired from an inventory
    bind to their node address, which every other host reaches. Output is streamed prefixed
    by host; when one process fails or on Ctrl-C every remote process (and its children) is
    stopped. With --json, stdout holds one RunReport (see Scripting) and the output goes to
    stderr.

    Exit code: the worst exit code of the processes that ended on their own, 130 after
    Ctrl-C; 3 SSH failure, 5 the hosts are not paired.
    """


@run_command.command("exec", cls=ProgramCommand)
@click.option("--cwd", metavar="DIR", help="Directory to run in on every host.")
@launch_options
def exec_command(envs: dict[str, HostEnv], program: list[str], cwd: str | None) -> Plan:
    """Run the same program on every host (also `tbctl run HOSTS -- PROGRAM`).

    Besides tbctl env's variables, each process gets TBCTL_HOST, TBCTL_NODE_RANK and
    TBCTL_NNODES.
    """
    return exec_plan(envs, program, cwd)


@run_command.command("mpi", cls=ProgramCommand)
@click.option("-n", "ranks", type=click.IntRange(1), help="MPI ranks in all (default: one "
              "per host), spread evenly over the hosts.")
@click.option("--mpirun", default="mpirun", show_default=True, help="mpirun on rank 0's host.")
@click.option("--mpirun-arg", "extra", multiple=True, metavar="ARG",
              help="Extra mpirun argument (repeat), e.g. --mpirun-arg=--allow-run-as-root.")
@click.option("--cwd", metavar="DIR", help="Directory to run mpirun in.")
@click.option("--transport", type=click.Choice(MPI_TRANSPORTS), default="ucx",
              show_default=True, help="ucx: Open MPI's pml ucx (RDMA where UCX drives the "
              "device); tcp: pml ob1 with the TCP BTL on the cables (no RDMA).")
@launch_options
def mpi_command(envs: dict[str, HostEnv], program: list[str], ranks: int | None, mpirun: str,
                extra: tuple[str, ...], cwd: str | None, transport: str) -> Plan:
    """Run an MPI program: one mpirun on the first host, UCX (or TCP) over the cables.

    mpirun starts the remote ranks itself over ssh to the cable addresses: the first host
    needs passwordless ssh to the others' cable addresses.
    """
    return mpi_plan(envs, program, ranks or len(envs), mpirun, extra, cwd, transport)


@run_command.command("torchrun", cls=ProgramCommand)
@click.option("--nproc-per-node", type=click.IntRange(1), default=1, show_default=True)
@click.option("--torchrun", default="torchrun", show_default=True, help="torchrun on each host.")
@click.option("--cwd", metavar="DIR", help="Directory to run in on every host.")
@launch_options
def torchrun_command(envs: dict[str, HostEnv], program: list[str], nproc_per_node: int,
                     torchrun: str, cwd: str | None) -> Plan:
    """Run torchrun on every host, rendezvous on the first host's cable address."""
    return torchrun_plan(envs, program, nproc_per_node, torchrun, cwd)


@run_command.command("ray", cls=ProgramCommand)
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_RAY_PORT,
              show_default=True, help="The Ray head's port.")
@click.option("--ray", default="ray", show_default=True, help="ray on each host.")
@launch_options
def ray_command(envs: dict[str, HostEnv], program: list[str], port: int, ray: str) -> Plan:
    """Start a Ray head on the first host and workers on the others, on the cable addresses,
    until Ctrl-C (arguments after -- go to every ray start)."""
    return ray_plan(envs, port, ray, program)


@run_command.command("vllm", cls=ProgramCommand)
@click.option("--backend", type=click.Choice(["ray", "mp"]), default="ray", show_default=True,
              help="ray: a Ray cluster and --distributed-executor-backend ray; mp: vLLM's "
                   "own multi-node mode (--nnodes/--node-rank/--headless).")
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_RAY_PORT,
              show_default=True, help="The Ray head's port (backend ray).")
@click.option("--vllm", default="vllm", show_default=True, help="vllm on each host.")
@click.option("--ray", default="ray", show_default=True, help="ray on each host.")
@launch_options
def vllm_command(envs: dict[str, HostEnv], program: list[str], backend: str, port: int,
                 vllm: str, ray: str) -> Plan:
    """Serve a model with vLLM across the hosts: -- serve MODEL --tensor-parallel-size 2 ..."""
    return vllm_plan(envs, program, backend, port, vllm, ray)
