# SPDX-License-Identifier: MIT
"""`tbctl pair` and `tbctl unpair`."""

from __future__ import annotations

import sys
from typing import Any

import click
from click.core import ParameterSource
from rich.table import Table

from tbctl.cluster import pair_all, unpair_all
from tbctl.commands.common import (
    Progress,
    check_hosts,
    check_links,
    check_pool,
    console,
    err_console,
    fmt,
    inventory_for,
    inventory_option,
    json_option,
    print_json,
    ssh_options,
)
from tbctl.errors import EXIT_FAILED, PlanError
from tbctl.hosts import SshOptions
from tbctl.inventory import INVENTORY_FILE, Inventory
from tbctl.pairing import PairOptions, pair, unpair
from tbctl.plan import DEFAULT_POOL, TRANSPORTS, Plan
from tbctl.schema import PairAllResult, PairResult


def plan_table(plan: dict[str, Any] | PairResult) -> Table:
    table = Table(title=f"Plan: {plan['host_a']} <-> {plan['host_b']}")
    for column in ("cable", plan["host_a"], "address", plan["host_b"], "address", "MTU",
                   "RDMA", "matched by"):
        table.add_column(column)
    for i, c in enumerate(plan["cables"]):
        rdma = f"{c['rdma_a']} / {c['rdma_b']}" if c["rdma_a"] else plan["transport"]
        table.add_row(str(i), c["link_a"], f"{c['address_a']}/{c['prefix']}", c["link_b"],
                      f"{c['address_b']}/{c['prefix']}", str(c["mtu"]), rdma, c["matched_by"])
    return table


def result_table(result: PairResult) -> Table:
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


def _two_or_inventory(hosts: tuple[str, ...], inventory: str | None,
                      command: str) -> Inventory | None:
    """None for two named hosts, else the inventory (which must exist)."""
    if len(hosts) == 1:
        raise click.UsageError(f"missing HOST_B: name two hosts (or none, to {command} "
                               "every cabled pair of the inventory)")
    if len(hosts) > 2:
        raise click.UsageError(f"{len(hosts)} hosts named: name two hosts (or none, to "
                               f"{command} every cabled pair of the inventory)")
    found = inventory_for(inventory, hosts)
    if not hosts and found is None:
        raise click.UsageError(f"name two hosts, or write a {INVENTORY_FILE} here (or give "
                               "--inventory FILE) to " + command + " the whole cluster")
    return found


def _option_or(ctx: click.Context, name: str, value: Any, inventory_value: Any) -> Any:
    """A command-line option given explicitly beats the inventory's setting."""
    if ctx.get_parameter_source(name) == ParameterSource.DEFAULT:
        return inventory_value
    return value


@click.command("pair")
@click.argument("hosts", nargs=-1, metavar="[HOST_A HOST_B]", callback=check_hosts)
@click.option("--transport", type=click.Choice(TRANSPORTS), default="auto", show_default=True,
              help="native = tbrdma; rxe = RoCE in software; ip = addresses only.")
@click.option("--links", default="", metavar="IF[,IF...]", callback=check_links,
              help="Also treat these interfaces as cable links (besides thunderbolt-net links "
                   "and those listed in /etc/tbctl/links.conf).")
@click.option("--pool", default=DEFAULT_POOL, show_default=True, callback=check_pool,
              help="IPv4 network to take the per-cable /31s from.")
@click.option("--mtu", type=click.IntRange(1280, 65535), default=None,
              help="MTU for every cable (default: 65520 on thunderbolt-net, else unchanged).")
