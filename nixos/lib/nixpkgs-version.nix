# SPDX-License-Identifier: MIT
# The nixpkgs releases this project supports: 25.11 and newer (unstable included), the range
# flake.lock and tests/nix cover; older ones predate pieces used here (a rocmPackages whose
# ROCm knows gfx1151, torch/vLLM taking rocmPackages and gpuTargets) and are refused rather
# than half supported (docs/nix.md). Builtins only, so tests/nix can evaluate it without
# nixpkgs.
{ version }:
let
  minimum = "25.11";
  # lib.version is "25.11.20260526.25f5383" from a flake, but "25.11pre-git" in a plain
  # checkout of the 25.11 branch; comparing only major.minor accepts both.
  found = builtins.match "([0-9]+[.][0-9]+).*" version;
  majorMinor = if found == null then "0" else builtins.head found;
  supported = builtins.compareVersions majorMinor minimum >= 0;
in
{
  inherit minimum supported;
  check =
    where:
    if supported then
      true
    else
      throw "${where}: tbrdma needs nixpkgs ${minimum} or newer (nixos-${minimum} or nixos-unstable); this nixpkgs is ${version}";
}
