# SPDX-License-Identifier: MIT
"""`tbctl pair` and `tbctl unpair`."""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.table import Table

from tbctl.commands.common import console, fmt, json_option, print_json, ssh_options
from tbctl.errors import EXIT_FAILED, PlanError
from tbctl.hosts import SshOptions
from tbctl.pairing import PairOptions, pair, unpair
from tbctl.plan import DEFAULT_POOL, TRANSPORTS, Plan


def plan_table(plan: dict[str, Any]) -> Table:
    table = Table(title=f"Plan: {plan['host_a']} <-> {plan['host_b']}")
    for column in ("cable", plan["host_a"], "address", plan["host_b"], "address", "MTU",
                   "RDMA", "matched by"):
        table.add_column(column)
    for i, c in enumerate(plan["cables"]):
        rdma = f"{c['rdma_a']} / {c['rdma_b']}" if c["rdma_a"] else plan["transport"]
        table.add_row(str(i), c["link_a"], f"{c['address_a']}/{c['prefix']}", c["link_b"],
                      f"{c['address_b']}/{c['prefix']}", str(c["mtu"]), rdma, c["matched_by"])
    return table


def result_table(result: dict[str, Any]) -> Table:
    table = Table(title=f"{result['host_a']} <-> {result['host_b']} ({result['transport']})")
    for column in ("cable", result["host_a"], "address", result["host_b"], "address", "MTU",
                   "RDMA device", "GID index", "ping", "RDMA RTT", "state"):
        table.add_column(column)
    for i, c in enumerate(result["cables"]):
        rdma = f"{c['rdma_a']} / {c['rdma_b']}" if c["rdma_a"] else "-"
        gid = f"{fmt(c['gid_index_a'])} / {fmt(c['gid_index_b'])}" if c["rdma_a"] else "-"
        ok = c["up"] and c["ping_rtt_us"] is not None and c["rdma_ok"] is not False
        table.add_row(str(i), c["link_a"], c["address_a"], c["link_b"], c["address_b"],
                      str(c["mtu"]), rdma, gid, fmt(c["ping_rtt_us"], " us"),
                      fmt(c["rdma_rtt_us"], " us"),
                      "[green]ok[/green]" if ok else "[red]FAIL[/red]")
    return table


@click.command("pair")
@click.argument("host_a")
@click.argument("host_b")
@click.option("--transport", type=click.Choice(TRANSPORTS), default="auto", show_default=True,
              help="native = tbrdma; rxe = RoCE in software; ip = addresses only.")
@click.option("--links", default="", metavar="IF[,IF...]",
              help="Also treat these interfaces as cable links (besides thunderbolt-net links "
                   "and those listed in /etc/tbctl/links.conf).")
@click.option("--pool", default=DEFAULT_POOL, show_default=True,
              help="IPv4 network to take the per-cable /31s from.")
@click.option("--mtu", type=click.IntRange(1280, 65535), default=None,
              help="MTU for every cable (default: 65520 on thunderbolt-net, else unchanged).")
@click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Apply without asking.")
@click.option("--no-rdma-check", is_flag=True, help="Skip the RDMA WRITE/READ round trip.")
@ssh_options
@json_option
def pair_command(host_a: str, host_b: str, transport: str, links: str, pool: str,
                 mtu: int | None, dry_run: bool, yes: bool, no_rdma_check: bool,
                 ssh: SshOptions, as_json: bool) -> None:
    """Configure HOST_A and HOST_B for RDMA over every cable between them.

    Both hosts are changed, or neither. The pairing is recorded under --state-dir and
    re-applied at boot and when a cable is plugged in again.

    Exit codes: 0 paired and verified (or already paired), 1 paired but verification found
    a problem, 2 bad usage, 3 SSH failure, 4 unsuitable host, 5 nothing safe to do, 6 apply
    failed and was rolled back.
    """
    def confirm(plan: Plan) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            raise PlanError("not applied: pass --yes to apply without a prompt")
        console.print(plan_table(plan.to_json()))
        return click.confirm("Apply this plan on both hosts?", default=False)

    options = PairOptions(transport=transport, pool=pool, mtu=mtu,
                          links=tuple(x for x in links.split(",") if x), dry_run=dry_run,
                          verify_rdma=not no_rdma_check)
    result = pair(host_a, host_b, ssh, options, confirm)
    if as_json:
        print_json(result)
    elif result["dry_run"]:
        console.print(plan_table(result))
        console.print(f"Transport: {result['transport']} ({result['transport_reason']})")
        console.print("Dry run: nothing was changed.")
    else:
        console.print(result_table(result))
        if result["already_paired"]:
            console.print(f"{host_a} and {host_b} are already paired; nothing changed.")
        else:
            console.print(f"Paired. Transport: {result['transport']} "
                          f"({result['transport_reason']})")
        for problem in result["problems"]:
            console.print(f"[red]problem:[/red] {problem}")
    if not result["dry_run"] and not result["verified"]:
        sys.exit(EXIT_FAILED)


@click.command("unpair")
@click.argument("host_a")
@click.argument("host_b")
@click.option("--yes", "-y", is_flag=True, help="Accepted like pair's; unpair never prompts.")
@ssh_options
@json_option
def unpair_command(host_a: str, host_b: str, yes: bool, ssh: SshOptions, as_json: bool) -> None:
    """Remove exactly what `tbctl pair HOST_A HOST_B` added, on both hosts.

    Exit codes: 0 done (or nothing to remove), 2 bad usage, 3 SSH failure, 4 host error.
    """
    result = unpair(host_a, host_b, ssh)
    if as_json:
        print_json(result)
    elif result["removed_a"] or result["removed_b"]:
        console.print(f"Unpaired {host_a} and {host_b}.")
    else:
        console.print(f"{host_a} and {host_b} were not paired; nothing changed.")
