# SPDX-License-Identifier: MIT
# vm-tests/bringup.py under pkgs.testers.runNixOSTest (flake check `vm-bringup`).
{ pkgs }:
import ./common.nix {
  inherit pkgs;
  name = "bringup";
  scripts = [ ./bringup.py ];
}
