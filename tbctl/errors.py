# SPDX-License-Identifier: MIT
"""Errors that end a command with one clear line and a documented exit code."""

from __future__ import annotations

# Exit codes (documented in docs/tbctl.md).
EXIT_OK = 0
EXIT_FAILED = 1  # the command ran but found a problem (verify failed, doctor findings, link down)
EXIT_USAGE = 2  # bad command-line input (click uses 2 as well)
EXIT_SSH = 3  # unknown host, unreachable, authentication, host key refused
EXIT_REMOTE = 4  # remote host unsuitable: python too old, sudo needs a password, agent error
EXIT_PLAN = 5  # nothing safe to do: no shared cable, address pool exhausted, same host twice
EXIT_APPLY = 6  # applying failed; every host was rolled back


class TbctlError(Exception):
    """A failure reported to the user as one line, with an exit code."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class SshError(TbctlError):
    exit_code = EXIT_SSH


class RemoteError(TbctlError):
    exit_code = EXIT_REMOTE


class PlanError(TbctlError):
    exit_code = EXIT_PLAN


class ApplyError(TbctlError):
    exit_code = EXIT_APPLY
