# SPDX-License-Identifier: MIT
"""vm-tests/consumers/rdma_core_suite.py on a fake rdma-core tests/ tree (no device): every
outcome, a class whose process dies of a signal (the test that killed it named, the rest
"not run"), a hanging class killed at its timeout, setUpClass errors, vendor modules left
out, and the package __init__ (which imports every module) never run. Plus the gap list."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.driver.test_consumers_vm import GAPS, read_gaps

RUNNER = Path(__file__).resolve().parents[2] / "vm-tests" / "consumers" / "rdma_core_suite.py"
ARGS_PARSER = '''
import argparse, sys
class ArgsParser:
    args = None
    def get_config(self):
        return self.args
    def parse_args(self):
        p = argparse.ArgumentParser()
        p.add_argument("--dev")
        p.add_argument("--port", type=int)
        p.add_argument("--gid", type=int)
        ns, rest = p.parse_known_args()
        self.args = vars(ns); sys.argv[1:] = rest
parser = ArgsParser()
'''
FAKE = '''
import os, signal, time, unittest
from args_parser import parser
class A(unittest.TestCase):
    def test_pass(self):
        assert parser.get_config() == {"dev": "fake0", "port": 1, "gid": 3}
    def test_fail(self): self.fail("no")
    def test_skip(self): raise unittest.SkipTest("Create AH is not supported")
    def test_error(self): raise OSError("boom")
class Crash(unittest.TestCase):
    def test_a_ok(self): pass
    def test_b_segv(self): os.kill(os.getpid(), signal.SIGSEGV)
    def test_c_never(self): pass
class Hang(unittest.TestCase):
    def test_hang(self): time.sleep(60)
class SetupFails(unittest.TestCase):
    @classmethod
    def setUpClass(cls): raise RuntimeError("no device")
    def test_x(self): pass
'''


def test_runner_reports_every_outcome(tmp_path: Path) -> None:
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "__init__.py").write_text("raise SystemExit('the package __init__ ran')\n")
    (tests / "args_parser.py").write_text(ARGS_PARSER)
    (tests / "test_fake.py").write_text(FAKE)
    (tests / "test_mlx5_fake.py").write_text("import no_such_vendor_module\n")
    (tests / "test_efa_fake.py").write_text("import no_such_vendor_module\n")
    done = subprocess.run([sys.executable, str(RUNNER), "--root", str(tmp_path), "--dev",
                           "fake0", "--gid", "3", "--timeout", "3"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    outcomes = {t.removeprefix("tests.test_fake."): r["outcome"]
                for t, r in report["tests"].items()}
    assert outcomes == {
        "A.test_pass": "passed", "A.test_fail": "failed", "A.test_skip": "skipped",
        "A.test_error": "error", "Crash.test_a_ok": "passed", "Crash.test_b_segv": "crashed",
        "Crash.test_c_never": "not run", "Hang.test_hang": "timeout",
        "SetupFails.test_x": "error"}
    assert report["tests"]["tests.test_fake.A.test_skip"]["reason"] == \
        "Create AH is not supported"
    crash = next(c for c in report["classes"] if c["class"].endswith("Crash"))
    assert crash["status"] == -11 and crash["running"].endswith("test_b_segv")
    assert "test_b_segv" in crash["stderr"]  # faulthandler's Python stack of the test
    assert "no device" in report["tests"]["tests.test_fake.SetupFails.test_x"]["reason"]


def test_gap_list_is_well_formed() -> None:
    gaps = read_gaps()
    for test_id, reason in gaps.items():
        assert test_id.startswith("tests.test_") and test_id.count(".") == 3, test_id
        assert reason, f"{GAPS.name}: {test_id} has no reason"
    for name, reason in read_gaps(kind="crash").items():
        assert name.startswith("tests.test_") and name.count(".") == 2, name
        assert reason, f"{GAPS.name}: crash {name} has no reason"
