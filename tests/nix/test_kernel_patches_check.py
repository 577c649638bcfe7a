# SPDX-License-Identifier: MIT
"""The `kernel-patches-apply` flake check (pkgs/linux-tbrdma): its build script, rendered with
a real nixpkgs lib (NIXPKGS_LIB, see test_nix_modules.py) and run with bash against a small
kernel-like source tarball: a series that applies passes, one that does not fails naming the
patch and its reason, and an empty series needs no kernel source at all."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from nixtool import REPO, eval_json, nix_string

NIXPKGS_LIB = os.environ.get("NIXPKGS_LIB", "")
pytestmark = pytest.mark.skipif(
    not NIXPKGS_LIB,
    reason="NIXPKGS_LIB is not set: the check's script is rendered with nixpkgs' lib "
    "(docs/nix.md)",
)

GOOD = """--- a/net/thunderbolt/main.c
+++ b/net/thunderbolt/main.c
@@ -1,2 +1,2 @@
 int mtu;
-int limit = 64;
+int limit = 65522;
"""
STALE = GOOD.replace("-int limit = 64;", "-int limit = 128;")


def render(patch_dir: Path, tarball: Path) -> dict:
    # patchDir as a string: interpolating it then names the file in place instead of copying
    # it into a Nix store (there is none here).
    return eval_json(
        f"let lib = import {Path(NIXPKGS_LIB).resolve()}/lib; "
        f"kernel = {{ version = \"6.99\"; src = {nix_string(str(tarball))}; "
        "  configfile = \"\"; override = _: kernel; }; "
        f"linux = import {REPO}/pkgs/linux-tbrdma {{ "
        "  inherit lib; runCommand = name: env: script: { inherit name env script; }; "
        "  linuxPackages_latest.extend = f: { kernel = (f { } { inherit kernel; }).kernel; }; "
        f"  patchDir = {nix_string(str(patch_dir))}; }}; "
        "in linux.patchesCheck"
    )


def kernel_tree(tmp_path: Path) -> Path:
    source = tmp_path / "linux-6.99"
    (source / "net/thunderbolt").mkdir(parents=True)
    (source / "net/thunderbolt/main.c").write_text("int mtu;\nint limit = 64;\n")
    tarball = tmp_path / "linux-6.99.tar.xz"
    with tarfile.open(tarball, "w:xz") as archive:
        archive.add(source, arcname="linux-6.99")
    return tarball


def run_check(tmp_path: Path, series: str, patches: dict[str, str]) -> subprocess.CompletedProcess:
    patch_dir = tmp_path / "patches"
    patch_dir.mkdir()
    for name, text in patches.items():
        (patch_dir / name).write_text(text)
    (patch_dir / "series").write_text(series)
    check = render(patch_dir, kernel_tree(tmp_path))
    work = tmp_path / "build"
    work.mkdir()
    env = {**os.environ, "out": str(tmp_path / "out"),
           "kernelSrc": check["env"]["kernelSrc"], "kernelVersion": check["env"]["kernelVersion"]}
    return subprocess.run(["bash", "-e", "-c", check["script"]], cwd=work, env=env,
                          capture_output=True, text=True, timeout=60)


def test_series_that_applies_passes(tmp_path: Path) -> None:
    done = run_check(tmp_path, "# thunderbolt-net: full USB4 MTU\n0001-mtu.patch\n",
                     {"0001-mtu.patch": GOOD})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out").exists()
    assert (tmp_path / "build/linux/net/thunderbolt/main.c").read_text().endswith("65522;\n")


def test_stale_patch_fails_naming_it_and_its_reason(tmp_path: Path) -> None:
    done = run_check(tmp_path, "# thunderbolt-net: full USB4 MTU\n0001-mtu.patch\n",
                     {"0001-mtu.patch": STALE})
    assert done.returncode != 0
    assert "0001-mtu (thunderbolt-net: full USB4 MTU) does not apply to linux 6.99" in done.stderr
    assert not (tmp_path / "out").exists()


def test_empty_series_needs_no_kernel_source(tmp_path: Path) -> None:
    check = render(_empty_patch_dir(tmp_path), tmp_path / "absent.tar.xz")
    assert "tar " not in check["script"]


def _empty_patch_dir(tmp_path: Path) -> Path:
    patch_dir = tmp_path / "patches"
    patch_dir.mkdir()
    (patch_dir / "series").write_text("# nothing yet\n")
    return patch_dir
