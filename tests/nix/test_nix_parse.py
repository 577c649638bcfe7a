# SPDX-License-Identifier: MIT
"""Every .nix file in the repository parses (nix-instantiate --parse, no nixpkgs needed)."""

from __future__ import annotations

import subprocess

import pytest
from nixtool import REPO, run_nix

# Files the Nix part of the project must contain; the parse test below cannot pass by finding
# no files at all.
REQUIRED = [
    "flake.nix",
    "pkgs/overlay.nix",
    "pkgs/packages.nix",
    "pkgs/linux-tbrdma/patch-series.nix",
    "nixos/modules/default.nix",
    "nixos/modules/hardware-tbrdma.nix",
    "nixos/modules/services-tbctl.nix",
    "nixos/modules/appliance.nix",
    "nixos/lib/host-files.nix",
    "nixos/configurations/appliance.nix",
    "nixos/configurations/appliance-raw-efi.nix",
    "nixos/configurations/appliance-iso.nix",
    "nixos/lib/image-ids.nix",
    "nixos/lib/nixpkgs-version.nix",
    "nixos/lib/link-firewall.nix",
    "vm-tests/common.nix",
    "vm-tests/nodes.nix",
    "vm-tests/cables.nix",
    "vm-tests/test-script.nix",
    "vm-tests/bringup.nix",
    "vm-tests/pair.nix",
    "vm-tests/persistence.nix",
    "vm-tests/cable_pull.nix",
    "vm-tests/unpair.nix",
]


def repo_nix_files() -> list[str]:
    """Tracked and untracked-but-not-ignored .nix files; every .nix file outside dot-dirs
    when the tree is not a git checkout (an unpacked tarball, say)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", "*.nix"],
            cwd=REPO, capture_output=True, text=True, check=True,
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        listed = [
            str(path.relative_to(REPO)) for path in REPO.rglob("*.nix")
            if not any(part.startswith(".") for part in path.relative_to(REPO).parts)
        ]
    return sorted(path for path in set(listed) if (REPO / path).is_file())


def test_required_nix_files_exist() -> None:
    found = set(repo_nix_files())
    missing = [path for path in REQUIRED if path not in found]
    assert not missing, f"missing Nix files: {missing}"


@pytest.mark.parametrize("path", repo_nix_files())
def test_nix_file_parses(path: str) -> None:
    done = run_nix(["--parse", path])
    assert done.returncode == 0, f"{path} does not parse:\n{done.stderr}"
