# SPDX-License-Identifier: MIT
# nixosConfigurations.appliance-iso, `nix build .#appliance-iso`: a live system on an ISO 9660
# image (UEFI and BIOS, also dd-able to a USB stick). It runs from the medium and RAM and
# never mounts the box's disks: no /boot, no boot loader installation, no growpart. The medium
# is found by a volume id unique to this build.
{
  config,
  lib,
  modulesPath,
  ...
}:
let
  ids = import ../lib/image-ids.nix { inherit (config.tbrdma.appliance) imageId; };
in
{
  imports = [
    ./appliance.nix
    "${modulesPath}/installer/cd-dvd/iso-image.nix"
  ];

  isoImage = {
    makeEfiBootable = true;
    makeUsbBootable = true;
    volumeID = ids.isoVolumeId;
  };

  # An ISO has no FAT partition to drop keys on: keys are baked in (authorizedKeys) or come
  # from the key stick, which this image enables (docs/appliance.md: what that allows).
  tbrdma.appliance.bootPartitionKeyFile = null;
  tbrdma.appliance.keyStick.enable = lib.mkDefault true;
}
