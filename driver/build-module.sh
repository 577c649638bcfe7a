#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# Builds tbrdma.ko for one Debian suite inside that suite's build chroot (build-env.sh) and
# copies the module and the full build log out.
#
# usage: build-module.sh <suite> <cache-dir> <out-dir> [kernel-release]
# Without a release the chroot's newest linux-headers tree is used. Warnings fail the build.
set -euo pipefail

suite=$1
cache_dir=$2
out_dir=$3
release=${4:-}
here=$(cd "$(dirname "$0")" && pwd)

root=$("$here/build-env.sh" "$suite" "$cache_dir")
if [ -z "$release" ]; then
	release=$(ls "$root/usr/src" | sed -n 's/^linux-headers-\(.*-amd64\)$/\1/p' | sort -V | tail -n1)
fi
if [ ! -d "$root/usr/src/linux-headers-$release" ]; then
	# A guest kernel newer than the chroot's headers: fetch exactly its headers.
	mount -t proc proc "$root/proc"
	trap 'umount "$root/proc" 2>/dev/null || true' EXIT
	chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	chroot "$root" env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends "linux-headers-$release" >/dev/null
	umount "$root/proc"
	trap - EXIT
fi

# One build directory per build: checkouts that build at the same time share the chroot.
mkdir -p "$root/build"
work=$(mktemp -d "$root/build/tbrdma.XXXXXX")
cp -r "$here/kernel" "$here/proto" "$work/"
# The kernel includes the provider's ABI header (tbrdma-abi.h): both sides share one copy.
mkdir -p "$work/provider"
cp -r "$here/provider/tbrdma" "$work/provider/"
mkdir -p "$out_dir"
# objtool (7.x) reads /proc; the mount is stacked, so concurrent builds each undo only theirs.
mount -t proc proc "$root/proc"
trap 'umount "$root/proc" 2>/dev/null || true; rm -rf "$work"' EXIT
set +e
chroot "$root" make -C "/usr/src/linux-headers-$release" M="/build/$(basename "$work")/kernel" \
	KBUILD_MODPOST_WARN= W= TBRDMA_USB4EMU=m modules >"$out_dir/build-$suite.log" 2>&1
status=$?
set -e
umount "$root/proc"
trap 'rm -rf "$work"' EXIT
if [ $status -ne 0 ]; then
	tail -n 60 "$out_dir/build-$suite.log" >&2
	exit $status
fi
if grep -E 'warning:|WARNING:' "$out_dir/build-$suite.log" >&2; then
	echo "build-module.sh: warnings in the $suite build ($release)" >&2
	exit 1
fi
cp "$work/kernel/tbrdma.ko" "$out_dir/tbrdma-$suite.ko"
# The lab's emulated USB4 host interface (test-only), built from the same tree.
cp "$work/kernel/tbrdma_usb4emu.ko" "$out_dir/tbrdma_usb4emu-$suite.ko"
echo "$release" >"$out_dir/tbrdma-$suite.release"
echo "$out_dir/tbrdma-$suite.ko"
