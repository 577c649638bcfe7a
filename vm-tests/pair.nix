# SPDX-License-Identifier: MIT
# vm-tests/pair.py under pkgs.testers.runNixOSTest (flake check `vm-pair`).
# bringup.py first, as in the local runner's sequence.
{ pkgs }:
import ./common.nix {
  inherit pkgs;
  name = "pair";
  scripts = [
    ./bringup.py
    ./pair.py
  ];
}
