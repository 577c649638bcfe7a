# SPDX-License-Identifier: MIT
# linuxPackages_latest with the patch series from driver/patches. Nothing else changes the
# kernel derivation, so while the series is empty this is exactly linuxPackages_latest (and
# comes from the binary cache); the kernel options the driver needs are checked against the
# generated config instead (configCheck, run as a flake check).
{
  lib,
  runCommand,
  linuxPackages_latest,
  patchDir,
}:
let
  seriesPatches = import ./patch-series.nix {
    seriesFile = patchDir + "/series";
    inherit patchDir;
  };

  # USB4 networking carries the rails, the RDMA core and user verbs carry tbrdma, and rdma_rxe
  # is the fallback transport of the VM tests.
  requiredOptions = [
    "USB4"
    "USB4_NET"
    "INFINIBAND"
    "INFINIBAND_USER_ACCESS"
    "RDMA_RXE"
  ];

  kernelPackages = linuxPackages_latest.extend (
    _: previous: {
      kernel = previous.kernel.override (originalArgs: {
        kernelPatches =
          (originalArgs.kernelPatches or [ ])
          ++ map (entry: { inherit (entry) name patch; }) seriesPatches;
      });
    }
  );

  configCheck =
    runCommand "linux-tbrdma-config-check" { kernelConfig = kernelPackages.kernel.configfile; }
      ''
        for option in ${lib.escapeShellArgs requiredOptions}; do
          if ! grep -Eq "^CONFIG_$option=(y|m)$" "$kernelConfig"; then
            echo "kernel config lacks CONFIG_$option=y or =m" >&2
            exit 1
          fi
        done
        touch "$out"
      '';

  # Cheap compared with a kernel build: unpack the source the kernel derivation builds from
  # and apply the series to it in order, as the kernel build's patchPhase would. An empty
  # series needs no source at all.
  patchesCheck =
    runCommand "linux-tbrdma-patches-apply"
      {
        kernelSrc = kernelPackages.kernel.src;
        kernelVersion = kernelPackages.kernel.version;
      }
      (
        if seriesPatches == [ ] then
          ''
            echo "driver/patches/series is empty; nothing to apply to linux $kernelVersion"
            touch "$out"
          ''
        else
          ''
            mkdir linux
            tar -xf "$kernelSrc" -C linux --strip-components=1
            ${lib.concatMapStrings (entry: ''
              echo ${lib.escapeShellArg "applying ${entry.name}"} "to linux $kernelVersion"
              patch -d linux -p1 --batch --forward <${entry.patch} || {
                echo ${lib.escapeShellArg "${entry.name} (${entry.reason}) does not apply"} \
                  "to linux $kernelVersion; rebase it or drop it from driver/patches/series" >&2
                exit 1
              }
            '') seriesPatches}
            touch "$out"
          ''
      );
in
{
  inherit
    kernelPackages
    configCheck
    patchesCheck
    seriesPatches
    ;
}
