# SPDX-License-Identifier: MIT
"""Pair and unpair two hosts: probe, match cables, plan, apply as one transaction, verify."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, TypedDict

from tbctl.connection import Connection
from tbctl.errors import ApplyError, Interrupted, PlanError, RemoteError
from tbctl.hosts import SshOptions, connected, in_parallel
from tbctl.nodes import NodeSide
from tbctl.plan import DEFAULT_POOL, Plan, make_plan
from tbctl.schema import CableReport, PairResult, UnpairResult

# Reports each step ("probing", "applying on tbt-a", ...) to the user; the CLI shows them.
Step = Callable[[str], None]
# How long Ctrl-C waits for an apply already running on a host before undoing it.
APPLY_SETTLE_TIMEOUT = 15.0

TRANSPORT_MODULES = {"native": ["tbrdma"], "rxe": ["rdma_rxe"], "ip": []}


@dataclass(frozen=True)
class PairOptions:
    transport: str = "auto"
    pool: str = DEFAULT_POOL
    mtu: int | None = None
    links: tuple[str, ...] = ()
    dry_run: bool = False
    verify_rdma: bool = True
    # Networks no cable of this pairing may use (the other cables of an inventory).
    reserved: tuple[str, ...] = ()
    # The node addresses' share of this pairing (A's side, B's side): inventories only.
    nodes: tuple[NodeSide, NodeSide] | None = None


def pairing_with(status: dict[str, Any], peer_id: str) -> dict[str, Any] | None:
    """The pairing a host's status records with the host `peer_id`, if any."""
    return next((p for p in status["pairings"] if p["peer_id"] == peer_id), None)


def _links_of_other_pairings(status: dict[str, Any], peer_id: str) -> set[str]:
    return {c["link"] for p in status["pairings"] if p["peer_id"] != peer_id
            for c in p["cables"]}


def _consistent(pa: dict[str, Any], pb: dict[str, Any]) -> bool:
    ends_a = {(c["link"], c["peer_link"], c["address"], c["peer_address"]) for c in pa["cables"]}
    ends_b = {(c["peer_link"], c["link"], c["peer_address"], c["address"]) for c in pb["cables"]}
    return ends_a == ends_b and pa["transport"] == pb["transport"]


def _node_as_planned(recorded: dict[str, Any], side: NodeSide | None) -> bool:
    """A recorded pairing carries the node addresses this run plans (or none is planned)."""
    if side is None:
        return True
    node = recorded.get("node")
    return bool(node) and node["address"] == side.address \
        and sorted(r["to"] for r in node["routes"]) == sorted(side.via_peer) \
        and bool(node.get("forward_link")) == side.forward


def _drop_links_in_use(probe: dict[str, Any], in_use: set[str]) -> None:
    """Links that carry another pairing are not candidates for this one."""
    probe["links"] = [link for link in probe["links"] if link["name"] not in in_use]


