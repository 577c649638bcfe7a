# SPDX-License-Identifier: MIT
# nixosConfigurations.appliance: what `nix build .#appliance-raw-efi` / `.#appliance-iso`
# flash. The image variants (nixos/modules/image/images.nix in nixpkgs) replace the file
# systems below with their own; these make the plain configuration evaluable and installable.
{ lib, modulesPath, ... }:
{
  imports = [
    ../modules
    "${modulesPath}/profiles/all-hardware.nix"
  ];

  tbrdma.appliance.enable = true;

  boot.loader.systemd-boot.enable = lib.mkDefault true;
  boot.loader.efi.canTouchEfiVariables = lib.mkDefault false;
  fileSystems."/" = lib.mkDefault {
    device = "/dev/disk/by-label/nixos";
    fsType = "ext4";
  };
  fileSystems."/boot" = lib.mkDefault {
    device = "/dev/disk/by-label/ESP";
    fsType = "vfat";
  };

  # The image is a generic stick: first boot grows the root partition to the medium.
  boot.growPartition = lib.mkDefault true;

  # The ISO variant boots on UEFI machines too (Strix Halo boards boot UEFI only).
  image.modules.iso = {
    isoImage.makeEfiBootable = true;
  };

  system.stateVersion = "25.11";
}
