# SPDX-License-Identifier: MIT
# Stand-in for nixpkgs nixos/lib/make-disk-image.nix: the same formal arguments (no `...`, so an
# argument the real builder does not take fails here too), and instead of an image it returns
# what it was asked to build, for tests/nix to compare with the configuration's file systems.
{
  pkgs,
  lib,
  config,
  diskSize ? "auto",
  additionalSpace ? "512M",
  bootSize ? "256M",
  contents ? [ ],
  partitionTableType ? "legacy",
  installBootLoader ? true,
  touchEFIVars ? false,
  OVMF ? null,
  efiFirmware ? null,
  efiVariables ? null,
  fsType ? "ext4",
  label ? "nixos",
  configFile ? null,
  postVM ? "",
  memSize ? 1024,
  onlyNixStore ? false,
  name ? "nixos-disk-image",
  format ? "raw",
  deterministic ? true,
  rootGPUID ? "F222513B-DED1-49FA-B591-20CE86A2FE7F",
  rootFSUID ? (if fsType == "ext4" then rootGPUID else null),
  copyChannel ? true,
  additionalPaths ? [ ],
}:
{
  inherit
    name
    format
    partitionTableType
    diskSize
    fsType
    label
    rootGPUID
    rootFSUID
    copyChannel
    installBootLoader
    postVM
    ;
}
