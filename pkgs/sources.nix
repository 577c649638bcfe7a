# SPDX-License-Identifier: MIT
# The parts of this repository each package builds from, so an edit to docs or tests does not
# rebuild the kernel module, and an edit to the driver does not rebuild tbctl.
{ lib }:
let
  inherit (lib) fileset;
  root = ../.;
  toSource = set: fileset.toSource { inherit root; fileset = set; };

  filesets = {
    tbctl = fileset.unions [
      ../pyproject.toml
      ../README.md
      ../tbctl
    ];

    # tbctl's test suite as the `tbctl-tests` check runs it: tests/proto and tests/driver
    # compile driver/proto and driver/kernel's userspace-testable parts, tests/lab reads the
    # shared vm-tests scripts, tests/unit/test_schema.py checks docs/tbctl.md against the code.
    tbctlTests = fileset.unions [
      ../pyproject.toml
      ../README.md
      ../tbctl
      ../tests
      ../driver
      ../vm-tests
      ../docs
    ];

    # driver/kernel's Kbuild also compiles driver/proto/src/*.c (driver/proto/Kbuild.inc).
    # maybeMissing: a checkout without the driver still evaluates; the build then says what
    # is missing instead of the whole flake failing to evaluate.
    kernelModule = fileset.unions [
      (fileset.maybeMissing ../driver/kernel)
      ../driver/proto
      # the user-space ABI header the module shares with the provider
      ../driver/provider/tbrdma/tbrdma-abi.h
    ];

    provider = ../driver/provider;
    proto = ../driver/proto;
  };
in
{
  tbctl = toSource filesets.tbctl;
  tbctlTests = toSource filesets.tbctlTests;
  kernelModule = toSource filesets.kernelModule;

  provider =
    if builtins.pathExists ../driver/provider then
      toSource filesets.provider
    else
      throw "driver/provider is missing from this checkout";

  proto = toSource filesets.proto;

  patchDir = ../driver/patches;
}
