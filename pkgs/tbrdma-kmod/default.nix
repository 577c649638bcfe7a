# SPDX-License-Identifier: MIT
# The tbrdma kernel module for one kernel package set: `linuxPackages.callPackage` supplies
# `kernel` and `kernelModuleMakeFlags`, so every kernel gets its own build.
# Layout assumed (docs/nix.md): driver/kernel/Kbuild builds tbrdma.ko and pulls the protocol
# core from ../proto (driver/proto/Kbuild.inc).
{
  lib,
  stdenv,
  kernel,
  kernelModuleMakeFlags,
  src,
}:
stdenv.mkDerivation {
  pname = "tbrdma";
  version = "0.1.0-${kernel.version}";
  inherit src;

  nativeBuildInputs = kernel.moduleBuildDependencies;
  # Kbuild chooses its own code model and flags; nixpkgs' PIC hardening fights it.
  hardeningDisable = [ "pic" ];

  makeFlags = kernelModuleMakeFlags ++ [
    "-C"
    "${kernel.dev}/lib/modules/${kernel.modDirVersion}/build"
  ];

  preBuild = ''
    if [ ! -f driver/kernel/Kbuild ] && [ ! -f driver/kernel/Makefile ]; then
      echo "tbrdma: driver/kernel has no Kbuild or Makefile in this checkout" >&2
      exit 1
    fi
    # Kbuild wants the module directory as an absolute path.
    makeFlagsArray+=("M=$PWD/driver/kernel")
  '';
  buildFlags = [ "modules" ];

  installFlags = [
    "INSTALL_MOD_PATH=${placeholder "out"}"
    # NixOS runs depmod over all module packages together (boot.extraModulePackages).
    "DEPMOD=true"
  ];
  installTargets = [ "modules_install" ];

  postInstall = ''
    if ! find "$out/lib/modules" -name 'tbrdma.ko*' | grep -q .; then
      echo "tbrdma: the build installed no tbrdma.ko" >&2
      exit 1
    fi
  '';

  meta = {
    description = "RDMA over USB4/Thunderbolt cables: kernel module";
    license = lib.licenses.gpl2Only;
    platforms = lib.platforms.linux;
  };
}
