# SPDX-License-Identifier: MIT
# vm-tests/cable_pull.py under pkgs.testers.runNixOSTest (flake check `vm-cable_pull`).
# It continues from the pairing pair.py makes, so the check runs the local runner's sequence
# up to it.
{ pkgs }:
import ./common.nix {
  inherit pkgs;
  name = "cable_pull";
  scripts = [
    ./bringup.py
    ./pair.py
    ./cable_pull.py
  ];
}
