# SPDX-License-Identifier: MIT
# driver/proto's own checks (`make check`: unit tests and a simulator sweep under ASan/UBSan,
# each libFuzzer target for a few seconds, the benchmark), as a flake check. The core itself
# is compiled by gcc as on Debian; clang builds only the fuzzers.
{
  lib,
  stdenv,
  clang,
  src,
  fuzzSeconds ? 10,
}:
stdenv.mkDerivation {
  pname = "tbrdma-proto-check";
  version = "0";
  inherit src;
  # lib.fileset.toSource names its result "source".
  sourceRoot = "source/driver/proto";

  nativeBuildInputs = [ clang ];
  # The Makefile chooses its own warnings and sanitizers; fortify/PIE defaults get in the way
  # of -ffreestanding and the sanitizer runtimes.
  hardeningDisable = [ "all" ];

  dontConfigure = true;
  buildPhase = ''
    runHook preBuild
    # Both compiler wrappers provide `cc`; name them explicitly.
    make check CC=${stdenv.cc.targetPrefix}gcc CLANG=clang FUZZ_SECONDS=${toString fuzzSeconds}
    runHook postBuild
  '';
  installPhase = ''
    touch "$out"
  '';

  meta.platforms = lib.platforms.x86_64;
}
