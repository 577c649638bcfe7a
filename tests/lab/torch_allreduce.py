# SPDX-License-Identifier: MIT
"""A torch.distributed all-reduce (gloo) that every rank checks exactly; run by torchrun.

Copied into the lab guests by tests/lab/test_lab_vm.py and started there with
`tbctl run torchrun`. Each rank fills tensors from generators seeded by (rank, size), so
every rank can recompute what every other rank contributed and compare the reduced result
element for element (integers and integer-valued floats: the sums are exact in any order).
The bytes the rank sent on GLOO_SOCKET_IFNAME are counted too: the all-reduce must have
gone over that link, not some other route.

Under a torch built without libuv (Debian's python3-torch 2.6), run it with
tests/lab/torchrun_without_libuv.py; it then joins the agent's store itself (see join()).

--hold S keeps every rank alive S seconds after the check (for stopping tests);
--fail-rank R makes rank R exit 3 after the check while the others hold.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

SIZES = (1, 1000, 1 << 18)
SEED = 20261201


def contribution(rank: int, size: int, dtype: torch.dtype) -> torch.Tensor:
    generator = torch.Generator().manual_seed(SEED + 1_000_003 * rank + size)
    if dtype == torch.int64:
        return torch.randint(-(1 << 40), 1 << 40, (size,), generator=generator,
                             dtype=torch.int64)
    # Integers up to 2**10 in float32: any sum of a few of them is exact.
    return torch.randint(-1024, 1025, (size,), generator=generator).to(dtype)


def join() -> None:
    """init_process_group("gloo") with torchrun's environment.

    torchrun's workers connect to the store its agent hosts; init_process_group makes that
    client without use_libuv, so a torch without libuv cannot join that way
    (pytorch/pytorch#178600). With USE_LIBUV=0 the client is made here, as the env://
    rendezvous would (TORCHELASTIC_USE_AGENT_STORE, the "default_pg" prefix)."""
    if os.environ.get("USE_LIBUV") != "0" or \
            os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        dist.init_process_group("gloo")
        return
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world,
                          is_master=False, timeout=timedelta(minutes=10), use_libuv=False)
    dist.init_process_group("gloo", store=dist.PrefixStore("default_pg", store), rank=rank,
                            world_size=world)


def tx_bytes(ifname: str | None) -> int | None:
    if not ifname:
        return None
    path = Path(f"/sys/class/net/{ifname}/statistics/tx_bytes")
    return int(path.read_text()) if path.exists() else None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hold", type=float, default=0.0)
    parser.add_argument("--fail-rank", type=int, default=-1)
    args = parser.parse_args()

    join()
    rank, world = dist.get_rank(), dist.get_world_size()
    ifname = os.environ.get("GLOO_SOCKET_IFNAME")
    where = (f"rank {rank}/{world} on {socket.gethostname()} (MASTER_ADDR "
             f"{os.environ.get('MASTER_ADDR')}, GLOO_SOCKET_IFNAME {ifname})")
    print(f"{where}: joined, backend {dist.get_backend()}", flush=True)

    before = tx_bytes(ifname)
    elements = 0
    for dtype in (torch.int64, torch.float32):
        for size in SIZES:
            tensor = contribution(rank, size, dtype)
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
            expected = sum(contribution(r, size, dtype) for r in range(world))
            if not torch.equal(tensor, expected):
                bad = int((tensor != expected).sum())
                print(f"{where}: MISMATCH {dtype} size {size}: {bad} elements differ",
                      flush=True)
                return 1
            elements += size
    sent = None if before is None else tx_bytes(ifname) - before  # type: ignore[operator]
    # A ring all-reduce sends about (world-1)/world of each tensor per rank; require half.
    floor = (world - 1) * 8 * SIZES[-1] // (2 * world)
    if world > 1 and sent is not None and sent < floor:
        print(f"{where}: only {sent} bytes left on {ifname} (expected >= {floor})", flush=True)
        return 1
    print(f"{where}: all-reduce verified ({len(SIZES) * 2} tensors, {elements} elements, "
          f"{sent} bytes sent on {ifname})", flush=True)

    if rank == args.fail_rank:
        print(f"{where}: failing on purpose", flush=True)
        return 3
    if args.hold or args.fail_rank >= 0:
        print(f"{where}: holding", flush=True)
        time.sleep(args.hold or 3600)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
