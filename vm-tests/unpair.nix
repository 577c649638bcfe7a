# SPDX-License-Identifier: MIT
# vm-tests/unpair.py under pkgs.testers.runNixOSTest (flake check `vm-unpair`).
{ pkgs }:
import ./common.nix {
  inherit pkgs;
  name = "unpair";
  script = ./unpair.py;
}
