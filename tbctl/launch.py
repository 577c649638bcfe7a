# SPDX-License-Identifier: MIT
"""Launch a workload on every paired host with that host's environment (tbctl.envvars).

A plan is a list of stages; each stage starts one process per host it names, and the next
stage starts once every process of this stage passed its readiness check. Services (a Ray
head and its workers) run until the main processes end; then tbctl stops them.

Each remote process runs as `exec sh -c 'echo TBCTL_PGID $$; env K=V... PROGRAM...; exit $?'`:
sshd makes that shell a session and process-group leader, so `kill -- -PGID` stops the
program and everything it started, and the shell reports a program killed by a signal as
128+N (paramiko drops ssh's exit-signal).
"""

from __future__ import annotations

import shlex
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tbctl.connection import Connection
from tbctl.envvars import HostEnv
from tbctl.errors import PlanError, TbctlError

PGID_MARK = "TBCTL_PGID "
DEFAULT_RAY_PORT = 6379
STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL (ray start --block cleans up)
READY_TIMEOUT = 300.0
EXIT_INTERRUPTED = 130  # like a shell after Ctrl-C
EXIT_NO_STATUS = 255  # the ssh channel closed without an exit status

Emit = Callable[[str, str, bool], None]  # (label, line, is_stderr)


@dataclass(frozen=True)
class Launch:
    """One process on one host."""

    host: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    service: bool = False  # runs until the main processes end, then tbctl stops it
    ready: list[str] | None = None  # a command run on the host until it exits 0
    cleanup: list[str] | None = None  # run on the host after the process ended or was stopped
    cwd: str | None = None

    def command_line(self) -> str:
        """What runs on the host, as a shell command line (what --dry-run prints)."""
        env = [f"{k}={v}" for k, v in self.env.items()]
        line = shlex.join(["env", *env, *self.argv] if env else self.argv)
        return f"cd {shlex.quote(self.cwd)} && {line}" if self.cwd else line

    def remote_command(self) -> str:
        script = f'echo "{PGID_MARK}$$"; {self.command_line()}; exit $?'
        return f"exec sh -c {shlex.quote(script)}"


Plan = list[list[Launch]]


def _base_env(env: HostEnv, count: int) -> dict[str, str]:
    # Output goes to a pipe, not a terminal: unbuffered Python streams it line by line.
    return {**env.variables, "TBCTL_HOST": env.host, "TBCTL_NODE_RANK": str(env.rank),
            "TBCTL_NNODES": str(count), "PYTHONUNBUFFERED": "1"}


def _ordered(envs: dict[str, HostEnv]) -> list[HostEnv]:
    return sorted(envs.values(), key=lambda e: e.rank)


def exec_plan(envs: dict[str, HostEnv], program: Sequence[str], cwd: str | None = None) -> Plan:
    """The same program on every host, each with its own environment."""
    if not program:
        raise PlanError("no program given: put it after --, e.g. tbctl run A B -- hostname")
    hosts = _ordered(envs)
    return [[Launch(e.host, list(program), _base_env(e, len(hosts)), cwd=cwd) for e in hosts]]


def torchrun_plan(envs: dict[str, HostEnv], script: Sequence[str], nproc_per_node: int = 1,
                  torchrun: str = "torchrun", cwd: str | None = None) -> Plan:
    """torchrun's static rendezvous on rank 0's cable address (torchrun --help: --nnodes,
    --node-rank, --nproc-per-node, --master-addr, --master-port)."""
    if not script:
        raise PlanError("no training script given: put it after --, "
                        "e.g. tbctl run torchrun A B -- train.py --epochs 1")
    hosts = _ordered(envs)
    stage = []
    for e in hosts:
        argv = [torchrun, "--nnodes", str(len(hosts)), "--node-rank", str(e.rank),
                "--nproc-per-node", str(nproc_per_node), "--master-addr", e.master_addr,
                "--master-port", e.variables["MASTER_PORT"], *script]
        stage.append(Launch(e.host, argv, _base_env(e, len(hosts)), cwd=cwd))
    return [stage]


