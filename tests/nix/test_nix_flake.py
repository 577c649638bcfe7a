# SPDX-License-Identifier: MIT
"""flake.nix, flake.lock and the package expressions behind `nix flake check`, evaluated
offline with nix-instantiate and no nixpkgs: small stand-ins replace the few nixpkgs
functions the expressions call, so what is checked is this repository's wiring.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from nixtool import REPO, NixEvalError, eval_json, nix_string

TESTS = REPO / "tests"

# lib.fileset, reduced to the paths a file set is made of (toSource returns its file set).
FILESET_SHIM = """{
  fileset = {
    unions = sets: builtins.concatLists (map (s: if builtins.isList s then s else [ s ]) sets);
    maybeMissing = path: path;
    toSource = { root, fileset }: fileset;
  };
}"""


def fileset_top_dirs(name: str) -> set[str]:
    paths = eval_json(
        f"let sources = import {REPO}/pkgs/sources.nix {{ lib = {FILESET_SHIM}; }}; "
        f"set = sources.{name}; "
        "in map toString (if builtins.isList set then set else [ set ])"
    )
    return {Path(p).relative_to(REPO).parts[0] for p in paths}


def dirs_the_suite_reads() -> set[str]:
    """Top-level repository entries the tests reach through REPO / "..." or parents[2] / "..."
    (tests/nix excluded: the flake check skips it, nix-instantiate does not run in a build)."""
    pattern = re.compile(r'(?:REPO|parents\[2\])\s*/\s*"([^"/]+)')
    found: set[str] = set()
    for path in TESTS.rglob("*.py"):
        if path.parent.name == "nix":
            continue
        found.update(pattern.findall(path.read_text()))
    return found


def test_tbctl_tests_source_holds_everything_the_suite_reads() -> None:
    needed = dirs_the_suite_reads()
    assert {"driver", "vm-tests"} <= needed, "the scan no longer finds the suite's inputs"
    missing = needed - fileset_top_dirs("tbctlTests")
    assert not missing, f"checks.tbctl-tests would run without {sorted(missing)}"


def tbctl_tests_derivation() -> dict:
    """pkgs/tbctl/tests.nix called as callPackage would, with builders that record their use."""
    return eval_json(
        f"let f = import {REPO}/pkgs/tbctl/tests.nix; "
        "stubs = { "
        '  runCommand = name: env: script: { builder = "runCommand (no C compiler)"; }; '
        '  stdenv = { mkDerivation = attrs: attrs // { builder = "stdenv.mkDerivation"; }; }; '
        '  clang = "clang"; openssh = "openssh"; src = "src"; '
        '  python3 = { withPackages = _: "python"; }; }; '
        "in builtins.removeAttrs (f (builtins.intersectAttrs (builtins.functionArgs f) stubs)) "
        '[ "buildPhase" ]'
    )


def test_tbctl_tests_builds_with_a_c_compiler() -> None:
    derivation = tbctl_tests_derivation()
    # stdenv brings gcc and make (tests/proto, tests/driver); clang builds the fuzzers.
    assert derivation["builder"] == "stdenv.mkDerivation"
    assert "clang" in derivation["nativeBuildInputs"]
    assert derivation["src"] == "src"


def flake_outputs(version: str = "25.11.20260526.25f5383") -> str:
    # nixosModules need no nixpkgs; the version is all flake.nix's assertion reads.
    return (f"((import {REPO}/flake.nix).outputs {{ self = {{ }}; "
            f"nixpkgs = {{ lib.version = {nix_string(version)}; }}; }})")


def test_flake_exports_modules_as_paths() -> None:
    kinds = eval_json(f"builtins.mapAttrs (_: builtins.typeOf) {flake_outputs()}.nixosModules")
    assert kinds == dict.fromkeys(["appliance", "default", "hardware-tbrdma", "services-tbctl"],
                                  "path")


def test_flake_refuses_nixpkgs_older_than_25_11() -> None:
    with pytest.raises(NixEvalError, match="needs nixpkgs 25.11 or newer"):
        eval_json(f"{flake_outputs('25.05.20250601.abcdef0')}.nixosModules")


@pytest.mark.parametrize(("version", "supported"), [
    ("25.11.20260526.25f5383", True),   # nixos-25.11 from a flake
    ("25.11pre-git", True),             # a plain checkout of the 25.11 branch
    ("26.05pre-git", True),
    ("26.11pre-git", True),
    ("25.05.20250601.abcdef0", False),
    ("24.11pre-git", False),
])
def test_nixpkgs_version_range(version: str, supported: bool) -> None:
    result = eval_json(
        f"(import {REPO}/nixos/lib/nixpkgs-version.nix {{ version = {nix_string(version)}; }})"
        ".supported"
    )
    assert result is supported


def test_flake_lock_pins_the_input_flake_nix_names() -> None:
    lock = json.loads((REPO / "flake.lock").read_text())
    node = lock["nodes"][lock["nodes"]["root"]["inputs"]["nixpkgs"]]
    url = re.search(r'inputs\.nixpkgs\.url = "github:([^/"]+)/([^/"]+)/([^"]+)"',
                    (REPO / "flake.nix").read_text())
    assert url is not None
    assert (node["original"]["owner"], node["original"]["repo"], node["original"]["ref"]) == (
        url.group(1), url.group(2), url.group(3))
    locked = node["locked"]
    assert locked["type"] == "github" and (locked["owner"], locked["repo"]) == url.group(1, 2)
    assert re.fullmatch(r"[0-9a-f]{40}", locked["rev"])
    assert re.fullmatch(r"sha256-[A-Za-z0-9+/]{43}=", locked["narHash"])
    assert isinstance(locked["lastModified"], int)


def image_ids(image_id: str) -> dict[str, str]:
    return eval_json(
        f"import {REPO}/nixos/lib/image-ids.nix {{ imageId = {nix_string(image_id)}; }}")


def test_image_ids_differ_per_build_and_fit_their_fields() -> None:
    first, second = image_ids("0123456789ab"), image_ids("ba9876543210")
    uuid = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
    for ids in (first, second):
        for key in ("rootUuid", "rootPartUuid", "espPartUuid", "diskGuid"):
            assert re.fullmatch(uuid, ids[key]), (key, ids[key])
        assert len(ids["rootLabel"]) <= 16  # ext4
        assert len(ids["isoVolumeId"]) <= 32  # ISO 9660
        assert len(set(ids.values()) - {ids["rootLabel"], ids["isoVolumeId"]}) == 4
    assert all(first[key] != second[key] for key in first)
    assert image_ids("0123456789ab") == first


@pytest.mark.parametrize("bad", ["", "UPPER", "has space", "x" * 33])
def test_image_id_rejects_what_labels_cannot_hold(bad: str) -> None:
    with pytest.raises(NixEvalError, match="imageId must be"):
        image_ids(bad)


def test_perftest_is_built_from_its_upstream_release_tag_with_autoreconf() -> None:
    """Not a distribution pool tarball (those URLs disappear): the tag's tree, which has no
    generated configure script, so autoreconf makes one."""
    perftest = eval_json(
        f"let f = import {REPO}/pkgs/perftest; "
        "drv = f { lib = { }; pciutils = \"pciutils\"; autoreconfHook = \"autoreconfHook\"; "
        '  rdma-core = { pname = "rdma-core-tbrdma"; }; '
        "  fetchFromGitHub = args: args // { fetcher = \"fetchFromGitHub\"; }; "
        "  stdenv.mkDerivation = attrs: let final = attrs final; in final; }; "
        "in { inherit (drv) version src nativeBuildInputs buildInputs preAutoreconf; }"
    )
    src = perftest["src"]
    assert src["fetcher"] == "fetchFromGitHub"
    assert (src["owner"], src["repo"], src["tag"]) == ("linux-rdma", "perftest",
                                                       perftest["version"])
    assert re.fullmatch(r"sha256-[A-Za-z0-9+/]{43}=", src["hash"])
    assert "autoreconfHook" in perftest["nativeBuildInputs"]
    assert {"rdma-core-tbrdma"} <= {p["pname"] for p in perftest["buildInputs"]
                                    if isinstance(p, dict)}
    # configure.ac's AC_CONFIG_AUX_DIR and AC_CONFIG_MACRO_DIR, made as upstream's autogen.sh does.
    assert "mkdir -p config m4" in perftest["preAutoreconf"]
