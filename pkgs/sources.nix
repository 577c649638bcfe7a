# SPDX-License-Identifier: MIT
# The parts of this repository each package builds from, so an edit to docs or tests does not
# rebuild the kernel module, and an edit to the driver does not rebuild tbctl.
{ lib }:
let
  inherit (lib) fileset;
  root = ../.;
in
{
  tbctl = fileset.toSource {
    inherit root;
    fileset = fileset.unions [
      ../pyproject.toml
      ../README.md
      ../tbctl
    ];
  };

  # tbctl's own test suite, for the flake check that runs it (not the VM/kbuild/netns tests).
  tbctlTests = fileset.toSource {
    inherit root;
    fileset = fileset.unions [
      ../pyproject.toml
      ../README.md
      ../tbctl
      ../tests
    ];
  };

  # driver/kernel's Kbuild also compiles driver/proto/src/*.c (driver/proto/Kbuild.inc).
  # maybeMissing: a checkout without the driver still evaluates; the build then says what is
  # missing instead of the whole flake failing to evaluate.
  kernelModule = fileset.toSource {
    inherit root;
    fileset = fileset.unions [
      (fileset.maybeMissing ../driver/kernel)
      ../driver/proto
    ];
  };

  provider =
    if builtins.pathExists ../driver/provider then
      fileset.toSource {
        inherit root;
        fileset = ../driver/provider;
      }
    else
      throw "driver/provider is missing from this checkout";

  proto = fileset.toSource {
    inherit root;
    fileset = ../driver/proto;
  };

  patchDir = ../driver/patches;
}
