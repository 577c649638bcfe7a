# SPDX-License-Identifier: MIT
"""An MPI ping-pong and all-reduce of random data, 1 B to 4 MiB, checked on every rank.

Copied into the lab guests by tests/driver/test_consumers_vm.py and started by mpirun with
pml ucx on one RDMA device. Rank 0 sends random bytes to rank 1, which checks and returns
them; rank 0 checks the echo. Every rank then all-reduces (SUM, uint8, wrapping) random
bytes seeded by (rank, size) and compares the result with its own recomputation of every
rank's contribution. The 1 MiB all-reduce is timed (median of a few runs) for the
side-by-side table. Any mismatch exits non-zero on the rank that saw it.
"""

from __future__ import annotations

import socket
import statistics
import sys
import time

import numpy as np
from mpi4py import MPI

SIZES = (1, 7, 64, 4096, 65536, 1 << 20, 4 << 20)
SEED = 20261201
TIMED = 1 << 20
TIMED_RUNS = 5


def contribution(rank: int, size: int) -> np.ndarray:
    return np.random.default_rng(SEED + 1_000_003 * rank + size).integers(
        0, 256, size, dtype=np.uint8)


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
            echo = np.zeros_like(message)
            started = time.perf_counter()
            comm.Send(message, dest=1, tag=size)
            comm.Recv(echo, source=1, tag=size)
            rtt = (time.perf_counter() - started) * 1e6
            if not np.array_equal(echo, message):
                print(f"{where}: ping-pong {size} B came back changed", flush=True)
                return 1
            print(f"{where}: ping-pong {size} B verified, {rtt:.0f} us round trip",
                  flush=True)
        elif rank == 1:
            received = np.zeros_like(message)
            comm.Recv(received, source=0, tag=size)
            if not np.array_equal(received, message):
                print(f"{where}: ping of {size} B arrived changed", flush=True)
                return 1
            comm.Send(received, dest=0, tag=size)
    for size in SIZES:
        expected = np.zeros(size, dtype=np.uint64)
        for other in range(world):
            expected += contribution(other, size)
        expected = (expected % 256).astype(np.uint8)
        mine = contribution(rank, size)
        runs = TIMED_RUNS if size == TIMED else 1
        times = []
        for _ in range(runs):
            result = np.zeros(size, dtype=np.uint8)
            comm.Barrier()
            started = time.perf_counter()
            comm.Allreduce(mine, result, op=MPI.SUM)
            times.append(time.perf_counter() - started)
            if not np.array_equal(result, expected):
                print(f"{where}: allreduce {size} B differs", flush=True)
                return 1
        line = f"{where}: allreduce {size} B verified"
        if size == TIMED:
            line += f", median {statistics.median(times) * 1e3:.2f} ms over {runs} runs"
        print(line, flush=True)
    comm.Barrier()
    return 0


if __name__ == "__main__":
    sys.exit(main())
