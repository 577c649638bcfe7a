# SPDX-License-Identifier: MIT
"""The lab: QEMU VMs joined by virtual USB4 cables (see docs/lab.md)."""
