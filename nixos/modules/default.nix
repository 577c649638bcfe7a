# SPDX-License-Identifier: MIT
# nixosModules.default: every option this project adds; nothing is enabled by importing it.
{
  imports = [
    ./hardware-tbrdma.nix
    ./services-tbctl.nix
    ./appliance.nix
  ];
}
