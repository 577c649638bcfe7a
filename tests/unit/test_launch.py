# SPDX-License-Identifier: MIT
"""tbctl run's plans (the command lines each tool documents) and its remote wrapper."""

from __future__ import annotations

import copy
import json
import shlex
import signal
import subprocess
from pathlib import Path

import pytest

from tbctl.envvars import cluster_env
from tbctl.errors import PlanError
from tbctl.launch import (
    PGID_MARK,
    Launch,
    describe,
    exec_plan,
    mpi_plan,
    ray_plan,
    torchrun_plan,
    vllm_plan,
)

RECORDED = json.loads((Path(__file__).parent / "data/status_ip_two_cables.json").read_text())
HOSTS = ["tbt-a", "tbt-b"]


@pytest.fixture
def envs():
    return cluster_env(RECORDED, HOSTS)


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_remote_wrapper_reports_its_process_group_and_exit_code():
    launch = Launch("h", ["sh", "-c", 'printf "%s\\n" "$X"; exit 7'], {"X": "a 'b' $c \"d\""})
    proc = subprocess.Popen(["sh", "-c", launch.remote_command()], stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    out, _ = proc.communicate(timeout=10)
    first, value = out.splitlines()
    assert first == f"{PGID_MARK}{proc.pid}"  # the wrapper leads the process group
    assert value == "a 'b' $c \"d\""  # the environment arrives unexpanded
    assert proc.returncode == 7


def test_program_killed_by_a_signal_is_reported_as_128_plus_n():
    launch = Launch("h", ["sh", "-c", "kill -KILL $$"])
    proc = subprocess.run(["sh", "-c", launch.remote_command()], capture_output=True, timeout=10)
    assert proc.returncode == 128 + signal.SIGKILL


def test_command_line_is_shell_quoted_and_runnable(tmp_path):
    launch = Launch("h", ["printenv", "Y"], {"Y": "two words; $(not run)"}, cwd=str(tmp_path))
    assert launch.command_line() == (f"cd {shlex.quote(str(tmp_path))} && "
                                     "env 'Y=two words; $(not run)' printenv Y")
    out = subprocess.run(["sh", "-c", launch.command_line()], capture_output=True, text=True)
    assert out.stdout == "two words; $(not run)\n"


def test_exec_plan_gives_each_host_its_environment(envs):
    (stage,) = exec_plan(envs, ["hostname"])
    assert [launch.host for launch in stage] == HOSTS
    for launch, rank in zip(stage, (0, 1), strict=True):
        assert launch.env["TBCTL_NODE_RANK"] == str(rank) and launch.env["TBCTL_NNODES"] == "2"
        assert launch.env["VLLM_HOST_IP"] == envs[launch.host].node_address
    with pytest.raises(PlanError, match="no program given"):
        exec_plan(envs, [])


def test_torchrun_uses_static_rendezvous_on_rank_0(envs):
    (stage,) = torchrun_plan(envs, ["train.py", "--epochs", "1"], nproc_per_node=2)
    for rank, launch in enumerate(stage):
        argv = launch.argv
        assert argv[0] == "torchrun" and argv[-3:] == ["train.py", "--epochs", "1"]
        assert option(argv, "--nnodes") == "2" and option(argv, "--node-rank") == str(rank)
        assert option(argv, "--nproc-per-node") == "2"
        assert option(argv, "--master-addr") == "10.254.0.0"
        assert option(argv, "--master-port") == "29500"


def rank_environment(argv: list[str], owned: str, tmp_path: Path) -> dict[str, str]:
    """The environment the program gets on the host that owns `owned`: the plan's `sh -c`
    guard run here, with an `ip` that reports only that address, and `env` as the program."""
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "ip").write_text(f'#!/bin/sh\ncase "$*" in *" to {owned}/32"*) '
                             f'echo "2: tb0 inet {owned}/31";; esac\n')
    (fake / "ip").chmod(0o755)
    start = argv.index("sh")
    assert argv[start + 1] == "-c" and argv[start + 3] == "tbctl-mpi"
    done = subprocess.run([*argv[start:start + 4], "env"], capture_output=True, text=True,
                          env={"PATH": f"{fake}:/usr/bin:/bin"}, check=True)
    return dict(line.split("=", 1) for line in done.stdout.splitlines())


