#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Local runner for the vm-tests scripts: boots a lab, runs scripts in order, tears down.

    python3 vm-tests/driver.py [--keep] [--lab-dir DIR] bringup.py pair.py ...

Holds /tmp/tbrdma-heavy.lock for the whole session so two VM sets never share the CPUs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tbctl.lab import cluster, session, testdriver  # noqa: E402


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scripts", nargs="+", type=Path)
    parser.add_argument("--lab-dir", type=Path, default=None)
    parser.add_argument("--cables", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="leave the lab running")
    args = parser.parse_args(argv)
    here = Path(__file__).resolve().parent
    scripts = [path if path.exists() else here / path for path in args.scripts]
    lab_dir = args.lab_dir or session.scratch_lab_dir()
    failed = 0
    with session.heavy_lock(testdriver.log):
        started = time.monotonic()
        cluster.up(2, args.cables, lab_dir, progress=testdriver.log)
        testdriver.log(f"phase boot: {time.monotonic() - started:.1f} s")
        try:
            for script in scripts:
                try:
                    testdriver.run_script(script, lab_dir)
                    testdriver.log(f"PASS {script.name}")
                except Exception as exc:  # noqa: BLE001 - report every script's outcome
                    failed += 1
                    testdriver.log(f"FAIL {script.name}: {type(exc).__name__}: {exc}")
                    break
        finally:
            if not args.keep:
                started = time.monotonic()
                cluster.down(lab_dir, progress=testdriver.log)
                testdriver.log(f"phase down: {time.monotonic() - started:.1f} s")
                left = cluster.leftovers(lab_dir)
                if left:
                    testdriver.log("LEFT BEHIND: " + "; ".join(left))
                    failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
