# SPDX-License-Identifier: MIT
# overlays.default: adds this project's packages to nixpkgs under their own names. It never
# replaces nixpkgs' rdma-core or perftest.
final: prev:
import ./packages.nix {
  pkgs = final;
  inherit (prev) rdma-core;
}