def _check_links_option(links: tuple[str, ...], names: tuple[str, str],
                        probes: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """--links names links on either host; a name that is on neither is a typo."""
    present = {link["name"] for probe in probes for link in probe["links"]
               if not link.get("missing")}
    unknown = [name for name in links if name not in present]
    if unknown:
        raise PlanError(f"no link named {', '.join(unknown)} on {names[0]} or {names[1]} "
                        "(given with --links): check the interface names with 'ip link'")


def link_neighbours(conn: Connection, probe: dict[str, Any]) -> dict[str, list[str]]:
    names = [link["name"] for link in probe["links"] if not link.get("missing")]
    if not names:
        return {}
    return conn.agent("neighbours", "--links", ",".join(names))["neighbours"]


def usb4_peers(probe_a: dict[str, Any], probe_b: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The `tb:<UUID>` rail names A and B pair natively over: every XDomain (USB4 cable) on
    which each sees the other's tbrdma service, named by the UUID of the other end's domain.
    A host with two USB4 host routers has a domain, and a UUID, per router, so two cables
    may make two names per end. Empty lists when there is none: the cables' netdevs."""
    seen_by_b = {(s["local"], s["peer"]) for s in probe_b.get("usb4", [])}
    names_a: list[str] = []
    names_b: list[str] = []
    for service in probe_a.get("usb4", []):
        if (service["peer"], service["local"]) in seen_by_b:
            if service["peer"] not in names_a:
                names_a.append(service["peer"])
            if service["local"] not in names_b:
                names_b.append(service["local"])
    return names_a, names_b


def _request(plan: Plan, side: str, me: Connection, peer_id: str, peer_name: str,
             state_dir: str, native_key: str, node: NodeSide | None,
             tb_rails: list[str]) -> dict[str, Any]:
    from tbctl.hostfiles import render_host_files  # jinja2 is imported only to render
    modules = TRANSPORT_MODULES[plan.transport]
    assert me.tbctl_exec is not None
    request = plan.request_for(side, peer_id, peer_name)
    request["modules"] = modules
    request["files"] = render_host_files(state_dir=state_dir, tbctl_exec=me.tbctl_exec,
                                         modules=modules)
    request["persist_agent"] = me.persist_agent
    if plan.transport == "native":
        request["native_key"] = native_key
        request["tb_rails"] = tb_rails
    if node is not None:
        # Node routes go over the first cable, on both ends (so replies take the same way).
        first = plan.cables[0]
        other = "b" if side == "a" else "a"
        request["node"] = node.request(getattr(first, f"link_{side}"),
                                       getattr(first, f"address_{other}"))
    return request


def _pause_between_applies() -> None:
    """Test hook: hold B's apply back while A's runs, so a test can press Ctrl-C when only
    A is changed (tests/integration/test_interrupt_netns.py). Unset on real runs."""
    seconds = os.environ.get("TBCTL_TEST_PAUSE_BETWEEN_APPLIES")
    if seconds:
        time.sleep(float(seconds))


def _no_step(text: str) -> None:
    pass


def _apply_both(a: Connection, b: Connection, request_a: dict[str, Any],
                request_b: dict[str, Any], ids: tuple[str, str], state_args: tuple[str, ...],
                step: Step) -> None:
    """Apply on A and B at once (an apply takes seconds on a slow host, and the two do not
    depend on each other); if either fails, or on Ctrl-C, undo the host(s) that applied.

    Each apply runs in a worker thread so that Ctrl-C reaches the main thread at once; an
    apply already running on a host is let finish (it is short) and then undone, because
    stopping it half way would leave that host half changed."""
    id_a, id_b = ids
    started: list[tuple[Connection, str, Future[Any]]] = []
    pool = ThreadPoolExecutor(max_workers=2)

    def start(conn: Connection, peer_id: str, request: dict[str, Any]) -> None:
        step(f"applying on {conn.name}")
        started.append((conn, peer_id, pool.submit(conn.agent, "apply", *state_args,
                                                   payload=request)))

    try:
        start(a, id_b, request_a)
        _pause_between_applies()
        start(b, id_a, request_b)
        failed: list[tuple[Connection, RemoteError]] = []
        applied: list[tuple[Connection, str]] = []
        for conn, peer_id, future in started:
            try:
                future.result()
                applied.append((conn, peer_id))
            except RemoteError as exc:
                failed.append((conn, exc))
        if not failed:
            return
        for conn, peer_id in applied:
            step(f"rolling back {conn.name}")
            conn.agent("unapply", *state_args, "--peer", peer_id)
        names = " and ".join(conn.name for conn, _ in failed)
        reasons = "; ".join(str(exc) for _, exc in failed)
        if applied:
            raise ApplyError(f"applying on {names} failed and {applied[0][0].name} was rolled "
                             f"back: {reasons}")
        raise ApplyError(f"applying on {names} failed, nothing changed on either host: "
                         f"{reasons}")
    except KeyboardInterrupt:
        raise Interrupted(_roll_back(started, state_args, step)) from None
    finally:
        pool.shutdown(wait=False)


def _roll_back(started: list[tuple[Connection, str, Future[Any]]],
               state_args: tuple[str, ...], step: Step) -> str:
    if not started:
        return "interrupted before anything was changed"
    names = ", ".join(conn.name for conn, _, _ in started)
    step(f"interrupted: rolling back {names}")
    stuck = []
    for conn, peer_id, future in started:
        try:
            future.exception(timeout=APPLY_SETTLE_TIMEOUT)
        except FutureTimeout:
            stuck.append(f"{conn.name} (its apply did not finish)")
            continue
        try:
            conn.agent("unapply", *state_args, "--peer", peer_id)
        except RemoteError as exc:
            stuck.append(f"{conn.name} ({exc})")
    if stuck:
        return (f"interrupted; could not roll back {', '.join(stuck)}: run tbctl unpair on "
                "the two hosts")
    return f"interrupted; rolled back {names}: neither host is changed"


def pair(spec_a: str, spec_b: str, ssh: SshOptions, options: PairOptions,
         confirm: Callable[[Plan], bool], step: Step = _no_step) -> PairResult:
    if spec_a == spec_b:
        raise PlanError(f"the same host twice ({spec_a}): name two different hosts")
    step(f"connecting to {spec_a}, {spec_b}")
    with connected([spec_a, spec_b], ssh) as (a, b):
        state_args = ("--state-dir", ssh.state_dir)
        step("probing")
        probe_a, probe_b = in_parallel(
            lambda c: c.agent("probe", *state_args, "--links", ",".join(options.links)), [a, b])
        status_a, status_b = probe_a["status"], probe_b["status"]
        if status_a["host_id"] == status_b["host_id"]:
            raise PlanError(f"{a.name} and {b.name} are the same host "
                            f"({status_a['hostname']}): name two different hosts")
        id_a, id_b = status_a["host_id"], status_b["host_id"]
        have_a, have_b = pairing_with(status_a, id_b), pairing_with(status_b, id_a)
        nodes = options.nodes or (None, None)
        whole = bool(have_a and have_b and _consistent(have_a, have_b))
        if whole and _node_as_planned(have_a, nodes[0]) and _node_as_planned(have_b, nodes[1]):
            step("checking the recorded pairing")
            return {"dry_run": False, "already_paired": True, "host_a": a.name,
                    "host_b": b.name, "transport": have_a["transport"],
                    "transport_reason": "recorded pairing",
                    **verify(a, b, have_a, have_b, options.verify_rdma, step)}
        # A whole pairing without the planned node addresses (made by name, or by an older
        # tbctl) is paired again: a dry run plans that; a half-recorded one it cannot.
        if options.dry_run and (have_a or have_b) and not whole:
            raise PlanError(f"{a.name} and {b.name} hold a half-recorded pairing: run "
                            f"tbctl unpair {a.name} {b.name}, then pair again")
        # A one-sided record (an interrupted run) is tbctl's own: clear it before pairing.
        if have_a and not options.dry_run:
            a.agent("unapply", *state_args, "--peer", id_b)
        if have_b and not options.dry_run:
            b.agent("unapply", *state_args, "--peer", id_a)
        _drop_links_in_use(probe_a, _links_of_other_pairings(status_a, id_b))
        _drop_links_in_use(probe_b, _links_of_other_pairings(status_b, id_a))
        _check_links_option(options.links, (a.name, b.name), (probe_a, probe_b))
        # Planned as if the reserved networks were routes on A: the allocator avoids them.
        probe_a["routes"] = [*probe_a["routes"], *options.reserved]
        step("neighbour discovery")
        neigh_a, neigh_b = in_parallel(lambda args: link_neighbours(*args),
                                       [(a, probe_a), (b, probe_b)])
        plan = make_plan(a.name, probe_a, neigh_a, b.name, probe_b, neigh_b,
                         transport=options.transport, pool=options.pool, mtu=options.mtu)
        if options.dry_run:
            return _planned(plan)
        if not confirm(plan):
            raise PlanError("not applied: the plan was declined")
        key = os.urandom(32).hex()
        tb_a, tb_b = usb4_peers(probe_a, probe_b)
        if plan.transport == "native" and tb_a:
            step(f"pairing over USB4 ring pairs ({', '.join(tb_a)}; {', '.join(tb_b)})")
        request_a = _request(plan, "a", a, id_b, b.name, ssh.state_dir, key, nodes[0], tb_a)
        request_b = _request(plan, "b", b, id_a, a.name, ssh.state_dir, key, nodes[1], tb_b)
        _apply_both(a, b, request_a, request_b, (id_a, id_b), state_args, step)
        try:
            step("checking the cables")
            # One round trip: both statuses and every cable's ping at once (the peer
            # addresses are the plan's).
            jobs: list[Callable[[], Any]] = [
                lambda: a.agent("status", *state_args), lambda: b.agent("status", *state_args),
                *[_pinger(a, c.address_b) for c in plan.cables]]
            status_a, status_b, *rtts = in_parallel(lambda job: job(), jobs)
            pa, pb = pairing_with(status_a, id_b), pairing_with(status_b, id_a)
            assert pa and pb
            pings = {c.link_a: rtt for c, rtt in zip(plan.cables, rtts, strict=True)}
            checked = verify(a, b, pa, pb, options.verify_rdma, step, pings)
        except KeyboardInterrupt:
            raise Interrupted(f"interrupted while verifying: {a.name} and {b.name} are paired "
                              f"but not verified; run tbctl status {a.name} {b.name}") from None
        return {"dry_run": False, "already_paired": False, "host_a": a.name,
                "host_b": b.name, "transport": plan.transport,  # type: ignore[typeddict-item]
                "transport_reason": plan.transport_reason, **checked}


def _planned(plan: Plan) -> PairResult:
    """A dry run's answer: the same shape as a pairing's, observations left null."""
    rows: list[CableReport] = [{
        "link_a": c.link_a, "link_b": c.link_b, "address_a": c.address_a,
        "address_b": c.address_b, "prefix": c.prefix, "mtu": c.mtu, "matched_by": c.matched_by,
        "rdma_a": c.rdma_a, "rdma_b": c.rdma_b, "up": None, "port_a": None, "port_b": None,
        "gid_index_a": None, "gid_index_b": None, "ping_rtt_us": None, "rdma_rtt_us": None,
        "rdma_ok": None, "rdma_error": None,
    } for c in plan.cables]
    return {"dry_run": True, "already_paired": False, "host_a": plan.host_a,
            "host_b": plan.host_b, "transport": plan.transport,  # type: ignore[typeddict-item]
            "transport_reason": plan.transport_reason, "cables": rows, "verified": None,
            "problems": []}


class Verified(TypedDict):
    cables: list[CableReport]
    verified: bool
    problems: list[str]


def _pinger(conn: Connection, address: str) -> Callable[[], float | None]:
    return lambda: conn.agent("ping", "--address", address)["rtt_us"]


def verify(a: Connection, b: Connection, pa: dict[str, Any], pb: dict[str, Any],
           with_rdma: bool, step: Step = _no_step,
           pings: dict[str, float | None] | None = None) -> Verified:
    """Ping every cable (unless `pings` has A's link -> round trip already), check RDMA
    ports, and run an RDMA WRITE/READ round trip on every RDMA device pair (one per cable
    with rxe; one per host pair with tbrdma, whose device spans all cables and carries its
    GIDs on its first cable's netdev)."""
    rows: list[CableReport] = []
    problems: list[str] = []
    peer_side = {c["link"]: c for c in pb["cables"]}
    if pings is None:
        rtts = in_parallel(lambda c: _pinger(a, peer_side[c["peer_link"]]["address"])(),
                           pa["cables"])
        pings = {c["link"]: rtt for c, rtt in zip(pa["cables"], rtts, strict=True)}
    for cable in pa["cables"]:
        ping_rtt = pings[cable["link"]]
        other = peer_side[cable["peer_link"]]
        rows.append({
            "link_a": cable["link"], "address_a": cable["address"],
            "link_b": other["link"], "address_b": other["address"],
            "prefix": cable["prefix"], "mtu": cable["mtu"], "matched_by": None,
            "up": cable["up"] and other["up"],
            "rdma_a": cable.get("rdma_device"), "rdma_b": other.get("rdma_device"),
            "port_a": cable["rdma_port_state"], "port_b": other["rdma_port_state"],
            "gid_index_a": cable["gid_index"], "gid_index_b": other["gid_index"],
            "ping_rtt_us": ping_rtt, "rdma_rtt_us": None, "rdma_ok": None, "rdma_error": None,
        })
        if ping_rtt is None:
            problems.append(f"cable {cable['link']}<->{other['link']}: {other['address']} "
                            "does not answer ping")
    if pa["transport"] == "ip":
        return {"cables": rows, "verified": not problems, "problems": problems}
    devices: dict[tuple[str, str], list[CableReport]] = {}
    for row in rows:
        devices.setdefault((row["rdma_a"] or "", row["rdma_b"] or ""), []).append(row)
    for (device_a, device_b), group in devices.items():
        where = f"{device_a}<->{device_b}"
        if any(r["port_a"] != "ACTIVE" or r["port_b"] != "ACTIVE" for r in group):
            states = ", ".join(f"{r['port_a']}/{r['port_b']}" for r in group)
            problems.append(f"{where}: RDMA ports are {states}")
            continue
        with_gids = [r for r in group if r["gid_index_a"] is not None
                     and r["gid_index_b"] is not None]
        if not with_gids:
            problems.append(f"{where}: no RoCE v2 GID carries a cable's address")
        elif with_rdma:
            step(f"RDMA check {where}")
            outcome = _rdma_round_trip(a, b, with_gids[0])
            for row in group:
                row.update(outcome)  # type: ignore[typeddict-item]
            if not outcome["rdma_ok"]:
                problems.append(f"{where}: RDMA WRITE/READ round trip failed: "
                                f"{outcome['rdma_error']}")
    return {"cables": rows, "verified": not problems, "problems": problems}


def _rdma_round_trip(a: Connection, b: Connection, row: CableReport) -> dict[str, Any]:
    from tbctl.rdmaverify import verify_cable

    try:
        outcome = verify_cable(
            a.start_agent, b.start_agent,
            device_a=row["rdma_a"], gid_index_a=row["gid_index_a"],
            device_b=row["rdma_b"], gid_index_b=row["gid_index_b"])
    except RemoteError as exc:
        outcome = {"ok": False, "error": str(exc)}
    result = {"rdma_ok": bool(outcome.get("ok")), "rdma_rtt_us": outcome.get("rtt_us")}
    if not result["rdma_ok"]:
        result["rdma_error"] = outcome.get("error", "the data read back differs")
    return result


def unpair(spec_a: str, spec_b: str, ssh: SshOptions, step: Step = _no_step) -> UnpairResult:
    if spec_a == spec_b:
        raise PlanError(f"the same host twice ({spec_a}): name two different hosts")
    step(f"connecting to {spec_a}, {spec_b}")
    with connected([spec_a, spec_b], ssh) as (a, b):
        hello_a, hello_b = in_parallel(lambda c: c.agent("hello"), [a, b])
        state_args = ("--state-dir", ssh.state_dir)
        step("removing the pairing")
        removed_a, removed_b = in_parallel(
            lambda args: args[0].agent("unapply", *state_args, "--peer", args[1])["removed"],
            [(a, hello_b["host_id"]), (b, hello_a["host_id"])])
        return {"host_a": a.name, "host_b": b.name, "removed_a": removed_a,
                "removed_b": removed_b}
