#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# Builds (once) a Debian build chroot for one suite with that suite's own compiler and
# linux-headers, so the module is compiled the way the target kernel expects (a bookworm gcc-12
# cannot build against trixie's gcc-14-configured headers, and trixie's kbuild helpers need
# trixie's glibc). Each chroot also carries rdma-core's build dependencies and, once
# provider-for.sh ran, its suite's rdma-core source for the provider.
#
# usage: build-env.sh <suite> <cache-dir>     prints the chroot directory on stdout
# The chroot is keyed by the suite, its package list and env_version: bump env_version when a
# change to this script must rebuild existing chroots.
set -euo pipefail

suite=$1
cache_dir=$2
here=$(cd "$(dirname "$0")" && pwd)

mirror_from_host_apt() {
	local uri
	uri=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null |
		awk '{print $2}' | grep -E '/debian/?$' | head -n1 || true)
	if [ -z "$uri" ]; then
		uri=$(grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
			awk '{print $2}' | grep -E '/debian/?$' | head -n1 || true)
	fi
	[ -n "$uri" ] || { echo "no Debian mirror in the host's apt config" >&2; exit 1; }
	echo "${uri%/}"
}

# Every suite builds the provider in its own rdma-core source (provider-for.sh), so every
# chroot carries rdma-core's build dependencies.
packages="gcc make libc6-dev linux-headers-amd64 kmod"
packages="$packages cmake ninja-build pkg-config libnl-3-dev libnl-route-3-dev libudev-dev"
packages="$packages python3 dpkg-dev"

env_version=2
key=$(echo "$suite $packages $env_version" | sha256sum | cut -c1-16)
root="$cache_dir/buildenv-$suite-$key"
if [ -f "$root/.tbrdma-ready" ]; then
	echo "$root"
	exit 0
fi

mirror=$(mirror_from_host_apt)
mkdir -p "$cache_dir"
# Lock before touching $root.tmp: a second caller must not delete a chroot that the first is
# still building (with /proc mounted in it); once it holds the lock, the first may be done.
exec 9>"$cache_dir/buildenv-$suite.lock"
flock 9
if [ -f "$root/.tbrdma-ready" ]; then
	echo "$root"
	exit 0
fi
umount "$root.tmp/proc" 2>/dev/null || true
rm -rf --one-file-system "$root" "$root.tmp"
debootstrap --variant=minbase "$suite" "$root.tmp" "$mirror" >"$cache_dir/buildenv-$suite.log" 2>&1 || {
	tail -n 30 "$cache_dir/buildenv-$suite.log" >&2
	exit 1
}
printf 'deb %s %s main\ndeb-src %s %s main\n' "$mirror" "$suite" "$mirror" "$suite" \
	>"$root.tmp/etc/apt/sources.list"
# The archive may be a frozen snapshot whose sid Release file is past its Valid-Until date.
echo 'Acquire::Check-Valid-Until "false";' >"$root.tmp/etc/apt/apt.conf.d/90tbrdma-snapshot"
cleanup_mounts() { umount "$root.tmp/proc" 2>/dev/null || true; }
trap cleanup_mounts EXIT
mount -t proc proc "$root.tmp/proc"
chroot "$root.tmp" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >>"$cache_dir/buildenv-$suite.log" 2>&1
# shellcheck disable=SC2086
chroot "$root.tmp" env DEBIAN_FRONTEND=noninteractive \
	apt-get install -y -qq --no-install-recommends $packages >>"$cache_dir/buildenv-$suite.log" 2>&1 || {
	tail -n 30 "$cache_dir/buildenv-$suite.log" >&2
	exit 1
}
chroot "$root.tmp" apt-get clean
umount "$root.tmp/proc"
trap - EXIT
touch "$root.tmp/.tbrdma-ready"
mv "$root.tmp" "$root"
echo "$root"
