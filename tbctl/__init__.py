# SPDX-License-Identifier: MIT
"""tbctl: pair hosts joined by USB4/Thunderbolt cables into an RDMA cluster."""

__version__ = "0.1.0"
