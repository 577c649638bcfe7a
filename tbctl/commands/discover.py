# SPDX-License-Identifier: MIT
"""`tbctl discover`: which link of each host is cabled to which other host (tbctl.discover)."""

from __future__ import annotations

import sys

import click
from rich.markup import escape
from rich.table import Table

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
from tbctl.discover import discover, far_end, thunderbolt_link
from tbctl.errors import EXIT_FAILED, EXIT_USAGE, TbctlError
from tbctl.hosts import SshOptions
from tbctl.schema import DiscoverHost


def discover_table(host: DiscoverHost) -> Table:
    table = Table(title=f"{host['name']} ({host['hostname']})")
    for column in ("link", "MAC", "speed", "Thunderbolt peer", "far end", "by"):
        table.add_column(column)
    for link in host["links"]:
        end = far_end(link)
        shown = f"[green]{escape(end)}[/green]" if link["peer_host"] else escape(end)
        table.add_row(link["link"], fmt(link["mac"]), fmt(link["speed_mbps"], " Mb/s"),
                      escape(thunderbolt_link(link)), shown, fmt(link["matched_by"]))
    return table


@click.command("discover")
@click.argument("hosts", nargs=-1, callback=check_hosts)
@click.option("--links", default="", metavar="IF[,IF...]", callback=check_links,
              help="More links to look at besides thunderbolt-net and links.conf.")
@inventory_option
@ssh_options
@json_option
def discover_command(hosts: tuple[str, ...], links: str, inventory: str | None,
                     ssh: SshOptions, as_json: bool) -> None:
    """Show which link of each host goes to which other host.

    With no hosts: the inventory's hosts (./tbctl.toml or --inventory). Each host's cable
    links (thunderbolt-net, links.conf, --links) are listed with the Thunderbolt peer's
    name, lanes and speed where sysfs has them, and matched to the given hosts by XDomain
    ids or by the MAC each end sees at the other. A host that is down gets a row saying
    why; the others are still shown. Changes nothing (a link that is down is raised for the
    look and put back).

    Exit codes: 0 every host read, 1 a host could not be read, 2 bad usage, 3 SSH failure
    and 4 host error when no host could be read at all.
    """
    found = inventory_for(inventory, hosts)
    names = found.hosts if found else hosts
    if not names:
        raise TbctlError("name the hosts to match (at least one), or give an inventory "
                         "(./tbctl.toml or --inventory)", EXIT_USAGE)
    extra = {name: ",".join(n for n in [*links.split(","),
                                        *(found.links_of(name) if found else ())] if n)
             for name in names}
    with Progress() as progress:
        result = discover(names, ssh, extra, progress)
    if as_json:
        print_json(result)
    else:
        for host in result["hosts"]:
            if host["links"]:
                console.print(discover_table(host))
            else:
                console.print(f"{host['name']}: no cable links (no thunderbolt-net link, "
                              "none in links.conf; name others with --links)")
        for row in result["failed"]:
            console.print(f"[red]{row['name']}: not read[/red] ({row['error']['code']}): "
                          f"{escape(row['error']['message'])}")
    if result["failed"]:
        sys.exit(EXIT_FAILED)