def _split_ranks(count: int, hosts: int) -> list[int]:
    return [count // hosts + (1 if i < count % hosts else 0) for i in range(hosts)]


MPI_TRANSPORTS = ("ucx", "tcp")


def mpi_plan(envs: dict[str, HostEnv], program: Sequence[str], ranks: int,
             mpirun: str = "mpirun", extra: Sequence[str] = (), cwd: str | None = None,
             transport: str = "ucx") -> Plan:
    """One mpirun on rank 0's host. Remote ranks are reached by mpirun itself (ssh to the
    cable addresses); `-x` exports the variables that are equal on every host, and a
    `sh -c` guard per host in front of the program sets the ones that differ.

    transport ucx: the pml ucx of tbctl env (RDMA where UCX can use the device); tcp: Open
    MPI's ob1 with its TCP BTL on the cables alone (no UCX, no RDMA), for hosts whose RDMA
    device UCX cannot drive yet."""
    if transport not in MPI_TRANSPORTS:
        raise PlanError(f"unknown MPI transport '{transport}': use ucx or tcp")
    if not program:
        raise PlanError("no MPI program given: put it after --, e.g. "
                        "tbctl run mpi -n 2 A B -- ./allreduce")
    hosts = _ordered(envs)
    if ranks < len(hosts):
        raise PlanError(f"-n {ranks} leaves a host without a rank: use -n {len(hosts)} or more")
    per_host = _split_ranks(ranks, len(hosts))
    exported = {k for k in hosts[0].variables if not k.startswith("OMPI_MCA_")}
    common = {k for k in exported
              if all(e.variables.get(k) == hosts[0].variables[k] for e in hosts)}
    # MCA parameters are global to the job: the tcp interface lists of all hosts together.
    mca = {k.removeprefix("OMPI_MCA_"): v for k, v in hosts[0].variables.items()
           if k.startswith("OMPI_MCA_")}
    links = [n for e in hosts for n in e.variables["OMPI_MCA_btl_tcp_if_include"].split(",")]
    mca["btl_tcp_if_include"] = ",".join(dict.fromkeys(links))
    if transport == "tcp":
        mca = {name: value for name, value in mca.items() if not name.startswith("pml_ucx_")}
        mca.update(pml="ob1", btl="tcp,self")
    argv = [mpirun]
    for name, value in sorted(mca.items()):
        argv += ["--mca", name, value]
    argv += list(extra)
    for key in sorted(common):
        argv += ["-x", f"{key}={hosts[0].variables[key]}"]
    # One context over every host: Open MPI 5's mpirun (PRRTE) maps no slot to
    # `--host <its own host's address>` (openpmix/prrte#2258), so rank 0's host, where
    # mpirun runs, is `localhost`, and an MPMD context per host with a --host of its own
    # crashes Debian's mpirun 5.0.7. Rank 0 reaches each other host at its node address.
    hostlist = ",".join(f"{'localhost' if e.rank == 0 else e.node_address}:{count}"
                        for e, count in zip(hosts, per_host, strict=True))
    argv += ["-n", str(ranks), "--host", hostlist]
    differing = sorted(exported - common)
    if differing:
        # The variables that differ between hosts, each host's set where it owns its node
        # address (the guard `tbctl env` puts around each host's block).
        guards = [f"if ip -4 -o addr show to {shlex.quote(e.node_address + '/32')} "
                  f"2>/dev/null | grep -q .; then "
                  + " ".join(f"export {k}={shlex.quote(e.variables[k])};" for k in differing)
                  + " fi" for e in hosts]
        argv += ["sh", "-c", "; ".join([*guards, 'exec "$@"']), "tbctl-mpi"]
    return [[Launch(hosts[0].host, argv + list(program), cwd=cwd)]]


def ray_plan(envs: dict[str, HostEnv], port: int = DEFAULT_RAY_PORT, ray: str = "ray",
             extra: Sequence[str] = (), service: bool = False) -> Plan:
    """A Ray head on rank 0 and a worker on every other host, all on cable addresses
    (Ray docs: ray start --head --port, --address HEAD:PORT, --node-ip-address, --block)."""
    hosts = _ordered(envs)
    head = hosts[0]
    address = f"{head.node_address}:{port}"
    head_launch = Launch(
        head.host,
        [ray, "start", "--head", "--block", f"--node-ip-address={head.node_address}",
         f"--port={port}", *extra],
        _base_env(head, len(hosts)), service=service,
        ready=[ray, "status", f"--address={address}"], cleanup=[ray, "stop"])
    workers = [Launch(e.host,
                      [ray, "start", "--block", f"--address={e.master_addr}:{port}",
                       f"--node-ip-address={e.node_address}", *extra],
                      _base_env(e, len(hosts)), service=service, cleanup=[ray, "stop"])
               for e in hosts[1:]]
    return [[head_launch], workers]


def vllm_plan(envs: dict[str, HostEnv], args: Sequence[str], backend: str = "ray",
              port: int = DEFAULT_RAY_PORT, vllm: str = "vllm", ray: str = "ray") -> Plan:
    """vLLM across the hosts (docs: Parallelism and Scaling, multi-node deployment).

    ray: start a Ray cluster on the cable addresses, then `vllm serve ...
    --distributed-executor-backend ray` on rank 0, with VLLM_HOST_IP set on every node.
    mp: `vllm serve ... --nnodes N --node-rank i --master-addr RANK0 [--headless]` on each
    host (vLLM's multiprocessing multi-node mode).
    """
    args = list(args)
    if not args or args[0] != "serve":
        raise PlanError("give vLLM's serve command after --, e.g. "
                        "tbctl run vllm A B -- serve MODEL --tensor-parallel-size 2")
    owned = ("--distributed-executor-backend", "--nnodes", "--node-rank", "--master-addr",
             "--master-port", "--headless")
    clash = [a.split("=", 1)[0] for a in args if a.split("=", 1)[0] in owned]
    if clash:
        raise PlanError(f"{clash[0]} is set by tbctl run vllm (--backend {backend}): "
                        "remove it from the vllm arguments")
    hosts = _ordered(envs)
    if backend == "ray":
        plan = ray_plan(envs, port=port, ray=ray, service=True)
        head = hosts[0]
        serve = Launch(head.host, [vllm, *args, "--distributed-executor-backend", "ray"],
                       {**_base_env(head, len(hosts)),
                        "RAY_ADDRESS": f"{head.node_address}:{port}"})
        return [*plan, [serve]]
    if backend == "mp":
        stage = []
        for e in hosts:
            argv = [vllm, *args, "--distributed-executor-backend", "mp",
                    "--nnodes", str(len(hosts)), "--node-rank", str(e.rank),
                    "--master-addr", e.master_addr, "--master-port", e.variables["MASTER_PORT"]]
            if e.rank:
                argv.append("--headless")
            stage.append(Launch(e.host, argv, _base_env(e, len(hosts))))
        return [stage]
    raise PlanError(f"unknown vLLM backend '{backend}': use ray or mp")


def describe(plan: Plan) -> list[str]:
    """One line per process: stage, host, role and the exact command line."""
    lines = []
    for number, stage in enumerate(plan, 1):
        for launch in stage:
            role = "service" if launch.service else "main"
            lines.append(f"[stage {number}] {launch.host} ({role}): {launch.command_line()}")
            if launch.ready:
                lines.append(f"[stage {number}] {launch.host} (ready when): "
                             f"{shlex.join(launch.ready)}")
            if launch.cleanup:
                lines.append(f"[stage {number}] {launch.host} (at the end): "
                             f"{shlex.join(launch.cleanup)}")
    return lines


# ------------------------------------------------------------------ running


class RemoteProcess:
    """One launched process: its ssh channel, output readers and process group."""

    def __init__(self, conn: Connection, launch: Launch, emit: Emit) -> None:
        self.conn = conn
        self.launch = launch
        self.label = launch.host
        self.key = f"{launch.host}: {launch.argv[0]}"
        self.emit = emit
        self.pgid: int | None = None
        self.pgid_known = threading.Event()
        self.stopped = False  # tbctl stopped it: its exit status is not the program's verdict
        assert conn.client is not None, "open() first"
        transport = conn.client.get_transport()
        assert transport is not None
        self.channel = transport.open_session()
        self.channel.exec_command(launch.remote_command())
        self.channel.shutdown_write()  # no input: a program reading stdin gets EOF, not a hang
        self.readers = [threading.Thread(target=self._read, args=(False,), daemon=True),
                        threading.Thread(target=self._read, args=(True,), daemon=True)]
        for reader in self.readers:
            reader.start()

    def _read(self, stderr: bool) -> None:
        stream = self.channel.makefile_stderr("rb") if stderr else self.channel.makefile("rb")
        for raw in stream:
            line = raw.decode(errors="replace").rstrip("\r\n")
            if not stderr and self.pgid is None and line.startswith(PGID_MARK):
                self.pgid = int(line[len(PGID_MARK):])
                self.pgid_known.set()
                continue
            self.emit(self.label, line, stderr)
        if not stderr:
            self.pgid_known.set()

    def done(self) -> bool:
        return bool(self.channel.exit_status_ready())

    def exit_code(self) -> int:
        for reader in self.readers:
            reader.join(timeout=5)
        status = self.channel.recv_exit_status()
        return EXIT_NO_STATUS if status < 0 else status

    def kill(self, name: str) -> None:
        self.pgid_known.wait(timeout=10)
        if self.pgid is None or self.done():
            return
        try:
            self.conn.run(f"kill -{name} -- -{self.pgid} 2>/dev/null", timeout=10)
        except Exception:  # noqa: BLE001 - the connection may be gone; closing ends the rest
            pass

    def close(self) -> None:
        self.channel.close()


def _stop(procs: list[RemoteProcess]) -> None:
    """SIGTERM every live process group, SIGKILL what is left after STOP_GRACE, then run the
    cleanup commands (`ray stop` catches daemons that left the process group)."""
    # A second Ctrl-C must not cut the stopping short and leave processes behind.
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None
    try:
        _terminate(procs)
        for p in procs:
            if p.launch.cleanup:
                try:
                    p.conn.run(shlex.join(p.launch.cleanup), timeout=60)
                except TbctlError as exc:  # the host is gone: nothing left to clean there
                    p.emit(p.label, f"tbctl: {shlex.join(p.launch.cleanup)} failed: {exc}", True)
    finally:
        if main_thread and previous is not None:
            signal.signal(signal.SIGINT, previous)


def _terminate(procs: list[RemoteProcess]) -> None:
    live = [p for p in procs if not p.done()]
    for p in live:
        p.stopped = True
    threads = [threading.Thread(target=p.kill, args=("TERM",)) for p in live]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deadline = time.monotonic() + STOP_GRACE
    while time.monotonic() < deadline and any(not p.done() for p in live):
        time.sleep(0.05)
    for p in live:
        if not p.done():
            p.kill("KILL")


def _wait_ready(conn: Connection, launch: Launch, procs: list[RemoteProcess],
                timeout: float) -> str | None:
    """None when launch.ready succeeds on its host, else why not."""
    assert launch.ready is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        failed = next((p for p in procs if p.done()), None)
        if failed:
            return f"{failed.key} ended before {launch.host} was ready"
        status, _, _ = conn.run(shlex.join(launch.ready), timeout=30)
        if status == 0:
            return None
        time.sleep(1)
    return f"{launch.host}: not ready after {timeout:.0f}s ({shlex.join(launch.ready)})"


@dataclass
class RunResult:
    exit_code: int
    codes: dict[str, int]  # "host: program" -> exit code, for processes that ended on their own
    stopped: list[str]  # "host: program" of the processes tbctl stopped
    reason: str  # one line: what ended the run


def run_plan(plan: Plan, conns: dict[str, Connection], emit: Emit,
             ready_timeout: float = READY_TIMEOUT, poll: float = 0.05) -> RunResult:
    """Run the plan; stop everything when one process fails or on KeyboardInterrupt.

    Exit code: the worst (highest) code of the processes that ended on their own; a service
    that ends before the main processes counts as a failure (1 if it exited 0); a failed
    readiness check is 1; 130 after Ctrl-C.
    """
    procs: list[RemoteProcess] = []
    reason = ""
    failed = interrupted = False
    try:
        for stage in plan:
            for launch in stage:
                procs.append(RemoteProcess(conns[launch.host], launch, emit))
            for launch in stage:
                why = _wait_ready(conns[launch.host], launch, procs, ready_timeout) \
                    if launch.ready else None
                if why:
                    reason, failed = why, True
                    break
            if failed:
                break
        while not reason:
            bad = [p for p in procs if p.done() and (p.launch.service or p.exit_code() != 0)]
            if bad:
                reason, failed = f"{bad[0].key} exited {bad[0].exit_code()}", True
            elif all(p.done() for p in procs if not p.launch.service):
                reason = "every main process ended"
            else:
                time.sleep(poll)
    except KeyboardInterrupt:
        interrupted, reason = True, "interrupted"
    finally:
        _stop(procs)
    codes = {}
    for p in procs:
        # Still running after SIGKILL means the host is unreachable: do not wait for it.
        code = p.exit_code() if p.done() else EXIT_NO_STATUS
        if not p.stopped:
            codes[p.key] = code or (1 if p.launch.service else 0)
        p.close()
    stopped = [p.key for p in procs if p.stopped]
    if interrupted:
        exit_code = EXIT_INTERRUPTED
    else:
        exit_code = max([*codes.values(), 1 if failed else 0])
    return RunResult(exit_code, codes, stopped, reason)
