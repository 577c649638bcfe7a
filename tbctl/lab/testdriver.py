# SPDX-License-Identifier: MIT
"""The local runner for vm-tests/*.py: a subset of the NixOS test driver's API on lab nodes.

Scripts see `start_all`, machines `a`, `b` (and `c`... for bigger labs), `controller` (this
host, with TBCTL_SSH_CONFIG pointing at the lab), `HOST_A`/`HOST_B`, `cable(i)` and
`perftest(server, client, command, address)`, `native_create(machine, links, key,
initiator)` and `check_kernel_log(machine)` (local runner
only). Method
names and behaviour follow nixos/lib/test-driver (succeed raises on a non-zero status,
wait_until_succeeds retries once a second, wait_for_unit fails early on a failed unit).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tbctl.lab import cluster


class MachineError(AssertionError):
    """A command's status was not what the script asked for."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _capture(argv: list[str], timeout: float | None,
             environment: dict[str, str] | None) -> tuple[int, str]:
    """(status, stdout) like the NixOS driver; stderr goes to the log, not the result."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                env=environment)
    except subprocess.TimeoutExpired as exc:
        log(f"timed out after {timeout} s: {argv[-1]}")
        return 124, str(exc.stdout or "")
    if result.stderr.strip():
        log(result.stderr.rstrip())
    return result.returncode, result.stdout


class Machine:
    """Runs shell commands somewhere and offers the NixOS driver's assertions on them."""

    name = "machine"

    def _run(self, command: str, timeout: float | None) -> tuple[int, str]:
        raise NotImplementedError

    def execute(self, command: str, timeout: float | None = 900,
                check_output: bool = True) -> tuple[int, str]:
        started = time.monotonic()
        status, output = self._run(command, timeout)
        log(f"{self.name}: [{status}] {command} ({time.monotonic() - started:.1f} s)")
        return status, output

    def succeed(self, *commands: str, timeout: float | None = None) -> str:
        output = ""
        for command in commands:
            status, out = self.execute(command, timeout=timeout or 900)
            if status != 0:
                raise MachineError(f"{self.name}: command `{command}` failed (exit {status}):"
                                   f"\n{out}")
            output += out
        return output

    def fail(self, *commands: str, timeout: float | None = None) -> str:
        output = ""
        for command in commands:
            status, out = self.execute(command, timeout=timeout or 900)
            if status == 0:
                raise MachineError(f"{self.name}: command `{command}` unexpectedly succeeded:"
                                   f"\n{out}")
            output += out
        return output

    def wait_until_succeeds(self, command: str, timeout: int = 900) -> str:
        deadline = time.monotonic() + timeout
        while True:
            status, output = self.execute(command, timeout=timeout)
            if status == 0:
                return output
            if time.monotonic() > deadline:
                raise MachineError(f"{self.name}: `{command}` still failing after {timeout} s:"
                                   f"\n{output}")
            time.sleep(1)

    def wait_until_fails(self, command: str, timeout: int = 900) -> str:
        deadline = time.monotonic() + timeout
        while True:
            status, output = self.execute(command, timeout=timeout)
            if status != 0:
                return output
            if time.monotonic() > deadline:
                raise MachineError(f"{self.name}: `{command}` still succeeding after "
                                   f"{timeout} s")
            time.sleep(1)

    def wait_for_unit(self, unit: str, timeout: int = 900) -> None:
        deadline = time.monotonic() + timeout
        quoted = shlex.quote(unit)
        while True:
            state = self.execute(f"systemctl show --property=ActiveState --value {quoted}",
                                 timeout=60)[1].strip()
            if state == "active":
                return
            if state == "failed":
                journal = self.execute(f"journalctl -b -u {quoted} --no-pager | tail -30")[1]
                raise MachineError(f"{self.name}: unit {unit} failed:\n{journal}")
            if time.monotonic() > deadline:
                raise MachineError(f"{self.name}: unit {unit} not active after {timeout} s "
                                   f"(state {state!r})")
            time.sleep(1)


class LocalMachine(Machine):
    """This host, as the scripts' `controller`: tbctl runs here and reaches the lab by SSH."""

    def __init__(self, environment: dict[str, str]) -> None:
        self.name = "controller"
        self.environment = environment

    def _run(self, command: str, timeout: float | None) -> tuple[int, str]:
        return _capture(["bash", "-c", command], timeout, self.environment)


