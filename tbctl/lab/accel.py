# SPDX-License-Identifier: MIT
"""KVM when it really works, TCG otherwise.

/dev/kvm existing proves little: on some hosts a KVM guest starts and then never runs
the Linux kernel. The probe boots the lab's own kernel with no root disk under KVM; a
working KVM reaches the "unable to mount root" panic in a second or two and QEMU exits.
The verdict is cached per host kernel, QEMU binary and guest kernel.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tbctl.lab.image import NodeImage, cache_root

PROBE_TIMEOUT_S = 20.0


def _probe_key(image: NodeImage) -> str:
    qemu = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True,
                          text=True, check=False).stdout.splitlines()[:1]
    raw = f"{platform.release()}|{qemu}|{image.kernel_release}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def kvm_boots_linux(image: NodeImage) -> bool:
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    with tempfile.TemporaryDirectory(prefix="tbctl-kvm-probe-") as tmp:
        console = Path(tmp) / "console.log"
        proc = subprocess.Popen(
            ["qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-m", "256", "-smp", "1",
             "-nodefaults", "-display", "none", "-no-reboot", "-kernel", str(image.kernel),
             "-append", "console=ttyS0 panic=-1 root=/dev/nonexistent",
             "-serial", f"file:{console}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            proc.wait(timeout=PROBE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
            return False
        text = console.read_text(errors="replace") if console.exists() else ""
        return "Kernel panic" in text or "VFS:" in text


def choose(image: NodeImage, say: Callable[[str], None]) -> str:
    forced = os.environ.get("TBCTL_LAB_ACCEL")
    if forced in ("kvm", "tcg"):
        return forced
    cache = cache_root() / "accel-probe.json"
    key = _probe_key(image)
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known:
        return str(known[key])
    say(f"probing KVM (up to {PROBE_TIMEOUT_S:.0f} s; TBCTL_LAB_ACCEL=tcg skips this)")
    started = time.monotonic()
    verdict = "kvm" if kvm_boots_linux(image) else "tcg"
    say(f"KVM probe: using {verdict} ({time.monotonic() - started:.1f} s)")
    known[key] = verdict
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(known) + "\n")
    return verdict
