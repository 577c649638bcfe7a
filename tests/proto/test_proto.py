# SPDX-License-Identifier: MIT
"""driver/proto: build the protocol core in userspace and prove it.

Runs the C unit tests (one pytest test each), the deterministic simulator sweep (one
pytest test per impairment mix, many seeds, under ASan/UBSan), each libFuzzer target for
a bounded time, and the benchmark (its table is printed, never asserted).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROTO = REPO / "driver" / "proto"

SIM_SEEDS = int(os.environ.get("TBP_SIM_SEEDS", "100"))
FUZZ_SECONDS = int(os.environ.get("TBP_FUZZ_SECONDS", "45"))


def _names_in(pattern: str, *files: Path) -> list[str]:
    text = "".join(f.read_text() for f in files)
    return re.findall(pattern, text)


# Collected from the sources so each C test and mix is its own pytest test before any build.
UNIT_TESTS = _names_in(
    r'\{\s*"([a-z0-9_]+)",\s*test_[a-z0-9_]+\s*\}',
    PROTO / "tests" / "unit.c",
    PROTO / "tests" / "pair.h",
    PROTO / "tests" / "auth.h",
    PROTO / "tests" / "atomic.h",
    PROTO / "tests" / "inv.h",
    PROTO / "tests" / "cc.h",
    PROTO / "tests" / "frags.h",
    PROTO / "tests" / "pace.h",
)
_mix_block = re.search(
    r"mixes\[\]\s*=\s*\{(.*?)\};", (PROTO / "sim" / "simnet.c").read_text(), re.S
)
SIM_MIXES = re.findall(r'"([a-z]+)"', _mix_block.group(1)) if _mix_block else []
FUZZERS = sorted(p.stem for p in (PROTO / "fuzz").glob("fuzz_*.c"))


def _run(cmd: list[str], timeout: float, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build everything from the current sources (make is the single source of truth)."""
    if shutil.which("make") is None or shutil.which("clang") is None:
        pytest.fail("make and clang are required (see .ci/apt-packages)")
    out = tmp_path_factory.mktemp("proto-build")
    jobs = str(min(2, os.cpu_count() or 1))
    res = _run(["make", "-C", str(PROTO), f"BUILD={out}", "-j", jobs, "all", "fuzz"], 600)
    if res.returncode != 0:
        pytest.fail(f"make failed:\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}")
    return out


def test_sources_are_discovered() -> None:
    assert len(UNIT_TESTS) >= 20, UNIT_TESTS
    assert {"clean", "loss", "dup", "reorder", "corrupt", "delay", "raildeath"} <= set(SIM_MIXES)
    assert FUZZERS == ["fuzz_frame", "fuzz_rx"]


def test_unit_list_matches_sources(build_dir: Path) -> None:
    res = _run([str(build_dir / "test_unit"), "--list"], 30)
    assert res.returncode == 0
    assert res.stdout.split() == UNIT_TESTS


@pytest.mark.parametrize("name", UNIT_TESTS)
def test_unit(build_dir: Path, name: str) -> None:
    res = _run([str(build_dir / "test_unit"), name], 120)
    assert res.returncode == 0 and f"PASS {name}" in res.stdout, res.stdout + res.stderr


@pytest.mark.parametrize("mix", SIM_MIXES)
def test_simulator_sweep(build_dir: Path, mix: str) -> None:
    sim = build_dir / "tbp_sim_asan"
    res = _run([str(sim), "--mix", mix, "--seeds", f"0:{SIM_SEEDS}"], 600)
    if res.returncode != 0:
        # The simulator's own output names the seed and prints the one-line repro command.
        pytest.fail(
            f"simulator mix {mix!r} failed:\n{res.stdout[-6000:]}\n{res.stderr[-3000:]}\n"
            f"rebuild with: make -C driver/proto all, then run the repro line with "
            f"driver/proto/build/tbp_sim_asan",
            pytrace=False,
        )
    assert f"ok mix={mix} seeds=0..{SIM_SEEDS - 1}" in res.stdout


