# SPDX-License-Identifier: MIT
"""Errors that end a command with one clear line, a documented exit code and a stable code.

The exit codes and the `code` strings are part of the scripting contract (docs/tbctl.md):
`--json` puts the code in the error envelope, so scripts never parse messages.
"""

from __future__ import annotations

# Exit codes (documented in docs/tbctl.md).
EXIT_OK = 0
EXIT_FAILED = 1  # the command ran but found a problem (verify failed, doctor findings, link down)
EXIT_USAGE = 2  # bad command-line input, refused before any connection (click uses 2 as well)
EXIT_SSH = 3  # unknown host, unreachable, authentication, host key refused, ssh_config refused
EXIT_REMOTE = 4  # host unsuitable: python too old, sudo needs a password, agent error, not root
EXIT_PLAN = 5  # nothing safe to do: no shared cable, address pool exhausted, same host twice
EXIT_APPLY = 6  # applying failed; every host was rolled back
EXIT_INTERNAL = 70  # a bug in tbctl (EX_SOFTWARE); the message says what broke
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), after rolling back a half-applied pairing


class TbctlError(Exception):
    """A failure reported to the user as one line, with an exit code and a stable code."""

    exit_code = EXIT_FAILED
    code = "failed"

    def __init__(self, message: str, exit_code: int | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
            self.code = CODES.get(exit_code, self.code)
        if code is not None:
            self.code = code


class UsageError(TbctlError):
    exit_code = EXIT_USAGE
    code = "usage"


class SshError(TbctlError):
    exit_code = EXIT_SSH
    code = "ssh"


class SshConfigRefused(SshError):
    """An ssh_config directive in effect that tbctl cannot honour: refused, never ignored."""

    code = "ssh_config_unsupported"


class RemoteError(TbctlError):
    exit_code = EXIT_REMOTE
    code = "remote"


class NeedsRoot(RemoteError):
    code = "needs_root"


class PlanError(TbctlError):
    exit_code = EXIT_PLAN
    code = "plan"


class ApplyError(TbctlError):
    exit_code = EXIT_APPLY
    code = "apply"


class Interrupted(TbctlError):
    exit_code = EXIT_INTERRUPTED
    code = "interrupted"


# The default code of each exit code, for errors raised with an explicit exit code.
CODES = {EXIT_FAILED: "failed", EXIT_USAGE: "usage", EXIT_SSH: "ssh", EXIT_REMOTE: "remote",
         EXIT_PLAN: "plan", EXIT_APPLY: "apply", EXIT_INTERNAL: "internal",
         EXIT_INTERRUPTED: "interrupted"}