class LabMachine(Machine):
    """A lab node, reached over SSH with the lab's own keys and known_hosts."""

    def __init__(self, lab_dir: Path, letter: str) -> None:
        self.lab_dir = lab_dir
        self.letter = letter
        self.name = letter

    @property
    def hostname(self) -> str:
        return f"lab-{self.letter}"

    def _state(self) -> tuple[cluster.LabState, cluster.Node]:
        state = cluster.load(self.lab_dir)
        return state, state.node(self.letter)

    def _run(self, command: str, timeout: float | None) -> tuple[int, str]:
        state, node = self._state()
        argv = cluster.ssh_command(state, node, "--", "bash", "-c", shlex.quote(command))
        return _capture(argv, timeout, None)

    def boot_id(self) -> str:
        return self.succeed("cat /proc/sys/kernel/random/boot_id").strip()

    def start(self) -> None:
        state, node = self._state()
        if cluster.node_pid(state, node) is None:
            cluster.start_node(state, node)
        cluster.wait_for_ssh(state, [node])

    def shutdown(self) -> None:
        state, node = self._state()
        cluster.stop_node(state, node)

    def reboot(self) -> None:
        """Reboots the guest (QEMU stays up: no -no-reboot) and waits for its new boot."""
        before = self.boot_id()
        self.execute("systemctl reboot --no-block", timeout=30)
        state, node = self._state()
        # The shared SSH connection dies with the guest; drop it rather than wait it out.
        cluster.close_ssh_master(state, node)
        deadline = time.monotonic() + cluster.BOOT_TIMEOUT_S
        while time.monotonic() < deadline:
            time.sleep(2)
            status, out = self._run("cat /proc/sys/kernel/random/boot_id", timeout=20)
            if status == 0 and out.strip() and out.strip() != before:
                return
        raise MachineError(f"{self.name}: did not come back from reboot")


class Cable:
    """Cable i between a and b: block() pulls it at both ends, unblock() plugs it back."""

    def __init__(self, lab_dir: Path, cable_id: str) -> None:
        self.lab_dir = lab_dir
        self.cable_id = cable_id

    def block(self) -> None:
        log(f"cable {self.cable_id}: pull")
        cluster.set_cable(cluster.load(self.lab_dir), self.cable_id, False)

    def unblock(self) -> None:
        log(f"cable {self.cable_id}: plug in")
        cluster.set_cable(cluster.load(self.lab_dir), self.cable_id, True)


# perftest calibrates its cycle counter against gettimeofday() when it writes its report,
# after the transfer. Under TCG that sampling is sometimes too noisy ("Correlation
# coefficient r^2: ... < 0.9", then "Can't produce a report", exit 1): a failure of the
# tool's clock, not of the device, so only that message earns another run.
PERFTEST_CLOCK_FAILED = "Can't produce a report"
_CONNECT_FAILED = ("Couldn't connect", "Unable to connect", "Connection refused",
                   "failed to connect")


# tbctl's node-side pairing (tbctl/node/native.py), as the lab image installs it
_NATIVE_CREATE = ("PYTHONPATH=/usr/local/lib/tbctl${{PYTHONPATH:+:$PYTHONPATH}} python3 -c "
                  "'import sys; from tbctl.node import native; "
                  "native.create(\"tbrdma0\", sys.argv[1].split(\",\"), "
                  "bytes.fromhex(sys.argv[2]), initiator=sys.argv[3] == \"1\", "
                  "port=sys.argv[4] or None)' "
                  "{links} {key} {initiator} '{port}'")


def native_create(machine: Machine, links: str, key: str, initiator: bool | int,
                  port: str = "") -> str:
    """Creates tbrdma0 on `machine` over `links` (comma-separated netdevs or `tb:` names)
    with the pairing key (hex), as `tbctl pair --transport native` does on a node; `port`
    is the netdev for the device's addresses when it is not the first link."""
    return machine.succeed(_NATIVE_CREATE.format(links=links, key=key,
                                                 initiator=int(bool(initiator)), port=port))


def perftest(server: Machine, client: Machine, command: str, address: str,
             ready: str | None = None, timeout: int = 300, runs: int = 3,
             scratch: str = "/tmp") -> str:
    """Runs perftest's `command` as server on `server` and as client (towards `address`)
    on `client`; both must exit 0. Returns the client's output. `ready` is a shell test on
    the server that is true once it listens (the client otherwise retries connecting)."""
    outputs, rc, out = "", f"{scratch}/perf.rc", f"{scratch}/perf.out"
    for _ in range(runs):
        server.succeed(f"rm -f {rc} {out}; "
                       f"(timeout {timeout} {command} > {out} 2>&1; "
                       f"echo $? > {rc}) > /dev/null 2>&1 &")
        if ready:
            server.wait_until_succeeds(ready, timeout=60)
        deadline = time.monotonic() + 120
        while True:
            status, client_out = client.execute(f"timeout {timeout} {command} {address} 2>&1",
                                                timeout=timeout + 60)
            if status == 0 or not any(text in client_out for text in _CONNECT_FAILED) \
                    or time.monotonic() > deadline:
                break
            time.sleep(1)
        server.wait_until_succeeds(f"test -s {rc}", timeout=timeout)
        server_status = server.succeed(f"cat {rc}").strip()
        server_out = server.succeed(f"cat {out}")
        if status == 0 and server_status == "0":
            return client_out
        outputs += (f"--- client exit {status} ---\n{client_out}\n"
                    f"--- server exit {server_status} ---\n{server_out}\n")
        if PERFTEST_CLOCK_FAILED not in client_out + server_out:
            break
        log(f"perftest's clock calibration failed (TCG), running again: {command}")
    raise MachineError(f"perftest `{command}` failed:\n{outputs}")


