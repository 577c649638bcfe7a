# SPDX-License-Identifier: MIT
# The machines of the NixOS VM tests, as NixOS modules: `a` and `b` (the two hosts, joined by
# `cableCount` cables) and `controller`. vm-tests/common.nix runs them; tests/nix evaluates
# them with lib.evalModules (test_nix_modules.py).
{
  pkgs,
  cableCount ? 2,
}:
let
  inherit (pkgs) lib;
  tbrdmaPackages = import ../pkgs/packages.nix { inherit pkgs; };
  # nixpkgs' fixed client key pair; these VMs are throwaway and reachable only from each other.
  testKeys = import "${pkgs.path}/nixos/tests/ssh-keys.nix" pkgs;

  # A host key per node and the controller's known_hosts for them, as the local lab makes
  # them: tbctl checks host keys (no StrictHostKeyChecking=no), so the test does too.
  hostKeys = pkgs.runCommand "tbrdma-vm-test-host-keys" { nativeBuildInputs = [ pkgs.openssh ]; } ''
    mkdir "$out"
    for node in a b; do
      ssh-keygen -q -t ed25519 -N "" -C "$node" -f "$out/$node"
      echo "$node $(cut -d' ' -f1,2 "$out/$node.pub")" >>"$out/known_hosts"
    done
  '';

  cableLinks = builtins.genList (i: "thunderbolt${toString i}") cableCount;
  managementVlan = 1;

  # Every NIC has a stable name: the management NIC is mgmt0 and cable i is thunderbolt<i>,
  # each on its own VLAN. The test framework's initrd udev rule names NICs by MAC before
  # anything brings them up, so no name ever races a rename.
  networkFor = cabled: {
    virtualisation.interfaces = {
      mgmt0 = {
        vlan = managementVlan;
        assignIP = true;
      };
    }
    // lib.optionalAttrs cabled (
      lib.listToAttrs (
        lib.imap0 (
          i: link:
          lib.nameValuePair link {
            vlan = managementVlan + 1 + i;
            assignIP = false;
          }
        ) cableLinks
      )
    );
    # No QEMU user-mode NIC: nothing here needs it, and it would be a kernel-named eth0.
    virtualisation.qemu.networkingOptions = lib.mkForce [ ];
    # Cables get their addresses from `tbctl pair`, never from DHCP; they are only brought
    # up at boot (as a plugged-in thunderbolt-net link is, and as the lab image does).
    networking.useDHCP = false;
    networking.interfaces = lib.optionalAttrs cabled (lib.genAttrs cableLinks (_: { }));
  };

  # a and b: the two hosts, joined by `cableCount` point-to-point cables.
  cabledHost =
    node:
    { ... }:
    {
      imports = [
        ../nixos/modules
        (networkFor true)
      ];

      virtualisation.cores = 1;
      virtualisation.memorySize = 1024;

      hardware.tbrdma = {
        enable = true;
        # The test kernel is nixpkgs' default one; the module is built against it.
        kernel = "stock";
        # No USB4 controller in QEMU: the scripts pair with the rdma_rxe transport.
        kernelModules = [
          "rdma_rxe"
          "tbrdma"
        ];
        linkInterfaces = cableLinks;
      };
      services.tbctl = {
        enable = true;
        declaredLinks = cableLinks;
        # What `tbctl pair --transport rxe` lists, so pair finds the files it would write
        # already in place (NixOS's are read-only) instead of trying to replace them.
        kernelModules = [ "rdma_rxe" ];
      };
      # The lab image installs tbctl as /usr/local/bin/tbctl and bringup.py checks that path.
      systemd.tmpfiles.rules = [
        "L+ /usr/local/bin/tbctl - - - - /run/current-system/sw/bin/tbctl"
      ];

      services.openssh = {
        enable = true;
        hostKeys = [
          {
            path = "/etc/ssh/ssh_host_ed25519_key";
            type = "ed25519";
          }
        ];
      };
      # Copies (mode set), not store links: sshd refuses a world-readable host key.
      environment.etc."ssh/ssh_host_ed25519_key" = {
        source = "${hostKeys}/${node}";
        mode = "0600";
      };
      environment.etc."ssh/ssh_host_ed25519_key.pub" = {
        source = "${hostKeys}/${node}.pub";
        mode = "0644";
      };
      users.users.root.openssh.authorizedKeys.keys = [ testKeys.snakeOilPublicKey ];
    };

  controller =
    { ... }:
    {
      imports = [ (networkFor false) ];
      environment.systemPackages = [
        tbrdmaPackages.tbctl
        # `python3 -m tbctl.rdmaverify` runs on the controller.
        (pkgs.python3.withPackages (ps: [ (ps.toPythonModule tbrdmaPackages.tbctl) ]))
        pkgs.openssh
      ];
      environment.etc."tbrdma-test/id_ecdsa" = {
        source = testKeys.snakeOilPrivateKey;
        mode = "0600";
      };
      environment.etc."tbrdma-test/known_hosts".source = "${hostKeys}/known_hosts";
      environment.etc."tbrdma-test/ssh_config".text = ''
        Host a b
          User root
          IdentityFile /etc/tbrdma-test/id_ecdsa
          UserKnownHostsFile /etc/tbrdma-test/known_hosts
          StrictHostKeyChecking yes
      '';
      environment.variables.TBCTL_SSH_CONFIG = "/etc/tbrdma-test/ssh_config";
    };

in
{
  inherit cableLinks;
  nodes = {
    a = cabledHost "a";
    b = cabledHost "b";
    inherit controller;
  };
}
