# SPDX-License-Identifier: MIT
"""nixos/lib/import-keys.sh, the appliance's SSH key import, run for real against temporary
directories: keys dropped on the FAT partition or brought by a stick replace the ones that
source supplied before (deleting a key revokes it), and nothing is ever appended."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from nixtool import REPO

SCRIPT = REPO / "nixos/lib/import-keys.sh"
ALICE = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAlice alice@laptop"
BOB = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBob bob@laptop"
CAROL = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYCarol carol@stick"
DAVE = "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tDave dave@stick"

# Stand-ins for mount(8) and umount(8): mounting a FAT stick needs root and a block device,
# so these record their arguments and put the stick's files at (and take them from) the
# mount point. What the script reads there, and how it replaces keys, is real.
STAND_IN_MOUNT = """#!/bin/bash
echo "mount $*" >>"$MOUNT_LOG"
cp -r "$STICK_FILES"/. "${@: -1}"
"""
STAND_IN_UMOUNT = """#!/bin/bash
echo "umount $*" >>"$MOUNT_LOG"
find "$1" -mindepth 1 -delete
"""


class Box:
    """The directories the unit's environment names, under tmp_path."""

    def __init__(self, root: Path) -> None:
        self.keys = root / "var/lib/tbrdma-keys"
        self.boot = root / "boot"
        (self.boot / "tbrdma").mkdir(parents=True)
        self.key_file = self.boot / "tbrdma/authorized_keys"
        self.hostname_file = self.boot / "tbrdma/hostname"
        self.sysctl = root / "hostname"
        self.stick = root / "dev/disk/by-label/TBRDMA_KEYS"
        self.stick_files = root / "stick"
        self.mount_log = root / "mount.log"
        self.tools = root / "tools"

    def plug_in_stick(self, keys: str | None) -> None:
        """A FAT stick at the label, holding tbrdma/authorized_keys unless keys is None."""
        self.stick.parent.mkdir(parents=True, exist_ok=True)
        self.stick.write_bytes(b"")
        (self.stick_files / "tbrdma").mkdir(parents=True, exist_ok=True)
        key_file = self.stick_files / "tbrdma/authorized_keys"
        key_file.unlink(missing_ok=True)
        if keys is not None:
            key_file.write_text(keys)
        self.tools.mkdir(exist_ok=True)
        for name, text in (("mount", STAND_IN_MOUNT), ("umount", STAND_IN_UMOUNT)):
            (self.tools / name).write_text(text)
            (self.tools / name).chmod(0o755)

    def boot_once(self, stick: bool = False) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": f"{self.tools}:{os.environ['PATH']}",
            "MOUNT_LOG": str(self.mount_log),
            "STICK_FILES": str(self.stick_files),
            "KEY_DIR": str(self.keys),
            "BOOT_KEY_FILE": str(self.key_file),
            "BOOT_HOSTNAME_FILE": str(self.hostname_file),
            "HOSTNAME_SYSCTL": str(self.sysctl),
            "STICK_DEVICE": str(self.stick) if stick else "",
            "STICK_KEY_PATH": "tbrdma/authorized_keys",
            "STICK_MOUNT_OPTIONS": "ro,nosuid,nodev,noexec,uid=0,gid=0,fmask=0177,dmask=0077",
        }
        done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True,
                              timeout=30)
        assert done.returncode == 0, done.stderr
        return done

    def installed(self) -> list[str]:
        return (self.keys / "root").read_text().splitlines()


@pytest.fixture
def box(tmp_path: Path) -> Box:
    return Box(tmp_path)


def test_keys_from_the_partition_are_installed_and_junk_ignored(box: Box) -> None:
    box.key_file.write_text(f"# my keys\r\n{ALICE}\r\nnot a key\r\n\r\n{BOB}\r\n")
    box.boot_once()
    assert box.installed() == sorted([ALICE, BOB])
    mode = stat.S_IMODE((box.keys / "root").stat().st_mode)
    assert mode == 0o644
    assert stat.S_IMODE((box.keys / "sources").stat().st_mode) == 0o700


def test_a_key_deleted_from_the_partition_is_revoked(box: Box) -> None:
    box.key_file.write_text(f"{ALICE}\n{BOB}\n")
    box.boot_once()
    box.boot_once()
    assert box.installed() == sorted([ALICE, BOB])  # not appended twice
    box.key_file.write_text(f"{BOB}\n")
    box.boot_once()
    assert box.installed() == [BOB]
    box.key_file.unlink()
    box.boot_once()
    assert box.installed() == []


def test_stick_keys_stay_without_a_stick_and_partition_keys_do_not_touch_them(
    box: Box,
) -> None:
    # What an earlier boot with a stick left behind.
    (box.keys / "sources").mkdir(parents=True)
    (box.keys / "sources/stick").write_text(f"{CAROL}\n")
    box.key_file.write_text(f"{ALICE}\n")
    box.boot_once(stick=True)  # enabled, but no stick plugged in
    assert box.installed() == sorted([ALICE, CAROL])


def test_something_at_the_stick_label_that_is_not_fat_changes_nothing(box: Box) -> None:
    (box.keys / "sources").mkdir(parents=True)
    (box.keys / "sources/stick").write_text(f"{CAROL}\n")
    box.stick.parent.mkdir(parents=True)
    box.stick.write_bytes(os.urandom(4096))
    done = box.boot_once(stick=True)
    assert "ignored" in done.stderr
    assert box.installed() == [CAROL]


def test_a_new_stick_replaces_the_previous_sticks_keys_read_only(box: Box) -> None:
    box.key_file.write_text(f"{ALICE}\n")
    box.plug_in_stick(f"{CAROL}\r\n")
    box.boot_once(stick=True)
    assert box.installed() == sorted([ALICE, CAROL])
    box.plug_in_stick(f"{DAVE}\n")
    box.boot_once(stick=True)
    # Carol's key came from a stick and is gone with it; the partition's key is untouched.
    assert box.installed() == sorted([ALICE, DAVE])
    mounts = box.mount_log.read_text().splitlines()
    assert [line.split()[0] for line in mounts] == ["mount", "umount"] * 2
    arguments = mounts[0].split()
    assert arguments[:4] == ["mount", "-t", "vfat", "-o"]
    assert {"ro", "nosuid", "nodev", "noexec"} <= set(arguments[4].split(","))
    assert arguments[5] == str(box.stick)
    assert mounts[1] == f"umount {arguments[6]}"
    assert not Path(arguments[6]).exists()


def test_a_stick_without_a_key_file_changes_nothing(box: Box) -> None:
    box.plug_in_stick(f"{CAROL}\n")
    box.boot_once(stick=True)
    box.plug_in_stick(None)
    done = box.boot_once(stick=True)
    assert "keys from sticks unchanged" in done.stdout
    assert box.installed() == [CAROL]


def test_host_name_from_the_partition_is_sanitised(box: Box) -> None:
    box.hostname_file.write_text("strix1; rm -rf /\r\n")
    box.boot_once()
    assert box.sysctl.read_text() == "strix1rm-rf\n"
