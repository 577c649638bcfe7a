# SPDX-License-Identifier: MIT
"""`tbctl status` and `tbctl doctor`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import click
from rich.table import Table

from tbctl.commands.common import (
    Progress,
    check_hosts,
    check_links,
    console,
    fmt,
    host_argument,
    json_option,
    print_json,
    ssh_options,
)
from tbctl.errors import EXIT_FAILED, NeedsRoot
from tbctl.hosts import SshOptions, connected, in_parallel
from tbctl.node import agent
from tbctl.schema import CableStatus, DoctorResult, Finding, HostStatus, StatusResult

STATUS_STYLE = {"ok": "green", "warn": "yellow", "fail": "red"}


def status_table(status: HostStatus, name: str) -> Table:
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


def _local_status(state_dir: str) -> dict[str, Any]:
    try:
        return agent.cmd_status(argparse.Namespace(state_dir=state_dir))
    except PermissionError as exc:
        raise NeedsRoot(f"reading this host's pairing state needs root ({exc.filename}: "
                        "permission denied): run sudo tbctl status") from None


def host_report(name: str, status: dict[str, Any]) -> HostStatus:
    """The public shape of one host's status, picked from the agent's answer so that the
    --json contract does not change when the agent adds fields."""
    cable_keys = CableStatus.__annotations__
    return {
        "name": name, "hostname": status["hostname"], "host_id": status["host_id"],
        "version": status["version"],
        "pairings": [{
            "peer_id": p["peer_id"], "peer_name": p["peer_name"], "transport": p["transport"],
            "cables": [{k: c.get(k) for k in cable_keys}  # type: ignore[misc]
                       for c in p["cables"]],
        } for p in status["pairings"]],
    }


def host_statuses(hosts: tuple[str, ...], ssh: SshOptions,
                  progress: Progress | None = None) -> dict[str, dict[str, Any]]:
    """{name as given: the agent's status} (this host alone, by its hostname, if none)."""
    if not hosts:
        local = _local_status(ssh.state_dir)
        return {local["hostname"]: local}
    step = progress or (lambda text: None)
    step(f"connecting to {', '.join(hosts)}")
    with connected(list(hosts), ssh) as conns:
        step("reading status")
        results = in_parallel(lambda c: c.agent("status", "--state-dir", ssh.state_dir), conns)
    return dict(zip(hosts, results, strict=True))


@click.command("status")
@click.argument("hosts", nargs=-1, callback=check_hosts)
@ssh_options
@json_option
def status_command(hosts: tuple[str, ...], ssh: SshOptions, as_json: bool) -> None:
    """Show every host's pairings and the live state of each cable (this host if none given).

    Exit codes: 0 every cable up, 1 a cable is down or absent, 2 bad usage, 3 SSH failure,
    4 host error (or root needed to read this host's state).
    """
    with Progress() as progress:
        statuses = [host_report(name, status)
                    for name, status in host_statuses(hosts, ssh, progress).items()]
    if as_json:
        print_json(StatusResult(hosts=statuses))
    else:
        for status in statuses:
            if status["pairings"]:
                console.print(status_table(status, status["name"]))
            else:
                console.print(f"{status['name']}: not paired")
    if any(not c["up"] for s in statuses for p in s["pairings"] for c in p["cables"]):
        sys.exit(EXIT_FAILED)


@click.command("doctor")
@host_argument("host")
@click.option("--links", default="", metavar="IF[,IF...]", callback=check_links,
              help="Extra cable links to check.")
@ssh_options
@json_option
def doctor_command(host: str, links: str, ssh: SshOptions, as_json: bool) -> None:
    """Check HOST for what RDMA over USB4 needs, each finding with its fix.

    Exit codes: 0 no failing check (warnings allowed), 1 a check failed, 3 SSH failure.
    """
    with Progress() as progress:
        progress(f"connecting to {host}")
        with connected([host], ssh) as (conn,):
            progress("checking")
            answer = conn.agent("doctor", "--links", links)
    report: DoctorResult = {
        "host": host, "hostname": answer["host"],
        "findings": [Finding(check=f["check"], status=f["status"], detail=f["detail"],
                             fix=f["fix"]) for f in answer["findings"]]}
    if as_json:
        print_json(report)
    else:
        table = Table(title=f"doctor: {host} ({report['hostname']})")
        for column in ("check", "status", "finding", "fix"):
            table.add_column(column)
        for f in report["findings"]:
            style = STATUS_STYLE[f["status"]]
            table.add_row(f["check"], f"[{style}]{f['status']}[/{style}]", f["detail"], f["fix"])
        console.print(table)
    if any(f["status"] == "fail" for f in report["findings"]):
        sys.exit(EXIT_FAILED)
