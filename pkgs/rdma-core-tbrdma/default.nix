# SPDX-License-Identifier: MIT
# nixpkgs' rdma-core with the tbrdma verbs provider added to its source tree (rdma-core keeps
# the provider interface private, so providers are built inside rdma-core), plus pyverbs.
# Layout (docs/nix.md): driver/provider/tbrdma is an rdma-core provider directory
# (rdma_provider(tbrdma ...)); driver/build-provider.sh adds it to a tree the same two ways
# as postPatch below (copy, then add_subdirectory after providers/rxe) before building it
# on Debian, so a change to one of them needs the same change in the other.
{
  lib,
  rdma-core,
  python3,
  providerSrc,
  withPyverbs ? true,
}:
rdma-core.overrideAttrs (previous: {
  pname = "rdma-core-tbrdma";

  nativeBuildInputs =
    previous.nativeBuildInputs ++ lib.optionals withPyverbs [ python3.pkgs.cython ];
  # pyverbs' C extensions need Python.h and libpython for the host (strictDeps is on).
  buildInputs = previous.buildInputs ++ lib.optionals withPyverbs [ python3 ];

  cmakeFlags =
    previous.cmakeFlags
    ++ lib.optionals withPyverbs [
      "-DNO_PYVERBS=0"
      # Otherwise pyverbs installs into the Python interpreter's own (read-only) store path.
      "-DCMAKE_INSTALL_PYTHON_ARCH_LIB=${placeholder "out"}/${python3.sitePackages}"
    ];

  postPatch = (previous.postPatch or "") + ''
    provider=${providerSrc}/driver/provider/tbrdma
    if [ ! -f "$provider/CMakeLists.txt" ]; then
      echo "rdma-core-tbrdma: $provider/CMakeLists.txt is missing from this checkout" >&2
      exit 1
    fi
    cp -r "$provider" providers/tbrdma
    chmod -R u+w providers/tbrdma
    substituteInPlace CMakeLists.txt --replace-fail \
      'add_subdirectory(providers/rxe)' \
      $'add_subdirectory(providers/rxe)\nadd_subdirectory(providers/tbrdma)'
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
