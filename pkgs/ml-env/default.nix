# SPDX-License-Identifier: MIT
# The ML environment for Strix Halo (gfx1151): torch and vLLM built with ROCm, RCCL, rocminfo
# and rocm-smi, from nixpkgs' rocmPackages narrowed to gfx1151.
#
# ROCm is switched on for torch and vLLM only (their `rocmSupport`, `rocmPackages` and
# `gpuTargets` arguments), not through a second nixpkgs with `config.rocmSupport`, which
# would rebuild every ROCm-capable package in the graph. Still heavy: nothing of it is in the
# public binary cache, so the first build compiles clr's device libraries, RCCL, torch and vLLM
# for gfx1151 (hours, tens of GB). Not a flake check (flake.nix: legacyPackages).
#
# RDMA: RCCL's IB transport dlopen()s libibverbs at run time, and libibverbs loads providers
# named by RDMAV_DRIVERS; the wrapper below points both at rdma-core-tbrdma, so nothing in the
# ROCm graph has to be rebuilt against it.
{
  lib,
  python3,
  rocmPackages,
  buildEnv,
  makeWrapper,
  rdma-core-tbrdma,
  perftest-tbrdma,
  gpuTargets ? [ "gfx1151" ],
}:
let
  rocm = rocmPackages.overrideScope (
    _: previous: {
      clr = previous.clr.override { localGpuTargets = gpuTargets; };
    }
  );

  python = python3.override {
    self = python;
    packageOverrides = _: previous: {
      torch = previous.torch.override {
        rocmSupport = true;
        rocmPackages = rocm;
        inherit gpuTargets;
      };
      vllm = previous.vllm.override {
        rocmSupport = true;
        rocmPackages = rocm;
        inherit gpuTargets;
      };
    };
  };

  pythonEnv = python.withPackages (ps: [
    ps.torch
    ps.vllm
  ]);

  rdmaEnvironment = [
    "--set-default"
    "RDMAV_DRIVERS"
    "${rdma-core-tbrdma}/lib/libibverbs/libtbrdma"
    "--prefix"
    "LD_LIBRARY_PATH"
    ":"
    "${lib.getLib rdma-core-tbrdma}/lib"
  ];
in
buildEnv {
  name = "tbrdma-ml-env";
  paths = [
    pythonEnv
    rocm.rccl
    rocm.rocminfo
    rocm.rocm-smi
    rdma-core-tbrdma
    perftest-tbrdma
  ];
  nativeBuildInputs = [ makeWrapper ];
  # python3 and vllm find our libibverbs and provider however they are started.
  postBuild = ''
    for tool in python3 vllm; do
      if [ -e "$out/bin/$tool" ]; then
        target=$(readlink -f "$out/bin/$tool")
        rm "$out/bin/$tool"
        makeWrapper "$target" "$out/bin/$tool" ${lib.escapeShellArgs rdmaEnvironment}
      fi
    done
  '';
  passthru = {
    inherit python pythonEnv;
    rocmPackages = rocm;
  };
  meta.description = "torch, vLLM and RCCL with ROCm for ${toString gpuTargets}, RDMA over tbrdma";
}
