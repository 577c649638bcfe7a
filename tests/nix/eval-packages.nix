# SPDX-License-Identifier: MIT
# flake.nix's outputs and pkgs/ml-env, evaluated with a real nixpkgs `lib` (NIXPKGS_LIB) and
# stand-in packages (test_nix_packages.py): which package each output holds, and what the ML
# environment asks of nixpkgs' torch, vLLM and rocmPackages. Nothing here is built.
{
  nixpkgsLib,
  repo,
  # A directory whose default.nix is nixpkgs-stub/pkgs.nix applied to that lib.
  stubNixpkgs,
}:
let
  lib = import (nixpkgsLib + "/lib");
  mark = name: {
    type = "derivation";
    inherit name;
    outPath = "/stub/${name}";
  };

  nixpkgs = {
    outPath = stubNixpkgs;
    lib = lib // {
      # The systems' closures and images as markers: the modules are tests/nix/eval-modules.nix's.
      nixosSystem = _: {
        config.system.build = {
          toplevel = mark "nixos-system";
          tbrdmaImage = mark "raw-efi-image";
          isoImage = mark "iso-image";
        };
      };
    };
  };
  flake = (import (repo + "/flake.nix")).outputs {
    self = flake;
    inherit nixpkgs;
  };

  # nixpkgs' makeScope, reduced: a fixed point whose overrideScope applies final: prev: ...
  makeScope =
    f:
    let
      self = f self;
    in
    self // { overrideScope = g: makeScope (lib.extends g f); };
  rocmPackages = makeScope (self: {
    clr = mark "clr" // {
      override = args: mark "clr-${lib.concatStringsSep "-" args.localGpuTargets}" // args;
    };
    # Built with the scope's clr, as nixpkgs' rccl is.
    rccl = mark "rccl-with-${self.clr.name}";
    rocminfo = mark "rocminfo";
    rocm-smi = mark "rocm-smi";
  });
  pythonPackage =
    name:
    mark name
    // {
      override = args: mark "${name}-overridden" // { overrideArgs = args; };
    };
  python3.override =
    { packageOverrides, ... }:
    let
      previous = {
        torch = pythonPackage "torch";
        vllm = pythonPackage "vllm";
      };
      final = previous // packageOverrides final previous;
    in
    {
      withPackages = select: mark "python3-env" // { packages = select final; };
    };
  mlEnv = import (repo + "/pkgs/ml-env") {
    inherit lib python3 rocmPackages;
    buildEnv = args: args;
    makeWrapper = mark "makeWrapper";
    rdma-core-tbrdma = mark "rdma-core-tbrdma";
    perftest-tbrdma = mark "perftest-tbrdma";
  };
  rocmOf = package: {
    inherit (package.overrideArgs) rocmSupport gpuTargets;
    clrTargets = package.overrideArgs.rocmPackages.clr.localGpuTargets;
  };
  pythonEnv = builtins.head mlEnv.paths;
in
{
  # Everything `nix flake check` evaluates that can hold a package.
  checked = {
    inherit (flake)
      packages
      devShells
      checks
      apps
      formatter
      ;
  };
  legacyPackages = flake.legacyPackages.x86_64-linux // {
    ml = flake.legacyPackages.x86_64-linux.ml.shell;
  };

  mlEnv = {
    paths = map toString mlEnv.paths;
    pythonPackages = map (p: p.name) pythonEnv.packages;
    torch = rocmOf (builtins.elemAt pythonEnv.packages 0);
    vllm = rocmOf (builtins.elemAt pythonEnv.packages 1);
    inherit (mlEnv) postBuild;
  };
}
