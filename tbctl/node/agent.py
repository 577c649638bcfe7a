# SPDX-License-Identifier: MIT
"""`tbctl node <command>`: what the controller asks of one host, answered as one JSON object.

Every answer is {"protocol": N, "ok": true, "result": ...} or {"protocol": N, "ok": false,
"error": "one line"} on stdout; requests that carry data read one JSON object from stdin.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import platform
import resource
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tbctl import __version__
from tbctl.node import AGENT_PROTOCOL, net, probe
from tbctl.node import state as state_mod
from tbctl.node.state import DEFAULT_STATE_DIR, host_root, under_root

UNIT_NAME = "tbctl-reapply.service"


class AgentError(Exception):
    pass


# ---------------------------------------------------------------- observations


def cmd_hello(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "version": __version__,
        "python": platform.python_version(),
        "python_path": sys.executable,
        "host_id": probe.host_identity(host_root()),
        "hostname": socket.gethostname(),
        "euid": os.geteuid(),
        "zipapp": _running_zipapp(),
    }


def memlock() -> dict[str, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    return {"soft": soft, "hard": hard}  # -1 is unlimited


def pyverbs_devices() -> dict[str, Any]:
    try:
        import pyverbs.device as d  # type: ignore[import-not-found]
    except ImportError:
        return {"importable": False, "devices": []}
    try:
        names = [dev.name.decode() for dev in d.get_device_list()]
    except Exception as exc:  # pyverbs raises its own error types
        return {"importable": True, "devices": [], "error": str(exc)}
    return {"importable": True, "devices": names}


def gather_probe(links: list[str]) -> dict[str, Any]:
    root = Path("/")
    release = probe.kernel_release(root)
    candidates = probe.candidate_links(root, links, probe.declared_links(host_root()))
    for link in candidates:
        if not link.get("missing"):
            link["ipv4"] = net.ipv4_addresses(link["name"])
    return {
        **cmd_hello(argparse.Namespace()),
        "kernel": release,
        "thunderbolt": probe.thunderbolt(root),
        "links": candidates,
        "rdma": probe.rdma_devices(root),
        "modules": probe.modules(root, release),
        "native_available": _native().available() if _native_importable() else False,
        "iommu": probe.iommu(root),
        "memlock": memlock(),
        "pyverbs": pyverbs_devices(),
        "addresses": net.ipv4_addresses(),
        "routes": net.ipv4_routes(),
        "tools": {tool: net.have(tool) for tool in ("ip", "ping", "rdma", "modprobe")},
    }


def cmd_probe(args: argparse.Namespace) -> dict[str, Any]:
    """Everything the controller plans from, including the recorded pairings."""
    return {**gather_probe(_split(args.links)), "status": cmd_status(args)}


def cmd_neighbours(args: argparse.Namespace) -> dict[str, Any]:
    """MACs at the far end of each link. Links that are down are brought up for the look and
    put back down afterwards, so a dry run leaves the host as it found it."""
    links = _split(args.links)
    raised = []
    try:
        for link in links:
            if not net.link_state(link)["up"]:
                net.set_link(link, up=True)
                raised.append(link)
        for link in links:
            net.wait_link_local(link)
        return {"neighbours": net.neighbours_of(links)}
    finally:
        for link in raised:
            net.set_link(link, up=False)


def cmd_ping(args: argparse.Namespace) -> dict[str, Any]:
    return {"address": args.address, "rtt_us": net.ping(args.address, args.count)}


# ---------------------------------------------------------------- changes


def _systemd_live() -> bool:
    return str(host_root()) == "/" and Path("/run/systemd/system").is_dir()


NIXOS_MANIFEST = "etc/tbctl/nixos-host-files.json"


def nixos_manifest() -> dict[str, Any] | None:
    """On NixOS the module renders the host files from the same templates and owns them
    (read-only links into the store); its manifest names them and the state directory."""
    path = host_root() / NIXOS_MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None


def _system_owned(rel: str) -> bool:
    manifest = nixos_manifest()
    return bool(manifest) and rel in manifest.get("files", [])


def _write_host_files(state: dict[str, Any], files: dict[str, str]) -> list[str]:
    """Write the rendered files, remembering what each path held before tbctl touched it."""
    changed = []
    for rel, content in files.items():
        if _system_owned(rel):
            continue
        path = host_root() / rel
        if rel not in state["files"]:
            state["files"][rel] = {"prior": path.read_text() if path.exists() else None}
        if not path.exists() or path.read_text() != content:
            _make_dirs(state, path.parent)
            path.write_text(content)
            changed.append(rel)
    if changed and _systemd_live():
        net.run(["systemctl", "daemon-reload"], check=False)
        net.run(["systemctl", "enable", UNIT_NAME], check=False)
        net.run(["udevadm", "control", "--reload"], check=False)
    return changed


def _make_dirs(state: dict[str, Any], directory: Path) -> None:
    """mkdir -p, remembering each directory it made so the last unpair removes it again."""
    missing = [d for d in [directory, *directory.parents] if not d.exists()]
    for d in reversed(missing):
        d.mkdir()
        state.setdefault("created_dirs", []).append(str(d))


def _remove_created_dirs(state: dict[str, Any]) -> None:
    for d in sorted(state.pop("created_dirs", []), key=len, reverse=True):
        path = Path(d)
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def _restore_host_files(state: dict[str, Any]) -> None:
    if _systemd_live():
        net.run(["systemctl", "disable", UNIT_NAME], check=False)
    for rel, record in state["files"].items():
        if _system_owned(rel):
            continue
        path = host_root() / rel
        if record["prior"] is None:
            if path.exists():
                path.unlink()
        else:
            path.write_text(record["prior"])
    state["files"] = {}
    if _systemd_live():
        net.run(["systemctl", "daemon-reload"], check=False)
        net.run(["udevadm", "control", "--reload"], check=False)


def _persist_agent(state_dir: str, state: dict[str, Any]) -> None:
    archive = _running_zipapp()
    if not archive:
        raise AgentError("persist_agent asked, but this agent is not running from a zipapp")
    target = under_root(state_dir) / "tbctl.pyz"
    _make_dirs(state, target.parent)
    if Path(archive) != target:
        target.write_bytes(Path(archive).read_bytes())
    state["agent"] = str(target)


def _running_zipapp() -> str | None:
    loader = globals().get("__loader__")
    archive = getattr(loader, "archive", None)
    return str(archive) if archive else None


def _native() -> Any:
    from tbctl.node import native  # written with the kernel driver; stdlib only

    return native


def _native_importable() -> bool:
    try:
        _native()
    except ImportError:
        return False
    return True


def _configure_cable(cable: dict[str, Any], transport: str) -> None:
    link = cable["link"]
    net.set_link(link, mtu=cable["mtu"], up=True)
    net.add_address(link, f"{cable['address']}/{cable['prefix']}")
    if transport == "rxe" and not Path(f"/sys/class/infiniband/{cable['rdma_device']}").exists():
        net.rxe_create(cable["rdma_device"], link)


def _undo_pairing(pairing: dict[str, Any]) -> None:
    """Put back what one pairing changed; safe on a partly applied pairing."""
    if pairing.get("native_device"):
        _native().destroy(pairing["native_device"])
    for device in pairing.get("created_rdma", []):
        net.rxe_delete(device)
    for link, prior in pairing.get("prior_links", {}).items():
        if not Path(f"/sys/class/net/{link}").exists():
            continue
        for cable in pairing["cables"]:
            if cable["link"] == link:
                net.del_address(link, f"{cable['address']}/{cable['prefix']}")
        for cidr in prior["addresses"]:
            net.add_address(link, cidr)
        net.set_link(link, mtu=prior["mtu"], up=prior["up"])
    for module in reversed(pairing.get("loaded_modules", [])):
        net.rmmod(module)


def _links_in_use(state: dict[str, Any]) -> dict[str, str]:
    return {c["link"]: peer for peer, p in state["pairings"].items() for c in p["cables"]}


def cmd_apply(args: argparse.Namespace) -> dict[str, Any]:
    request = _read_request()
    state = state_mod.load(args.state_dir)
    peer = request["peer"]["host_id"]
    if peer in state["pairings"]:
        raise AgentError(f"already paired with {request['peer']['name']}; unpair first")
    in_use = _links_in_use(state)
    for cable in request["cables"]:
        if cable["link"] in in_use:
            raise AgentError(f"link {cable['link']} already carries another pairing")
    transport = request["transport"]
    pairing: dict[str, Any] = {
        "peer_name": request["peer"]["name"],
        "transport": transport,
        "cables": request["cables"],
        "prior_links": {},
        "created_rdma": [],
        "loaded_modules": [],
        "native_device": None,
        "native_key": None,
    }
    try:
        for cable in request["cables"]:
            link = cable["link"]
            prior = net.link_state(link)
            pairing["prior_links"][link] = {
                "mtu": prior["mtu"], "up": prior["up"], "addresses": net.ipv4_addresses(link)}
        for module in request.get("modules", []):
            if not Path(f"/sys/module/{module}").exists():
                net.modprobe(module)
                pairing["loaded_modules"].append(module)
        for cable in request["cables"]:
            existed = Path(f"/sys/class/infiniband/{cable.get('rdma_device')}").exists()
            _configure_cable(cable, transport)
            if transport == "rxe" and not existed:
                pairing["created_rdma"].append(cable["rdma_device"])
        if transport == "native":
            device = _free_native_name()
            key = bytes.fromhex(request["native_key"])
            # Exactly one end initiates the handshake; both ends decide alike from the ids.
            initiator = probe.host_identity(host_root()) < peer
            _native().create(device, [c["link"] for c in request["cables"]], key, initiator)
            pairing["native_device"] = device
            pairing["native_key"] = request["native_key"]
            pairing["native_initiator"] = initiator
            for cable in pairing["cables"]:
                cable["rdma_device"] = device
        if request.get("persist_agent"):
            _persist_agent(args.state_dir, state)
        changed = _write_host_files(state, request.get("files", {}))
    except Exception:
        _undo_pairing(pairing)
        if not state["pairings"]:
            _forget_host(args.state_dir, state)
        raise
    state["pairings"][peer] = pairing
    _make_dirs(state, under_root(args.state_dir))
    state_mod.save(args.state_dir, state)
    return {"applied": True, "files_changed": changed, "systemd": _systemd_live(),
            "cables": pairing["cables"]}


def _free_native_name() -> str:
    existing = {p.name for p in Path("/sys/class/infiniband").glob("tbrdma*")}
    return next(f"tbrdma{i}" for i in range(64) if f"tbrdma{i}" not in existing)


def cmd_unapply(args: argparse.Namespace) -> dict[str, Any]:
    state = state_mod.load(args.state_dir)
    pairing = state["pairings"].pop(args.peer, None)
    if pairing is None:
        return {"removed": False}
    _undo_pairing(pairing)
    if state["pairings"]:
        state_mod.save(args.state_dir, state)
    else:
        _forget_host(args.state_dir, state)
    return {"removed": True, "peer_name": pairing["peer_name"]}


def _forget_host(state_dir: str, state: dict[str, Any]) -> None:
    """The last pairing is gone: remove every file and directory tbctl made on this host."""
    _restore_host_files(state)
    if state.get("agent"):
        Path(state["agent"]).unlink(missing_ok=True)
        state["agent"] = None
    state_mod.save(state_dir, state)
    _remove_created_dirs(state)


def cmd_reapply(args: argparse.Namespace) -> dict[str, Any]:
    """Boot and hotplug: configure every recorded cable whose link is present."""
    state = state_mod.load(args.state_dir)
    applied, absent, failed = [], [], []
    for pairing in state["pairings"].values():
        for module in pairing.get("loaded_modules", []):
            net.run(["modprobe", module], check=False)
        for cable in pairing["cables"]:
            if not Path(f"/sys/class/net/{cable['link']}").exists():
                absent.append(cable["link"])
                continue
            try:
                _configure_cable(cable, pairing["transport"])
                applied.append(cable["link"])
            except net.CommandError as exc:
                failed.append(f"{cable['link']}: {exc}")
        if pairing.get("native_device"):
            links = [c["link"] for c in pairing["cables"] if c["link"] in applied]
            if links:
                _native().create(pairing["native_device"], links,
                                 bytes.fromhex(pairing["native_key"]),
                                 pairing["native_initiator"])
    if failed:
        raise AgentError("; ".join(failed))
    return {"applied": applied, "absent": absent}


def cable_status(cable: dict[str, Any], devices: dict[str, dict[str, Any]]) -> dict[str, Any]:
    link = cable["link"]
    present = Path(f"/sys/class/net/{link}").exists()
    info = probe.netdev(Path("/"), link) if present else {}
    addresses = net.ipv4_addresses(link) if present else []
    cidr = f"{cable['address']}/{cable['prefix']}"
    device = devices.get(cable.get("rdma_device") or "")
    port_state, gid_index = None, None
    if device and device["ports"]:
        port = device["ports"][0]
        port_state = port["state"]
        gid_index = roce_gid_index(port["gids"], cable["address"])
    up = bool(present and info.get("carrier") and cidr in addresses
              and info.get("operstate") in ("up", "unknown"))
    return {
        **cable,
        "present": present,
        "operstate": info.get("operstate"),
        "carrier": info.get("carrier"),
        "mtu_now": info.get("mtu"),
        "address_set": cidr in addresses,
        "rdma_port_state": port_state,
        "gid_index": gid_index,
        "up": up,
    }


def roce_gid_index(gids: list[dict[str, Any]], address: str) -> int | None:
    """Index of the RoCE v2 GID that maps the cable's IPv4 address (what perftest's -x takes)."""
    # Compare addresses, not strings: Python 3.13 spells IPv4-mapped addresses differently.
    mapped = ipaddress.IPv6Address(f"::ffff:{address}")
    matching = [g for g in gids if ipaddress.IPv6Address(g["gid"]) == mapped]
    for gid in matching:
        if (gid.get("type") or "").lower().endswith("v2"):
            return gid["index"]
    return matching[0]["index"] if matching else None


def cmd_status(args: argparse.Namespace) -> dict[str, Any]:
    state = state_mod.load(args.state_dir)
    devices = {d["name"]: d for d in probe.rdma_devices(Path("/"))}
    pairings = []
    for peer_id, pairing in state["pairings"].items():
        pairings.append({
            "peer_id": peer_id,
            "peer_name": pairing["peer_name"],
            "transport": pairing["transport"],
            "cables": [cable_status(c, devices) for c in pairing["cables"]],
        })
    return {**cmd_hello(args), "pairings": pairings, "files": sorted(state["files"])}


def cmd_doctor(args: argparse.Namespace) -> dict[str, Any]:
    from tbctl.node.doctor import findings

    facts = gather_probe(_split(args.links))
    return {"host": facts["hostname"], "findings": findings(facts, Path("/"))}


def cmd_rdma_peer(argv: list[str]) -> int:
    from tbctl.node import rdmacheck  # needs pyverbs; imported only for this command

    return rdmacheck.main(argv)


# ---------------------------------------------------------------- plumbing


def _split(value: str | None) -> list[str]:
    return [v for v in (value or "").split(",") if v]


def _read_request() -> dict[str, Any]:
    request = json.loads(sys.stdin.read() or "{}")
    if request.get("protocol") != AGENT_PROTOCOL:
        raise AgentError(f"request protocol {request.get('protocol')} is not {AGENT_PROTOCOL}: "
                         "controller and host run different tbctl versions")
    return request


COMMANDS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "hello": cmd_hello,
    "probe": cmd_probe,
    "neighbours": cmd_neighbours,
    "ping": cmd_ping,
    "apply": cmd_apply,
    "unapply": cmd_unapply,
    "reapply": cmd_reapply,
    "status": cmd_status,
    "doctor": cmd_doctor,
}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="tbctl node", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        p = sub.add_parser(name)
        p.add_argument("--state-dir", default=DEFAULT_STATE_DIR)
        p.add_argument("--links", default="")
        if name == "unapply":
            p.add_argument("--peer", required=True)
        if name == "ping":
            p.add_argument("--address", required=True)
            p.add_argument("--count", type=int, default=3)
    return top


def main(argv: list[str]) -> int:
    if argv and argv[0] == "node":
        argv = argv[1:]
    if argv and argv[0] == "rdma-peer":
        return cmd_rdma_peer(argv[1:])
    args = parser().parse_args(argv)
    try:
        manifest = nixos_manifest()
        if manifest:
            args.state_dir = manifest["state_dir"]
        result = COMMANDS[args.command](args)
    except Exception as exc:  # the controller always gets one JSON answer with one line
        if isinstance(exc, KeyError):
            message = f"request lacks {exc}"
        elif isinstance(exc, (AgentError, net.CommandError, ValueError, OSError)):
            message = str(exc)
        else:
            message = f"{type(exc).__name__}: {exc}"
        print(json.dumps({"protocol": AGENT_PROTOCOL, "ok": False, "error": message}))
        return 1
    print(json.dumps({"protocol": AGENT_PROTOCOL, "ok": True, "result": result}))
    return 0
