# SPDX-License-Identifier: MIT
# What both appliance images share: the profile and hardware support. The layouts are in
# appliance-raw-efi.nix (installed system: /boot, systemd-boot, growpart) and appliance-iso.nix
# (live system that never mounts the box's disks); flake.nix builds one configuration each.
{ modulesPath, ... }:
{
  imports = [
    ../modules
    "${modulesPath}/profiles/all-hardware.nix"
  ];

  tbrdma.appliance.enable = true;

  system.stateVersion = "25.11";
}
