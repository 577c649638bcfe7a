# SPDX-License-Identifier: MIT
"""The `--json` contract: one envelope per command and exit, its results as TypedDicts, and
the JSON Schema generated from them (`tbctl schema`, published in docs/tbctl.md).

Bump SCHEMA_VERSION whenever a field is removed, renamed or changes type; adding a field does
not bump it. Scripts check `tbctl` in the envelope before reading anything else.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal, NotRequired, TypedDict, Union

SCHEMA_VERSION = 1


class ErrorInfo(TypedDict):
    """`code` is stable (see docs/tbctl.md, Exit codes); `message` is one line for humans."""

    code: str
    message: str


class CableReport(TypedDict):
    """One cable of a pairing. A dry run fills in the plan and leaves the observations null."""

    link_a: str
    link_b: str
    address_a: str
    address_b: str
    prefix: int
    mtu: int
    matched_by: str | None  # "xdomain" or "neighbour"; null for a recorded pairing
    rdma_a: str | None
    rdma_b: str | None
    up: bool | None
    port_a: str | None
    port_b: str | None
    gid_index_a: int | None
    gid_index_b: int | None
    ping_rtt_us: float | None
    rdma_rtt_us: float | None
    rdma_ok: bool | None
    rdma_error: str | None


class PairResult(TypedDict):
    """`tbctl pair`, dry run or not: the same keys either way."""

    dry_run: bool
    already_paired: bool
    host_a: str
    host_b: str
    transport: Literal["native", "rxe", "ip"]
    transport_reason: str
    cables: list[CableReport]
    verified: bool | None  # null on a dry run
    problems: list[str]


class UnpairResult(TypedDict):
    host_a: str
    host_b: str
    removed_a: bool
    removed_b: bool


class PairAllResult(TypedDict):
    """`tbctl pair` over an inventory: one PairResult per cabled pair, in the order paired."""

    inventory: str  # the tbctl.toml read
    hosts: list[str]
    dry_run: bool
    pairs: list[PairResult]
    node_addresses: dict[str, str]  # host -> its node address (reachable from every host)
    verified: bool | None  # every pair verified; null on a dry run
    problems: list[str]  # each pair's problems, prefixed "host_a-host_b: "


class UnpairAllResult(TypedDict):
    """`tbctl unpair` over an inventory: the pairs something was removed from."""

    inventory: str
    hosts: list[str]
    pairs: list[UnpairResult]


class HostFailure(TypedDict):
    """A host that could not be read (down, refused, agent error); the others still are."""

    name: str
    error: ErrorInfo


class CableStatus(TypedDict):
    link: str
    peer_link: str
    address: str
    peer_address: str
    prefix: int
    mtu: int
    mtu_now: int | None
    present: bool
    up: bool
    rdma_device: str | None
    rdma_port_state: str | None
    gid_index: int | None


class NodeRoute(TypedDict):
    to: str  # another host's node address
    via: str  # the peer's cable address it goes to
    link: str  # the cable link it leaves on


class NodeStatus(TypedDict):
    """A pairing's share of the node addresses (pairings made from an inventory)."""

    link: str  # the link holding the node address (tbnode0)
    address: str  # this host's node address (a /32)
    address_set: bool
    routes: list[NodeRoute]
    forward_link: str | None  # the cable this host forwards from (the middle of a ring)


class RailStatus(TypedDict):
    """One rail of a native pairing's device: a cable's netdev, or a USB4 ring pair."""

    name: str  # netdev, or tb:<peer UUID>@<XDomain>/<pair>
    carrier: bool
    added: bool  # carrying the link's frames
    tx_frames: int
    rx_frames: int
    via: str | None  # USB4 ring pairs: the host interface (nhi, usb4emu)
    rings: str | None  # USB4 ring pairs: "<tx hop>/<rx hop> of <ring size>"
    link_mbps: int | None  # USB4 ring pairs: their share of the XDomain's link rate


class PairingStatus(TypedDict):
    peer_id: str
    peer_name: str
    transport: str
    cables: list[CableStatus]
    rails: list[RailStatus]  # native pairings; empty otherwise
    node: NodeStatus | None  # null for a pairing of two named hosts


class HostStatus(TypedDict):
    name: str  # as given on the command line (or this host's name)
    hostname: str
    host_id: str
    version: str
    pairings: list[PairingStatus]


class StatusResult(TypedDict):
    hosts: list[HostStatus]
    failed: list[HostFailure]  # hosts that could not be read, each with why


class Finding(TypedDict):
    check: str
    status: Literal["ok", "warn", "fail"]
    detail: str
    fix: str


class DoctorResult(TypedDict):
    host: str
    hostname: str
    findings: list[Finding]


class DoctorAllResult(TypedDict):
    """`tbctl doctor` over an inventory or several hosts."""

    hosts: list[DoctorResult]
    failed: list[HostFailure]


