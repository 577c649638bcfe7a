# SPDX-License-Identifier: MIT
# File system and partition identifiers of one appliance build, derived from its image id
# (flake.nix: a hash of the source tree). Every build gets its own, so a stick and an NVMe
# flashed from different builds never offer the kernel two roots with the same UUID or label.
# Builtins only, so tests/nix can evaluate it without nixpkgs.
{ imageId }:
let
  hashOf = purpose: builtins.hashString "sha256" "tbrdma-appliance/${imageId}/${purpose}";
  part = hash: start: length: builtins.substring start length hash;
  # RFC 4122 layout, version 4 and variant bits set, from the hash's first 32 hex digits.
  uuidOf =
    purpose:
    let
      h = hashOf purpose;
    in
    "${part h 0 8}-${part h 8 4}-4${part h 13 3}-8${part h 17 3}-${part h 20 12}";
  short = part (hashOf "label") 0 8;
in
if builtins.match "[a-z0-9]{1,32}" imageId == null then
  throw "tbrdma.appliance.imageId must be 1-32 characters a-z and 0-9, got '${imageId}'"
else
  {
    # ext4 UUID of the root file system (tune2fs -U) and GPT GUID of its partition.
    rootUuid = uuidOf "root-fs";
    rootPartUuid = uuidOf "root-partition";
    # GPT GUIDs of the EFI system partition and of the disk.
    espPartUuid = uuidOf "esp-partition";
    diskGuid = uuidOf "disk";
    # ext4 labels hold 16 bytes, ISO 9660 volume ids 32.
    rootLabel = "tbrdma-${short}";
    isoVolumeId = "tbrdma-${short}";
  }
