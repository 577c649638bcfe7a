#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# Builds the tbrdma provider for one rdma-core version of one Debian suite, inside that
# suite's build chroot (build-env.sh), from that version's own source.
#
# usage: provider-for.sh <suite> <buildenv-cache> <debian-version|candidate> <out-dir>
# Leaves <out-dir>/libtbrdma-rdmav<N>.so, <out-dir>/tbrdma.driver and <out-dir>/tests/
# (that same source's pyverbs test suite, for the lab); prints the .so path.
set -euo pipefail

suite=$1
buildenv_cache=$2
version=$3
out_dir=$4
here=$(cd "$(dirname "$0")" && pwd)

root=$("$here/build-env.sh" "$suite" "$buildenv_cache")
if [ "$version" = candidate ]; then
	version=$(chroot "$root" apt-cache policy rdma-core | sed -n 's/^  Candidate: //p')
fi
upstream=${version#*:}
upstream=${upstream%-*}
src_dir=/build/src/rdma-core-$upstream
exec 9>"$root/build-provider.lock"
flock 9
if [ ! -f "$root$src_dir/CMakeLists.txt" ]; then
	mkdir -p "$root/build/src"
	# The archive may lack the .dsc while serving the orig tarball, which is all we need:
	# judge by the tarball, not by apt's exit status.
	chroot "$root" sh -c "cd /build/src && apt-get source -qq --download-only \
		rdma-core=$version" >"$root/build/src/apt-source.log" 2>&1 || true
	tarball=$root/build/src/rdma-core_$upstream.orig.tar.gz
	if [ ! -f "$tarball" ]; then
		cat "$root/build/src/apt-source.log" >&2
		echo "provider-for.sh: no rdma-core $upstream source tarball" >&2
		exit 1
	fi
	# The top directory is not always rdma-core-<version> (sid's 65.0 tarball is a GitHub
	# archive, linux-rdma-rdma-core-<commit>/): strip it, whatever it is called.
	rm -rf "${root:?}$src_dir"
	mkdir -p "$root$src_dir"
	tar -xzf "$tarball" -C "$root$src_dir" --strip-components=1
fi
rm -rf "$root/build/tbrdma-driver" "$root/build/provider-out"
mkdir -p "$root/build/tbrdma-driver"
cp -r "$here/provider" "$here/build-provider.sh" "$root/build/tbrdma-driver/"
chroot "$root" bash /build/tbrdma-driver/build-provider.sh "$src_dir" /build/provider-out >/dev/null
mkdir -p "$out_dir"
cp "$root"/build/provider-out/* "$out_dir/"
rm -rf "$out_dir/tests"
cp -r "$root$src_dir/tests" "$out_dir/tests"
echo "$upstream" >"$out_dir/rdma-core-version"
ls "$out_dir"/libtbrdma-rdmav*.so
