# SPDX-License-Identifier: MIT
# vm-tests/pair.py under pkgs.testers.runNixOSTest (flake check `vm-pair`).
{ pkgs }:
import ./common.nix {
  inherit pkgs;
  name = "pair";
  script = ./pair.py;
}
