#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""torchrun for a torch built without libuv, such as Debian's python3-torch 2.6.

torchrun's rendezvous creates its TCPStore without passing use_libuv, and the C++ default
asks for libuv, so every torchrun on such a build stops with "use_libuv was requested but
PyTorch was build without libuv support", USE_LIBUV=0 or not (pytorch/pytorch#178600).
This passes use_libuv=False there and sets USE_LIBUV=0 for the workers (their
init_process_group honours it), then runs torchrun's own main. Pip wheels need none of it.
"""

import os
import sys

os.environ["USE_LIBUV"] = "0"

import torch.distributed as dist  # noqa: E402 - after USE_LIBUV
from torch.distributed.elastic.rendezvous import (  # noqa: E402
    c10d_rendezvous_backend,
    static_tcp_rendezvous,
)
from torch.distributed.run import main  # noqa: E402


def tcp_store(*args, **kwargs):  # noqa: ANN002, ANN003, ANN201 - TCPStore's own signature
    kwargs.setdefault("use_libuv", False)
    return dist.TCPStore(*args, **kwargs)


static_tcp_rendezvous.TCPStore = tcp_store
c10d_rendezvous_backend.TCPStore = tcp_store

if __name__ == "__main__":
    sys.exit(main())
