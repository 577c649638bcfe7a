# SPDX-License-Identifier: MIT
"""The environment each paired host needs so NCCL/RCCL, Gloo, UCX, Open MPI, torchrun and
vLLM use the cables, computed from the hosts' `tbctl node status` answers.

Every variable follows its project's documentation:
- NCCL/RCCL: `NCCL_SOCKET_IFNAME` and `NCCL_IB_HCA` match by prefix unless the list starts
  with `=` (so `thunderbolt1` would also pick `thunderbolt10`); the GID is chosen by
  `NCCL_IB_GID_INDEX` or, at -1, by `NCCL_IB_ADDR_FAMILY`/`NCCL_IB_ADDR_RANGE` and
  `NCCL_IB_ROCE_VERSION_NUM` (NCCL >= 2.21).
- Gloo (PyTorch) splits `GLOO_SOCKET_IFNAME` on commas and takes each entry as an exact
  interface name: it has no `=` prefix, and one interface keeps every rank on the same link.
- UCX: `UCX_NET_DEVICES` names `dev:port` (RDMA) and interfaces (tcp); RC needs a second
  transport to wire up (UD verbs, or tcp where the device has no UD QPs, as tbrdma).
- Open MPI 5 takes a non-Mellanox verbs device only with `pml_ucx_tls`/`pml_ucx_devices any`.
- vLLM binds to `VLLM_HOST_IP`; torch.distributed rendezvous uses `MASTER_ADDR`/`MASTER_PORT`.
- Ray has no environment variable for the node address: `ray start --node-ip-address` takes
  it (tbctl run ray passes it), so it is not exported here.

Hosts paired from an inventory have a node address each (tbctl.nodes) that every other host
reaches: VLLM_HOST_IP, MASTER_ADDR, Ray's node IP and the bootstrap of NCCL and Gloo (their
socket interface, the node address's own link) use it. Hosts paired by name have none: they
bind to a cable address, which only their direct peers reach.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
from dataclasses import dataclass, field
from typing import Any

from tbctl.errors import PlanError

DEFAULT_MASTER_PORT = 29500
FORMATS = ("shell", "dotenv", "json")


@dataclass(frozen=True)
class HostEnv:
    """One host's place in the cluster and the variables that put its workloads on the cables."""

    host: str
    rank: int
    node_address: str  # the address this host's processes bind to and peers reach it on
    master_addr: str  # rank 0's address as this host reaches it
    transport: str
    links: list[str]
    devices: list[str]
    variables: dict[str, str] = field(default_factory=dict)


def _cables(status: dict[str, Any], peer_names: set[str]) -> tuple[str, list[dict[str, Any]]]:
    pairings = [p for p in status["pairings"] if p["peer_name"] in peer_names]
    if not pairings:
        raise PlanError(f"{status.get('hostname', 'host')} is not paired with "
                        f"{', '.join(sorted(peer_names))}")
    transports = {p["transport"] for p in pairings}
    # Mixed transports would need per-peer settings NCCL cannot express; the weakest wins.
    transport = "ip" if "ip" in transports else sorted(transports)[0]
    return transport, [c for p in pairings for c in p["cables"]]


def _covering_network(addresses: list[str], prefix: int) -> ipaddress.IPv4Network:
    """The smallest network holding every cable subnet (NCCL_IB_ADDR_RANGE takes one CIDR)."""
    networks = [ipaddress.ip_network(f"{a}/{prefix}", strict=False) for a in addresses]
    net = networks[0]
    while not all(n.subnet_of(net) for n in networks):  # type: ignore[arg-type]
        net = net.supernet()
    return net  # type: ignore[return-value]


