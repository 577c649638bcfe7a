# SPDX-License-Identifier: MIT
"""`tbctl status` and `tbctl doctor`."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TypeVar

import click
from rich.table import Table

from tbctl.cluster import each_host, failure
from tbctl.commands.common import (
    Progress,
    check_hosts,
    check_links,
    console,
    fmt,
    inventory_for,
    inventory_option,
    json_option,
    print_json,
    ssh_options,
)
from tbctl.errors import EXIT_FAILED, NeedsRoot, TbctlError
from tbctl.hosts import SshOptions, connected, in_parallel
from tbctl.node import agent
from tbctl.schema import (
    CableStatus,
    DoctorAllResult,
    DoctorResult,
    Finding,
    HostFailure,
    HostStatus,
    NodeStatus,
    RailStatus,
    StatusResult,
)

R = TypeVar("R")
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


def rails_table(status: HostStatus, name: str) -> Table | None:
    """The native devices' rails: per USB4 ring pair its host interface, rings and rate."""
    rows = [(p["peer_name"], r) for p in status["pairings"] for r in p["rails"]]
    if not rows:
        return None
    table = Table(title=f"{name}: rails")
    for column in ("peer", "rail", "state", "via", "rings", "link Mb/s", "tx", "rx"):
        table.add_column(column)
    for peer, rail in rows:
        state = ("[green]added[/green]" if rail["added"] else "idle") if rail["carrier"] \
            else "[red]no carrier[/red]"
        table.add_row(peer, rail["name"], state, fmt(rail["via"]), fmt(rail["rings"]),
                      fmt(rail["link_mbps"]), str(rail["tx_frames"]), str(rail["rx_frames"]))
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
    rail_keys = RailStatus.__annotations__
    node_keys = NodeStatus.__annotations__
    return {
        "name": name, "hostname": status["hostname"], "host_id": status["host_id"],
        "version": status["version"],
        "pairings": [{
            "peer_id": p["peer_id"], "peer_name": p["peer_name"], "transport": p["transport"],
            "cables": [{k: c.get(k) for k in cable_keys}  # type: ignore[misc]
                       for c in p["cables"]],
            "rails": [{k: r.get(k) for k in rail_keys}  # type: ignore[misc]
                      for r in p.get("rails", [])],
            "node": {k: p["node"].get(k) for k in node_keys}  # type: ignore[misc]
            if p.get("node") else None,
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


def _hosts_or_inventory(hosts: tuple[str, ...], inventory: str | None) -> tuple[str, ...]:
    """The hosts named, else the inventory's, else () for this host."""
    found = inventory_for(inventory, hosts)
    return found.hosts if found else hosts


def _split(names: tuple[str, ...],
           answers: list[R | TbctlError]) -> tuple[list[tuple[str, R]], list[HostFailure]]:
    """Every host's answer or why there is none; if no host answered at all there is
    nothing to show, and the first error ends the command as it would for one host."""
    if answers and all(isinstance(a, TbctlError) for a in answers):
        raise answers[0]  # type: ignore[misc]
    good = [(n, a) for n, a in zip(names, answers, strict=True)
            if not isinstance(a, TbctlError)]
    bad = [failure(n, a) for n, a in zip(names, answers, strict=True)
           if isinstance(a, TbctlError)]
    return good, bad  # type: ignore[return-value]


def _print_failed(failed: list[HostFailure]) -> None:
    for row in failed:
        console.print(f"[red]{row['name']}: not read[/red] ({row['error']['code']}): "
                      f"{row['error']['message']}")


@click.command("status")
@click.argument("hosts", nargs=-1, callback=check_hosts)
@inventory_option
@ssh_options
@json_option
def status_command(hosts: tuple[str, ...], inventory: str | None, ssh: SshOptions,
                   as_json: bool) -> None:
    """Show every host's pairings and the live state of each cable.

    With no hosts: the inventory's hosts (./tbctl.toml or --inventory), else this host.
    Every host is read on its own: one that is down gets a row saying why, and the others
    are still shown.

    Exit codes: 0 every host read and every cable up, 1 a cable is down or absent or a host
    could not be read, 2 bad usage (or a bad inventory), 3 SSH failure and 4 host error (or
    root needed to read this host's state) when no host could be read at all.
    """
    names = _hosts_or_inventory(hosts, inventory)
    with Progress() as progress:
        if names:
            progress(f"reading {', '.join(names)}")
            answers = each_host(names, ssh,
                                lambda c: c.agent("status", "--state-dir", ssh.state_dir))
            good, failed = _split(names, answers)
        else:
            good, failed = list(host_statuses((), ssh).items()), []
    statuses = [host_report(name, status) for name, status in good]
    if as_json:
        print_json(StatusResult(hosts=statuses, failed=failed))
    else:
        for status in statuses:
            if status["pairings"]:
                console.print(status_table(status, status["name"]))
                rails = rails_table(status, status["name"])
                if rails is not None:
                    console.print(rails)
                for node in _nodes(status):
                    routes = ", ".join(f"{r['to']} via {r['via']}" for r in node["routes"])
                    state = "[green]set[/green]" if node["address_set"] else "[red]missing[/red]"
                    console.print(f"{status['name']}: node address {node['address']} on "
                                  f"{node['link']} ({state}); routes {routes}")
            else:
                console.print(f"{status['name']}: not paired")
        _print_failed(failed)
    if failed or any(not c["up"] for s in statuses for p in s["pairings"]
                     for c in p["cables"]) \
            or any(not n["address_set"] for s in statuses for n in _nodes(s)):
        sys.exit(EXIT_FAILED)


def _nodes(status: HostStatus) -> list[NodeStatus]:
    """The node address parts of a host's pairings (one per pairing made from an
    inventory; they share the address)."""
    return [p["node"] for p in status["pairings"] if p["node"]]


def _doctor_report(host: str, answer: dict[str, Any]) -> DoctorResult:
    return {"host": host, "hostname": answer["host"],
            "findings": [Finding(check=f["check"], status=f["status"], detail=f["detail"],
                                 fix=f["fix"]) for f in answer["findings"]]}


def _local_doctor(links: str) -> dict[str, Any]:
    return agent.cmd_doctor(argparse.Namespace(links=links))


def _doctor_table(report: DoctorResult) -> Table:
    table = Table(title=f"doctor: {report['host']} ({report['hostname']})")
    for column in ("check", "status", "finding", "fix"):
        table.add_column(column)
    for f in report["findings"]:
        style = STATUS_STYLE[f["status"]]
        table.add_row(f["check"], f"[{style}]{f['status']}[/{style}]", f["detail"], f["fix"])
    return table


@click.command("doctor")
@click.argument("hosts", nargs=-1, callback=check_hosts)
@click.option("--links", default="", metavar="IF[,IF...]", callback=check_links,
              help="Extra cable links to check.")
@inventory_option
@ssh_options
@json_option
def doctor_command(hosts: tuple[str, ...], links: str, inventory: str | None,
                   ssh: SshOptions, as_json: bool) -> None:
    """Check hosts for what RDMA over USB4 needs, each finding with its fix.

    With no hosts: the inventory's hosts (./tbctl.toml or --inventory), else this host
    (no SSH). Several hosts are checked in parallel, each on its own: one that is down gets
    a row saying why, and the others are still checked. With one host the result is a
    DoctorResult, with several a DoctorAllResult (see Scripting).

    Exit codes: 0 no failing check (warnings allowed), 1 a check failed or a host could
    not be checked, 2 bad usage (or a bad inventory), 3 SSH failure and 4 host error when
    no host could be checked at all.
    """
    names = _hosts_or_inventory(hosts, inventory)
    with Progress() as progress:
        if not names:
            progress("checking this host")
            local = _local_doctor(links)
            good, failed = [(local["host"], local)], []
        else:
            progress(f"checking {', '.join(names)}")
            answers = each_host(names, ssh, lambda c: c.agent("doctor", "--links", links))
            good, failed = _split(names, answers)
    reports = [_doctor_report(name, answer) for name, answer in good]
    several = len(names) > 1
    if as_json:
        print_json(DoctorAllResult(hosts=reports, failed=failed) if several else reports[0])
    else:
        for report in reports:
            console.print(_doctor_table(report))
        _print_failed(failed)
    if failed or any(f["status"] == "fail" for r in reports for f in r["findings"]):
        sys.exit(EXIT_FAILED)
