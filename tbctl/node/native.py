# SPDX-License-Identifier: MIT
"""Native transport on a node: tbrdma devices with one rail per cable (stdlib only, as root).

A device is created the conventional way (`rdma link add tbrdmaN type tbrdma netdev L`) and
then configured through configfs at /sys/kernel/config/tbrdma/<device>/ (see docs/driver.md):
more rails, the role in the handshake, and the pairing key.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import re
import subprocess
from pathlib import Path
from typing import Any

MODULE = "tbrdma"
CONFIGFS = Path("/sys/kernel/config")
IB_CLASS = Path("/sys/class/infiniband")
# Must match the module: HMAC-SHA256(key, KEY_ID_LABEL), first 8 bytes, lets us tell whether
# the key in the kernel is the one we would write without reading the key back.
KEY_ID_LABEL = b"tbrdma key id"


class NativeError(RuntimeError):
    pass


def _run(cmd: list[str]) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise NativeError(f"{' '.join(cmd)}: {result.stderr.strip() or result.returncode}")
    return result.stdout


def available() -> bool:
    """True when the tbrdma module is loaded or can be loaded."""
    if Path(f"/sys/module/{MODULE}").is_dir():
        return True
    return subprocess.run(["modinfo", MODULE], capture_output=True).returncode == 0


def _device_dir(device: str) -> Path:
    return CONFIGFS / MODULE / device


def _ensure_loaded() -> None:
    if not Path(f"/sys/module/{MODULE}").is_dir():
        _run(["modprobe", MODULE])
    if not (CONFIGFS / MODULE).is_dir():
        if not CONFIGFS.is_dir() or not any(CONFIGFS.iterdir()):
            subprocess.run(["mount", "-t", "configfs", "none", str(CONFIGFS)],
                           capture_output=True)
    if not (CONFIGFS / MODULE).is_dir():
        raise NativeError(f"{CONFIGFS / MODULE} is missing: configfs not mounted?")


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value + "\n")
    except OSError as exc:
        raise NativeError(f"writing {path}: {exc}") from exc


def _add_rail(directory: Path, name: str) -> None:
    """configfs add_rail. A Thunderbolt name whose peer no ring pair is bound to yet is
    refused with ENODEV but kept by the module as a wish: its rails join the device when the
    XDomain appears (at boot the reapply may run before the thunderbolt driver found it)."""
    try:
        (directory / "add_rail").write_text(name + "\n")
    except OSError as exc:
        if name.startswith("tb:") and exc.errno == errno.ENODEV:
            return
        raise NativeError(f"writing {directory / 'add_rail'}: {exc}") from exc


def key_id(key: bytes) -> str:
    return hmac.new(key, KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]


def _mac(netdev: str) -> str:
    return Path(f"/sys/class/net/{netdev}/address").read_text().strip().lower()


def _peer_mac(netdev: str) -> str | None:
    """The MAC of whoever answers an all-nodes IPv6 ping on a point-to-point cable."""
    subprocess.run(["ping", "-6", "-c", "2", "-i", "0.2", "-W", "1", "-I", netdev, "ff02::1"],
                   capture_output=True)
    neigh = subprocess.run(["ip", "-6", "neigh", "show", "dev", netdev], capture_output=True,
                           text=True).stdout
    own = _mac(netdev)
    for match in re.finditer(r"lladdr ([0-9a-f:]{17})", neigh):
        if match.group(1) != own:
            return match.group(1)
    return None


def _auto_initiator(netdevs: list[str]) -> bool:
    for netdev in netdevs:
        peer = _peer_mac(netdev)
        if peer:
            return _mac(netdev) < peer
    raise NativeError("cannot tell which side initiates: no IPv6 neighbour on "
                      + ", ".join(netdevs) + "; pass initiator explicitly")


def create(device: str, netdevs: list[str], key: bytes, initiator: bool | None = None,
           port: str | None = None) -> None:
    """Creates or extends `device` with a rail per entry and sets role and pairing key.

    An entry is a netdev (an Ethernet rail) or a Thunderbolt name (`tb:<peer UUID>`, all
    ring pairs to that peer; see tb_services()). The device is created on `port`, the
    netdev whose addresses rdma_cm resolves (default: the first netdev entry); a port that
    is not itself an entry carries no data (its rail is removed again).
    Both ends get the same key; exactly one end must be the initiator. Without `initiator`
    the end whose cable MAC is lower initiates (found over IPv6 neighbour discovery).
    Calling it again with the same arguments changes nothing (the link stays up).
    """
    if not netdevs:
        raise NativeError("a native device needs at least one rail")
    if not 16 <= len(key) <= 32:
        raise NativeError("the pairing key must be 16..32 bytes")
    cables = [name for name in netdevs if not name.startswith("tb:")]
    port = port or (cables[0] if cables else None)
    if port is None:
        raise NativeError("Thunderbolt rails alone need a port netdev (the cable's "
                          "thunderbolt-net interface) for the device's addresses")
    _ensure_loaded()
    if not (IB_CLASS / device).exists():
        _run(["rdma", "link", "add", device, "type", MODULE, "netdev", port])
    directory = _device_dir(device)
    if not directory.is_dir():
        raise NativeError(f"{device} exists but has no configfs directory {directory}")
    for name in netdevs:
        _add_rail(directory, name)
    if port not in netdevs and port in [rail["name"] for rail in rails(device)]:
        _write(directory / "remove_rail", port)
    if initiator is None:
        initiator = _auto_initiator(cables or [port])
    role = "initiator" if initiator else "responder"
    current_role = (directory / "role").read_text().strip()
    current_key = (directory / "peer_key").read_text().split()
    if current_role == role and current_key == ["set", key_id(key)]:
        return
    _write(directory / "role", role)
    _write(directory / "peer_key", key.hex())


def rails(device: str) -> list[dict[str, Any]]:
    """The device's rails as its configfs `rails` lists them (docs/driver.md): name, carrier,
    added, frames each way; a Thunderbolt rail also its host interface, rings and link rate."""
    path = _device_dir(device) / "rails"
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        words = line.split()
        if len(words) < 10:
            continue
        after = {key: words[i + 1] for i, key in enumerate(words[:-1])}
        found.append({
            "name": words[1], "carrier": words[2] == "carrier", "added": words[3] == "added",
            "tx_frames": int(after.get("tx", 0)), "rx_frames": int(after.get("rx", 0)),
            "via": after.get("via"),
            "rings": f"{after['rings']} of {after['of']}" if "rings" in after else None,
            "link_mbps": int(after["link"]) if "link" in after else None,
        })
    return found


TB_SERVICES = Path("/sys/module/tbrdma/parameters/tb_services")


def tb_services() -> list[dict[str, str]]:
    """The Thunderbolt ring pairs bound on this host: rail name, peer (`tb:<UUID>`), state,
    host interface and this host's own `tb:<UUID>`. Empty without USB4 peers."""
    if not TB_SERVICES.exists():
        return []
    services = []
    for line in TB_SERVICES.read_text().splitlines():
        fields = line.split()
        if len(fields) != 6 or fields[2] != "via" or fields[4] != "local":
            continue
        services.append({"rail": fields[0], "peer": fields[0].split("@")[0],
                         "state": fields[1], "via": fields[3], "local": fields[5]})
    return services


def destroy(device: str) -> None:
    """Removes the device (its rails and link go with it); absent devices are fine."""
    if not (IB_CLASS / device).exists():
        return
    _run(["rdma", "link", "delete", device])


def port_state(device: str) -> str:
    """The port state as the verbs layer reports it: ACTIVE, DOWN, INIT, ... or ABSENT."""
    path = IB_CLASS / device / "ports" / "1" / "state"
    if not path.exists():
        return "ABSENT"
    # sysfs shows "4: ACTIVE"
    return path.read_text().split(":", 1)[-1].strip()
