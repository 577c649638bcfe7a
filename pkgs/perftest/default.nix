# SPDX-License-Identifier: MIT
# perftest linked against rdma-core-tbrdma (nixpkgs has no perftest of its own). The source is
# the upstream release tarball as Debian's archive carries it (perftest 25.01.0-0.80); it ships
# a generated configure script, so no autotools run here.
{
  lib,
  stdenv,
  fetchurl,
  rdma-core,
  pciutils,
}:
stdenv.mkDerivation {
  pname = "perftest";
  version = "25.01.0-0.80";

  src = fetchurl {
    url = "mirror://debian/pool/main/p/perftest/perftest_25.01.0+0.80.orig.tar.gz";
    hash = "sha256-VOhrEx8LBoYri5zWknOXNylUY8/vRnvdpfWqPa6MWwU=";
  };

  buildInputs = [
    rdma-core
    pciutils
  ];

  enableParallelBuilding = true;

  doInstallCheck = true;
  installCheckPhase = ''
    runHook preInstallCheck
    for tool in ib_write_bw ib_write_lat ib_read_lat ib_send_bw; do
      test -x "$out/bin/$tool"
    done
    runHook postInstallCheck
  '';

  meta = {
    description = "RDMA bandwidth and latency benchmarks, built against ${rdma-core.pname}";
    homepage = "https://github.com/linux-rdma/perftest";
    license = with lib.licenses; [
      gpl2Only
      bsd2
    ];
    platforms = lib.platforms.linux;
  };
}