class HostEnv(TypedDict):
    host: str
    peers: list[str]  # the other hosts of the job
    variables: dict[str, str]
    file: NotRequired[str]  # with --out: where the file was written


class EnvResult(TypedDict):
    hosts: list[HostEnv]


class LaunchReport(TypedDict):
    """One process of `tbctl run`: where, in which stage, exactly what."""

    stage: int  # 1-based; a stage starts when the previous one is ready
    host: str
    role: Literal["main", "service"]  # services run until the main processes end
    argv: list[str]
    env: dict[str, str]  # set on top of the login environment
    cwd: str | None
    command_line: str  # what runs on the host, as a shell command line
    ready: list[str] | None  # run on the host until it succeeds, before the next stage
    cleanup: list[str] | None  # run on the host at the end


class RunReport(TypedDict):
    """`tbctl run` (every kind). With --json the programs' output goes to stderr, each line
    prefixed by its host, and stdout holds only this; the exit code is exit_code."""

    dry_run: bool
    hosts: list[str]  # rank 0 first
    node_addresses: dict[str, str]  # host -> the address it binds to and is reached on
    launches: list[LaunchReport]
    exit_code: int | None  # null on a dry run
    codes: dict[str, int]  # "host: program" -> exit code, of the processes that ended
    stopped: list[str]  # "host: program" of the processes tbctl stopped
    reason: str | None  # what ended the run; null on a dry run


class FilesResult(TypedDict):
    files: list[str]


class BenchTransport(TypedDict):
    """One way the pair's bytes were moved: an RDMA device (perftest) or TCP (iperf3, qperf)."""

    name: str  # "tbrdma", "rxe", "tcp" (":<device>" appended when a kind repeats)
    kind: Literal["tbrdma", "rxe", "tcp"]
    label: str
    device: str | None  # the RDMA device on host_a; null for TCP
    link: str  # host_a's cable the traffic (or perftest's handshake) uses
    address_b: str  # host_b's address on that cable
    gid_index_a: int | None
    gid_index_b: int | None


class BenchSample(TypedDict):
    """One run of one tool: bandwidth in Mb/s (10^6 bit/s) or one-way latency in us."""

    transport: str
    metric: Literal["bw", "lat"]
    size: int  # message size in bytes
    round: int  # 1-based
    value: float | None  # null: the run failed, `error` says why
    unit: str
    seconds: float
    error: str


class BenchPoint(TypedDict):
    """The rounds of one (transport, metric, size): their median, minimum and maximum."""

    transport: str
    metric: Literal["bw", "lat"]
    size: int
    median: float | None  # null: every round failed
    low: float | None
    high: float | None
    count: int  # rounds that gave a number


class BenchPair(TypedDict):
    host_a: str  # clients run here
    host_b: str  # servers run here
    transports: list[BenchTransport]
    samples: list[BenchSample]
    summary: list[BenchPoint]
    skipped: list[str]  # what was not measured, and why (a tool missing, no GID, ...)


class BenchResult(TypedDict):
    """`tbctl bench`: also the content of the bench.json it writes (what --compare reads)."""

    out_dir: str
    files: list[str]  # everything written: JSON, CSV and (with matplotlib) PNG and SVG
    plot_error: str | None  # why no plot was drawn; null when it was
    compare: str | None  # the earlier run overlaid on the plot
    rounds: int
    volume_bytes: int
    sizes: dict[str, list[int]]  # metric -> message sizes
    pairs: list[BenchPair]


class DiscoverLink(TypedDict):
    """One cable candidate of a host and what is at its far end."""

    link: str
    mac: str | None
    mtu: int | None
    up: bool
    speed_mbps: int | None  # the netdev's speed, where the driver reports one
    source: str  # "thunderbolt-net", "declared" (links.conf) or "option" (--links)
    xdomain: str | None  # the XDomain (Thunderbolt peer) behind a thunderbolt-net link
    device_name: str | None  # the peer's name as its Thunderbolt stack announces it
    vendor_name: str | None
    rx_speed_gbps: float | None
    rx_lanes: int | None
    tx_speed_gbps: float | None
    tx_lanes: int | None
    neighbour_macs: list[str]  # MACs seen at the far end (IPv6 all-nodes probe)
    peer_host: str | None  # which of the given hosts is at the far end; null if none
    peer_link: str | None
    matched_by: str | None  # "xdomain" or "neighbour"


class DiscoverHost(TypedDict):
    name: str
    hostname: str
    links: list[DiscoverLink]


class DiscoverResult(TypedDict):
    """`tbctl discover`: every host's cable links and which host is at each far end."""

    hosts: list[DiscoverHost]
    failed: list[HostFailure]  # hosts that could not be read, each with why


