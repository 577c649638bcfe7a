# SPDX-License-Identifier: MIT
"""rdma-core's own pyverbs test suite against one device, one test class per process.

Runs in a lab guest (copied there by tests/driver/test_consumers_vm.py) on the tests/ of
the guest's own rdma-core version, which driver/lab-hook.sh installs under
/usr/local/share/rdma-core-tests. Prints one JSON document: every test id with its outcome
(passed, failed, error, skipped, crashed, timeout) and a short reason, and per class the
process's exit status and time.

Why a process per class: one process for the whole suite crashes Python (on rxe too), a
class that hangs must not take the rest with it, and a test that kills its process with a
signal must be named (the child announces each test before it runs). The vendor modules
(test_mlx5_*, test_efa*) are left out: they crash at teardown on any other device.

The tests' package `tests` is set up without running its __init__, which imports every
test module (vendor ones included) in every process; the child imports only its class's
module. Options reach the suite through its own args_parser, as run_tests.py passes them.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import subprocess
import sys
import time
import types
import unittest

VENDOR_PREFIXES = ("test_mlx5", "test_efa")
MARK = "@@rdma-core-suite "


def _suite_package(root: str, dev: str, gid: int) -> None:
    tests_dir = os.path.join(root, "tests")
    sys.path[:0] = [root, tests_dir]  # `import tests.base` and `from args_parser import`
    package = types.ModuleType("tests")
    package.__path__ = [tests_dir]
    sys.modules["tests"] = package
    from args_parser import parser

    sys.argv = [sys.argv[0], "--dev", dev, "--port", "1", "--gid", str(gid)]
    parser.parse_args()


def _emit(kind: str, **fields: object) -> None:
    print(MARK + json.dumps({"kind": kind, **fields}), flush=True)


class _Recorder(unittest.TestResult):
    """Announces each test before it runs and reports its outcome right after."""

    def startTest(self, test: unittest.TestCase) -> None:  # noqa: N802 - unittest's API
        super().startTest(test)
        _emit("start", id=test.id())

    def addSuccess(self, test: unittest.TestCase) -> None:  # noqa: N802
        _emit("result", id=test.id(), outcome="passed", reason="")

    def addFailure(self, test: unittest.TestCase, err) -> None:  # noqa: N802, ANN001
        _emit("result", id=test.id(), outcome="failed", reason=self._why(err))

    def addError(self, test: unittest.TestCase, err) -> None:  # noqa: N802, ANN001
        # setUpClass errors come as a _ErrorHolder whose id names the class
        _emit("result", id=test.id(), outcome="error", reason=self._why(err))

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:  # noqa: N802
        _emit("result", id=test.id(), outcome="skipped", reason=str(reason)[:200])

    def addExpectedFailure(self, test: unittest.TestCase, err) -> None:  # noqa: N802, ANN001
        _emit("result", id=test.id(), outcome="passed", reason="expected failure")

    def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:  # noqa: N802
        _emit("result", id=test.id(), outcome="failed", reason="unexpected success")

    @staticmethod
    def _why(err) -> str:  # noqa: ANN001
        kind, value, _ = err
        return f"{kind.__name__}: {value}"[:300]


def child(root: str, dev: str, gid: int, class_id: str) -> int:
    _suite_package(root, dev, gid)
    module_name, class_name = class_id.rsplit(".", 1)
    cls = getattr(importlib.import_module(module_name), class_name)
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(cls)
    suite.run(_Recorder())
    return 0


def list_classes(root: str, dev: str, gid: int) -> int:
    _suite_package(root, dev, gid)
    loader = unittest.defaultTestLoader
    ids: list[str] = []
    for name in sorted(os.listdir(os.path.join(root, "tests"))):
        if not (name.startswith("test_") and name.endswith(".py")):
            continue
        if name.startswith(VENDOR_PREFIXES):
            continue
        module = importlib.import_module(f"tests.{name[:-3]}")
        for group in loader.loadTestsFromModule(module):
            for test in group:  # type: ignore[union-attr]
                if test.id().startswith("tests.test_"):  # base classes imported elsewhere
                    ids.append(test.id())
    _emit("list", ids=sorted(set(ids)))
    return 0


def _records(output: str) -> list[dict]:
    return [json.loads(line[len(MARK):]) for line in output.splitlines()
            if line.startswith(MARK)]


def _run(argv: list[str], timeout: float) -> tuple[int | None, str, str, float]:
    """(exit status or None on timeout, stdout, stderr tail, seconds); the child and
    anything it started (rdma_cm tests fork helpers) are killed on timeout."""
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        status: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        status = None
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # helpers left behind by a finished class
    except ProcessLookupError:
        pass
    # faulthandler ends with a long list of extension modules: keep the stack above it
    err = err.split("\nExtension modules:", 1)[0]
    return status, out, err[-3000:], time.monotonic() - started


def parent(args: argparse.Namespace) -> int:
    me = os.path.abspath(__file__)
    # faulthandler: a child killed by a signal leaves the Python stack of the test on stderr
    base = [sys.executable, "-X", "faulthandler", me, "--root", args.root, "--dev", args.dev,
            "--gid", str(args.gid)]
    status, out, err, _ = _run(base + ["--list"], 300)
    listed = [r for r in _records(out) if r["kind"] == "list"]
    if status != 0 or not listed:
        print(json.dumps({"error": f"listing the suite failed (exit {status}): {err}"}))
        return 1
    ids = listed[0]["ids"]
    classes = sorted({test_id.rsplit(".", 1)[0] for test_id in ids})
    tests: dict[str, dict[str, str]] = {}
    runs = []
    started = time.monotonic()
    for class_id in classes:
        members = [t for t in ids if t.rsplit(".", 1)[0] == class_id]
        status, out, err, seconds = _run(base + ["--child", class_id], args.timeout)
        running = None
        for record in _records(out):
            if record["kind"] == "start":
                running = record["id"]
            elif record["kind"] == "result" and record["id"] in members:
                tests[record["id"]] = {"outcome": record["outcome"], "reason": record["reason"]}
                running = None
            elif record["kind"] == "result":  # setUpClass/tearDownClass: the whole class
                for test_id in members:
                    tests.setdefault(test_id, {"outcome": record["outcome"],
                                               "reason": f"{record['id']}: {record['reason']}"})
        if status is None:
            end = {"outcome": "timeout", "reason": f"class killed after {args.timeout:.0f} s"}
        elif status < 0:
            end = {"outcome": "crashed",
                   "reason": f"process died of {signal.Signals(-status).name}"}
        else:
            end = None
        if end is not None:
            if running is not None:
                tests[running] = end
            for test_id in members:
                tests.setdefault(test_id, {"outcome": "not run",
                                           "reason": f"after {end['reason']}"})
        for test_id in members:
            tests.setdefault(test_id, {"outcome": "error",
                                       "reason": f"no result (class exit {status}): {err}"})
        runs.append({"class": class_id, "status": status, "seconds": round(seconds, 1),
                     "running": running if end is not None else None,
                     "stderr": err if (status or 0) != 0 or end is not None else ""})
    print(json.dumps({"dev": args.dev, "gid": args.gid, "tests": tests, "classes": runs,
                      "seconds": round(time.monotonic() - started, 1)}))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/usr/local/share/rdma-core-tests")
    parser.add_argument("--dev", required=True)
    parser.add_argument("--gid", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.list:
        return list_classes(args.root, args.dev, args.gid)
    if args.child:
        return child(args.root, args.dev, args.gid, args.child)
    return parent(args)


if __name__ == "__main__":
    sys.exit(main())
