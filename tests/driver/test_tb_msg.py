# SPDX-License-Identifier: MIT
"""The Thunderbolt rail's login messages and receive-frame checks, in userspace.

driver/kernel/rail_tb_msg.c is pure C: the module compiles it, and so does this test (with
gcc, ASan and UBSan) together with tests/driver/tb_msg_test.c. Each C test is one pytest
test. The rest of the Thunderbolt rail (rings, HopIDs, paths) needs USB4 hardware and is
only compiled (test_kbuild.py).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import DRIVER

HERE = Path(__file__).resolve().parent
SOURCE = DRIVER / "kernel" / "rail_tb_msg.c"
TEST_SOURCE = HERE / "tb_msg_test.c"

TESTS = re.findall(r'\{\s*"([a-z0-9_]+)",\s*test_[a-z0-9_]+\s*\}', TEST_SOURCE.read_text())

CFLAGS = [
    "-std=c11", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-Wshadow", "-Wvla",
    "-Wstrict-prototypes", "-Wmissing-prototypes", "-Wundef",
    "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
    "-fno-omit-frame-pointer",
]


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.fail("a C compiler is required (see .ci/apt-packages)")
    out = tmp_path_factory.mktemp("tb-msg") / "tb_msg_test"
    res = subprocess.run(
        [cc, *CFLAGS, f"-I{SOURCE.parent}", str(SOURCE), str(TEST_SOURCE), "-o", str(out)],
        capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    return out


def test_sources_are_discovered() -> None:
    assert len(TESTS) >= 10, TESTS


def test_list_matches_sources(binary: Path) -> None:
    res = subprocess.run([str(binary), "--list"], capture_output=True, text=True, timeout=30,
                         check=False)
    assert res.returncode == 0
    assert res.stdout.split() == TESTS


@pytest.mark.parametrize("name", TESTS)
def test_tb_msg(binary: Path, name: str) -> None:
    res = subprocess.run([str(binary), name], capture_output=True, text=True, timeout=120,
                         check=False)
    assert res.returncode == 0 and f"PASS {name}" in res.stdout, res.stdout + res.stderr