def test_simulator_detects_a_broken_core(build_dir: Path, tmp_path: Path) -> None:
    """The sweep can fail: a core whose receiver re-places duplicates is caught."""
    src = tmp_path / "proto"
    shutil.copytree(PROTO, src, ignore=shutil.ignore_patterns("build"))
    link_c = src / "src" / "tbp_link.c"
    text = link_c.read_text()
    broken = text.replace(
        "\t\tif (v == RX_DUP) {",
        "\t\tif (v == RX_DUP && tbp_msg_rx(l, &h, &f)) {",
    )
    assert broken != text
    link_c.write_text(broken)
    res = _run(["make", "-C", str(src), f"BUILD={tmp_path / 'b'}", "-j", "2",
                str(tmp_path / "b" / "tbp_sim")], 300)
    assert res.returncode == 0, res.stdout + res.stderr
    res = _run([str(tmp_path / "b" / "tbp_sim"), "--mix", "dup", "--seeds", "0:20"], 300)
    assert res.returncode == 1
    assert "repro: " in res.stdout and "--mix dup --seed " in res.stdout


@pytest.mark.parametrize("target", FUZZERS)
def test_fuzzer(build_dir: Path, tmp_path: Path, target: str) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(PROTO / "fuzz" / "corpus" / target, corpus)
    crash_dir = tmp_path / "crashes"
    crash_dir.mkdir()
    res = _run(
        [
            str(build_dir / target),
            f"-max_total_time={FUZZ_SECONDS}",
            "-timeout=10",
            "-rss_limit_mb=2048",
            "-print_final_stats=1",
            f"-artifact_prefix={crash_dir}/",
            str(corpus),
        ],
        FUZZ_SECONDS + 120,
    )
    crashes = sorted(crash_dir.iterdir())
    assert res.returncode == 0 and not crashes, (
        f"{target} found a crash: {[c.name for c in crashes]}\n{res.stderr[-6000:]}"
    )
    executed = re.search(r"stat::number_of_executed_units:\s*(\d+)", res.stderr)
    assert executed and int(executed.group(1)) > 100, res.stderr[-2000:]


def test_benchmark_prints_table(build_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    res = _run([str(build_dir / "tbp_bench"), "--quick"], 300)
    with capsys.disabled():
        print("\n" + res.stdout)
    assert res.returncode == 0, res.stderr
    rows = re.findall(r"^(RDMA WRITE|WRITE|SEND|same).*?\s(\d+)\s+(\d+)\s+[\d.]+\s+\d+$",
                      res.stdout, re.M)
    assert len(rows) == 15, res.stdout
    # the rows in the kernel module's own tables say which tables those are
    assert re.search(r"^kernel module configuration: window \d+, 1024 QPs, 1024 WRs in flight",
                     res.stdout, re.M), res.stdout
    assert all(int(frames) > 0 for _, frames, _ in rows)


def test_core_needs_only_memcpy_memset_memcmp(build_dir: Path) -> None:
    """The kernel module links these objects: nothing beyond what tbp_port.h maps."""
    objs = sorted((build_dir / "core").glob("*.o"))
    assert objs
    res = _run(["nm", "-u", *map(str, objs)], 60)
    assert res.returncode == 0, res.stderr
    undefined = {line.split()[-1] for line in res.stdout.splitlines() if " U " in line}
    external = {s for s in undefined if not s.startswith("tbp_")}
    assert external <= {"memcpy", "memset", "memcmp"}, external


def test_kbuild_lists_every_core_source() -> None:
    kbuild = (PROTO / "Kbuild.inc").read_text()
    listed = set(re.findall(r"src/(\w+)\.o", kbuild))
    present = {p.stem for p in (PROTO / "src").glob("*.c")}
    assert listed == present
