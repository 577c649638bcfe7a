# SPDX-License-Identifier: MIT
# vm-tests/unpair.py under pkgs.testers.runNixOSTest (flake check `vm-unpair`). It continues from
# the pairing pair.py makes, so the check runs the local runner's sequence up to it.
{ pkgs }:
import ./common.nix {
  inherit pkgs;
  name = "unpair";
  scripts = [
    ./bringup.py
    ./pair.py
    ./unpair.py
  ];
}
