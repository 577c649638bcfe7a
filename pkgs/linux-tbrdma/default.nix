# SPDX-License-Identifier: MIT
# linuxPackages_latest with the patch series from driver/patches and the kernel options the
# driver and the rdma_rxe fallback rely on, stated explicitly so a config that cannot satisfy
# them fails the kernel build instead of booting without them.
{
  lib,
  linuxPackages_latest,
  patchDir,
}:
let
  seriesPatches = import ./patch-series.nix {
    seriesFile = patchDir + "/series";
    inherit patchDir;
  };

  requiredConfig = {
    name = "tbrdma-required-config";
    patch = null;
    structuredExtraConfig = with lib.kernel; {
      USB4 = module;
      USB4_NET = module;
      INFINIBAND = module;
      INFINIBAND_USER_ACCESS = module;
      RDMA_RXE = module;
    };
  };
in
linuxPackages_latest.extend (
  _: previous: {
    kernel = previous.kernel.override (originalArgs: {
      kernelPatches =
        (originalArgs.kernelPatches or [ ])
        ++ map (entry: { inherit (entry) name patch; }) seriesPatches
        ++ [ requiredConfig ];
    });
  }
)
