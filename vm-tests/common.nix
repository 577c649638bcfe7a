# SPDX-License-Identifier: MIT
# Runs one of the shared vm-tests/*.py scripts under pkgs.testers.runNixOSTest. The scripts are
# written once for two runners (this one and the local QEMU lab); this file supplies what the
# contract in docs/nix.md promises them: machines `a`, `b` and `controller`, and (through
# vm-tests/test-script.nix) HOST_A/HOST_B and cable(i) with block()/unblock().
{
  pkgs,
  name,
  script,
  cableCount ? 2,
}:
let
  inherit (pkgs) lib;
  tbrdmaPackages = import ../pkgs/packages.nix { inherit pkgs; };
  # nixpkgs' fixed test key pair; these VMs are throwaway and reachable only from each other.
  testKeys = import "${pkgs.path}/nixos/tests/ssh-keys.nix" pkgs;

  cableLinks = builtins.genList (i: "thunderbolt${toString i}") cableCount;
  managementVlan = 1;

  # a and b: the two hosts, joined by `cableCount` point-to-point cables, each its own VLAN.
  # The test framework's initrd udev rule names each cable NIC by MAC before anything
  # brings it up, so the thunderbolt<i> names never race a rename.
  cabledHost =
    { ... }:
    {
      imports = [ ../nixos/modules ];

      virtualisation.vlans = [ managementVlan ];
      virtualisation.interfaces = lib.listToAttrs (
        lib.imap0 (
          i: link:
          lib.nameValuePair link {
            vlan = managementVlan + 1 + i;
            assignIP = false;
          }
        ) cableLinks
      );
      virtualisation.cores = 1;
      virtualisation.memorySize = 1024;

      # Cables get their addresses from `tbctl pair`, never from DHCP.
      networking.useDHCP = false;

      hardware.tbrdma = {
        enable = true;
        # The test kernel is nixpkgs' default one; the module is built against it.
        kernel = "stock";
        # No USB4 controller in QEMU: pairings use the rdma_rxe transport over the cables.
        kernelModules = [
          "rdma_rxe"
          "tbrdma"
        ];
        linkInterfaces = cableLinks;
      };
      services.tbctl = {
        enable = true;
        declaredLinks = cableLinks;
      };

      services.openssh.enable = true;
      users.users.root.openssh.authorizedKeys.keys = [ testKeys.snakeOilPublicKey ];
      environment.systemPackages = [ pkgs.python3 ];
    };

  controller =
    { ... }:
    {
      virtualisation.vlans = [ managementVlan ];
      networking.useDHCP = false;
      environment.systemPackages = [
        tbrdmaPackages.tbctl
        pkgs.openssh
      ];
      # A copy (mode set), not a store symlink: ssh refuses world-readable private keys.
      environment.etc."tbrdma-test/id_ecdsa" = {
        source = testKeys.snakeOilPrivateKey;
        mode = "0600";
      };
      environment.etc."tbrdma-test/ssh_config".text = ''
        Host a b
          User root
          IdentityFile /etc/tbrdma-test/id_ecdsa
          StrictHostKeyChecking no
          UserKnownHostsFile /dev/null
      '';
      environment.variables.TBCTL_SSH_CONFIG = "/etc/tbrdma-test/ssh_config";
    };

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

  nodes = {
    a = cabledHost;
    b = cabledHost;
    inherit controller;
  };

  testScript =
    { nodes, ... }:
    import ./test-script.nix {
      netdevs = {
        a = cableNetdevs nodes.a;
        b = cableNetdevs nodes.b;
      };
      scriptName = baseNameOf script;
      scriptText = builtins.readFile script;
    };
}
