# SPDX-License-Identifier: MIT
# Stand-in for nixpkgs nixos/modules/installer/cd-dvd/iso-image.nix: tests/nix judges this project's configuration alone.
{ }
