# SPDX-License-Identifier: MIT
"""Builds and caches the lab's node image: Debian trixie from debootstrap, in two layers.

Layer 1 (base) is the debootstrapped rootfs kept as a tarball plus the guest kernel and
initrd; its key hashes the package list, the files baked into it and the recipe version.
Layer 2 (image) is the qcow2 the VMs boot; its key adds the git-tracked files under
driver/ when driver/lab-hook.sh exists, so a driver change repacks without a debootstrap.
tbctl itself is not in either layer: `lab up` copies the current tree in through the seed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tbctl.errors import TbctlError

SUITE = "trixie"
# Bump when the recipe below changes in a way the hashed inputs do not show.
RECIPE_VERSION = "5"
# python3-cffi-backend is named explicitly: debootstrap cannot resolve the virtual
# python3-cffi-backend-api-* packages python3-cryptography (for paramiko) depends on.
GUEST_PACKAGES = (
    "systemd-sysv", "udev", "dbus", "openssh-server", "iproute2", "kmod", "rdma-core",
    "ibverbs-utils", "ibverbs-providers", "rdmacm-utils", "perftest", "python3",
    "python3-pyverbs",
    "python3-click", "python3-paramiko", "python3-cffi-backend", "python3-jinja2",
    "python3-rich",
    "linux-image-amd64", "initramfs-tools", "zstd", "iputils-ping", "procps", "netbase",
    # `lab demo`'s TCP baseline on the same cables: iperf3 (bandwidth), qperf (latency).
    "iperf3", "qperf",
    # Real workloads for `tbctl run` in the lab (tests/lab): torchrun with gloo, and Open
    # MPI with mpi4py. torch alone adds ~880 MiB installed (its libtorch, ROCm runtime and
    # LLVM); openmpi-bin and mpi4py then add ~10 MiB, as torch already pulls libopenmpi40.
    "python3-torch", "openmpi-bin", "python3-mpi4py",
    # RDMA consumers (tests/driver/test_consumers_vm.py): ucx_perftest/ucx_info, and
    # libfabric's fi_info/fi_pingpong. libopenmpi40 already pulls libucx0 and libfabric1
    # and has pml ucx built into libmpi.
    "ucx-utils", "libfabric-bin",
    # `tbctl lab bench`: syscalls per ib_write_lat iteration (strace -c).
    "strace",
)
FILES_DIR = Path(__file__).with_name("files")
# Where each baked-in file lands in the guest, and its mode.
BAKED_FILES = {
    "tbctl-lab-seed.service": ("etc/systemd/system/tbctl-lab-seed.service", 0o644),
    "tbctl-lab-links-up.service": ("etc/systemd/system/tbctl-lab-links-up.service", 0o644),
    "links-up.sh": ("usr/local/lib/tbctl-lab/links-up.sh", 0o755),
    "tbctl-lab-mgmt.service": ("etc/systemd/system/tbctl-lab-mgmt.service", 0o644),
    "mgmt-up.sh": ("usr/local/lib/tbctl-lab/mgmt-up.sh", 0o755),
    "sshd-tbctl-lab.conf": ("etc/ssh/sshd_config.d/tbctl-lab.conf", 0o644),
}
ENABLED_UNITS = {
    "tbctl-lab-seed.service": "sysinit.target.wants",
    "tbctl-lab-links-up.service": "multi-user.target.wants",
    "tbctl-lab-mgmt.service": "sysinit.target.wants",
}
# Units a lab node never needs. A TCG guest has one emulated vCPU, and at boot every unit
# started competes for it: masking these is most of what took boot to SSH from 146 s to
# 67-79 s on a loaded host (docs/lab.md). What stays: udev (it names the cable NICs),
# journald, tmpfiles, sysctl, modules-load (a pairing loads its modules through it),
# configfs (the driver's control plane), sshd.
MASKED_UNITS = (
    # First-boot and /usr-update jobs: the image is built complete, and every node boots a
    # fresh overlay, so each of them ran at every lab boot (ldconfig alone 8 s).
    "ldconfig.service", "systemd-update-done.service", "systemd-hwdb-update.service",
    "systemd-journal-catalog-update.service", "systemd-sysusers.service",
    "systemd-firstboot.service", "systemd-machine-id-commit.service", "sshd-keygen.service",
    # Static device nodes for modules nobody loads here (fuse, loop, tun...).
    "kmod-static-nodes.service", "systemd-tmpfiles-setup-dev-early.service",
    # File systems and services no lab test uses.
    "dev-hugepages.mount", "dev-mqueue.mount", "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount", "sys-fs-fuse-connections.mount", "tmp.mount",
    "proc-sys-fs-binfmt_misc.automount", "systemd-binfmt.service", "systemd-pstore.service",
    "systemd-hibernate-clear.service", "modprobe@drm.service", "modprobe@efi_pstore.service",
    "modprobe@fuse.service",
    "systemd-tpm2-setup-early.service", "systemd-tpm2-setup.service",
    "systemd-pcrmachine.service", "systemd-pcrphase-sysinit.service",
    "systemd-pcrphase.service",
    # Logins: sshd runs without PAM (sshd-tbctl-lab.conf), so no logind sessions; no VGA.
    "systemd-logind.service", "getty@tty1.service", "systemd-ask-password-wall.path",
    # networkd: tbctl-lab-mgmt.service addresses the management NIC, tbctl pair the cables.
    "systemd-networkd.service", "systemd-networkd.socket",
    "systemd-networkd-persistent-storage.service", "systemd-networkd-wait-online.service",
    "systemd-network-generator.service",
    # Timers of a long-lived host.
    "apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer", "fstrim.timer",
    "e2scrub_all.timer", "e2scrub_reap.service",
)
# Generators run at boot and at every `systemctl daemon-reload` (a pairing does one: 6-7 s
# in a TCG guest). The lab keeps fstab's and getty's (the serial console's login).
MASKED_GENERATORS = (
    "systemd-debug-generator", "systemd-gpt-auto-generator",
    "systemd-hibernate-resume-generator", "systemd-rc-local-generator", "systemd-run-generator",
    "systemd-ssh-generator", "systemd-system-update-generator", "systemd-sysv-generator",
    "systemd-tpm2-generator",
)
# rdma-core loads these for every new RDMA device (rdma-load-modules@rdma.service). The lab
# keeps what its consumers use; iSER and NFS over RDMA (ib_iser, xprtrdma, svcrdma: the
# iSCSI and sunrpc stacks) took seconds of the guest's vCPU right after each pairing.
LAB_RDMA_MODULES = ("ib_uverbs", "rdma_ucm")
# Modules a pairing loads (tbrdma or rdma_rxe and what they need, rdma_ucm for rdma_cm) are
# stored uncompressed: xz-decompressing them took most of `modprobe tbrdma`'s 3.8 s in TCG.
PAIRING_MODULES = ("tbrdma", "rdma_rxe", "rdma_ucm")
# The initrd only needs to find the root disk; the cable NICs' driver is in it too so they
# exist before the root's udev starts, as with the stock initrd (a pairing re-applied at
# boot expects them: test_persistence).
INITRD_MODULES = ("virtio_pci", "virtio_blk", "virtio_net", "ext4")
Progress = Callable[[str], None]


@dataclass(frozen=True)
class NodeImage:
    """Everything a VM boots from; `root` is the shared read-only qcow2 base."""

    root: Path
    kernel: Path
    initrd: Path
    kernel_release: str


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tbrdma" / "lab"


def repo_root() -> Path | None:
    """The source checkout tbctl runs from, if it is one (it holds driver/)."""
    candidate = Path(__file__).resolve().parents[2]
    return candidate if (candidate / "driver").is_dir() else None


def host_debian_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian archive URL the host's apt already uses (never hard-coded here)."""
    texts = []
    for path in [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*"))]:
        if path.is_file() and path.suffix in (".list", ".sources", ""):
            texts.append(path.read_text(errors="replace"))
    for text in texts:
        for stanza in re.split(r"\n\s*\n", text):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites and _is_main_archive(uris.group(1), suites.group(1)):
                return uris.group(1)
        for line in text.splitlines():
            match = re.match(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", line)
            if match and _is_main_archive(match.group(1), match.group(2)):
                return match.group(1)
    raise TbctlError("no Debian archive found in /etc/apt sources (needed by debootstrap)")


def _is_main_archive(uri: str, suites: str) -> bool:
    names = suites.split()
    return (
        "security" not in uri
        and any(re.fullmatch(r"[a-z]+", name) for name in names)
        and uri.rstrip("/").endswith("debian")
    )


def base_key() -> str:
    digest = hashlib.sha256()
    digest.update(f"{RECIPE_VERSION}\n{SUITE}\n{' '.join(sorted(GUEST_PACKAGES))}\n".encode())
    for name in sorted(BAKED_FILES):
        digest.update(name.encode() + b"\0" + (FILES_DIR / name).read_bytes())
    return digest.hexdigest()[:16]


def driver_hook_inputs() -> tuple[Path, list[Path]] | None:
    """driver/lab-hook.sh and the git-tracked files under driver/ it may use."""
    root = repo_root()
    if root is None or not (root / "driver" / "lab-hook.sh").is_file():
        return None
    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "driver"],
        capture_output=True, check=False,
    )
    if listed.returncode == 0:
        names = [name for name in listed.stdout.decode().split("\0") if name]
        files = [root / name for name in names if (root / name).is_file()]
    else:
        files = [path for path in (root / "driver").rglob("*") if path.is_file()]
    return root / "driver" / "lab-hook.sh", sorted(files)