def _rdma_variables(host: str, cables: list[dict[str, Any]], devices: list[str],
                    links: list[str], transport: str) -> dict[str, str]:
    missing = [c for c in cables if c.get("rdma_device") and c.get("gid_index") is None]
    if missing:
        c = missing[0]
        # Without a GID for the cable address NCCL silently takes GID 0 (RoCE v1 link-local).
        raise PlanError(f"{host}: RDMA device {c['rdma_device']} has no RoCE v2 GID for "
                        f"{c['address']} on {c['link']} (cable down or address missing): "
                        f"run tbctl status {host}, fix the cable, then retry")
    gids = {c["gid_index"] for c in cables if c.get("rdma_device")}
    gid = str(next(iter(gids))) if len(gids) == 1 else "-1"
    prefix = min(int(c.get("prefix", 31)) for c in cables)
    env = {
        "NCCL_IB_HCA": "=" + ",".join(devices),
        # One index for every device: say it (older NCCL needs it); else let NCCL pick the
        # RoCE v2 GID inside the cables' range on each device (-1 overrides an inherited value).
        "NCCL_IB_GID_INDEX": gid,
        "NCCL_IB_ADDR_FAMILY": "AF_INET",
        "NCCL_IB_ADDR_RANGE": str(_covering_network([c["address"] for c in cables], prefix)),
        "NCCL_IB_ROCE_VERSION_NUM": "2",
        "OMPI_MCA_btl": "^openib",
    }
    ucx_devices = [f"{d}:1" for d in devices]
    if transport == "native":
        # Not rc_v: it makes UCX open ud_verbs for wire-up, and a UD QP of UCX's size (4096
        # receive WRs) is above tbrdma's max_qp_wr, which takes the whole UCP worker down
        # (tcp does not step in). rc_verbs with tcp wiring it up on the same cables works:
        # Open MPI over pml ucx, lab test tests/driver/test_consumers_vm.py.
        env["UCX_TLS"] = "rc_verbs,tcp,sm,self"
        env["UCX_NET_DEVICES"] = ",".join(ucx_devices + links)
    else:
        env["UCX_TLS"] = "rc_v,sm,self"  # rc_verbs plus ud_verbs for wire-up
        env["UCX_NET_DEVICES"] = ",".join(ucx_devices)
    if gid != "-1":
        env["UCX_IB_GID_INDEX"] = gid
    return env


def variables_for(status: dict[str, Any], peer_names: set[str], *,
                  master_addr: str | None = None, node_address: str | None = None,
                  master_port: int = DEFAULT_MASTER_PORT,
                  node_link: str | None = None) -> dict[str, str]:
    """Variables for the host `status` describes, using its cables to the named peers.

    node_address is the address the host binds to and every peer reaches it on: a cable's
    address (default: the first cable's), or with node_link the host's node address on that
    link (tbctl.nodes), which NCCL's and Gloo's bootstrap then bind to as well;
    master_addr is rank 0's address as this host reaches it (default: this host).
    """
    host = status.get("hostname", "host")
    transport, cables = _cables(status, peer_names)
    if node_address is not None and node_link is None:
        cables.sort(key=lambda c: c["address"] != node_address)  # the node's cable first
    bind_link = node_link or cables[0]["link"]
    bind = node_address if node_link else cables[0]["address"]
    links = list(dict.fromkeys(c["link"] for c in cables))
    devices = list(dict.fromkeys(c["rdma_device"] for c in cables if c.get("rdma_device")))
    env = {
        "NCCL_SOCKET_IFNAME": "=" + (node_link or ",".join(links)),
        "GLOO_SOCKET_IFNAME": bind_link,
        "VLLM_HOST_IP": bind,
        "MASTER_ADDR": master_addr or bind,
        "MASTER_PORT": str(master_port),
        "OMPI_MCA_pml": "ucx",
        "OMPI_MCA_pml_ucx_tls": "any",
        "OMPI_MCA_pml_ucx_devices": "any",
        "OMPI_MCA_btl_tcp_if_include": ",".join(links),
    }
    if transport == "ip" or not devices:
        env.update({"NCCL_IB_DISABLE": "1", "UCX_TLS": "tcp,sm,self",
                    "UCX_NET_DEVICES": ",".join(links)})
    else:
        env.update(_rdma_variables(host, cables, devices, links, transport))
    return dict(sorted(env.items()))


def _pairing_names(status: dict[str, Any], peer_status: dict[str, Any]) -> set[str]:
    return {p["peer_name"] for p in status["pairings"] if p["peer_id"] == peer_status["host_id"]}


def cluster_env(statuses: dict[str, dict[str, Any]], hosts: list[str],
                master_port: int = DEFAULT_MASTER_PORT) -> dict[str, HostEnv]:
    """Each host's environment; hosts[0] is rank 0 (MASTER_ADDR, Ray head, mpirun's host)."""
    if len(hosts) < 2:
        raise PlanError("name at least two paired hosts; the first one is rank 0")
    if len(set(hosts)) != len(hosts):
        raise PlanError(f"a host is named twice in {' '.join(hosts)}: name each host once")
    peers_of = {me: set().union(*(_pairing_names(statuses[me], statuses[other])
                                  for other in hosts if other != me))
                for me in hosts}
    nodes = {h: _node_of(statuses[h], peers_of[h]) for h in hosts}
    if all(nodes.values()):
        return _node_env(statuses, hosts, peers_of, nodes, master_port)  # type: ignore[arg-type]
    master = hosts[0]
    for other in hosts[1:]:
        if not (_pairing_names(statuses[master], statuses[other])
                and _pairing_names(statuses[other], statuses[master])):
            raise PlanError(f"{master} is not paired with {other}: "
                            f"run tbctl pair {master} {other}")
    # Rank 0 binds to its first cable to rank 1; every other host reaches it over its own
    # direct cable, and binds to that cable's near end.
    master_cables = [c for p in statuses[master]["pairings"]
                     if p["peer_name"] in _pairing_names(statuses[master], statuses[hosts[1]])
                     for c in p["cables"]]
    master_node = master_cables[0]["address"]
    result = {}
    for rank, host in enumerate(hosts):
        status = statuses[host]
        if rank == 0:
            node, master_addr = master_node, master_node
        else:
            to_master = [c for p in status["pairings"]
                         if p["peer_name"] in _pairing_names(status, statuses[master])
                         for c in p["cables"]]
            direct = next((c for c in to_master if c["peer_address"] == master_node),
                          to_master[0])
            node, master_addr = direct["address"], direct["peer_address"]
        variables = variables_for({**status, "hostname": host}, peers_of[host],
                                  master_addr=master_addr, node_address=node,
                                  master_port=master_port)
        transport, cables = _cables(status, peers_of[host])
        result[host] = HostEnv(
            host=host, rank=rank, node_address=node, master_addr=master_addr,
            transport=transport,
            links=list(dict.fromkeys(c["link"] for c in cables)),
            devices=list(dict.fromkeys(c["rdma_device"] for c in cables
                                       if c.get("rdma_device"))),
            variables=variables)
    return result