def test_mpirun_line(envs, tmp_path):
    ((launch,),) = mpi_plan(envs, ["./allreduce", "-v"], ranks=3)
    argv = launch.argv
    assert launch.host == "tbt-a" and argv[0] == "mpirun"
    mca = {argv[i + 1]: argv[i + 2] for i, a in enumerate(argv) if a == "--mca"}
    assert mca == {"pml": "ucx", "pml_ucx_tls": "any", "pml_ucx_devices": "any",
                   "btl_tcp_if_include": "thunderbolt1,thunderbolt10"}
    exports = [argv[i + 1] for i, a in enumerate(argv) if a == "-x"]
    assert "UCX_TLS=tcp,sm,self" in exports
    assert "NCCL_SOCKET_IFNAME==thunderbolt1,thunderbolt10" in exports
    # One context, ranks split 2+1; mpirun's own host is localhost (Open MPI 5 maps no slot
    # to its own address), the other at its node address.
    assert option(argv, "-n") == "3" and option(argv, "--host") == "localhost:2,10.254.0.1:1"
    assert ":" not in argv
    assert argv[-2:] == ["./allreduce", "-v"]
    # Each host's own VLLM_HOST_IP, set where that host owns its address.
    for address in ("10.254.0.0", "10.254.0.1"):
        assert rank_environment(argv, address, tmp_path)["VLLM_HOST_IP"] == address
    assert "VLLM_HOST_IP" not in rank_environment(argv, "192.0.2.1", tmp_path)
    with pytest.raises(PlanError, match="-n 1 leaves a host without a rank"):
        mpi_plan(envs, ["./a"], ranks=1)


def test_mpirun_over_tcp_uses_ob1_and_the_tcp_btl_on_the_cables(envs):
    ((launch,),) = mpi_plan(envs, ["./allreduce"], ranks=2, transport="tcp")
    argv = launch.argv
    mca = {argv[i + 1]: argv[i + 2] for i, a in enumerate(argv) if a == "--mca"}
    assert mca == {"pml": "ob1", "btl": "tcp,self",
                   "btl_tcp_if_include": "thunderbolt1,thunderbolt10"}
    assert argv.count("--mca") == 3  # no pml ucx left for mpirun to pick
    with pytest.raises(PlanError, match="unknown MPI transport 'verbs': use ucx or tcp"):
        mpi_plan(envs, ["./a"], ranks=2, transport="verbs")


def test_mpi_per_host_device_names_go_to_that_host_only(tmp_path):
    recorded = copy.deepcopy(RECORDED)
    for cable in recorded["tbt-b"]["pairings"][0]["cables"]:
        cable["link"] = cable["link"].replace("thunderbolt", "usb4net")
    ((launch,),) = mpi_plan(cluster_env(recorded, HOSTS), ["./a"], ranks=2)
    line = " ".join(launch.argv)
    assert "--mca btl_tcp_if_include thunderbolt1,thunderbolt10,usb4net1,usb4net10" in line
    assert "-x UCX_NET_DEVICES" not in line
    a = rank_environment(launch.argv, "10.254.0.0", tmp_path)
    b = rank_environment(launch.argv, "10.254.0.1", tmp_path)
    assert a["UCX_NET_DEVICES"] == "thunderbolt1,thunderbolt10"
    assert b["UCX_NET_DEVICES"] == "usb4net1,usb4net10"


def test_ray_head_then_workers_on_cable_addresses(envs):
    (head,), (worker,) = ray_plan(envs, port=6380)
    assert head.argv == ["ray", "start", "--head", "--block", "--node-ip-address=10.254.0.0",
                         "--port=6380"]
    assert head.ready == ["ray", "status", "--address=10.254.0.0:6380"]
    assert head.cleanup == worker.cleanup == ["ray", "stop"]  # daemons outside the group
    assert worker.argv == ["ray", "start", "--block", "--address=10.254.0.0:6380",
                           "--node-ip-address=10.254.0.1"]
    assert worker.env["VLLM_HOST_IP"] == "10.254.0.1"


def test_vllm_over_ray(envs):
    plan = vllm_plan(envs, ["serve", "Qwen/Qwen3-0.6B", "--tensor-parallel-size", "2"])
    (head,), (worker,), (serve,) = plan
    assert head.service and worker.service and not serve.service
    assert serve.host == "tbt-a"
    assert serve.argv == ["vllm", "serve", "Qwen/Qwen3-0.6B", "--tensor-parallel-size", "2",
                          "--distributed-executor-backend", "ray"]
    assert serve.env["RAY_ADDRESS"] == "10.254.0.0:6379"
    assert serve.env["VLLM_HOST_IP"] == "10.254.0.0"
    lines = describe(plan)
    assert lines[0].startswith("[stage 1] tbt-a (service): env ")
    assert lines[-1].endswith("vllm serve Qwen/Qwen3-0.6B --tensor-parallel-size 2 "
                              "--distributed-executor-backend ray")


def test_vllm_multiprocessing_multi_node(envs):
    (stage,) = vllm_plan(envs, ["serve", "m", "--tensor-parallel-size", "2"], backend="mp")
    a, b = (launch.argv for launch in stage)
    assert option(a, "--nnodes") == option(b, "--nnodes") == "2"
    assert (option(a, "--node-rank"), option(b, "--node-rank")) == ("0", "1")
    assert option(a, "--master-addr") == option(b, "--master-addr") == "10.254.0.0"
    assert "--headless" not in a and b[-1] == "--headless"


def test_vllm_arguments_are_checked(envs):
    with pytest.raises(PlanError, match="give vLLM's serve command"):
        vllm_plan(envs, ["m"])
    with pytest.raises(PlanError, match="--distributed-executor-backend is set by tbctl"):
        vllm_plan(envs, ["serve", "m", "--distributed-executor-backend=mp"])