@click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Apply without asking.")
@click.option("--no-rdma-check", is_flag=True, help="Skip the RDMA WRITE/READ round trip.")
@inventory_option
@ssh_options
@json_option
@click.pass_context
def pair_command(ctx: click.Context, hosts: tuple[str, ...], transport: str, links: str,
                 pool: str, mtu: int | None, dry_run: bool, yes: bool, no_rdma_check: bool,
                 inventory: str | None, ssh: SshOptions, as_json: bool) -> None:
    """Configure HOST_A and HOST_B for RDMA over every cable between them.

    Both hosts are changed, or neither. The pairing is recorded under --state-dir and
    re-applied at boot and when a cable is plugged in again.

    With no hosts, every pair of hosts of the inventory (./tbctl.toml or --inventory) that
    shares a cable is paired, one pair after the other; if one fails, the pairs applied
    before it are unpaired again. Options given here beat the inventory's settings.

    Exit codes: 0 paired and verified (or already paired), 1 paired but verification found
    a problem, 2 bad usage (or a bad inventory), 3 SSH failure, 4 unsuitable host, 5 nothing
    safe to do, 6 apply failed and was rolled back, 130 interrupted (a half-applied pairing
    is rolled back).
    """
    cluster = _two_or_inventory(hosts, inventory, "pair")
    progress = Progress()

    def confirm(plan: Plan) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            raise PlanError("not applied: pass --yes to apply without a prompt")
        # The question and its table go to stderr: stdout stays the result (or the JSON).
        progress.close()
        err_console.print(plan_table(plan.to_json()))
        return click.confirm(f"Apply this plan on {plan.host_a} and {plan.host_b}?",
                             default=False, err=True)

    if cluster is not None:
        if links:
            raise click.UsageError("--links names the links of two hosts; with an "
                                   "inventory, list them under [links] in it")
        options = PairOptions(transport=_option_or(ctx, "transport", transport,
                                                   cluster.transport),
                              pool=_option_or(ctx, "pool", pool, cluster.pool),
                              mtu=_option_or(ctx, "mtu", mtu, cluster.mtu), dry_run=dry_run,
                              verify_rdma=not no_rdma_check)
        with progress:
            everything = pair_all(cluster, ssh, options, confirm, progress)
        _print_all(everything, as_json)
        if not everything["dry_run"] and not everything["verified"]:
            sys.exit(EXIT_FAILED)
        return
    host_a, host_b = hosts
    options = PairOptions(transport=transport, pool=pool, mtu=mtu,
                          links=tuple(x for x in links.split(",") if x), dry_run=dry_run,
                          verify_rdma=not no_rdma_check)
    with progress:
        result = pair(host_a, host_b, ssh, options, confirm, progress)
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


def _print_all(result: PairAllResult, as_json: bool) -> None:
    if as_json:
        print_json(result)
        return
    for pair_result in result["pairs"]:
        if result["dry_run"]:
            console.print(plan_table(pair_result))
        else:
            console.print(result_table(pair_result))
    names = ", ".join(f"{r['host_a']}-{r['host_b']}" for r in result["pairs"])
    if result["dry_run"]:
        console.print(f"Dry run of {len(result['pairs'])} pair(s) ({names}): nothing was "
                      "changed.")
    else:
        console.print(f"Paired {len(result['pairs'])} pair(s) of {result['inventory']}: "
                      f"{names}.")
    console.print("Node addresses: " + ", ".join(
        f"{host} {address}" for host, address in result["node_addresses"].items()))
    for problem in result["problems"]:
        console.print(f"[red]problem:[/red] {problem}")


@click.command("unpair")
@click.argument("hosts", nargs=-1, metavar="[HOST_A HOST_B]", callback=check_hosts)
@click.option("--yes", "-y", is_flag=True,
              help="Accepted for symmetry with pair (unpair never asks).")
@inventory_option
@ssh_options
@json_option
def unpair_command(hosts: tuple[str, ...], yes: bool, inventory: str | None, ssh: SshOptions,
                   as_json: bool) -> None:
    """Remove exactly what `tbctl pair HOST_A HOST_B` added, on both hosts.

    With no hosts, every pairing between two hosts of the inventory (./tbctl.toml or
    --inventory) is removed.

    Exit codes: 0 done (or nothing to remove), 2 bad usage (or a bad inventory), 3 SSH
    failure, 4 host error, 130 interrupted.
    """
    cluster = _two_or_inventory(hosts, inventory, "unpair")
    if cluster is not None:
        with Progress() as progress:
            everything = unpair_all(cluster, ssh, progress)
        if as_json:
            print_json(everything)
        elif everything["pairs"]:
            console.print("Unpaired " + ", ".join(f"{p['host_a']}-{p['host_b']}"
                                                  for p in everything["pairs"]) + ".")
        else:
            console.print(f"No two hosts of {everything['inventory']} were paired; nothing "
                          "changed.")
        return
    host_a, host_b = hosts
    with Progress() as progress:
        result = unpair(host_a, host_b, ssh, progress)
    if as_json:
        print_json(result)
    elif result["removed_a"] or result["removed_b"]:
        console.print(f"Unpaired {host_a} and {host_b}.")
    else:
        console.print(f"{host_a} and {host_b} were not paired; nothing changed.")
