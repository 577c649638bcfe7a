# SPDX-License-Identifier: MIT
# nixpkgs' rdma-core with the tbrdma verbs provider added to its source tree (rdma-core keeps
# the provider interface private, so providers are built inside rdma-core), plus pyverbs.
# Layout assumed (docs/nix.md): driver/provider/add-to-rdma-core.sh RDMA_CORE_SRC copies the
# provider into providers/tbrdma and registers it in the top-level CMakeLists.txt.
{
  lib,
  rdma-core,
  python3,
  providerSrc,
  withPyverbs ? true,
}:
rdma-core.overrideAttrs (previous: {
  pname = "rdma-core-tbrdma";

  nativeBuildInputs = previous.nativeBuildInputs ++ lib.optionals withPyverbs [ python3.pkgs.cython ];

  cmakeFlags =
    previous.cmakeFlags
    ++ lib.optionals withPyverbs [
      "-DNO_PYVERBS=0"
      # Otherwise pyverbs installs into the Python interpreter's own (read-only) store path.
      "-DCMAKE_INSTALL_PYTHON_ARCH_LIB=${placeholder "out"}/${python3.sitePackages}"
    ];

  postPatch = (previous.postPatch or "") + ''
    adder=${providerSrc}/driver/provider/add-to-rdma-core.sh
    if [ ! -f "$adder" ]; then
      echo "rdma-core-tbrdma: $adder is missing from this checkout" >&2
      exit 1
    fi
    bash "$adder" "$PWD"
  '';

  postInstall = (previous.postInstall or "") + ''
    if ! ls "$out"/lib/libibverbs/libtbrdma-rdmav*.so >/dev/null 2>&1; then
      echo "rdma-core-tbrdma: the build installed no libtbrdma provider" >&2
      exit 1
    fi
  '';

  meta = previous.meta // {
    description = "RDMA core userspace libraries with the tbrdma (USB4/Thunderbolt) provider";
  };
})