# Every command's result, by command name.
RESULTS: dict[str, type] = {
    "pair": PairResult,
    "unpair": UnpairResult,
    "status": StatusResult,
    "doctor": DoctorResult,
    "pair (inventory)": PairAllResult,
    "unpair (inventory)": UnpairAllResult,
    "doctor (several hosts)": DoctorAllResult,
    "env": EnvResult,
    "run": RunReport,
    "render-host-files": FilesResult,
    "bench": BenchResult,
    "discover": DiscoverResult,
}


def envelope_ok(result: Any) -> dict[str, Any]:
    return {"tbctl": SCHEMA_VERSION, "ok": True, "result": result}


def envelope_error(code: str, message: str) -> dict[str, Any]:
    return {"tbctl": SCHEMA_VERSION, "ok": False,
            "error": ErrorInfo(code=code, message=message)}


# ------------------------------------------------------------------ JSON Schema generation


def _schema_of(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    origin = typing.get_origin(tp)
    if tp is type(None):
        return {"type": "null"}
    if tp is str:
        return {"type": "string"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is Any:
        return {}
    if origin is Literal:
        return {"enum": list(typing.get_args(tp))}
    if origin in (Union, types.UnionType):
        return {"anyOf": [_schema_of(arg, defs) for arg in typing.get_args(tp)]}
    if origin is list:
        (item,) = typing.get_args(tp)
        return {"type": "array", "items": _schema_of(item, defs)}
    if origin is dict:
        key, value = typing.get_args(tp)
        assert key is str, "JSON object keys are strings"
        return {"type": "object", "additionalProperties": _schema_of(value, defs)}
    if typing.is_typeddict(tp):
        name = tp.__name__
        if name not in defs:
            defs[name] = {}  # placeholder: breaks recursion
            hints = typing.get_type_hints(tp, include_extras=True)
            properties, required = {}, []
            for field, hint in hints.items():
                if typing.get_origin(hint) is NotRequired:
                    (hint,) = typing.get_args(hint)
                else:
                    required.append(field)
                properties[field] = _schema_of(hint, defs)
            defs[name] = {"type": "object", "properties": properties, "required": required,
                          "additionalProperties": True}
            if tp.__doc__:
                defs[name]["description"] = " ".join(tp.__doc__.split())
        return {"$ref": f"#/$defs/{name}"}
    raise TypeError(f"no JSON Schema for {tp!r}")


def json_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of every envelope `tbctl ... --json` prints."""
    defs: dict[str, Any] = {}
    results = {name: _schema_of(tp, defs) for name, tp in RESULTS.items()}
    error = _schema_of(ErrorInfo, defs)
    version = {"const": SCHEMA_VERSION}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "tbctl --json output",
        "description": "What `tbctl <command> --json` prints on stdout, for every exit. "
                       "`x-result-by-command` names the result of each command.",
        "oneOf": [
            {"type": "object", "required": ["tbctl", "ok", "result"],
             "properties": {"tbctl": version, "ok": {"const": True},
                            "result": {"anyOf": list(results.values())}}},
            {"type": "object", "required": ["tbctl", "ok", "error"],
             "properties": {"tbctl": version, "ok": {"const": False}, "error": error}},
        ],
        "x-result-by-command": results,
        "$defs": dict(sorted(defs.items())),
    }


def _type_words(tp: Any) -> str:
    origin = typing.get_origin(tp)
    simple = {type(None): "null", str: "string", bool: "boolean", int: "integer",
              float: "number"}
    if tp in simple:
        return simple[tp]
    if origin is Literal:
        return " \\| ".join(f'`"{v}"`' for v in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_words(arg) for arg in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_words(typing.get_args(tp)[0])}"
    if origin is dict:
        return f"object of {_type_words(typing.get_args(tp)[1])}"
    if typing.is_typeddict(tp):
        return tp.__name__
    raise TypeError(f"no words for {tp!r}")


def schema_markdown() -> str:
    """The result types as docs/tbctl.md shows them (a unit test keeps the two equal)."""
    lines = [f"Schema version {SCHEMA_VERSION}. Results by command: "
             + ", ".join(f"`{name}` {tp.__name__}" for name, tp in RESULTS.items()) + "."]
    seen: list[type] = []

    def collect(tp: Any) -> None:
        if typing.is_typeddict(tp):
            if tp in seen:
                return
            seen.append(tp)
            for hint in typing.get_type_hints(tp).values():
                collect(hint)
        for arg in typing.get_args(tp):
            collect(arg)

    for tp in [ErrorInfo, *RESULTS.values()]:
        collect(tp)
    for tp in seen:
        lines += ["", f"**{tp.__name__}**" + (f": {' '.join(tp.__doc__.split())}"
                                               if tp.__doc__ else ""), "",
                  "| field | type |", "|---|---|"]
        required = tp.__required_keys__
        for field, hint in typing.get_type_hints(tp).items():
            optional = "" if field in required else " (may be absent)"
            lines.append(f"| `{field}` | {_type_words(hint)}{optional} |")
    return "\n".join(lines) + "\n"
