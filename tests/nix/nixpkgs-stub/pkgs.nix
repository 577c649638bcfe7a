# SPDX-License-Identifier: MIT
# A stand-in for `import nixpkgs { system; overlays; }` as flake.nix calls it (tests/nix
# eval-packages.nix): every package flake.nix names is a marker derivation whose store path
# says which package it is, and the few builders it calls record their arguments. Nothing is
# built; what is judged is which package ends up in which flake output.
lib: _:
let
  mark = name: {
    type = "derivation";
    inherit name;
    outPath = "/stub/${name}";
    meta.mainProgram = name;
  };
  named = names: lib.genAttrs names mark;
in
named [
  "tbctl"
  "qemu"
  "debootstrap"
  "e2fsprogs"
  "zstd"
  "kmod"
  "openssh"
  "pyverbs-tbrdma"
  "rdma-core-tbrdma"
  "tbrdma-kmod"
  "perftest-tbrdma"
  "python3-pyverbs"
  "tbrdma-ml-env"
  "gcc"
  "gnumake"
  "clang"
  "ruff"
  "linux-tbrdma-config-check"
  "linux-tbrdma-patches-check"
  "linuxPackages"
  "tbctl-tests"
  "tbrdma-proto-check"
  "nixfmt"
]
// {
  inherit lib;
  linux-tbrdma = mark "linux-tbrdma" // {
    dev = mark "linux-tbrdma-dev";
    modDirVersion = "6.99.0";
    moduleBuildDependencies = [ (mark "kernel-module-build-dependencies") ];
  };
  tbrdmaModuleFor = kernelPackages: mark "tbrdma-kmod-for-${kernelPackages.name}";
  # Also not a marker: the packages it was given stay visible.
  python3.withPackages = select: {
    pythonWith = select (named [
      "click"
      "paramiko"
      "jinja2"
      "rich"
      "pytest"
      "pytest-benchmark"
    ]);
  };
  writeShellApplication = args: mark args.name;
  # Not a marker: its arguments (packages, variables) stay visible in the evaluated outputs.
  mkShell = args: { shell = args; };
  testers.runNixOSTest = args: mark "nixos-test-${args.name}";
}
