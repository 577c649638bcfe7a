# SPDX-License-Identifier: MIT
"""The module builds warning-free against Debian bookworm, trixie and sid kernel headers, each
in its own suite's chroot with its own compiler, and the provider builds inside the guest
suite's rdma-core source."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from .conftest import DRIVER, buildenv_cache, heavy_lock

pytestmark = pytest.mark.kbuild

# suite -> kernel series its linux-headers-amd64 must provide
SUITES = {"bookworm": "6.1.", "trixie": "6.12.", "sid": "7."}


def run_script(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    with heavy_lock():
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_module_builds_warning_free(suite: str, tmp_path: Path, needs_root: None) -> None:
    result = run_script(
        [str(DRIVER / "build-module.sh"), suite, str(buildenv_cache()), str(tmp_path)],
        timeout=900)
    assert result.returncode == 0, f"{suite} build failed:\n{result.stderr[-4000:]}"
    release = (tmp_path / f"tbrdma-{suite}.release").read_text().strip()
    assert release.startswith(SUITES[suite]), f"{suite} headers are {release}"
    log = (tmp_path / f"build-{suite}.log").read_text()
    assert not re.search(r"warning:|WARNING:", log), log
    # The protocol core is compiled from driver/proto into the module, not copied.
    assert "proto/src/tbp_link.o" in log, log
    module = tmp_path / f"tbrdma-{suite}.ko"
    info = subprocess.run(["modinfo", "-F", "vermagic", str(module)], capture_output=True,
                          text=True, check=True).stdout
    assert info.split()[0] == release, info
    aliases = subprocess.run(["modinfo", "-F", "alias", str(module)], capture_output=True,
                             text=True, check=True).stdout.split()
    assert "rdma-link-tbrdma" in aliases, aliases


def test_provider_builds_in_guest_rdma_core(tmp_path: Path, needs_root: None) -> None:
    result = run_script(
        [str(DRIVER / "provider-for.sh"), "trixie", str(buildenv_cache()), "candidate",
         str(tmp_path)], timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    so = Path(result.stdout.strip().splitlines()[-1])
    assert so.name.startswith("libtbrdma-rdmav") and so.is_file()
    assert (tmp_path / "tbrdma.driver").read_text().strip() == "driver tbrdma"
    # The provider binds to libibverbs' private provider ABI of that same rdma-core.
    pabi = so.name.removeprefix("libtbrdma-rdmav").removesuffix(".so")
    symbols = subprocess.run(["objdump", "-T", str(so)], capture_output=True, text=True,
                             check=True).stdout
    assert f"IBVERBS_PRIVATE_{pabi}" in symbols, symbols
    assert "verbs_register_driver" in symbols, symbols