def _node_of(status: dict[str, Any], peer_names: set[str]) -> dict[str, Any] | None:
    """The host's node address record, from a pairing with one of the job's hosts."""
    return next((p["node"] for p in status["pairings"]
                 if p["peer_name"] in peer_names and p.get("node")), None)


def _node_env(statuses: dict[str, dict[str, Any]], hosts: list[str],
              peers_of: dict[str, set[str]], nodes: dict[str, dict[str, Any]],
              master_port: int) -> dict[str, HostEnv]:
    """Every host has a node address (an inventory pairing): each binds to its own, and
    rank 0's is MASTER_ADDR for all, whichever cables lie between them."""
    lonely = [h for h in hosts if not peers_of[h]]
    if lonely:
        raise PlanError(f"{lonely[0]} is not paired with any of {' '.join(hosts)}: pair the "
                        "inventory (tbctl pair)")
    master_addr = nodes[hosts[0]]["address"]
    result = {}
    for rank, host in enumerate(hosts):
        node = nodes[host]
        status = statuses[host]
        variables = variables_for({**status, "hostname": host}, peers_of[host],
                                  master_addr=master_addr, node_address=node["address"],
                                  master_port=master_port, node_link=node["link"])
        transport, cables = _cables(status, peers_of[host])
        result[host] = HostEnv(
            host=host, rank=rank, node_address=node["address"], master_addr=master_addr,
            transport=transport, links=list(dict.fromkeys(c["link"] for c in cables)),
            devices=list(dict.fromkeys(c["rdma_device"] for c in cables
                                       if c.get("rdma_device"))),
            variables=variables)
    return result


def down_cables(statuses: dict[str, dict[str, Any]], hosts: list[str]) -> list[str]:
    """One warning per cable of these hosts' pairings that is not up (tbctl status says why)."""
    return [f"{host}: cable {c['link']} ({c['address']}) is "
            f"{'absent' if not c.get('present', True) else 'down'}: run tbctl status {host}"
            for host in hosts for p in statuses[host]["pairings"] for c in p["cables"]
            if not c.get("up", True)]


def render(env: HostEnv, fmt: str, peers: list[str], guard: bool = False) -> str:
    """shell: `export K=V` lines for eval; dotenv: K=V lines; json: an object. Values are
    shell-quoted in both text formats (systemd's EnvironmentFile and python-dotenv read that
    quoting).

    guard (shell): apply the exports only on the host that owns env.node_address, so that
    one stream holding several hosts' blocks sets, wherever it is eval'ed, that host's values
    and no other's.
    """
    if fmt == "json":
        return json.dumps(env.variables, indent=2, sort_keys=True) + "\n"
    if fmt not in FORMATS:
        raise PlanError(f"unknown format '{fmt}': use one of {', '.join(FORMATS)}")
    prefix = "export " if fmt == "shell" else ""
    lines = [f"# tbctl env for {env.host} (rank {env.rank}, paired with {', '.join(peers)}); "
             f"transport {env.transport}.",
             f"# Ray: ray start --node-ip-address={shlex.quote(env.node_address)} ..."]
    exports = [f"{prefix}{key}={shlex.quote(value)}" for key, value in env.variables.items()]
    if guard and fmt == "shell":
        owner = shlex.quote(f"{env.node_address}/32")
        lines.append(f"if ip -4 -o addr show to {owner} 2>/dev/null | grep -q .; then")
        lines += [f"  {line}" for line in exports]
        lines.append("fi")
    else:
        lines += exports
    return "\n".join(lines) + "\n"
