# SPDX-License-Identifier: MIT
# Every package this project builds, from one nixpkgs package set. Both the overlay
# (pkgs/overlay.nix) and the NixOS modules call this, so the modules work without the overlay
# (NixOS test nodes, for example, get a fixed pkgs and ignore nixpkgs.overlays).
{
  pkgs,
  # The rdma-core our provider is added to; the overlay passes the one it overrides.
  rdma-core ? pkgs.rdma-core,
}:
let
  inherit (pkgs) lib;
  sources = import ./sources.nix { inherit lib; };

  tbrdmaModuleFor =
    kernelPackages: kernelPackages.callPackage ./tbrdma-kmod { src = sources.kernelModule; };

  linuxTbrdma = pkgs.callPackage ./linux-tbrdma { inherit (sources) patchDir; };
in
rec {
  inherit tbrdmaModuleFor;

  tbctl = pkgs.python3Packages.callPackage ./tbctl { src = sources.tbctl; };

  # rdma-core is passed explicitly so an overlay that replaces `rdma-core` with this package
  # does not make it depend on itself.
  rdma-core-tbrdma = pkgs.callPackage ./rdma-core-tbrdma {
    inherit rdma-core;
    providerSrc = sources.provider;
  };

  perftest-tbrdma = pkgs.callPackage ./perftest { rdma-core = rdma-core-tbrdma; };

  # pyverbs is built inside rdma-core-tbrdma; this makes it importable from python3.
  pyverbs-tbrdma = pkgs.python3Packages.toPythonModule rdma-core-tbrdma;
  python3-pyverbs = pkgs.python3.withPackages (_: [ pyverbs-tbrdma ]);

  # tbctl as installed on hosts: its node agent also runs the pyverbs RDMA check.
  tbctl-node = tbctl.override { pyverbsModule = pyverbs-tbrdma; };

  linuxPackages-tbrdma = linuxTbrdma.kernelPackages.extend (
    kernelPackagesFinal: _: { tbrdma = tbrdmaModuleFor kernelPackagesFinal; }
  );
  linux-tbrdma = linuxPackages-tbrdma.kernel;
  linux-tbrdma-config-check = linuxTbrdma.configCheck;
  linux-tbrdma-patches-check = linuxTbrdma.patchesCheck;
  tbrdma-kmod = linuxPackages-tbrdma.tbrdma;

  # The tbctl test suite that needs no VM, kernel build or root namespaces.
  tbctl-tests = pkgs.callPackage ./tbctl/tests.nix { src = sources.tbctlTests; };

  # driver/proto's `make check`, when this checkout has the userspace build.
  tbrdma-proto-check = pkgs.callPackage ./proto-tests.nix { src = sources.proto; };

  # Heavy: torch/vLLM/RCCL from rocmPackages, built from source for gfx1151. Not a flake
  # check and not in `packages` (flake.nix: legacyPackages).
  tbrdma-ml-env = pkgs.callPackage ./ml-env { inherit rdma-core-tbrdma perftest-tbrdma; };
}
