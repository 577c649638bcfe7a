#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs root's SSH keys from the raw image's FAT partition and from the key stick, for
# tbrdma-import-keys.service (nixos/modules/appliance.nix). tests/nix/test_import_keys.py runs
# it against temporary directories.
#
# Each source's keys are kept in $KEY_DIR/sources/<source> and replaced whole from that source,
# never appended to, so deleting a key where it was dropped revokes it; $KEY_DIR/root (what
# sshd reads) is rebuilt from all sources every time. The FAT partition is read at every boot
# (no file there: no keys from it). A stick's keys replace the previous stick's; without a
# stick they stay.
#
# Environment:
#   KEY_DIR              directory sshd reads <user> files from (AuthorizedKeysFile)
#   BOOT_KEY_FILE        authorized_keys on the FAT partition, or empty for none
#   BOOT_HOSTNAME_FILE   host name file on the FAT partition, or empty for none
#   HOSTNAME_SYSCTL      where a host name is written (/proc/sys/kernel/hostname)
#   STICK_DEVICE         the key stick's device node, or empty when the stick is disabled
#   STICK_KEY_PATH       authorized_keys on the stick, relative to its root
#   STICK_MOUNT_OPTIONS  mount options of the stick (mounted -t vfat)
set -eu
umask 022

install -d -m 0755 "$KEY_DIR"
install -d -m 0700 "$KEY_DIR/sources"

# Only lines that look like public keys count; files written on Windows carry CRLF.
keys_of() {
  tr -d '\r' <"$1" | grep -E '^(ssh-|ecdsa-|sk-)' || true
}

replace_source() {
  keys_of "$2" >"$KEY_DIR/sources/$1.new"
  mv "$KEY_DIR/sources/$1.new" "$KEY_DIR/sources/$1"
  echo "keys from $1: $(wc -l <"$KEY_DIR/sources/$1")"
}

if [ -n "${BOOT_KEY_FILE:-}" ]; then
  if [ -f "$BOOT_KEY_FILE" ]; then
    replace_source boot-partition "$BOOT_KEY_FILE"
  else
    rm -f "$KEY_DIR/sources/boot-partition"
    echo "no $BOOT_KEY_FILE: no keys from the FAT partition"
  fi
fi

# One image for every box: a host name dropped next to the keys wins.
if [ -n "${BOOT_HOSTNAME_FILE:-}" ] && [ -f "$BOOT_HOSTNAME_FILE" ]; then
  name=$(tr -cd 'a-zA-Z0-9-' <"$BOOT_HOSTNAME_FILE" | head -c 63)
  if [ -n "$name" ]; then
    echo "$name" >"$HOSTNAME_SYSCTL"
    echo "host name set to $name from $BOOT_HOSTNAME_FILE"
  fi
fi

if [ -n "${STICK_DEVICE:-}" ] && [ -e "$STICK_DEVICE" ]; then
  mnt=$(mktemp -d)
  if mount -t vfat -o "$STICK_MOUNT_OPTIONS" "$STICK_DEVICE" "$mnt"; then
    if [ -f "$mnt/$STICK_KEY_PATH" ]; then
      replace_source stick "$mnt/$STICK_KEY_PATH"
    else
      echo "$STICK_DEVICE has no $STICK_KEY_PATH; keys from sticks unchanged"
    fi
    umount "$mnt"
  else
    echo "$STICK_DEVICE is not a FAT file system; ignored" >&2
  fi
  rmdir "$mnt"
fi

cat "$KEY_DIR"/sources/* 2>/dev/null | sort -u >"$KEY_DIR/root.new" || true
chmod 0644 "$KEY_DIR/root.new"
mv "$KEY_DIR/root.new" "$KEY_DIR/root"
