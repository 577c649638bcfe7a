# SPDX-License-Identifier: MIT
"""`tbctl env --host` and `tbctl run` against two paired netns hosts with real sshd.

The hosts share the test's PID namespace, so pgrep here sees every remote process."""

from __future__ import annotations

import json
import os
import queue
import secrets
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from tbctl.hosts import SshOptions, connected
from tbctl.launch import Launch, run_plan
from tests.integration.conftest import _skip_reason
from tests.netns import Cluster
from tests.output import json_result

pytestmark = pytest.mark.netns

HOSTS = ("tbt-a", "tbt-b")


@pytest.fixture(scope="module")
def paired(tmp_path_factory) -> Iterator[Cluster]:
    """Two hosts joined by thunderbolt1 and thunderbolt10 (a prefix match would mix them),
    paired once for the module."""
    reason = _skip_reason()
    if reason and os.environ.get("CI"):
        pytest.fail(reason)
    if reason:
        pytest.skip(reason)
    cluster = Cluster(tmp_path_factory.mktemp("run"), 2)
    try:
        a, b = cluster.hosts
        for link in ("thunderbolt1", "thunderbolt10"):
            cluster.cable(a, b, link, link)
        for host in (a, b):
            cluster.declare_links(host, ["thunderbolt1", "thunderbolt10"])
        cluster.wait_link_local()
        result = cluster.tbctl("pair", "--yes", *HOSTS)
        assert result.returncode == 0, result.stderr
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def hosts(paired) -> dict:
    """tbctl status --json of both hosts, read once."""
    result = paired.tbctl("status", "--json", *HOSTS)
    assert result.returncode == 0, result.stderr
    return {h["name"]: h for h in json.loads(result.stdout)["result"]["hosts"]}


def address(hosts: dict, name: str) -> str:
    """The host's address on its first cable (thunderbolt1): its node address."""
    return hosts[name]["pairings"][0]["cables"][0]["address"]


