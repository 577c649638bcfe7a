# SPDX-License-Identifier: MIT
# Kernel parameters that let the Strix Halo iGPU map most of the unified memory as GTT.
# amdgpu.gttsize (MiB) is what older kernels read; newer kernels deprecate it in favour of
# TTM's page limits (4 KiB pages), so both are set to the same size. Builtins only, so
# tests/nix can evaluate it without nixpkgs.
{ gttGiB }:
let
  pagesPerGiB = 262144; # 1 GiB / 4 KiB
in
if !builtins.isInt gttGiB || gttGiB < 1 then
  throw "tbrdma.appliance.strixHalo.gttGiB must be a positive whole number, got ${toString gttGiB}"
else
  [
    "amdgpu.gttsize=${toString (gttGiB * 1024)}"
    "ttm.pages_limit=${toString (gttGiB * pagesPerGiB)}"
    "ttm.page_pool_size=${toString (gttGiB * pagesPerGiB)}"
  ]
