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
# Build chroots are shared with the kbuild tests (one trixie chroot, not two, per machine).
buildenv_cache=${TBRDMA_BUILDENV_CACHE:-$HOME/.cache/tbrdma}
log() { echo "lab-hook: $*" >&2; }

mkdir -p "$cache_dir"
out=$(mktemp -d "$cache_dir/lab-hook.XXXXXX")
trap 'rm -rf "$out"' EXIT

ko=$("$here/build-module.sh" "$suite" "$buildenv_cache" "$out" "$release")
install -D -m 0644 "$ko" "$rootfs/lib/modules/$release/updates/tbrdma.ko"
# The emulated USB4 host interface the lab's Thunderbolt-rail tests load (test-only).
install -D -m 0644 "$out/tbrdma_usb4emu-$suite.ko" \
	"$rootfs/lib/modules/$release/updates/tbrdma_usb4emu.ko"
log "modules tbrdma and tbrdma_usb4emu installed for $release"

full_version=$(dpkg-query --admindir="$rootfs/var/lib/dpkg" -W -f='${Version}' libibverbs1)
provider_so=$("$here/provider-for.sh" "$suite" "$buildenv_cache" "$full_version" "$out/provider")
provider_dir=$(dirname "$(ls "$rootfs"/usr/lib/*/libibverbs/librxe-rdmav*.so | head -n1)")
install -m 0644 "$provider_so" "$provider_dir/"
install -D -m 0644 "$out/provider/tbrdma.driver" "$rootfs/etc/libibverbs.d/tbrdma.driver"
upstream=$(cat "$out/provider/rdma-core-version")
log "provider $(basename "$provider_so") installed for rdma-core $upstream"
# rdma-core's own test suite from the same source, for the lab's consumer tests
# (tests/driver/test_consumers_vm.py); Debian ships it gzipped under /usr/share/doc, which
# the image drops.
rm -rf "$rootfs/usr/local/share/rdma-core-tests"
mkdir -p "$rootfs/usr/local/share/rdma-core-tests"
cp -r "$out/provider/tests" "$rootfs/usr/local/share/rdma-core-tests/tests"
echo "$upstream" >"$rootfs/usr/local/share/rdma-core-tests/version"
log "rdma-core $upstream tests/ installed in /usr/local/share/rdma-core-tests"
depmod -b "$rootfs" "$release"
