# SPDX-License-Identifier: MIT
# tbctl's pytest suite minus the tests that boot VMs, build kernels or need root namespaces
# (markers registered in pyproject.toml); those run in .ci/run on a Debian machine.
# tests/proto and tests/driver compile C (gcc with ASan/UBSan, clang's libFuzzer), so this is
# a stdenv build with a compiler, not a runCommand.
{
  stdenv,
  clang,
  python3,
  openssh,
  src,
}:
let
  # The runtime dependencies of pkgs/tbctl plus the `dev` extra's test tools.
  python = python3.withPackages (ps: [
    ps.click
    ps.paramiko
    ps.jinja2
    ps.rich
    ps.pytest
    ps.pytest-benchmark
  ]);
in
stdenv.mkDerivation {
  pname = "tbctl-tests";
  version = "0";
  inherit src;

  # stdenv brings gcc and make; clang builds the fuzzers. openssh: the lab unit tests make
  # keys with ssh-keygen and resolve configs with `ssh -G`.
  nativeBuildInputs = [
    python
    clang
    openssh
  ];
  # The C tests choose their own warnings and sanitizers (as pkgs/proto-tests.nix does).
  hardeningDisable = [ "all" ];

  dontConfigure = true;
  dontInstall = true;
  buildPhase = ''
    runHook preBuild
    export HOME=$TMPDIR
    # tests/nix drives nix-instantiate, which does not run inside a Nix build; `nix flake
    # check` evaluates those same expressions anyway.
    python -m pytest -p no:cacheprovider -m "not vm and not kbuild and not netns" \
      --ignore=tests/nix tests
    touch $out
    runHook postBuild
  '';
}