def image_key(base: str) -> str:
    digest = hashlib.sha256(base.encode())
    hook = driver_hook_inputs()
    if hook is None:
        digest.update(b"no-driver-hook")
    else:
        root = hook[0].parents[1]
        for path in hook[1]:
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _run(cmd: list[str], progress: Progress | None = None, **kwargs: object) -> None:
    """Runs a build step, streaming its output lines to `progress`; raises on failure."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs  # type: ignore[call-overload]
    )
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        tail = (tail + [line])[-30:]
        if progress:
            progress(line)
    if proc.wait() != 0:
        raise TbctlError(f"{cmd[0]} failed (exit {proc.returncode}):\n" + "\n".join(tail))


def _require_tools() -> None:
    if os.geteuid() != 0:
        raise TbctlError("building the lab image needs root (debootstrap, file ownership)")
    missing = [
        tool for tool in ("debootstrap", "mkfs.ext4", "qemu-img", "zstd", "tar")
        if shutil.which(tool) is None
    ]
    if missing:
        raise TbctlError(f"missing tools: {', '.join(missing)} (run `make deps`)")


def _build_base(target: Path, progress: Progress) -> None:
    """debootstrap + guest configuration, saved as rootfs.tar.zst, vmlinuz, initrd.img."""
    _require_tools()
    work = Path(tempfile.mkdtemp(prefix="base-", dir=target.parent))
    rootfs = work / "rootfs"
    try:
        mirror = host_debian_mirror()
        progress(f"debootstrap {SUITE} from {mirror}")
        try:
            _run(
                [
                    "debootstrap", "--variant=minbase", "--components=main",
                    "--include=" + ",".join(GUEST_PACKAGES), SUITE, str(rootfs), mirror,
                ],
                progress,
            )
        except TbctlError:
            log = rootfs / "debootstrap" / "debootstrap.log"
            if log.is_file():
                shutil.copy2(log, target.parent / "debootstrap-failed.log")
                progress(f"debootstrap's log: {target.parent / 'debootstrap-failed.log'}")
            raise
        _configure_rootfs(rootfs, progress)
        releases = sorted(p.name for p in (rootfs / "lib" / "modules").iterdir())
        if len(releases) != 1:
            raise TbctlError(f"expected one guest kernel, found {releases}")
        release = releases[0]
        shutil.copy2(rootfs / "boot" / f"vmlinuz-{release}", work / "vmlinuz")
        shutil.copy2(rootfs / "boot" / f"initrd.img-{release}", work / "initrd.img")
        progress("packing the base layer")
        _run(
            ["tar", "--create", "--numeric-owner", "--xattrs", "--use-compress-program",
             "zstd -T0 -3", "--file", str(work / "rootfs.tar.zst"), "--directory",
             str(rootfs), "."],
            progress,
        )
        (work / "kernel-release").write_text(release + "\n")
        shutil.rmtree(rootfs)
        work.rename(target)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def _configure_rootfs(rootfs: Path, progress: Progress) -> None:
    for name, (dest, mode) in BAKED_FILES.items():
        path = rootfs / dest
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(FILES_DIR / name, path)
        path.chmod(mode)
    for unit, wants in ENABLED_UNITS.items():
        link_dir = rootfs / "etc" / "systemd" / "system" / wants
        link_dir.mkdir(parents=True, exist_ok=True)
        link = link_dir / unit
        if not link.is_symlink():
            target = f"/etc/systemd/system/{unit}"
            if not (rootfs / target.lstrip("/")).exists():
                target = f"/usr/lib/systemd/system/{unit}"
            link.symlink_to(target)
    for directory, names in (("system", MASKED_UNITS),
                             ("system-generators", MASKED_GENERATORS)):
        for name in names:
            mask = rootfs / "etc" / "systemd" / directory / name
            mask.parent.mkdir(parents=True, exist_ok=True)
            mask.unlink(missing_ok=True)
            mask.symlink_to("/dev/null")
    (rootfs / "etc" / "rdma" / "modules" / "rdma.conf").write_text(
        "# The lab's list (tbctl/lab/image.py LAB_RDMA_MODULES).\n"
        + "".join(f"{name}\n" for name in LAB_RDMA_MODULES))
    # Every node gets its own host key and machine-id; the ones debootstrap made are shared.
    for key in (rootfs / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()
    (rootfs / "etc" / "machine-id").write_text("")
    dbus_id = rootfs / "var" / "lib" / "dbus" / "machine-id"
    if dbus_id.exists() or dbus_id.is_symlink():
        dbus_id.unlink()
    # No fsck pass: every boot's root is a fresh overlay of a file system mkfs just wrote,
    # and systemd-fsck-root would wait for udev to announce /dev/vda.
    (rootfs / "etc" / "fstab").write_text("/dev/vda / ext4 rw,relatime 0 0\n")
    _shrink_initrd(rootfs, progress)
    for junk in ("usr/share/doc", "usr/share/man", "usr/share/info", "var/cache/apt/archives",
                 "var/lib/apt/lists"):
        shutil.rmtree(rootfs / junk, ignore_errors=True)
    (rootfs / "var" / "cache" / "apt" / "archives" / "partial").mkdir(parents=True)
    (rootfs / "var" / "lib" / "apt" / "lists" / "partial").mkdir(parents=True)


def _shrink_initrd(rootfs: Path, progress: Progress) -> None:
    """Rebuilds the guest's initrd with only INITRD_MODULES (MODULES=most: 36 MB that TCG
    unpacks and probes at every boot)."""
    conf = rootfs / "etc" / "initramfs-tools"
    (conf / "conf.d").mkdir(parents=True, exist_ok=True)
    (conf / "conf.d" / "tbctl-lab.conf").write_text("MODULES=list\n")
    (conf / "modules").write_text("".join(f"{name}\n" for name in INITRD_MODULES))
    _run(["chroot", str(rootfs), "update-initramfs", "-u", "-k", "all"], progress)


def _decompress_modules(rootfs: Path, release: str, progress: Progress) -> None:
    """Stores PAIRING_MODULES and their dependencies uncompressed (depmod finds either)."""
    found = [name for name in PAIRING_MODULES if subprocess.run(
        ["modinfo", "--basedir", str(rootfs), "-k", release, name], capture_output=True,
    ).returncode == 0]
    if not found:
        return
    shown = subprocess.run(
        ["modprobe", "--dirname", str(rootfs), "--set-version", release, "--show-depends",
         "--all", *found], capture_output=True, text=True, check=True).stdout
    packed = sorted({line.split()[1] for line in shown.splitlines()
                     if line.startswith("insmod ") and line.split()[1].endswith(".ko.xz")})
    if packed:
        progress(f"decompressing {len(packed)} modules a pairing loads")
        _run(["xz", "--decompress", "--force", *packed], progress)
        _run(["depmod", "--basedir", str(rootfs), release], progress)


def _build_image(base: Path, target: Path, progress: Progress) -> None:
    """Unpacks the base, runs the driver hook if there is one, packs a qcow2."""
    _require_tools()
    work = Path(tempfile.mkdtemp(prefix="image-", dir=target.parent))
    rootfs = work / "rootfs"
    try:
        rootfs.mkdir()
        progress("unpacking the base layer")
        _run(
            ["tar", "--extract", "--numeric-owner", "--xattrs", "--same-permissions",
             "--use-compress-program", "zstd -d", "--file", str(base / "rootfs.tar.zst"),
             "--directory", str(rootfs)],
            progress,
        )
        release = (base / "kernel-release").read_text().strip()
        hook = driver_hook_inputs()
        if hook is not None:
            hook_cache = cache_root() / "driver-hook"
            hook_cache.mkdir(parents=True, exist_ok=True)
            progress(f"running {hook[0]}")
            _run(["bash", str(hook[0]), str(rootfs), release, str(hook_cache)], progress,
                 cwd=str(hook[0].parents[1]))
            _run(["depmod", "--basedir", str(rootfs), release], progress)
        _decompress_modules(rootfs, release, progress)
        used = int(subprocess.run(["du", "-sb", str(rootfs)], capture_output=True, text=True,
                                  check=True).stdout.split()[0])
        size = max(2 << 30, int(used * 1.5) + (512 << 20))
        raw = work / "root.raw"
        with open(raw, "wb") as handle:
            handle.truncate(size)
        progress(f"mkfs.ext4 -d ({used >> 20} MiB of files in a {size >> 20} MiB filesystem)")
        _run(["mkfs.ext4", "-q", "-F", "-L", "tbrdma-root", "-d", str(rootfs), str(raw)],
             progress)
        _run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(work / "root.qcow2")],
             progress)
        raw.unlink()
        shutil.rmtree(rootfs)
        for name in ("vmlinuz", "initrd.img", "kernel-release"):
            shutil.copy2(base / name, work / name)
        (work / "root.qcow2").chmod(0o444)
        work.rename(target)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def _load(directory: Path) -> NodeImage:
    return NodeImage(
        root=directory / "root.qcow2",
        kernel=directory / "vmlinuz",
        initrd=directory / "initrd.img",
        kernel_release=(directory / "kernel-release").read_text().strip(),
    )


def ensure_image(rebuild: bool = False, progress: Progress | None = None) -> NodeImage:
    """Returns the cached image for the current inputs, building what is missing."""
    say = progress or (lambda line: None)
    cache = cache_root()
    cache.mkdir(parents=True, exist_ok=True)
    bkey = base_key()
    base_dir = cache / f"base-{bkey}"
    image_dir = cache / f"image-{image_key(bkey)}"
    if rebuild:
        for stale in (image_dir, base_dir):
            shutil.rmtree(stale, ignore_errors=True)
    if image_dir.is_dir():
        return _load(image_dir)
    timings: dict[str, float] = {}
    if not base_dir.is_dir():
        started = time.monotonic()
        _build_base(base_dir, say)
        timings["base"] = time.monotonic() - started
    started = time.monotonic()
    _build_image(base_dir, image_dir, say)
    timings["image"] = time.monotonic() - started
    (image_dir / "build.json").write_text(json.dumps({"seconds": timings}) + "\n")
    prune_images(cache, keep=image_dir)
    return _load(image_dir)


def _open_paths() -> set[str]:
    """Files some process holds open (a running VM holds its image's qcow2)."""
    found = set()
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            for fd in fd_dir.iterdir():
                found.add(os.readlink(fd))
        except OSError:
            continue
    return found


def prune_images(cache: Path, keep: Path, newest: int = 6) -> None:
    """Each driver change makes a ~0.5 GB image; keep the newest few and any VM's own (six:
    branches built side by side on one machine would otherwise evict each other's)."""
    images = sorted(cache.glob("image-*"), key=lambda path: path.stat().st_mtime,
                    reverse=True)
    in_use = _open_paths()
    for stale in images[newest:]:
        if stale == keep or any(path.startswith(f"{stale}/") for path in in_use):
            continue
        shutil.rmtree(stale, ignore_errors=True)
