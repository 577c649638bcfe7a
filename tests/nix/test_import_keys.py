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

    def boot_once(self, stick: bool = False) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": os.environ["PATH"],
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


def test_host_name_from_the_partition_is_sanitised(box: Box) -> None:
    box.hostname_file.write_text("strix1; rm -rf /\r\n")
    box.boot_once()
    assert box.sysctl.read_text() == "strix1rm-rf\n"
