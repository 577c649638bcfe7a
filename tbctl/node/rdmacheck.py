# SPDX-License-Identifier: MIT
"""`tbctl node rdma-peer`: one end of an RC queue-pair round trip, driven by JSON lines.

Protocol on stdin/stdout (one JSON object per line; everything else goes to stderr):
  1. print {"qpn", "psn", "gid", "rkey", "addr", "length"} (this side's QP and buffer)
  2. read the peer's line of the same shape, move the QP INIT -> RTR -> RTS
  3. print {"ready": true}
  4. client: for each size, RDMA WRITE random bytes into the server's buffer, RDMA READ them
     back into a separate local buffer, compare; print {"ok", "sizes", "rtt_us", ...}
     server: wait for {"done": true} on stdin (the client's pass only touches its memory)
Needs only the standard library and pyverbs (python3-pyverbs).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from typing import Any

DEFAULT_SIZES = (1, 4096, 65536, 1 << 20)
CQ_TIMEOUT_S = 20.0


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _read_line() -> dict[str, Any]:
    line = sys.stdin.readline()
    if not line:
        raise EOFError("the controller closed stdin")
    value = json.loads(line)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {line!r}")
    return value


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tbctl node rdma-peer")
    parser.add_argument("--device", required=True, help="RDMA device, e.g. rxe_thunderbolt0")
    parser.add_argument("--gid-index", type=int, required=True)
    parser.add_argument("--port", type=int, default=1)
    parser.add_argument("--role", choices=("server", "client"), required=True)
    parser.add_argument("--sizes", default=",".join(str(s) for s in DEFAULT_SIZES),
                        help="comma-separated transfer sizes in bytes")
    parser.add_argument("--repeats", type=int, default=5,
                        help="READ round trips timed per size (the median is reported)")
    return parser.parse_args(argv)


class Endpoint:
    """One RC QP with a registered buffer large enough for the biggest transfer."""

    def __init__(self, device: str, port: int, gid_index: int, length: int) -> None:
        import pyverbs.enums as e
        from pyverbs.cq import CQ
        from pyverbs.device import Context
        from pyverbs.mr import MR
        from pyverbs.pd import PD
        from pyverbs.qp import QP, QPAttr, QPCap, QPInitAttr

        self.e = e
        self.port = port
        self.gid_index = gid_index
        self.length = length
        self.ctx = Context(name=device)
        self.pd = PD(self.ctx)
        access = (e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_REMOTE_WRITE
                  | e.IBV_ACCESS_REMOTE_READ)
        # Two buffers: what the client writes from, and where it reads back into, so a
        # READ that silently did nothing cannot compare equal.
        self.mr = MR(self.pd, length, access)
        self.readback = MR(self.pd, length, access)
        self.cq = CQ(self.ctx, 32)
        cap = QPCap(max_send_wr=16, max_recv_wr=16, max_send_sge=1, max_recv_sge=1)
        init = QPInitAttr(qp_type=e.IBV_QPT_RC, scq=self.cq, rcq=self.cq, cap=cap,
                          sq_sig_all=1)
        attr = QPAttr(port_num=port)
        attr.qp_access_flags = access
        self.qp = QP(self.pd, init, attr)  # an attr here moves the QP to INIT
        self.psn = random.getrandbits(24)
        self.gid = str(self.ctx.query_gid(port, gid_index))

    def local_info(self) -> dict[str, Any]:
        return {"qpn": self.qp.qp_num, "psn": self.psn, "gid": self.gid,
                "rkey": self.mr.rkey, "addr": self.mr.buf, "length": self.length}

    def connect(self, peer: dict[str, Any]) -> None:
        from pyverbs.addr import GID, AHAttr, GlobalRoute
        from pyverbs.qp import QPAttr

        e = self.e
        attr = QPAttr(port_num=self.port)
        attr.path_mtu = e.IBV_MTU_1024
        attr.max_dest_rd_atomic = 1
        attr.max_rd_atomic = 1
        attr.min_rnr_timer = 12
        attr.timeout = 14
        attr.retry_cnt = 7
        attr.rnr_retry = 7
        route = GlobalRoute(dgid=GID(peer["gid"]), sgid_index=self.gid_index)
        attr.ah_attr = AHAttr(port_num=self.port, is_global=1, gr=route)
        attr.dest_qp_num = int(peer["qpn"])
        attr.rq_psn = self.psn
        attr.sq_psn = int(peer["psn"])
        self.qp.to_rts(attr)

    def _post_and_wait(self, opcode: int, local_mr: Any, size: int,
                       raddr: int, rkey: int) -> None:
        from pyverbs.wr import SGE, SendWR

        wr = SendWR(opcode=opcode, num_sge=1, sg=[SGE(local_mr.buf, size, local_mr.lkey)])
        wr.set_wr_rdma(rkey, raddr)
        self.qp.post_send(wr)
        deadline = time.monotonic() + CQ_TIMEOUT_S
        while time.monotonic() < deadline:
            count, completions = self.cq.poll(1)
            if count:
                status = completions[0].status
                if status != self.e.IBV_WC_SUCCESS:
                    raise RuntimeError(f"work completion status {status}")
                return
        raise TimeoutError(f"no completion within {CQ_TIMEOUT_S:.0f} s")

    def exchange(self, peer: dict[str, Any], sizes: list[int],
                 repeats: int) -> dict[str, Any]:
        e = self.e
        raddr, rkey = int(peer["addr"]), int(peer["rkey"])
        round_trips_us: list[float] = []
        mismatched: list[int] = []
        for size in sizes:
            payload = os.urandom(size)
            self.mr.write(payload, size, 0)
            self.readback.write(bytes(size), size, 0)
            self._post_and_wait(e.IBV_WR_RDMA_WRITE, self.mr, size, raddr, rkey)
            self._post_and_wait(e.IBV_WR_RDMA_READ, self.readback, size, raddr, rkey)
            if self.readback.read(size, 0) != payload:
                mismatched.append(size)
            if size <= 4096:
                for _ in range(repeats):
                    started = time.perf_counter()
                    self._post_and_wait(e.IBV_WR_RDMA_READ, self.readback, size, raddr, rkey)
                    round_trips_us.append((time.perf_counter() - started) * 1e6)
        return {
            "ok": not mismatched,
            "sizes": sizes,
            "mismatched": mismatched,
            "rtt_us": round(statistics.median(round_trips_us), 1) if round_trips_us else None,
        }


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",") if size]
    if not sizes or min(sizes) < 1:
        print("rdma-peer: --sizes needs positive byte counts", file=sys.stderr)
        return 2
    try:
        endpoint = Endpoint(args.device, args.port, args.gid_index, max(sizes))
        _emit(endpoint.local_info())
        peer = _read_line()
        endpoint.connect(peer)
        _emit({"ready": True})
        if args.role == "client":
            # The controller hands us the server's info only after the server is ready,
            # so the first WRITE never meets a QP still in INIT.
            result = endpoint.exchange(peer, sizes, args.repeats)
            _emit(result)
            return 0 if result["ok"] else 1
        while not _read_line().get("done"):
            pass
        return 0
    except Exception as exc:  # noqa: BLE001 - the controller gets one line whatever broke
        _emit({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
