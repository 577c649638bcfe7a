# SPDX-License-Identifier: MIT
# nixosConfigurations.appliance, `nix build .#appliance-raw-efi`: a raw GPT disk image with an
# EFI system partition (/boot, systemd-boot) and an ext4 root that grows to the medium at first
# boot. Both are found by identifiers unique to this build (nixos/lib/image-ids.nix), never by
# the labels `nixos`/`ESP` every NixOS image carries.
{
  config,
  lib,
  pkgs,
  modulesPath,
  ...
}:
let
  ids = import ../lib/image-ids.nix { inherit (config.tbrdma.appliance) imageId; };
in
{
  imports = [ ./appliance.nix ];

  boot.loader.systemd-boot = {
    enable = true;
    # The editor lets anyone at the keyboard append init=/bin/sh and boot into a root shell.
    editor = false;
  };
  # The image is written on another machine; there are no EFI variables to set at build time.
  boot.loader.efi.canTouchEfiVariables = false;

  fileSystems."/" = {
    device = "/dev/disk/by-uuid/${ids.rootUuid}";
    fsType = "ext4";
    autoResize = true;
  };
  fileSystems."/boot" = {
    device = "/dev/disk/by-partuuid/${ids.espPartUuid}";
    fsType = "vfat";
    # Only root reads the partition (keys dropped there are not secret, the random seed is);
    # nothing on it is ever executed by Linux.
    options = [
      "fmask=0077"
      "dmask=0077"
      "nosuid"
      "nodev"
      "noexec"
    ];
  };

  # The image is a generic medium: first boot grows the root partition to fill it.
  boot.growPartition = true;

  # nixpkgs' raw-efi image variant (image/images.nix, virtualisation/disk-image.nix) mounts
  # by the shared labels and gives every image the same root UUID, so this image calls the
  # same builder with this build's identifiers. make-disk-image.nix fixes the root file system
  # UUID and the root partition GUID; the ESP's and the disk's GUIDs are set afterwards.
  system.build.tbrdmaImage = import (modulesPath + "/../lib/make-disk-image.nix") {
    inherit lib config pkgs;
    name = "tbrdma-appliance-raw-efi";
    format = "raw";
    partitionTableType = "efi";
    diskSize = "auto";
    copyChannel = false;
    label = ids.rootLabel;
    rootGPUID = ids.rootPartUuid;
    rootFSUID = ids.rootUuid;
    postVM = ''
      ${lib.getExe' pkgs.gptfdisk "sgdisk"} \
        --disk-guid=${ids.diskGuid} --partition-guid=1:${ids.espPartUuid} "$diskImage"
    '';
  };
}
