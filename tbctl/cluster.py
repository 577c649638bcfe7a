# SPDX-License-Identifier: MIT
"""Every host of an inventory at once: find the cabled pairs, pair them all (or none), unpair
them all, and read each host on its own so that one host down does not hide the others."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from tbctl.connection import Connection
from tbctl.errors import Interrupted, PlanError, TbctlError
from tbctl.hosts import SshOptions, connected, in_parallel
from tbctl.inventory import Inventory
from tbctl.nodes import (
    NodeSide,
    allocate_node_addresses,
    default_node_pool,
    node_sides,
    recorded_node,
)
from tbctl.pairing import PairOptions, Step, link_neighbours, pair, unpair
from tbctl.plan import Plan, match_cables
from tbctl.schema import HostFailure, PairAllResult, PairResult, UnpairAllResult, UnpairResult

R = TypeVar("R")


def _no_step(text: str) -> None:
    pass


def each_host(specs: Sequence[str], ssh: SshOptions, function: Callable[[Connection], R],
              ) -> list[R | TbctlError]:
    """`function` on every host over its own connection, in parallel; a host that fails
    (unreachable, refused, agent error) gives its error instead of stopping the others."""
    def one(spec: str) -> R | TbctlError:
        try:
            with connected([spec], ssh) as (conn,):
                return function(conn)
        except TbctlError as exc:
            return exc

    return in_parallel(one, list(specs))


def failure(name: str, exc: TbctlError) -> HostFailure:
    return {"name": name, "error": {"code": exc.code, "message": " ".join(str(exc).split())}}


# ------------------------------------------------------------------ which hosts are cabled


Pairs = list[tuple[str, str, tuple[str, ...]]]


def cabled_pairs(inventory: Inventory, ssh: SshOptions, step: Step = _no_step) -> Pairs:
    """(host, host, their cable links) for every pair of hosts joined by a cable, in the
    inventory's order, from the same evidence pairing uses (XDomain ids, neighbour MACs)."""
    return survey(inventory, ssh, step)[0]


def survey(inventory: Inventory, ssh: SshOptions,
           step: Step = _no_step) -> tuple[Pairs, list[dict[str, Any]]]:
    """The cabled pairs (as cabled_pairs) and every host's probe, in the inventory's order."""
    hosts = inventory.hosts
    step(f"connecting to {', '.join(hosts)}")
    with connected(list(hosts), ssh) as conns:
        state_args = ("--state-dir", ssh.state_dir)
        step("probing")
        probes = in_parallel(lambda i: conns[i].agent(
            "probe", *state_args, "--links", ",".join(inventory.links_of(hosts[i]))),
            range(len(hosts)))
        ids: dict[str, str] = {}
        for name, probe in zip(hosts, probes, strict=True):
            other = ids.get(probe["status"]["host_id"])
            if other:
                raise PlanError(f"{other} and {name} of {inventory.path} are the same host "
                                f"({probe['status']['hostname']}): list each host once")
            ids[probe["status"]["host_id"]] = name
        step("neighbour discovery")
        neighbours = in_parallel(lambda i: link_neighbours(conns[i], probes[i]),
                                 range(len(hosts)))
    found: dict[tuple[str, str], tuple[str, ...]] = {}
    for i, j in itertools.combinations(range(len(hosts)), 2):
        cables = match_cables(probes[i], probes[j], neighbours[i], neighbours[j])
        if cables:
            found[(hosts[i], hosts[j])] = tuple(name for c in cables
                                                for name in (c.link_a, c.link_b))
    if inventory.topology is not None:
        pairs = []
        for a, b in inventory.topology:
            links = found.get((a, b), found.get((b, a)))
            if links is None:
                raise PlanError(f"{a} and {b} share no cable, but the topology of "
                                f"{inventory.path} says they do: check the cable, or the "
                                "topology")
            pairs.append((a, b, links))
        return pairs, probes
    alone = [h for h in hosts if not any(h in pair for pair in found)]
    if alone:
        raise PlanError(f"{', '.join(alone)} share(s) no cable with any other host of "
                        f"{inventory.path}: plug a USB4 cable in, name its link under [links], "
                        "or remove the host")
    return [(a, b, links) for (a, b), links in found.items()], probes


# ------------------------------------------------------------------ pair and unpair all


def _reserved(result: PairResult) -> list[str]:
    return [f"{c['address_a']}/{c['prefix']}" for c in result["cables"]]


