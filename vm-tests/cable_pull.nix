# SPDX-License-Identifier: MIT
# vm-tests/cable_pull.py under pkgs.testers.runNixOSTest (flake check `vm-cable_pull`).
{ pkgs }:
import ./common.nix {
  inherit pkgs;
  name = "cable_pull";
  script = ./cable_pull.py;
}
