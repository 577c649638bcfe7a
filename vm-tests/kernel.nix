# SPDX-License-Identifier: MIT
# One of the kernel engineer's vm-tests/tbrdma_*.py under pkgs.testers.runNixOSTest (flake
# checks `vm-tbrdma_*`, found by flake.nix). They follow the same contract as the lab's
# scripts and run on the same nodes, on their own.
{
  pkgs,
  script,
}:
import ./common.nix {
  inherit pkgs;
  name = pkgs.lib.removeSuffix ".py" (baseNameOf script);
  scripts = [ script ];
}
