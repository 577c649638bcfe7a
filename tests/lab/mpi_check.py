# SPDX-License-Identifier: MIT
"""An MPI ping-pong and all-reduce (mpi4py) that every rank checks exactly.

Copied into the lab guests by tests/lab/test_lab_vm.py and started with `tbctl run mpi`.
Rank 0 sends random buffers of growing size to rank 1, which sends them back; both compare
them byte for byte. Then every rank all-reduces integer arrays seeded by (rank, size) and
compares the sum with its own recomputation of every rank's contribution.
"""

from __future__ import annotations

import socket
import sys
import time

import numpy as np
from mpi4py import MPI

SIZES = (1, 4096, 1 << 20)
SEED = 20261201


def contribution(rank: int, size: int) -> np.ndarray:
    generator = np.random.default_rng(SEED + 1_000_003 * rank + size)
    return generator.integers(-(1 << 40), 1 << 40, size, dtype=np.int64)


def main() -> int:
    comm = MPI.COMM_WORLD
    rank, world = comm.Get_rank(), comm.Get_size()
    where = f"rank {rank}/{world} on {socket.gethostname()}"
    if world < 2:
        print(f"{where}: needs at least 2 ranks", flush=True)
        return 2
    for size in SIZES:
        message = np.random.default_rng(SEED + size).integers(0, 256, size, dtype=np.uint8)
        if rank == 0:
            echo = np.empty_like(message)
            started = time.perf_counter()
            comm.Send(message, dest=1, tag=size)
            comm.Recv(echo, source=1, tag=size)
            rtt = (time.perf_counter() - started) * 1e6
            if not np.array_equal(echo, message):
                print(f"{where}: ping-pong of {size} B came back changed", flush=True)
                return 1
            print(f"{where}: ping-pong {size} B verified, {rtt:.0f} us round trip",
                  flush=True)
        elif rank == 1:
            received = np.empty_like(message)
            comm.Recv(received, source=0, tag=size)
            if not np.array_equal(received, message):
                print(f"{where}: ping of {size} B arrived changed", flush=True)
                return 1
            comm.Send(received, dest=0, tag=size)
    elements = 0
    for size in SIZES:
        result = np.empty(size, dtype=np.int64)
        comm.Allreduce(contribution(rank, size), result, op=MPI.SUM)
        expected = sum(contribution(r, size) for r in range(world))
        if not np.array_equal(result, expected):
            print(f"{where}: all-reduce of {size} elements differs in "
                  f"{int((result != expected).sum())}", flush=True)
            return 1
        elements += size
    print(f"{where}: all-reduce verified ({len(SIZES)} arrays, {elements} elements)",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
