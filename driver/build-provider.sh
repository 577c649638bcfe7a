#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# Builds the tbrdma libibverbs provider inside a given rdma-core source tree, so the provider
# is compiled against exactly that rdma-core's private provider ABI.
#
# usage: build-provider.sh <rdma-core-source-dir> <out-dir>
# Leaves <out-dir>/libtbrdma-rdmav<N>.so and <out-dir>/tbrdma.driver.
# Needs cmake, ninja, gcc, pkg-config, libnl-3/libnl-route-3 and libudev headers.
set -euo pipefail

src=$(cd "$1" && pwd)
out=$2
here=$(cd "$(dirname "$0")" && pwd)

rm -rf "$src/providers/tbrdma"
cp -r "$here/provider/tbrdma" "$src/providers/tbrdma"
if ! grep -q '^add_subdirectory(providers/tbrdma)$' "$src/CMakeLists.txt"; then
	sed -i 's|^add_subdirectory(providers/rxe)$|&\nadd_subdirectory(providers/tbrdma)|' \
		"$src/CMakeLists.txt"
	grep -q '^add_subdirectory(providers/tbrdma)$' "$src/CMakeLists.txt" || {
		echo "build-provider.sh: no providers/rxe line to anchor on in $src/CMakeLists.txt" >&2
		exit 1
	}
fi

build=$src/build-tbrdma
mkdir -p "$build"
(cd "$build" && cmake -GNinja -DNO_PYVERBS=1 -DNO_MAN_PAGES=1 -DENABLE_RESOLVE_NEIGH=0 \
	-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS=-Werror .. >cmake.log 2>&1) || {
	tail -n 40 "$build/cmake.log" >&2
	exit 1
}
pabi=$(sed -n 's/^set(IBVERBS_PABI_VERSION "\([0-9]*\)")$/\1/p' "$src/CMakeLists.txt")
ninja -C "$build" "tbrdma-rdmav$pabi" >"$build/ninja.log" 2>&1 || {
	tail -n 40 "$build/ninja.log" >&2
	exit 1
}
mkdir -p "$out"
cp "$build/lib/libtbrdma-rdmav$pabi.so" "$out/"
echo "driver tbrdma" >"$out/tbrdma.driver"
echo "$out/libtbrdma-rdmav$pabi.so"
