# SPDX-License-Identifier: MIT
"""`tbctl lab`: two or more QEMU VMs joined by virtual cables (see docs/lab.md)."""

from __future__ import annotations

import click


@click.group()
def lab() -> None:
    """Run a local cluster of VMs joined by virtual USB4 cables."""
