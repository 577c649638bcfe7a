# SPDX-License-Identifier: MIT
# vm-tests/persistence.py under pkgs.testers.runNixOSTest (flake check `vm-persistence`).
{ pkgs }:
import ./common.nix {
  inherit pkgs;
  name = "persistence";
  script = ./persistence.py;
}
