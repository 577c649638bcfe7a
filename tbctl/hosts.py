# SPDX-License-Identifier: MIT
"""Open several hosts at once, with their agents ready, and fan work out to them."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from tbctl.connection import Connection, ssh_config_path

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class SshOptions:
    ssh_config: str | None = None
    accept_new_host_keys: bool = False
    state_dir: str = "/var/lib/tbctl"


def in_parallel(function: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """Run `function` over items concurrently; the first error (in item order) is raised.

    On an error or Ctrl-C the other workers are not waited for (they may sit in an SSH read
    for many seconds); the caller closes their connections."""
    if len(items) == 1:
        return [function(items[0])]
    pool = ThreadPoolExecutor(max_workers=max(1, len(items)))
    try:
        futures = [pool.submit(function, item) for item in items]
        return [future.result() for future in futures]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


@contextmanager
def connected(specs: Sequence[str], options: SshOptions) -> Iterator[list[Connection]]:
    config = ssh_config_path(options.ssh_config)
    conns = [Connection(spec, config, options.accept_new_host_keys) for spec in specs]

    def prepare(conn: Connection) -> None:
        conn.open()
        conn.prepare_agent(options.state_dir)

    try:
        in_parallel(prepare, conns)
        yield conns
    finally:
        for conn in conns:
            conn.close()