def remaining(marker: str) -> list[str]:
    out = subprocess.run(["pgrep", "-af", marker], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


def wait_gone(marker: str, timeout: float = 10) -> list[str]:
    deadline = time.monotonic() + timeout
    while remaining(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    return remaining(marker)


def test_eval_env_gives_exactly_that_hosts_values(paired, hosts):
    cluster = paired
    for name, host in zip(HOSTS, cluster.hosts, strict=True):
        cables = hosts[name]["pairings"][0]["cables"]
        mine = {c["link"]: c["address"] for c in cables}
        command = shlex.join(["python3", "-m", "tbctl", "env", "--host", name, *HOSTS])
        # A shell that holds the other host's value first: eval must replace it.
        script = f'export VLLM_HOST_IP=stale; eval "$({command})"; env -0'
        out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True,
                             env={**os.environ, "TBCTL_SSH_CONFIG": str(cluster.ssh_config)})
        seen = dict(e.split("=", 1) for e in out.stdout.split("\0") if "=" in e)
        assert seen["NCCL_SOCKET_IFNAME"] == "=thunderbolt1,thunderbolt10"
        assert seen["GLOO_SOCKET_IFNAME"] == "thunderbolt1"
        assert seen["VLLM_HOST_IP"] == mine["thunderbolt1"]
        assert seen["MASTER_ADDR"] == address(hosts, "tbt-a")
        assert seen["UCX_NET_DEVICES"] == "thunderbolt1,thunderbolt10"
        assert seen["OMPI_MCA_btl_tcp_if_include"] == "thunderbolt1,thunderbolt10"
        # On the host itself the address is on the interface Gloo binds to.
        (entry,) = host.ip_json("-4", "addr", "show", "dev", seen["GLOO_SOCKET_IFNAME"])
        assert seen["VLLM_HOST_IP"] in [a["local"] for a in entry["addr_info"]]
    a_ip, b_ip = address(hosts, "tbt-a"), address(hosts, "tbt-b")
    assert a_ip != b_ip

    # Both hosts' blocks in one stream: eval'ed on a host, only its own block applies.
    both = cluster.tbctl("env", *HOSTS)
    assert both.returncode == 0, both.stderr
    script = cluster.workdir / "both.sh"
    script.write_text(both.stdout)
    for name, host in zip(HOSTS, cluster.hosts, strict=True):
        out = host.run("bash", "-c", f'VLLM_HOST_IP=unset; eval "$(cat {script})"; '
                                     'echo "$VLLM_HOST_IP $GLOO_SOCKET_IFNAME"')
        assert out == f"{address(hosts, name)} thunderbolt1\n"
    nowhere = subprocess.run(["bash", "-c", f'eval "$(cat {script})"; echo "${{MASTER_ADDR-}}"'],
                             capture_output=True, text=True, check=True)
    assert nowhere.stdout == "\n"  # the controller owns neither address

    as_json = cluster.tbctl("env", "--host", "tbt-b", "--format", "json", *HOSTS)
    assert json.loads(as_json.stdout)["VLLM_HOST_IP"] == b_ip
    wrong = cluster.tbctl("env", "--host", "tbt-c", *HOSTS)
    assert wrong.returncode == 2 and "--host tbt-c is not one of the hosts" in wrong.stderr


def test_run_streams_every_host_and_returns_the_worst_code(paired, hosts):
    program = ('echo "hello from $TBCTL_HOST at $VLLM_HOST_IP"; echo "warn $TBCTL_HOST" >&2; '
               'exit $((TBCTL_NODE_RANK * 5))')
    result = paired.tbctl("run", *HOSTS, "--", "sh", "-c", program)
    assert result.returncode == 5, result.stderr
    for name in HOSTS:
        assert f"[{name}] hello from {name} at {address(hosts, name)}\n" in result.stdout
        assert f"[{name}] warn {name}\n" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("tbctl run: ")


def test_a_failing_host_stops_the_others(paired):
    marker = f"{600 + secrets.randbelow(10**6) / 10**6:.6f}"
    # Rank 0 sleeps in a child and in the foreground: both belong to its process group.
    program = (f'if [ "$TBCTL_NODE_RANK" = 1 ]; then sleep 1; echo failing; exit 3; fi; '
               f"sleep {marker} & sleep {marker}; wait")
    started = time.monotonic()
    result = paired.tbctl("run", *HOSTS, "--", "sh", "-c", program)
    assert result.returncode == 3, result.stderr
    assert time.monotonic() - started < 60
    assert "[tbt-b] failing" in result.stdout
    assert "stopped tbt-a: sh" in result.stderr
    assert wait_gone(marker) == []  # the sleeps and the shells that started them


def test_ctrl_c_stops_every_remote_process(paired):
    marker = f"{700 + secrets.randbelow(10**6) / 10**6:.6f}"
    program = f"echo started; sleep {marker} & sleep {marker}; wait"
    proc = subprocess.Popen(["python3", "-m", "tbctl", "run", *HOSTS, "--", "sh", "-c", program],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TBCTL_SSH_CONFIG": str(paired.ssh_config)})
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    try:
        seen: set[str] = set()
        deadline = time.monotonic() + 60
        while seen != {f"[{h}] started\n" for h in HOSTS} and time.monotonic() < deadline:
            try:
                seen.add(lines.get(timeout=1))
            except queue.Empty:
                pass
        assert len(seen) == 2, seen
        deadline = time.monotonic() + 10
        while len(remaining(f"^sleep {marker}$")) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(remaining(f"^sleep {marker}$")) == 4  # two per host
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "tbctl run: interrupted" in proc.stderr.read()
    assert wait_gone(marker) == []  # the sleeps and the shells that started them


def dry_run(cluster: Cluster, *args: str) -> list[str]:
    result = cluster.tbctl("run", *args)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "Dry run: nothing was started."
    return lines[:-1]


def command_of(line: str) -> list[str]:
    """The argv after the environment of a dry-run line."""
    argv = shlex.split(line.split(": ", 1)[1])
    if argv[0] == "env":
        argv = argv[1:]
        while "=" in argv[0]:
            argv = argv[1:]
    return argv


def test_vllm_dry_run_matches_vllm_and_ray_docs(paired, hosts):
    a_ip, b_ip = address(hosts, "tbt-a"), address(hosts, "tbt-b")
    head, ready, head_stop, worker, worker_stop, serve = dry_run(
        paired, "vllm", "--dry-run", *HOSTS, "--", "serve", "Qwen/Qwen3-0.6B",
        "--tensor-parallel-size", "2")
    assert head.startswith("[stage 1] tbt-a (service): ")
    assert command_of(head) == ["ray", "start", "--head", "--block",
                                f"--node-ip-address={a_ip}", "--port=6379"]
    assert ready == f"[stage 1] tbt-a (ready when): ray status --address={a_ip}:6379"
    assert head_stop == "[stage 1] tbt-a (at the end): ray stop"
    assert worker_stop == "[stage 2] tbt-b (at the end): ray stop"
    assert worker.startswith("[stage 2] tbt-b (service): ")
    assert f"VLLM_HOST_IP={b_ip} " in worker
    assert command_of(worker) == ["ray", "start", "--block", f"--address={a_ip}:6379",
                                  f"--node-ip-address={b_ip}"]
    assert serve.startswith("[stage 3] tbt-a (main): ")
    assert f"VLLM_HOST_IP={a_ip} " in serve
    assert command_of(serve) == ["vllm", "serve", "Qwen/Qwen3-0.6B", "--tensor-parallel-size",
                                 "2", "--distributed-executor-backend", "ray"]

    rank0, rank1 = dry_run(paired, "vllm", "--dry-run", "--backend", "mp", *HOSTS, "--",
                           "serve", "m", "--tensor-parallel-size", "2")
    expected = ["--distributed-executor-backend", "mp", "--nnodes", "2", "--master-addr", a_ip,
                "--master-port", "29500"]
    for rank, line in enumerate((rank0, rank1)):
        argv = command_of(line)
        assert argv[:6] == ["vllm", "serve", "m", "--tensor-parallel-size", "2",
                            "--distributed-executor-backend"]
        assert argv[argv.index("--node-rank") + 1] == str(rank)
        assert all(argv[argv.index(k) + 1] == v for k, v in zip(expected[::2], expected[1::2],
                                                                   strict=True))
    assert command_of(rank1)[-1] == "--headless" and "--headless" not in command_of(rank0)


def test_torchrun_and_mpi_dry_runs(paired, hosts):
    a_ip, b_ip = address(hosts, "tbt-a"), address(hosts, "tbt-b")
    lines = dry_run(paired, "torchrun", "--dry-run", "--master-port", "29555", *HOSTS, "--",
                    "fsdp.py", "--steps", "10")
    for rank, line in enumerate(lines):
        assert command_of(line) == ["torchrun", "--nnodes", "2", "--node-rank", str(rank),
                                    "--nproc-per-node", "1", "--master-addr", a_ip,
                                    "--master-port", "29555", "fsdp.py", "--steps", "10"]
        assert "MASTER_PORT=29555 " in line
    (line,) = dry_run(paired, "mpi", "--dry-run", "-n", "2", *HOSTS, "--", "./pingpong")
    assert line.startswith("[stage 1] tbt-a (main): mpirun ")
    argv = command_of(line)
    assert " ".join(argv[:10]) == ("mpirun --mca btl_tcp_if_include thunderbolt1,thunderbolt10 "
                                  "--mca pml ucx --mca pml_ucx_devices any")
    assert ["--mca", "pml_ucx_tls", "any"] == argv[10:13]
    assert "-x UCX_TLS=tcp,sm,self" in " ".join(argv)
    # One context: mpirun's own host as localhost (Open MPI 5), tbt-b at its address; each
    # host's VLLM_HOST_IP set by a guard on the address it owns.
    host_list = argv.index("--host")
    assert argv[host_list - 2:host_list + 2] == ["-n", "2", "--host", f"localhost:1,{b_ip}:1"]
    assert argv[host_list + 2:host_list + 4] == ["sh", "-c"]
    assert argv[host_list + 5:] == ["tbctl-mpi", "./pingpong"]
    guard = argv[host_list + 4]
    for ip in (a_ip, b_ip):
        assert f"if ip -4 -o addr show to {ip}/32 2>/dev/null | grep -q .; then export " \
               f"VLLM_HOST_IP={ip};" in guard
    (tcp,) = dry_run(paired, "mpi", "--dry-run", "--transport", "tcp", "-n", "2", *HOSTS, "--",
                     "./pingpong")
    argv = command_of(tcp)
    assert " ".join(argv[:11]) == ("mpirun --mca btl tcp,self --mca btl_tcp_if_include "
                                   "thunderbolt1,thunderbolt10 --mca pml ob1 -x")


def test_generic_dry_run(paired, hosts):
    lines = dry_run(paired, "--dry-run", *HOSTS, "--", "python3", "-c", "print('hi there')")
    for rank, (name, line) in enumerate(zip(HOSTS, lines, strict=True)):
        assert line.startswith(f"[stage 1] {name} (main): env ")
        assert f"VLLM_HOST_IP={address(hosts, name)} " in line
        assert f"TBCTL_NODE_RANK={rank} " in line
        assert command_of(line) == ["python3", "-c", "print('hi there')"]


def test_run_json_reports_the_plan_and_the_exit_codes(paired, hosts):
    dry = paired.tbctl("run", "--dry-run", "--json", *HOSTS, "--", "sh", "-c", "exit 0")
    plan = json_result(dry, "run")
    assert dry.returncode == 0 and plan["dry_run"] and plan["exit_code"] is None
    assert plan["node_addresses"] == {h: address(hosts, h) for h in HOSTS}
    assert [(x["stage"], x["host"], x["role"], x["argv"]) for x in plan["launches"]] == [
        (1, h, "main", ["sh", "-c", "exit 0"]) for h in HOSTS]
    assert plan["launches"][1]["env"]["TBCTL_NODE_RANK"] == "1"
    # A real run: stdout is the envelope alone, the programs' output goes to stderr.
    ran = paired.tbctl("run", "--json", *HOSTS, "--", "sh", "-c",
                       'echo "out $TBCTL_HOST"; exit $((TBCTL_NODE_RANK * 4))')
    report = json_result(ran, "run")
    assert ran.returncode == 4 and report["exit_code"] == 4 and not report["dry_run"]
    assert report["codes"] == {"tbt-a: sh": 0, "tbt-b: sh": 4}
    assert "[tbt-b] out tbt-b" in ran.stderr


def test_run_refuses_bad_input_in_one_line(paired):
    one = paired.tbctl("run", "tbt-a", "--", "true")
    assert one.returncode == 5 and "name at least two paired hosts" in one.stderr
    none = paired.tbctl("run", *HOSTS)
    assert none.returncode == 5 and "no program given" in none.stderr
    assert len(none.stderr.strip().splitlines()) == 1


def run_directly(cluster: Cluster, plan) -> tuple:
    lines: list[tuple[str, str]] = []
    with connected(list(HOSTS), SshOptions(str(cluster.ssh_config))) as conns:
        result = run_plan(plan, dict(zip(HOSTS, conns, strict=True)),
                          lambda label, line, _err: lines.append((label, line)))
    return result, lines


def test_services_wait_for_readiness_and_are_cleaned_up(paired, tmp_path):
    """What run ray/vllm rely on, with stand-ins for ray (the hosts share this filesystem)."""
    marker = f"{800 + secrets.randbelow(10**6) / 10**6:.6f}"
    flag, cleaned = tmp_path / "ready", tmp_path / "cleaned"
    service = Launch("tbt-a", ["sh", "-c", f"sleep 1; touch {flag}; sleep {marker}"],
                     service=True, ready=["test", "-e", str(flag)],
                     cleanup=["sh", "-c", f"echo cleanup >> {cleaned}"])
    main = Launch("tbt-b", ["sh", "-c", f"test -e {flag} && echo saw-ready"])
    result, lines = run_directly(paired, [[service], [main]])
    assert (result.exit_code, result.reason) == (0, "every main process ended")
    assert ("tbt-b", "saw-ready") in lines  # the main stage started after the check passed
    assert result.stopped == ["tbt-a: sh"] and result.codes == {"tbt-b: sh": 0}
    assert cleaned.read_text() == "cleanup\n"
    assert wait_gone(marker) == []

    # A service that ends early fails the run and stops the rest.
    early = Launch("tbt-a", ["sh", "-c", "echo bye"], service=True)
    waiting = Launch("tbt-b", ["sleep", marker])
    result, lines = run_directly(paired, [[early, waiting]])
    assert result.exit_code == 1 and result.reason == "tbt-a: sh exited 0"
    assert result.stopped == ["tbt-b: sleep"]
    assert wait_gone(marker) == []
