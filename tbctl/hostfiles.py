# SPDX-License-Identifier: MIT
"""Render the files tbctl installs on a host, from tbctl/templates.

The NixOS module renders the same files with `tbctl render-host-files`, so a NixOS host and a
host paired over SSH run byte-identical units and rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import jinja2

TEMPLATE_DIR = Path(__file__).parent / "templates"

# Root-relative path on the host -> template name.
HOST_FILES = {
    "etc/systemd/system/tbctl-reapply.service": "tbctl-reapply.service.j2",
    "etc/systemd/system/tbctl-reapply@.service": "tbctl-reapply@.service.j2",
    "etc/udev/rules.d/90-tbctl-hotplug.rules": "90-tbctl-hotplug.rules.j2",
    "etc/modules-load.d/tbctl.conf": "tbctl-modules.conf.j2",
}


def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_template(name: str, **context: object) -> str:
    return environment().get_template(name).render(**context)


# The agent archive tbctl persists for the boot unit, named by its own sha256.
AGENT_ARCHIVE = re.compile(r"^/\S*/tbctl-([0-9a-f]{64})\.pyz$")


def render_host_files(
    *, state_dir: str, tbctl_exec: str, modules: Iterable[str]
) -> dict[str, str]:
    """Return {root-relative path: content} for every file a pairing installs on a host.

    When `tbctl_exec` runs a persisted agent archive, the unit checks the archive against
    the digest in its name before running it.
    """
    archive = next((m for word in tbctl_exec.split() if (m := AGENT_ARCHIVE.match(word))), None)
    context = {"state_dir": state_dir, "tbctl_exec": tbctl_exec, "modules": sorted(set(modules)),
               "agent_archive": archive.group(0) if archive else None,
               "agent_sha256": archive.group(1) if archive else None}
    return {path: render_template(tpl, **context) for path, tpl in HOST_FILES.items()}
