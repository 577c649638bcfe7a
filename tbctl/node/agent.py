# SPDX-License-Identifier: MIT
"""`tbctl node <command>`: what the controller asks of one host, answered as one JSON object.

Every answer is {"protocol": N, "ok": true, "result": ...} or {"protocol": N, "ok": false,
"error": "one line"} on stdout; requests that carry data read one JSON object from stdin.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import json
import os
import platform
import resource
import socket
import sys
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from tbctl import __version__
from tbctl.node import AGENT_PROTOCOL, net, probe
from tbctl.node import state as state_mod
from tbctl.node.state import DEFAULT_STATE_DIR, host_root, under_root

UNIT_NAME = "tbctl-reapply.service"  # the boot re-apply; enabled while a pairing exists
# The hotplug re-apply, one instance per link that appears (started by the udev rule).
INSTANCES = "tbctl-reapply@*.service"
# Facts about this invocation from the controller (`tbctl node --ssh-address ADDR ...`).
SESSION: dict[str, str] = {"ssh_address": ""}


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
        "ssh_address": SESSION["ssh_address"],
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
    default_links = net.default_route_links()
    ssh_links = net.links_with_address(SESSION["ssh_address"])
    for link in candidates:
        if not link.get("missing"):
            link["ipv4"] = net.ipv4_addresses(link["name"])
            link["default_route"] = link["name"] in default_links
            link["ssh_session"] = link["name"] in ssh_links
    return {
        **cmd_hello(argparse.Namespace()),
        "kernel": release,
        "thunderbolt": probe.thunderbolt(root),
        "links": candidates,
        "rdma": probe.rdma_devices(root),
        "modules": probe.modules(root, release),
        "native_available": _native().available() if _native_importable() else False,
        "usb4": _native().tb_services() if _native_importable() else [],
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
        # `enable` would reload the manager itself: one reload covers the new files and
        # the link (a reload costs seconds on a slow host).
        net.run(["systemctl", "enable", "--no-reload", UNIT_NAME], check=False)
        net.run(["systemctl", "daemon-reload"], check=False)
        net.run(["udevadm", "control", "--reload"], check=False)
    return changed


def _missing_dirs(directory: Path) -> list[str]:
    return [str(d) for d in [directory, *directory.parents] if not d.exists()]


def _make_dirs(state: dict[str, Any], directory: Path) -> None:
    """mkdir -p, remembering each directory it made so the last unpair removes it again."""
    for d in reversed(_missing_dirs(directory)):
        Path(d).mkdir()
        state.setdefault("created_dirs", []).append(d)


def _remove_dirs(dirs: list[str]) -> None:
    """Remove directories tbctl made, deepest first, if empty; never a mount point (on NixOS
    with impermanence the state directory often is one, and rmdir would fail with EBUSY)."""
    for d in sorted(set(dirs), key=len, reverse=True):
        path = Path(d)
        if path.is_dir() and not path.is_symlink() and not os.path.ismount(path) \
                and not any(path.iterdir()):
            path.rmdir()


def _remove_created_dirs(state: dict[str, Any]) -> None:
    _remove_dirs(state.pop("created_dirs", []))


def _put_back(files: dict[str, str | None]) -> None:
    """Give each host file the content it had (None: it did not exist)."""
    for rel, content in files.items():
        path = host_root() / rel
        if content is None:
            if path.is_file() or path.is_symlink():
                path.unlink()
        elif path.parent.is_dir():
            path.write_text(content)


def _restore_host_files(state: dict[str, Any]) -> None:
    if _systemd_live():
        net.run(["systemctl", "disable", "--no-reload", UNIT_NAME], check=False)
        # The hotplug instances stay active while their link exists: stop them before
        # their unit file goes (they have no ExecStop; the pairing was undone already).
        net.run(["systemctl", "stop", INSTANCES], check=False)
    _put_back({rel: record["prior"] for rel, record in state["files"].items()
               if not _system_owned(rel)})
    state["files"] = {}
    if _systemd_live():
        net.run(["systemctl", "daemon-reload"], check=False)
        net.run(["udevadm", "control", "--reload"], check=False)


LINKS_DIR = "links"


def _mark_links(state_dir: str, state: dict[str, Any]) -> None:
    """One empty file per paired link in <state dir>/links: the hotplug rule starts the
    re-apply unit only for links named there (or thunderbolt-net links)."""
    directory = under_root(state_dir) / LINKS_DIR
    wanted = set(_links_in_use(state))
    if wanted:
        directory.mkdir(mode=0o700, exist_ok=True)
    present = {p.name for p in directory.iterdir()} if directory.is_dir() else set()
    for name in wanted - present:
        (directory / name).touch(mode=0o600)
    for name in present - wanted:
        (directory / name).unlink()
    if not wanted and directory.is_dir():
        directory.rmdir()


def agent_archive(state_dir: str, digest: str) -> Path:
    """The persisted agent, named by its own sha256 so the boot unit can check it."""
    return under_root(state_dir) / f"tbctl-{digest}.pyz"


def _persist_agent(state_dir: str, state: dict[str, Any], digest: str) -> None:
    """Copy the running (already verified) archive into the state directory and check the
    copy against the digest the controller computed before the boot unit may run it."""
    archive = _running_zipapp()
    if not archive:
        raise AgentError("persist_agent asked, but this agent is not running from a zipapp")
    data = Path(archive).read_bytes()
    if hashlib.sha256(data).hexdigest() != digest:
        raise AgentError("the running agent does not match the digest the controller sent: "
                         "refusing to persist it")
    target = agent_archive(state_dir, digest)
    if not target.exists() or hashlib.sha256(target.read_bytes()).hexdigest() != digest:
        state_mod.write_private(target, data)
    old = state.get("agent")
    if old and old != str(target):
        Path(old).unlink(missing_ok=True)
    state["agent"] = str(target)


def _running_zipapp() -> str | None:
    """The archive this agent came from: the zipapp it runs from, or the one next to the
    src/ directory the delivery unpacked it into (tbctl.zipapp); its digest is checked
    again before it is persisted."""
    loader = globals().get("__loader__")
    archive = getattr(loader, "archive", None)
    if archive:
        return str(archive)
    src = Path(__file__).resolve().parents[2]
    beside = src.parent / "tbctl.pyz"
    return str(beside) if src.name == "src" and beside.is_file() else None


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


def _configure_node(node: dict[str, Any], links: list[str]) -> None:
    """The node address on its link, and this pairing's routes and forwarding over those of
    its cable `links` that are present."""
    net.ensure_node_link(node["link"])
    net.add_address(node["link"], f"{node['address']}/32")
    for route in node["routes"]:
        if route["link"] in links:
            net.add_route(route["to"], route["via"], route["link"], node["address"])
    if node.get("forward_link") in links:
        net.set_forwarding(node["forward_link"], "1")


def _undo_node(pairing: dict[str, Any], others: dict[str, Any]) -> None:
    """Remove one pairing's routes and forwarding; the node link (and its address) goes with
    the last pairing that has one."""
    node = pairing.get("node")
    if not node:
        return
    for route in node["routes"]:
        net.del_route(route["to"], route["via"], route["link"])
    link = node.get("forward_link")
    prior = pairing.get("prior_links", {}).get(link or "", {}).get("forwarding")
    if link and prior is not None and net.link_present(link):
        net.set_forwarding(link, prior)
    if not any(p.get("node") for p in others.values()):
        net.delete_link(node["link"])


def _undo_pairing(pairing: dict[str, Any], others: dict[str, Any]) -> None:
    """Put back what one pairing changed; safe on a partly applied pairing, and on one whose
    changes were only intended (a journal): each undo step tolerates a change not made.
    `others` are the pairings that stay (they may share the node address)."""
    _undo_node(pairing, others)
    if pairing.get("native_device"):
        _native().destroy(pairing["native_device"])
    for device in pairing.get("created_rdma", []):
        net.rxe_delete(device)
    for link, prior in pairing.get("prior_links", {}).items():
        if not net.link_present(link):
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


# ---------------------------------------------------------------- transactions


def _recover(state_dir: str) -> str | None:
    """Finish or undo what a command that died left in the journal (lock held)."""
    journal = state_mod.read_journal(state_dir)
    if journal is None:
        return None
    state = state_mod.load(state_dir)
    peer = journal["peer"]
    if journal["op"] == "apply":
        if peer in state["pairings"]:
            outcome = "completed"  # it died after recording the pairing
        else:
            _rollback_apply(state_dir, journal)
            outcome = "rolled back"
    else:
        before = journal["before"]
        if state_mod.under_root(state_dir).joinpath(state_mod.STATE_FILE).exists():
            before = state
        _finish_unapply(state_dir, before, peer)
        outcome = "completed"
    state_mod.clear_journal(state_dir)
    return f"an interrupted {journal['op']} with {journal['peer_name']} was {outcome}"


def _rollback_apply(state_dir: str, journal: dict[str, Any]) -> None:
    """Put the host back as the journal found it; the journal goes last but for the empty
    directories it made (the state directory among them on a host with no other pairing)."""
    before = journal["before"]
    _undo_pairing(journal["pairing"], before["pairings"])
    _put_back(journal["files"])
    if journal.get("agent") and journal["agent"] != before.get("agent"):
        Path(journal["agent"]).unlink(missing_ok=True)
    _mark_links(state_dir, before)
    state_mod.save(state_dir, before)
    state_mod.clear_journal(state_dir)
    if before["pairings"]:
        _remove_dirs([d for d in journal["dirs"] if d not in before.get("created_dirs", [])])
    else:
        _remove_dirs([*before.get("created_dirs", []), *journal["dirs"]])


def _finish_unapply(state_dir: str, state: dict[str, Any], peer: str) -> dict[str, Any] | None:
    pairing = state["pairings"].pop(peer, None)
    if pairing is not None:
        _undo_pairing(pairing, state["pairings"])
    _mark_links(state_dir, state)
    if state["pairings"]:
        state_mod.save(state_dir, state)
    else:
        _forget_host(state_dir, state)
    return pairing


def cmd_apply(args: argparse.Namespace) -> dict[str, Any]:
    request = _read_request()
    recovered = None
    while True:
        with state_mod.locked(args.state_dir, create=True) as made:
            assert made is not None
            recovered = _recover(args.state_dir) or recovered
            if not under_root(args.state_dir).is_dir():
                continue  # the rollback removed the state directory: lock a new one
            return _apply_locked(args.state_dir, request, made, recovered)


def _apply_locked(state_dir: str, request: dict[str, Any], made: list[str],
                  recovered: str | None) -> dict[str, Any]:
    state = state_mod.load(state_dir)
    state.setdefault("created_dirs", [])
    state["created_dirs"] += [d for d in made if d not in state["created_dirs"]]
    try:
        result = _apply(state_dir, request, state)
    except Exception:
        if not state["pairings"]:
            _remove_dirs(state["created_dirs"])
        raise
    return {**result, "recovered": recovered}


def _apply(state_dir: str, request: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    peer = request["peer"]["host_id"]
    if peer in state["pairings"]:
        raise AgentError(f"already paired with {request['peer']['name']}; unpair first")
    in_use = _links_in_use(state)
    for cable in request["cables"]:
        if cable["link"] in in_use:
            raise AgentError(f"link {cable['link']} already carries another pairing")
    node = request.get("node")
    if node:
        _check_node(node, request["cables"], state)
    transport = request["transport"]
    files = {rel: content for rel, content in request.get("files", {}).items()
             if not _system_owned(rel)}
    digest = request.get("persist_agent")
    # The intent: every change this apply may make, with what puts it back. Undoing a
    # change that was never made is harmless, so the journal is written once, up front.
    pairing: dict[str, Any] = {
        "peer_name": request["peer"]["name"],
        "transport": transport,
        "cables": request["cables"],
        "prior_links": {},
        "created_rdma": [],
        "loaded_modules": [m for m in request.get("modules", [])
                           if not Path(f"/sys/module/{m}").exists()],
        "native_device": _free_native_name() if transport == "native" else None,
        "native_key": None,
        "node": node or None,
    }
    for cable in request["cables"]:
        link = cable["link"]
        prior = net.link_state(link)
        pairing["prior_links"][link] = {
            "mtu": prior["mtu"], "up": prior["up"], "addresses": net.ipv4_addresses(link)}
        if node and node.get("forward_link") == link:
            pairing["prior_links"][link]["forwarding"] = net.forwarding(link)
        if transport == "rxe" and not Path(
                f"/sys/class/infiniband/{cable.get('rdma_device')}").exists():
            pairing["created_rdma"].append(cable["rdma_device"])
    root = host_root()
    dirs = sorted({d for rel in files for d in _missing_dirs((root / rel).parent)})
    journal = {
        "op": "apply", "peer": peer, "peer_name": pairing["peer_name"], "pairing": pairing,
        "before": json.loads(json.dumps(state)),
        "files": {rel: (root / rel).read_text() if (root / rel).exists() else None
                  for rel in files},
        "dirs": dirs,
        "agent": str(agent_archive(state_dir, digest)) if isinstance(digest, str) else None,
    }
    state_mod.write_journal(state_dir, journal)
    try:
        for module in pairing["loaded_modules"]:
            net.modprobe(module)
        for cable in request["cables"]:
            _configure_cable(cable, transport)
        if node:
            _configure_node(node, [c["link"] for c in request["cables"]])
        if transport == "native":
            # Exactly one end initiates the handshake; both ends decide alike from the ids.
            initiator = probe.host_identity(host_root()) < peer
            pairing["native_rails"] = list(request.get("tb_rails") or [])
            pairing["native_key"] = request["native_key"]
            pairing["native_initiator"] = initiator
            _create_native(pairing, [c["link"] for c in request["cables"]])
            for cable in pairing["cables"]:
                cable["rdma_device"] = pairing["native_device"]
        if isinstance(digest, str):
            _persist_agent(state_dir, state, digest)
        elif digest:
            raise AgentError("persist_agent needs the archive's sha256: upgrade tbctl")
        changed = _write_host_files(state, files)
        state["pairings"][peer] = pairing
        _mark_links(state_dir, state)
        state_mod.save(state_dir, state)
    except BaseException:
        try:
            _rollback_apply(state_dir, journal)
        except Exception:
            pass  # the journal stays: the next command on this host retries the rollback
        state["pairings"] = journal["before"]["pairings"]
        raise
    state_mod.clear_journal(state_dir)
    return {"applied": True, "files_changed": changed, "systemd": _systemd_live(),
            "cables": pairing["cables"]}


def _check_node(node: dict[str, Any], cables: list[dict[str, Any]],
                state: dict[str, Any]) -> None:
    """Refuse a node request that does not fit this host, before anything changes."""
    ipaddress.IPv4Address(node["address"])
    links = {c["link"] for c in cables}
    for route in node["routes"]:
        ipaddress.IPv4Address(route["to"])
        ipaddress.IPv4Address(route["via"])
        if route["link"] not in links:
            raise AgentError(f"node route to {route['to']} names link {route['link']}, which "
                             "is not a cable of this pairing")
    if node.get("forward_link") not in (None, *links):
        raise AgentError(f"forwarding asked on {node['forward_link']}, which is not a cable "
                         "of this pairing")
    ours = next((p for p in state["pairings"].values() if p.get("node")), None)
    if ours and ours["node"]["address"] != node["address"]:
        raise AgentError(f"this host's node address is {ours['node']['address']} (paired with "
                         f"{ours['peer_name']}), not {node['address']}: unpair it first")
    if not ours and net.link_present(node["link"]):
        raise AgentError(f"link {node['link']} exists but tbctl did not make it: remove it "
                         f"(ip link del {node['link']}) or pair without an inventory")


def _free_native_name() -> str:
    existing = {p.name for p in Path("/sys/class/infiniband").glob("tbrdma*")}
    return next(f"tbrdma{i}" for i in range(64) if f"tbrdma{i}" not in existing)


def cmd_unapply(args: argparse.Namespace) -> dict[str, Any]:
    with state_mod.locked(args.state_dir, create=False) as held:
        if held is None:
            return {"removed": False, "recovered": None}
        recovered = _recover(args.state_dir)
        state = state_mod.load(args.state_dir)
        pairing = state["pairings"].get(args.peer)
        if pairing is None:
            return {"removed": False, "recovered": recovered}
        state_mod.write_journal(args.state_dir, {
            "op": "unapply", "peer": args.peer, "peer_name": pairing["peer_name"],
            "before": state})
        _finish_unapply(args.state_dir, json.loads(json.dumps(state)), args.peer)
        state_mod.clear_journal(args.state_dir)
        return {"removed": True, "peer_name": pairing["peer_name"], "recovered": recovered}


def _forget_host(state_dir: str, state: dict[str, Any]) -> None:
    """The last pairing is gone: remove every file and directory tbctl made on this host,
    and nothing else (an admin's mount point at the state directory stays)."""
    _restore_host_files(state)
    if state.get("agent"):
        Path(state["agent"]).unlink(missing_ok=True)
        state["agent"] = None
    state_mod.save(state_dir, state)
    state_mod.clear_journal(state_dir)
    _remove_created_dirs(state)


def cmd_reapply(args: argparse.Namespace) -> dict[str, Any]:
    """Boot: configure every recorded cable whose link is present. Hotplug (`--device`, the
    sysfs path of the link that appeared): configure the recorded cable on that link."""
    only = link_of_device(args.device) if args.device else None
    with state_mod.locked(args.state_dir, create=False) as held:
        if held is None:
            return {"applied": [], "absent": [], "recovered": None}
        recovered = _recover(args.state_dir)
        return {**_reapply(state_mod.load(args.state_dir), only), "recovered": recovered}


def link_of_device(device: str) -> str:
    """The interface name of a network device's sysfs path (/sys/devices/.../net/NAME)."""
    path = PurePosixPath(device)
    if path.parts[:2] != ("/", "sys") or path.parent.name != "net" or ".." in path.parts:
        raise AgentError(f"--device {device} is not the sysfs path of a network interface "
                         "(/sys/devices/.../net/NAME)")
    return path.name


def _create_native(pairing: dict[str, Any], links: list[str]) -> None:
    """The pairing's tbrdma device over `links` (its present cable netdevs): over the peer's
    USB4 ring pairs (`native_rails`, tb:<UUID>) when it was paired over them, the first link
    lending the device its addresses; otherwise one rail per link."""
    _native().create(pairing["native_device"], pairing.get("native_rails") or links,
                     bytes.fromhex(pairing["native_key"]), pairing["native_initiator"],
                     port=links[0])


def _reapply(state: dict[str, Any], only: str | None = None) -> dict[str, Any]:
    """Configure the recorded cables whose links are present (only the one on link `only`
    when given); the pairing's other rails stay as they are."""
    applied, absent, failed = [], [], []
    for pairing in state["pairings"].values():
        cables = [c for c in pairing["cables"] if only is None or c["link"] == only]
        if not cables:
            continue
        for module in pairing.get("loaded_modules", []):
            net.run(["modprobe", module], check=False)
        # Scan again until nothing new appears. Not needed for correctness (every link that
        # appears starts its own tbctl-reapply@ instance, which waits for this run's lock),
        # but it configures NICs that come up during the boot run in that run.
        pending = list(cables)
        while True:
            present = [c for c in pending if net.link_present(c["link"])]
            if not present:
                break
            for cable in present:
                pending.remove(cable)
                try:
                    _configure_cable(cable, pairing["transport"])
                    applied.append(cable["link"])
                except net.CommandError as exc:
                    failed.append(f"{cable['link']}: {exc}")
        absent.extend(c["link"] for c in pending)
        if pairing.get("node"):
            here = [c["link"] for c in pairing["cables"] if c["link"] in applied]
            try:
                _configure_node(pairing["node"], here)
            except net.CommandError as exc:
                failed.append(f"node address {pairing['node']['address']}: {exc}")
        if pairing.get("native_device"):
            links = [c["link"] for c in cables if c["link"] in applied]
            if links:
                _create_native(pairing, links)
    if failed:
        raise AgentError("; ".join(failed))
    return {"applied": applied, "absent": absent}


def cable_status(cable: dict[str, Any], devices: dict[str, dict[str, Any]]) -> dict[str, Any]:
    link = cable["link"]
    present = net.link_present(link)
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


def node_status(node: dict[str, Any] | None) -> dict[str, Any] | None:
    if not node:
        return None
    present = net.link_present(node["link"])
    return {**node, "address_set": present and f"{node['address']}/32" in
            net.ipv4_addresses(node["link"])}


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
    recovered = None
    if state_mod.read_journal(args.state_dir) is not None:
        with state_mod.locked(args.state_dir, create=False):
            recovered = _recover(args.state_dir)
    state = state_mod.load(args.state_dir)
    devices = {d["name"]: d for d in probe.rdma_devices(Path("/"))}
    pairings = []
    for peer_id, pairing in state["pairings"].items():
        pairings.append({
            "peer_id": peer_id,
            "peer_name": pairing["peer_name"],
            "transport": pairing["transport"],
            "cables": [cable_status(c, devices) for c in pairing["cables"]],
            "rails": _native().rails(pairing["native_device"])
            if pairing.get("native_device") and _native_importable() else [],
            "node": node_status(pairing.get("node")),
        })
    return {**cmd_hello(args), "pairings": pairings, "files": sorted(state["files"]),
            "recovered": recovered}


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
        if name == "reapply":
            p.add_argument("--device", default=None,
                           help="sysfs path of the link that appeared (hotplug instance)")
        if name == "ping":
            p.add_argument("--address", required=True)
            p.add_argument("--count", type=int, default=3)
    return top


def main(argv: list[str]) -> int:
    if argv and argv[0] == "node":
        argv = argv[1:]
    if len(argv) >= 2 and argv[0] == "--ssh-address":
        SESSION["ssh_address"] = argv[1]
        argv = argv[2:]
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
