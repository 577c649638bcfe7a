# SPDX-License-Identifier: MIT
"""`[user@]host[:port]` host specs, as ssh users write them (IPv6 literals in brackets)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tbctl.errors import EXIT_USAGE, TbctlError

_SPEC = re.compile(r"^(?:(?P<user>[^@\s]+)@)?"
                   r"(?:\[(?P<v6>[0-9A-Fa-f:.%\w]+)\]|(?P<host>[^:@\s\[\]]+))"
                   r"(?::(?P<port>\d+))?$")


@dataclass(frozen=True)
class HostSpec:
    host: str
    user: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"{user}{host}{port}"


def parse_host(spec: str) -> HostSpec:
    match = _SPEC.match(spec.strip())
    if not match:
        raise TbctlError(f"bad host '{spec}': expected [user@]host[:port]", EXIT_USAGE)
    port = int(match.group("port")) if match.group("port") else None
    if port is not None and not 0 < port < 65536:
        raise TbctlError(f"bad host '{spec}': port {port} is not 1-65535", EXIT_USAGE)
    return HostSpec(match.group("v6") or match.group("host"), match.group("user"), port)
