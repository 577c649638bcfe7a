# SPDX-License-Identifier: MIT
# Stand-in for nixpkgs nixos/modules/profiles/all-hardware.nix: tests/nix judges this project's configuration alone.
{ }
