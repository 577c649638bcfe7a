# SPDX-License-Identifier: MIT
"""`tbctl status` and `tbctl doctor`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import click
from rich.table import Table

from tbctl.commands.common import console, fmt, json_option, print_json, ssh_options
from tbctl.errors import EXIT_FAILED
from tbctl.hosts import SshOptions, connected, in_parallel
from tbctl.node import agent

STATUS_STYLE = {"ok": "green", "warn": "yellow", "fail": "red"}


def status_table(status: dict[str, Any], name: str) -> Table:
    table = Table(title=f"{name} ({status['hostname']})")
    for column in ("peer", "link", "address", "peer address", "MTU", "RDMA", "port", "GID",
                   "state"):
        table.add_column(column)
    for pairing in status["pairings"]:
        for cable in pairing["cables"]:
            state = "[green]up[/green]" if cable["up"] else (
                "[red]absent[/red]" if not cable["present"] else "[red]down[/red]")
            table.add_row(pairing["peer_name"], cable["link"],
                          f"{cable['address']}/{cable['prefix']}", cable["peer_address"],
                          fmt(cable["mtu_now"]), fmt(cable.get("rdma_device")),
                          fmt(cable["rdma_port_state"]), fmt(cable["gid_index"]), state)
    return table


def host_statuses(hosts: tuple[str, ...], ssh: SshOptions) -> dict[str, dict[str, Any]]:
    if not hosts:
        local = agent.cmd_status(argparse.Namespace(state_dir=ssh.state_dir))
        return {local["hostname"]: local}
    with connected(list(hosts), ssh) as conns:
        results = in_parallel(lambda c: c.agent("status", "--state-dir", ssh.state_dir), conns)
    return dict(zip(hosts, results, strict=True))


@click.command("status")
@click.argument("hosts", nargs=-1)
@ssh_options
@json_option
def status_command(hosts: tuple[str, ...], ssh: SshOptions, as_json: bool) -> None:
    """Show every host's pairings and the live state of each cable (this host if none given).

    Exit codes: 0 every cable up, 1 a cable is down or absent, 2 bad usage, 3 SSH failure,
    4 host error.
    """
    statuses = host_statuses(hosts, ssh)
    if as_json:
        print_json(statuses)
    else:
        for name, status in statuses.items():
            if status["pairings"]:
                console.print(status_table(status, name))
            else:
                console.print(f"{name}: not paired")
    if any(not c["up"] for s in statuses.values() for p in s["pairings"] for c in p["cables"]):
        sys.exit(EXIT_FAILED)


@click.command("doctor")
@click.argument("host")
@click.option("--links", default="", metavar="IF[,IF...]", help="Extra cable links to check.")
@ssh_options
@json_option
def doctor_command(host: str, links: str, ssh: SshOptions, as_json: bool) -> None:
    """Check HOST for what RDMA over USB4 needs, each finding with its fix.

    Exit codes: 0 no failing check (warnings allowed), 1 a check failed, 3 SSH failure.
    """
    with connected([host], ssh) as (conn,):
        report = conn.agent("doctor", "--links", links)
    if as_json:
        print_json(report)
    else:
        table = Table(title=f"doctor: {host} ({report['host']})")
        for column in ("check", "status", "finding", "fix"):
            table.add_column(column)
        for f in report["findings"]:
            style = STATUS_STYLE[f["status"]]
            table.add_row(f["check"], f"[{style}]{f['status']}[/{style}]", f["detail"], f["fix"])
        console.print(table)
    if any(f["status"] == "fail" for f in report["findings"]):
        sys.exit(EXIT_FAILED)
