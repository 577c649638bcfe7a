#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# Lab image hook: installs the tbrdma module and libibverbs provider into a guest rootfs.
# The lab image builder runs it as root after debootstrap (Debian trixie) and before packing:
#
#   bash driver/lab-hook.sh <rootfs-dir> <guest-kernel-release> <cache-dir>
#
# The module is built against exactly the guest kernel's headers, and the provider inside
# the source of exactly the guest's rdma-core version, so provider and libibverbs match.
# The builder runs depmod afterwards; we run it too so the hook is complete on its own.
set -euo pipefail

rootfs=$(cd "$1" && pwd)
release=$2
cache_dir=$3
here=$(cd "$(dirname "$0")" && pwd)
suite=${TBRDMA_GUEST_SUITE:-trixie}
log() { echo "lab-hook: $*" >&2; }

mkdir -p "$cache_dir"
out=$(mktemp -d "$cache_dir/lab-hook.XXXXXX")
trap 'rm -rf "$out"' EXIT

ko=$("$here/build-module.sh" "$suite" "$cache_dir" "$out" "$release")
install -D -m 0644 "$ko" "$rootfs/lib/modules/$release/updates/tbrdma.ko"
log "module installed for $release"

full_version=$(dpkg-query --admindir="$rootfs/var/lib/dpkg" -W -f='${Version}' libibverbs1)
upstream=${full_version#*:}
upstream=${upstream%-*}
root=$("$here/build-env.sh" "$suite" "$cache_dir")
src_dir=/build/src/rdma-core-$upstream
if [ ! -f "$root$src_dir/CMakeLists.txt" ]; then
	mkdir -p "$root/build/src"
	# The .dsc may be missing from the archive while the orig tarball is served; the
	# tarball is all we need, so check for it rather than for apt's exit status.
	chroot "$root" sh -c "cd /build/src && apt-get source -qq --download-only \
		rdma-core=$full_version" >"$out/apt-source.log" 2>&1 || true
	tarball=$root/build/src/rdma-core_$upstream.orig.tar.gz
	if [ ! -f "$tarball" ]; then
		cat "$out/apt-source.log" >&2
		log "no rdma-core $upstream source tarball"
		exit 1
	fi
	tar -xzf "$tarball" -C "$root/build/src"
fi
rm -rf "$root/build/tbrdma-driver"
mkdir -p "$root/build/tbrdma-driver"
cp -r "$here/provider" "$here/build-provider.sh" "$root/build/tbrdma-driver/"
chroot "$root" bash /build/tbrdma-driver/build-provider.sh "$src_dir" /build/provider-out >/dev/null
provider_so=$(ls "$root"/build/provider-out/libtbrdma-rdmav*.so)
provider_dir=$(dirname "$(ls "$rootfs"/usr/lib/*/libibverbs/librxe-rdmav*.so | head -n1)")
install -m 0644 "$provider_so" "$provider_dir/"
install -D -m 0644 "$root/build/provider-out/tbrdma.driver" "$rootfs/etc/libibverbs.d/tbrdma.driver"
log "provider $(basename "$provider_so") installed for rdma-core $upstream"
depmod -b "$rootfs" "$release"
