# SPDX-License-Identifier: MIT
# How the Nix runner names the QEMU side of each virtual cable. nixos/lib/testing/network.nix
# numbers a node's NICs in the order of `attrNames virtualisation.allInterfaces` (1-based) and
# nixos/lib/qemu-common.nix names NIC n's backend `vlan<n>`; `set_link` on that id is how
# cable(i).block() pulls the cable. Builtins only, so tests/nix can evaluate it.
{
  # `attrNames` of a node's virtualisation.allInterfaces (already sorted by Nix).
  interfaceNames,
  # Cable count; cable i is interface `thunderbolt<i>`.
  cableCount,
}:
let
  indexOf =
    name:
    let
      positions = builtins.filter (i: builtins.elemAt interfaceNames i == name) (
        builtins.genList (i: i) (builtins.length interfaceNames)
      );
    in
    if positions == [ ] then
      throw "vm-tests: interface ${name} is not attached to this node"
    else
      builtins.head positions;
in
builtins.genList (i: {
  link = "thunderbolt${toString i}";
  netdev = "vlan${toString (indexOf "thunderbolt${toString i}" + 1)}";
}) cableCount
