# SPDX-License-Identifier: MIT
# perftest linked against rdma-core-tbrdma, from its upstream release tag. The tag's tree has
# no generated configure script (upstream runs autogen.sh), so autoreconfHook makes it.
{
  lib,
  stdenv,
  fetchFromGitHub,
  autoreconfHook,
  rdma-core,
  pciutils,
}:
stdenv.mkDerivation (finalAttrs: {
  pname = "perftest";
  version = "26.04.17";

  # The hash is the NAR hash of `git archive 26.04.17` of github.com/linux-rdma/perftest
  # (checked with nix-hash against a clone). To bump: change the version, build once with
  # `hash = lib.fakeHash;` and copy the hash Nix reports.
  src = fetchFromGitHub {
    owner = "linux-rdma";
    repo = "perftest";
    tag = finalAttrs.version;
    hash = "sha256-oNvzQubmslZ4JUNww/wvWd54JDsDLamCDlorHWlNtaY=";
  };

  # configure.ac names config/ as its aux dir and m4/ as its macro dir; autogen.sh creates
  # them before running the autotools, and so must we.
  preAutoreconf = ''
    mkdir -p config m4
  '';

  nativeBuildInputs = [ autoreconfHook ];
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
})
