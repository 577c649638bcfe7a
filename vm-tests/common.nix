# SPDX-License-Identifier: MIT
# Runs one of the shared vm-tests/*.py scripts under pkgs.testers.runNixOSTest. The scripts are
# written once for two runners (this one and the local QEMU lab); this file supplies what the
# contract in docs/nix.md promises them: machines `a`, `b` and `controller` (vm-tests/nodes.nix),
# and (through vm-tests/test-script.nix) HOST_A/HOST_B and cable(i) with block()/unblock().
{
  pkgs,
  name,
  # Shared scripts run in this order on the same VMs.
  scripts,
  cableCount ? 2,
}:
let
  machines = import ./nodes.nix { inherit pkgs cableCount; };

  # The QEMU netdev ids of each cable on a node, in cable order (vm-tests/cables.nix).
  cableNetdevs =
    node:
    map (cable: cable.netdev) (
      import ./cables.nix {
        interfaceNames = builtins.attrNames node.virtualisation.allInterfaces;
        inherit cableCount;
      }
    );
in
pkgs.testers.runNixOSTest {
  name = "tbrdma-${name}";

  inherit (machines) nodes;

  testScript =
    { nodes, ... }:
    import ./test-script.nix {
      netdevs = {
        a = cableNetdevs nodes.a;
        b = cableNetdevs nodes.b;
      };
      scripts = map (script: {
        name = baseNameOf script;
        text = builtins.readFile script;
      }) scripts;
    };
}