# Signs of kernel trouble the vm-tests scripts fail on (dmesg after each step).
KERNEL_TROUBLE = ("WARNING:", "BUG:", "Oops", "general protection", "UBSAN", "KASAN",
                  "refcount_t", "kmemleak", "Fatal error")
# QEMU's TCG now and then delivers a single-step debug trap inside the kernel with an
# impossible EFLAGS image (reserved bits set, TF on), and the kernel WARNs in
# exc_debug_kernel, whose comment names QEMU leaking #DB into the guest as the known cause
# (seen in CI in __kmalloc under ib_uverbs_post_send). The emulator's fault, not the code
# under test: that one WARNING line is not counted, every other sign is.
_TCG_SPURIOUS_DEBUG_TRAP = re.compile(
    r"WARNING: CPU: \d+ PID: \d+ at arch/x86/kernel/traps\.c:\d+ exc_debug_kernel")
# A user-space program's crash as the kernel's traps handler reports it ("traps: comm[pid]
# general protection fault ip:... in libc.so.6[...]"): that program's failure, which its
# exit status reports to the step that ran it, not the kernel's.
_USER_TRAP = re.compile(r"traps: \S+\[\d+\] general protection fault ip:[0-9a-f]+ ")


def kernel_trouble(log: str, also: tuple[str, ...] = ()) -> str | None:
    """The first sign of trouble in a kernel log (KERNEL_TROUBLE and `also`), or None."""
    counted = "\n".join(line for line in log.splitlines()
                         if not _TCG_SPURIOUS_DEBUG_TRAP.search(line)
                         and not _USER_TRAP.search(line))
    return next((bad for bad in (*KERNEL_TROUBLE, *also) if bad in counted), None)


def check_kernel_log(machine: Machine, also: tuple[str, ...] = ()) -> None:
    """Fails when the machine's kernel log shows trouble (see kernel_trouble)."""
    log = machine.succeed("dmesg")
    bad = kernel_trouble(log, also)
    assert bad is None, f"{machine.name}: kernel log has {bad!r}:\n{log[-3000:]}"


def script_globals(lab_dir: Path) -> dict[str, Any]:
    state = cluster.load(lab_dir)
    environment = dict(os.environ)
    environment["TBCTL_SSH_CONFIG"] = str(cluster.ssh_config_path(state))
    # The controller runs this checkout's tbctl, whatever is installed.
    package_root = str(Path(cluster.tbctl.__file__).resolve().parents[1])
    environment["PYTHONPATH"] = os.pathsep.join(
        [package_root, *filter(None, [environment.get("PYTHONPATH")])])
    machines = {node.letter: LabMachine(lab_dir, node.letter) for node in state.nodes}

    def start_all() -> None:
        for machine in machines.values():
            machine.start()

    def cable(index: int) -> Cable:
        return Cable(lab_dir, f"a-b/{index}")

    namespace: dict[str, Any] = {
        "start_all": start_all,
        "controller": LocalMachine(environment),
        "cable": cable,
        "machines": list(machines.values()),
        "HOST_A": "lab-a",
        "HOST_B": "lab-b",
        "LAB_CABLES": state.cables_per_pair,
        "perftest": perftest,
        "native_create": native_create,
        "check_kernel_log": check_kernel_log,
    }
    namespace.update(machines)
    return namespace


def run_script(path: Path, lab_dir: Path, report: Callable[[str], None] = log) -> float:
    """Runs one vm-tests script against a running lab; returns its wall time."""
    started = time.monotonic()
    code = compile(path.read_text(), str(path), "exec")
    namespace = script_globals(lab_dir)
    try:
        exec(code, namespace)  # noqa: S102 - test scripts are this repo's own code
    except Exception as err:
        # The nodes' kernel logs usually say why; a CI report shows notes with the error.
        for machine in namespace["machines"]:
            status, out = machine.execute("dmesg | tail -n 25", timeout=30)
            err.add_note(f"--- {machine.name}: dmesg | tail (exit {status}) ---\n{out}")
        raise
    elapsed = time.monotonic() - started
    report(f"phase {path.stem}: {elapsed:.1f} s")
    return elapsed
