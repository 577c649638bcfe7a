# SPDX-License-Identifier: MIT
# vm-tests/persistence.py under pkgs.testers.runNixOSTest (flake check `vm-persistence`).
# It continues from the pairing pair.py makes, so the check runs the local runner's sequence
# up to it.
{ pkgs }:
import ./common.nix {
  inherit pkgs;
  name = "persistence";
  scripts = [
    ./bringup.py
    ./pair.py
    ./persistence.py
  ];
}
