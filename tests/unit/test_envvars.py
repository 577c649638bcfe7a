# SPDX-License-Identifier: MIT
"""tbctl env's variables, from statuses recorded on two netns hosts joined by two cables
(thunderbolt1 and thunderbolt10, so prefix matching would mix them up)."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import pytest

from tbctl.envvars import cluster_env, down_cables, render, variables_for
from tbctl.errors import PlanError

RECORDED = json.loads((Path(__file__).parent / "data/status_ip_two_cables.json").read_text())


def statuses(transport: str = "ip", gids: tuple[int | None, int | None] = (1, 1),
             devices: tuple[str, str] = ("tbrdma0", "tbrdma1")) -> dict:
    """The recording as is (ip), or with RDMA devices on the cables as rxe/native shows them."""
    result = copy.deepcopy(RECORDED)
    if transport != "ip":
        for status in result.values():
            for pairing in status["pairings"]:
                pairing["transport"] = transport
                for cable, device, gid in zip(pairing["cables"], devices, gids, strict=True):
                    cable.update(rdma_device=device, gid_index=gid, rdma_port_state="ACTIVE")
    return result


def test_ip_pairing_variables_match_exactly():
    env = variables_for(RECORDED["tbt-a"], {"tbt-b"})
    assert env["NCCL_SOCKET_IFNAME"] == "=thunderbolt1,thunderbolt10"  # '=': exact names
    assert env["GLOO_SOCKET_IFNAME"] == "thunderbolt1"  # Gloo takes exact names, no '='
    assert env["NCCL_IB_DISABLE"] == "1"
    assert env["UCX_NET_DEVICES"] == "thunderbolt1,thunderbolt10"
    assert env["UCX_TLS"] == "tcp,sm,self"
    assert env["OMPI_MCA_btl_tcp_if_include"] == "thunderbolt1,thunderbolt10"
    assert env["OMPI_MCA_pml"] == "ucx"
    assert env["OMPI_MCA_pml_ucx_tls"] == env["OMPI_MCA_pml_ucx_devices"] == "any"
    assert env["VLLM_HOST_IP"] == env["MASTER_ADDR"] == "10.254.0.0"
    assert env["MASTER_PORT"] == "29500"
    assert "NCCL_IB_HCA" not in env


def test_cluster_env_gives_each_host_its_own_values():
    envs = cluster_env(RECORDED, ["tbt-a", "tbt-b"], master_port=29600)
    a, b = envs["tbt-a"].variables, envs["tbt-b"].variables
    assert (a["VLLM_HOST_IP"], b["VLLM_HOST_IP"]) == ("10.254.0.0", "10.254.0.1")
    # Both reach rank 0 on the same cable, at A's end of it.
    assert a["MASTER_ADDR"] == b["MASTER_ADDR"] == "10.254.0.0"
    assert a["MASTER_PORT"] == b["MASTER_PORT"] == "29600"
    assert envs["tbt-b"].rank == 1 and envs["tbt-b"].master_addr == "10.254.0.0"
    # Rank 0 is whichever host comes first.
    swapped = cluster_env(RECORDED, ["tbt-b", "tbt-a"])
    assert swapped["tbt-a"].variables["MASTER_ADDR"] == "10.254.0.1"


def test_rdma_pairing_chooses_the_gid_by_address():
    env = cluster_env(statuses("rxe", gids=(1, 1)), ["tbt-a", "tbt-b"])["tbt-a"].variables
    assert env["NCCL_IB_HCA"] == "=tbrdma0,tbrdma1"
    assert env["NCCL_IB_GID_INDEX"] == env["UCX_IB_GID_INDEX"] == "1"
    assert env["NCCL_IB_ADDR_FAMILY"] == "AF_INET"
    # One CIDR holding both cables' /31s (10.254.0.0/31 and 10.254.0.2/31).
    assert env["NCCL_IB_ADDR_RANGE"] == "10.254.0.0/30"
    assert env["NCCL_IB_ROCE_VERSION_NUM"] == "2"
    assert env["UCX_NET_DEVICES"] == "tbrdma0:1,tbrdma1:1"
    assert env["UCX_TLS"] == "rc_v,sm,self"
    assert env["OMPI_MCA_btl"] == "^openib"
    assert "NCCL_IB_DISABLE" not in env


def test_different_gid_indexes_leave_the_choice_to_the_address_range():
    env = cluster_env(statuses("rxe", gids=(1, 3)), ["tbt-a", "tbt-b"])["tbt-a"].variables
    assert env["NCCL_IB_GID_INDEX"] == "-1"  # NCCL then matches family, range, RoCE v2
    assert env["NCCL_IB_ADDR_RANGE"] == "10.254.0.0/30"
    assert "UCX_IB_GID_INDEX" not in env


def test_native_transport_lets_ucx_wire_up_over_tcp():
    env = cluster_env(statuses("native"), ["tbt-a", "tbt-b"])["tbt-b"].variables
    # rc_v would pull in ud_verbs, which UCX cannot open on tbrdma0 (the consumers lab test)
    assert env["UCX_TLS"] == "rc_verbs,tcp,sm,self"
    assert env["UCX_NET_DEVICES"] == "tbrdma0:1,tbrdma1:1,thunderbolt1,thunderbolt10"


def test_missing_gid_is_an_error_not_gid_zero():
    with pytest.raises(PlanError, match=r"tbt-a: RDMA device tbrdma1 has no RoCE v2 GID for "
                                        r"10\.254\.0\.2 on thunderbolt10"):
        cluster_env(statuses("native", gids=(1, None)), ["tbt-a", "tbt-b"])


def test_unpaired_and_repeated_hosts_are_refused():
    lonely = copy.deepcopy(RECORDED)
    lonely["tbt-b"]["pairings"] = []
    with pytest.raises(PlanError, match="tbt-a is not paired with tbt-b: run tbctl pair"):
        cluster_env(lonely, ["tbt-a", "tbt-b"])
    with pytest.raises(PlanError, match="named twice"):
        cluster_env(RECORDED, ["tbt-a", "tbt-a"])


@pytest.mark.parametrize("fmt", ["shell", "dotenv"])
def test_rendered_text_reads_back_exactly(fmt, tmp_path):
    env = cluster_env(statuses("rxe"), ["tbt-a", "tbt-b"])["tbt-b"]
    text = render(env, fmt, ["tbt-a"])
    assert "OMPI_MCA_btl='^openib'" in text  # quoted: a shell would glob-expand ^ otherwise
    script = tmp_path / "env.sh"
    script.write_text(text)
    # What a shell makes of it (dotenv: sourced with allexport, as `set -a; . file` does).
    source = f". {script}" if fmt == "shell" else f"set -a; . {script}"
    out = subprocess.run(["bash", "-c", f"{source}; env -0"], capture_output=True, text=True,
                         check=True, env={"PATH": "/usr/bin:/bin"}).stdout
    seen = dict(entry.split("=", 1) for entry in out.split("\0") if "=" in entry)
    assert {k: seen[k] for k in env.variables} == env.variables


def test_json_format():
    env = cluster_env(RECORDED, ["tbt-a", "tbt-b"])["tbt-a"]
    assert json.loads(render(env, "json", ["tbt-b"])) == env.variables


def test_cables_not_up_are_named():
    assert down_cables(RECORDED, ["tbt-a", "tbt-b"]) == []
    recorded = copy.deepcopy(RECORDED)
    recorded["tbt-b"]["pairings"][0]["cables"][1].update(up=False, present=False)
    assert down_cables(recorded, ["tbt-a", "tbt-b"]) == [
        "tbt-b: cable thunderbolt10 (10.254.0.3) is absent: run tbctl status tbt-b"]


def test_node_addresses_are_what_every_host_binds_to_and_reaches():
    """Pairings made from an inventory carry node addresses: VLLM_HOST_IP, MASTER_ADDR and
    the Gloo/NCCL bootstrap interface are the node address and its link on every host; the
    RDMA variables still name the cables."""
    recorded = statuses("rxe")
    nodes = {"tbt-a": "10.254.255.7", "tbt-b": "10.254.255.42"}
    for name, status in recorded.items():
        for pairing in status["pairings"]:
            pairing["node"] = {"link": "tbnode0", "address": nodes[name], "routes": [],
                               "forward_link": None, "address_set": True}
    envs = cluster_env(recorded, ["tbt-b", "tbt-a"])
    for name, env in envs.items():
        variables = env.variables
        assert env.node_address == variables["VLLM_HOST_IP"] == nodes[name]
        assert env.master_addr == variables["MASTER_ADDR"] == nodes["tbt-b"]
        assert variables["GLOO_SOCKET_IFNAME"] == "tbnode0"
        assert variables["NCCL_SOCKET_IFNAME"] == "=tbnode0"
        assert variables["NCCL_IB_HCA"] == "=tbrdma0,tbrdma1"
        assert variables["NCCL_IB_ADDR_RANGE"] == "10.254.0.0/30"
    text = render(envs["tbt-a"], "shell", ["tbt-b"], guard=True)
    assert "ray start --node-ip-address=10.254.255.7" in text
    assert "ip -4 -o addr show to 10.254.255.7/32" in text
    # Without node addresses on one host, both bind to cable addresses as before.
    recorded["tbt-b"]["pairings"][0]["node"] = None
    assert cluster_env(recorded, ["tbt-a", "tbt-b"])["tbt-a"].variables[
        "GLOO_SOCKET_IFNAME"] == "thunderbolt1"
