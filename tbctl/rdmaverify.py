# SPDX-License-Identifier: MIT
"""Controller side of the pyverbs round trip: runs `tbctl node rdma-peer` on both ends.

`verify_cable` only needs two callables that start the node agent on each host and return
a channel with send(obj) / recv(timeout) -> dict / close() -> int (what the lead's
Connection.start_agent returns; tests use an ssh subprocess with the same shape). The
server is connected first and only then is its info handed to the client, so the client's
first RDMA WRITE never reaches a server QP that is not yet ready to receive.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

DEFAULT_SIZES = (1, 4096, 65536, 1 << 20)


class AgentChannel(Protocol):
    def send(self, obj: dict[str, Any]) -> None: ...

    def recv(self, timeout: float) -> dict[str, Any]: ...

    def close(self) -> int: ...


StartAgent = Callable[[list[str]], AgentChannel]


def peer_args(device: str, gid_index: int, role: str, sizes: Sequence[int]) -> list[str]:
    return ["rdma-peer", "--device", device, "--gid-index", str(gid_index), "--role", role,
            "--sizes", ",".join(str(size) for size in sizes)]


def verify_cable(start_a: StartAgent, start_b: StartAgent, *, device_a: str, device_b: str,
                 gid_index_a: int, gid_index_b: int, sizes: Sequence[int] = DEFAULT_SIZES,
                 timeout: float = 120.0) -> dict[str, Any]:
    """RC WRITE then READ of random buffers, a = client, b = server; never raises on a
    remote failure: the result says {"ok": False, "error": ...} instead."""
    started = time.monotonic()
    server = start_b(peer_args(device_b, gid_index_b, "server", sizes))
    client = None
    try:
        server_info = _expect(server.recv(timeout), "qpn", "server")
        client = start_a(peer_args(device_a, gid_index_a, "client", sizes))
        client_info = _expect(client.recv(timeout), "qpn", "client")
        server.send(client_info)
        _expect(server.recv(timeout), "ready", "server")
        client.send(server_info)
        _expect(client.recv(timeout), "ready", "client")
        result = client.recv(timeout)
        result.setdefault("ok", False)
        result["seconds"] = round(time.monotonic() - started, 2)
        result["client_gid"] = client_info.get("gid")
        result["server_gid"] = server_info.get("gid")
        return result
    except (VerifyError, TimeoutError, EOFError, ValueError) as exc:
        return {"ok": False, "error": str(exc), "seconds": round(time.monotonic() - started, 2)}
    finally:
        if client is not None:
            client.close()
        try:
            server.send({"done": True})
        except (OSError, ValueError):
            pass
        server.close()


class VerifyError(Exception):
    pass


def _expect(message: dict[str, Any], key: str, who: str) -> dict[str, Any]:
    if "error" in message:
        raise VerifyError(f"{who}: {message['error']}")
    if key not in message:
        raise VerifyError(f"{who}: expected {key!r}, got {message}")
    return message


class SubprocessAgent:
    """An AgentChannel over a local command's stdin/stdout (e.g. `ssh host tbctl node ...`)."""

    def __init__(self, command: list[str]) -> None:
        self.command = command
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)

    def send(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        if self.proc.stdin.closed:
            return
        try:
            self.proc.stdin.write(json.dumps(obj) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass

    def recv(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no reply from `{' '.join(self.command)}` in {timeout} s")
            ready, _, _ = select.select([self.proc.stdout], [], [], remaining)
            if not ready:
                continue
            line = self.proc.stdout.readline()
            if not line:
                stderr = self.proc.stderr.read() if self.proc.stderr else ""
                raise EOFError(f"`{' '.join(self.command)}` ended: {stderr.strip()[-500:]}")
            line = line.strip()
            if line.startswith("{"):
                return dict(json.loads(line))

    def close(self) -> int:
        if self.proc.stdin and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


# ---- command line: `python3 -m tbctl.rdmaverify HOST_A HOST_B --netdev thunderbolt0` ------

NODE_AGENT_FALLBACK = (
    "python3 -c 'import sys; sys.path.insert(0, \"/usr/local/lib/tbctl\"); "
    "from tbctl.node.rdmacheck import main; sys.exit(main(sys.argv[1:]))'"
)


def _ssh_base(host: str) -> list[str]:
    config = os.environ.get("TBCTL_SSH_CONFIG")
    return ["ssh", *(["-F", config] if config else []), host]


def _ssh_run(host: str, command: str) -> tuple[int, str]:
    result = subprocess.run([*_ssh_base(host), command], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=120, check=False)
    return result.returncode, result.stdout


def _node_agent(host: str) -> str:
    """`tbctl node rdma-peer` where the node's tbctl has it, else rdmacheck directly."""
    status, output = _ssh_run(host, "tbctl node rdma-peer --help")
    if status == 0 and "--gid-index" in output:
        return "tbctl node"
    return NODE_AGENT_FALLBACK


def ssh_starter(host: str) -> StartAgent:
    agent = _node_agent(host)

    def start(args: list[str]) -> AgentChannel:
        words = " ".join(shlex.quote(word) for word in args)
        return SubprocessAgent([*_ssh_base(host), f"{agent} {words}"])

    return start


def main(argv: list[str]) -> int:
    from tbctl.bench import perf

    parser = argparse.ArgumentParser(prog="python3 -m tbctl.rdmaverify")
    parser.add_argument("host_a")
    parser.add_argument("host_b")
    parser.add_argument("--netdev", required=True, help="cable NIC; the device is rxe_NETDEV")
    parser.add_argument("--sizes", default=",".join(str(s) for s in DEFAULT_SIZES))
    args = parser.parse_args(argv)
    device = f"rxe_{args.netdev}"
    result = verify_cable(
        ssh_starter(args.host_a), ssh_starter(args.host_b), device_a=device,
        device_b=device,
        gid_index_a=perf.roce_v2_ipv4_gid_index(_ssh_run, args.host_a, device),
        gid_index_b=perf.roce_v2_ipv4_gid_index(_ssh_run, args.host_b, device),
        sizes=[int(size) for size in args.sizes.split(",")],
    )
    print(json.dumps(result))
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