def pair_all(inventory: Inventory, ssh: SshOptions, options: PairOptions,
             confirm: Callable[[Plan], bool], step: Step = _no_step) -> PairAllResult:
    """Pair every cabled pair in turn; if one fails (or Ctrl-C), the pairs this run applied
    are unpaired again, so the cluster is left as it was found. Each pairing also carries
    its share of the node addresses (tbctl.nodes)."""
    pairs, probes = survey(inventory, ssh, step)
    node_pool = inventory.node_pool or default_node_pool(options.pool)
    nodes = plan_nodes(inventory, pairs, probes, node_pool)
    results: list[PairResult] = []
    applied: list[tuple[str, str]] = []
    reserved: list[str] = [node_pool]  # no cable takes a /31 from the node addresses
    try:
        for a, b, links in pairs:
            extra = set(inventory.links_of(a)) | set(inventory.links_of(b))
            step(f"pairing {a} and {b}")
            result = pair(a, b, ssh, PairOptions(
                transport=options.transport, pool=options.pool, mtu=options.mtu,
                links=tuple(n for n in links if n in extra), dry_run=options.dry_run,
                verify_rdma=options.verify_rdma, reserved=tuple(reserved),
                nodes=nodes[(a, b)]), confirm, step)
            results.append(result)
            reserved += _reserved(result)
            if not result["dry_run"] and not result["already_paired"]:
                applied.append((a, b))
    except (TbctlError, KeyboardInterrupt) as exc:
        if isinstance(exc, KeyboardInterrupt):
            exc = Interrupted("interrupted")
        raise TbctlError(f"{exc}; {_roll_back(applied, ssh, step)}", exc.exit_code,
                         exc.code) from None
    results_nodes: dict[str, list[str]] = {}
    if not options.dry_run:
        step("checking the node addresses")
        results_nodes = check_nodes(inventory, ssh, nodes)
    problems = [f"{r['host_a']}-{r['host_b']}: {p}" for r in results for p in r["problems"]]
    addresses = nodes_of(nodes)
    problems += [f"{host}: node address {addresses[host]} does not answer from "
                 f"{', '.join(silent)}" for host, silent in results_nodes.items() if silent]
    return {"inventory": str(inventory.path), "hosts": list(inventory.hosts),
            "dry_run": options.dry_run, "pairs": results,
            "node_addresses": {host: addresses[host] for host in inventory.hosts},
            "verified": None if options.dry_run else not problems, "problems": problems}


def plan_nodes(inventory: Inventory, pairs: Pairs, probes: list[dict[str, Any]],
               node_pool: str) -> dict[tuple[str, str], tuple[NodeSide, NodeSide]]:
    """Each cabled pair's share of the node addresses, from the hosts' probes: an address
    a host already holds is kept, and none collides with an address or route on a host."""
    hosts = inventory.hosts
    taken = [net for probe in probes for net in [*probe["addresses"], *probe["routes"]]]
    recorded = {h: a for h, p in zip(hosts, probes, strict=True)
                if (a := recorded_node(p["status"]))}
    addresses = allocate_node_addresses(hosts, node_pool, taken, recorded)
    return node_sides(hosts, [(a, b) for a, b, _ in pairs], addresses)


def nodes_of(nodes: dict[tuple[str, str], tuple[NodeSide, NodeSide]]) -> dict[str, str]:
    """host -> node address."""
    return {host: side.address for (a, b), (side_a, side_b) in nodes.items()
            for host, side in ((a, side_a), (b, side_b))}


def check_nodes(inventory: Inventory, ssh: SshOptions,
                nodes: dict[tuple[str, str], tuple[NodeSide, NodeSide]],
                ) -> dict[str, list[str]]:
    """host -> the hosts its node address does not answer ping from (every host pings
    every other host's node address, over the cables)."""
    addresses = nodes_of(nodes)
    hosts = list(inventory.hosts)

    def from_host(conn: Connection) -> dict[str, bool]:
        return {h: conn.agent("ping", "--address", addresses[h], "--count", "1")["rtt_us"]
                is not None for h in hosts if h != conn.name}

    answers = each_host(hosts, ssh, from_host)
    silent: dict[str, list[str]] = {h: [] for h in hosts}
    for source, answer in zip(hosts, answers, strict=True):
        for target in hosts:
            if target == source:
                continue
            if isinstance(answer, TbctlError) or not answer[target]:
                silent[target].append(source)
    return silent


def _roll_back(applied: list[tuple[str, str]], ssh: SshOptions, step: Step) -> str:
    if not applied:
        return "no other pair of the inventory was changed"
    names = ", ".join(f"{a}-{b}" for a, b in applied)
    step(f"rolling back {names}")
    stuck = []
    for a, b in reversed(applied):
        try:
            unpair(a, b, ssh)
        except (TbctlError, KeyboardInterrupt) as exc:
            stuck.append(f"{a}-{b} ({exc})")
    if stuck:
        return (f"could not roll back {', '.join(stuck)}: run tbctl unpair with the "
                "inventory")
    return f"rolled back the pairs this run had applied ({names})"


def unpair_all(inventory: Inventory, ssh: SshOptions,
               step: Step = _no_step) -> UnpairAllResult:
    """Remove every pairing between two hosts of the inventory (pairings with hosts outside
    it are left alone)."""
    hosts = inventory.hosts
    step(f"connecting to {', '.join(hosts)}")
    with connected(list(hosts), ssh) as conns:
        hellos = in_parallel(lambda c: c.agent("hello"), conns)
        ids = [hello["host_id"] for hello in hellos]
        state_args = ("--state-dir", ssh.state_dir)
        step("removing the pairings")

        def remove(i: int) -> list[bool]:
            return [j != i and conns[i].agent("unapply", *state_args, "--peer",
                                              ids[j])["removed"]
                    for j in range(len(hosts))]

        removed = in_parallel(remove, range(len(hosts)))
    pairs: list[UnpairResult] = [
        {"host_a": hosts[i], "host_b": hosts[j], "removed_a": removed[i][j],
         "removed_b": removed[j][i]}
        for i, j in itertools.combinations(range(len(hosts)), 2)
        if removed[i][j] or removed[j][i]]
    return {"inventory": str(inventory.path), "hosts": list(hosts), "pairs": pairs}
