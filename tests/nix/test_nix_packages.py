# SPDX-License-Identifier: MIT
"""Which package each flake output holds, and how the ML environment is built, evaluated with
a real nixpkgs lib (NIXPKGS_LIB, as test_nix_modules.py) and stand-in packages
(tests/nix/nixpkgs-stub/pkgs.nix, tests/nix/eval-packages.nix). Nothing is built."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from nixtool import REPO, eval_json

HERE = Path(__file__).resolve().parent
NIXPKGS_LIB = os.environ.get("NIXPKGS_LIB", "")
pytestmark = pytest.mark.skipif(
    not NIXPKGS_LIB,
    reason="NIXPKGS_LIB is not set: flake.nix's outputs are evaluated with nixpkgs' lib "
    "(docs/nix.md)",
)

ML_ENV = "/stub/tbrdma-ml-env"


@pytest.fixture(scope="module")
def evaluate(tmp_path_factory: pytest.TempPathFactory) -> Any:
    lib = Path(NIXPKGS_LIB).resolve()
    stub = tmp_path_factory.mktemp("nixpkgs")
    # flake.nix imports its nixpkgs input with { system; overlays; }.
    (stub / "default.nix").write_text(
        f"import {HERE}/nixpkgs-stub/pkgs.nix (import {lib}/lib)\n")

    def attribute(name: str) -> Any:
        return eval_json(f"(import {HERE}/eval-packages.nix {{ nixpkgsLib = {lib}; "
                         f"repo = {REPO}; stubNixpkgs = {stub}; }}).{name}")

    return attribute


def test_flake_check_never_evaluates_the_ml_environment(evaluate: Any) -> None:
    """One broken or unfree package in the torch/vLLM/ROCm graph would abort `nix flake
    check`: no output it evaluates may hold the ML environment."""
    checked = evaluate("checked")
    assert set(checked["checks"]["x86_64-linux"]) >= {"tbctl-tests", "kernel-patches-apply"}
    assert ML_ENV not in json.dumps(checked), "the ML environment is in a checked output"


def test_ml_environment_stays_a_package_and_a_dev_shell(evaluate: Any) -> None:
    legacy = evaluate("legacyPackages")
    assert legacy["tbrdma-ml-env"] == ML_ENV
    assert ML_ENV in legacy["ml"]["packages"]


def test_ml_environment_is_rocm_for_gfx1151_from_rocm_packages(evaluate: Any) -> None:
    ml = evaluate("mlEnv")
    assert ml["pythonPackages"] == ["torch-overridden", "vllm-overridden"]
    # torch and vLLM built with ROCm, for gfx1151 only, against the narrowed rocmPackages.
    for package in ("torch", "vllm"):
        assert ml[package] == {"rocmSupport": True, "gpuTargets": ["gfx1151"],
                               "clrTargets": ["gfx1151"]}, package
    # RCCL from the same narrowed scope; the RDMA userspace next to it.
    assert {"/stub/rccl-with-clr-gfx1151", "/stub/rocminfo", "/stub/rocm-smi",
            "/stub/rdma-core-tbrdma", "/stub/perftest-tbrdma"} <= set(ml["paths"])
    # python3 and vllm load rdma-core-tbrdma's libibverbs and the tbrdma provider.
    assert "/stub/rdma-core-tbrdma/lib/libibverbs/libtbrdma" in ml["postBuild"]
    assert "LD_LIBRARY_PATH" in ml["postBuild"]
