# SPDX-License-Identifier: MIT
# The ML environment for Strix Halo (gfx1151): torch and vLLM built with ROCm, RCCL, all
# linked against rdma-core-tbrdma so RCCL's IB transport sees the tbrdma devices.
#
# Heavy by design: a second nixpkgs instance with rocmSupport, in which `rdma-core` itself is
# replaced. Nothing of it is in the public binary cache, so the first build compiles the ROCm
# libraries, RCCL, torch and vLLM for gfx1151 (many hours and tens of GB on a big machine).
# Restricting the GPU targets to gfx1151 keeps that to one architecture.
{
  pkgs,
  gpuTargets ? [ "gfx1151" ],
}:
let
  rocmPkgs = import pkgs.path {
    localSystem = pkgs.stdenv.hostPlatform.system;
    config = {
      rocmSupport = true;
      allowUnfree = pkgs.config.allowUnfree or false;
    };
    overlays = [
      (
        final: prev:
        let
          ours = import ../packages.nix {
            pkgs = final;
            inherit (prev) rdma-core;
          };
        in
        {
          inherit (ours) rdma-core-tbrdma perftest-tbrdma;
          # Every consumer in this package set (RCCL, UCX, MPI, ...) links our rdma-core.
          rdma-core = ours.rdma-core-tbrdma;
          rocmPackages = prev.rocmPackages.overrideScope (
            _: rocmPrevious: {
              clr = rocmPrevious.clr.override { localGpuTargets = gpuTargets; };
            }
          );
        }
      )
    ];
  };

  python = rocmPkgs.python3.withPackages (ps: [
    ps.torch
    ps.vllm
  ]);
in
rocmPkgs.buildEnv {
  name = "tbrdma-ml-env";
  paths = [
    python
    rocmPkgs.rocmPackages.rccl
    rocmPkgs.rocmPackages.rocminfo
    rocmPkgs.rocmPackages.rocm-smi
    rocmPkgs.rdma-core-tbrdma
    rocmPkgs.perftest-tbrdma
  ];
  passthru = {
    inherit python;
    packageSet = rocmPkgs;
  };
  meta.description = "torch, vLLM and RCCL with ROCm for ${toString gpuTargets}";
}
