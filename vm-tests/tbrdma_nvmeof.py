# SPDX-License-Identifier: MIT
# ruff: noqa: F821 - the driver provides start_all, a, b, check_kernel_log, native_create
# A kernel ULP on tbrdma0: NVMe over Fabrics (RDMA transport), the stock kernel's nvmet-rdma
# target on b exporting a loop device backed by a tmpfs file, nvme-rdma on a connecting
# through rdma_cm (no nvme-cli: the connect string goes to /dev/nvme-fabrics). nvme-rdma
# refuses a device without IB_DEVICE_MEM_MGT_EXTENSIONS and registers every I/O buffer with
# fast registration (IB_WR_REG_MR, then LOCAL_INV or the target's SEND_WITH_INV), so this
# runs the FRMR path of the driver end to end: 32 MiB of random data written with O_DIRECT
# in 1 MiB and 4 KiB requests, read back on a and compared, and compared again on b in the
# backing file. Then disconnect, the target torn down, the module unloaded; dmesg clean.
# Globals (NixOS test driver subset): start_all, a, b, check_kernel_log.
import secrets

KEY = secrets.token_hex(32)
ADDR = {"a": "10.77.0.1", "b": "10.77.0.2"}
NQN = "nqn.2026-12.io.tbrdma:lab"
NVMET = "/sys/kernel/config/nvmet"

start_all()
for m in (a, b):
    m.wait_for_unit("multi-user.target")

# 1. a device on cable 0.
for m, initiator in ((a, 1), (b, 0)):
    m.succeed("modprobe tbrdma")
    m.succeed("ip link set thunderbolt0 mtu 9000")
    m.succeed(f"ip addr replace {ADDR[m.name]}/24 dev thunderbolt0")
    native_create(m, "thunderbolt0", KEY, initiator)
for m in (a, b):
    m.wait_until_succeeds("grep -q ACTIVE /sys/class/infiniband/tbrdma0/ports/1/state",
                          timeout=120)
print("tbrdma0 (a): " + a.succeed("ibv_devinfo -v -d tbrdma0 | grep -iE 'MEM_MGT|fast_reg' "
                                  "|| true").strip())

# 2. the target on b: a 64 MiB loop device on tmpfs, exported over RDMA on cable 0.
b.succeed("modprobe nvmet-rdma && modprobe loop")
b.succeed("truncate -s 64M /dev/shm/nvme-backing && losetup -f --show /dev/shm/nvme-backing "
          "> /tmp/loopdev")
loopdev = b.succeed("cat /tmp/loopdev").strip()
b.succeed(f"mkdir {NVMET}/subsystems/{NQN} && "
          f"echo 1 > {NVMET}/subsystems/{NQN}/attr_allow_any_host && "
          f"mkdir {NVMET}/subsystems/{NQN}/namespaces/1 && "
          f"echo -n {loopdev} > {NVMET}/subsystems/{NQN}/namespaces/1/device_path && "
          f"echo 1 > {NVMET}/subsystems/{NQN}/namespaces/1/enable && "
          f"mkdir {NVMET}/ports/1 && echo rdma > {NVMET}/ports/1/addr_trtype && "
          f"echo ipv4 > {NVMET}/ports/1/addr_adrfam && "
          f"echo {ADDR['b']} > {NVMET}/ports/1/addr_traddr && "
          f"echo 4420 > {NVMET}/ports/1/addr_trsvcid && "
          f"ln -s {NVMET}/subsystems/{NQN} {NVMET}/ports/1/subsystems/{NQN}")

# 3. the host on a: connect, find the namespace's block device.
a.succeed("modprobe nvme-rdma")
a.succeed(f"echo 'transport=rdma,traddr={ADDR['b']},trsvcid=4420,nqn={NQN}' "
          "> /dev/nvme-fabrics")
ctrl = a.wait_until_succeeds(
    f"for c in /sys/class/nvme/nvme*; do grep -qx '{NQN}' $c/subsysnqn && basename $c "
    "&& exit 0; done; exit 1", timeout=120).strip()
# the namespace's disk: the subsystem's head (native multipath) or the controller's own
disk = a.wait_until_succeeds(
    f"for d in /sys/class/nvme-subsystem/*/nvme*n* /sys/class/nvme/{ctrl}/nvme*n*; do "
    "n=$(basename $d); echo $n | grep -qE '^nvme[0-9]+n[0-9]+$' && test -b /dev/$n && "
    f"grep -qx '{NQN}' $(dirname $d)/subsysnqn 2>/dev/null && echo $n && exit 0; done; "
    "exit 1", timeout=120).strip()
print(f"a: controller {ctrl} ("
      + a.succeed(f"cat /sys/class/nvme/{ctrl}/transport").strip() + f"), namespace {disk}")
before = {m.name: m.succeed("rdma statistic show link tbrdma0/1 | tr ' ' '\\n' | "
                            "grep -A1 '^msgs_posted$' | tail -n1").strip() for m in (a, b)}

# 4. data: 32 MiB in 1 MiB requests, 1 MiB more in 4 KiB ones, O_DIRECT both ways.
a.succeed("head -c 33554432 /dev/urandom > /tmp/pattern && "
          "head -c 1048576 /dev/urandom > /tmp/pattern4k")
a.succeed(f"dd if=/tmp/pattern of=/dev/{disk} bs=1M oflag=direct conv=fsync status=none")
a.succeed(f"dd if=/tmp/pattern4k of=/dev/{disk} bs=4k seek=8192 oflag=direct conv=fsync "
          "status=none")
a.succeed(f"dd if=/dev/{disk} of=/tmp/back bs=1M count=32 iflag=direct status=none && "
          "cmp /tmp/pattern /tmp/back")
a.succeed(f"dd if=/dev/{disk} of=/tmp/back4k bs=4k skip=8192 count=256 iflag=direct "
          "status=none && cmp /tmp/pattern4k /tmp/back4k")
sums = a.succeed("sha256sum /tmp/pattern /tmp/pattern4k | cut -d' ' -f1").split()
on_b = b.succeed("head -c 33554432 /dev/shm/nvme-backing | sha256sum | cut -d' ' -f1; "
                 "tail -c +33554433 /dev/shm/nvme-backing | head -c 1048576 | sha256sum | "
                 "cut -d' ' -f1").split()
assert sums == on_b, (sums, on_b)
after = {m.name: m.succeed("rdma statistic show link tbrdma0/1 | tr ' ' '\\n' | "
                           "grep -A1 '^msgs_posted$' | tail -n1").strip() for m in (a, b)}
print(f"nvmeof: 33 MiB written and read back byte-exact; core messages posted a "
      f"{before['a']} -> {after['a']}, b {before['b']} -> {after['b']}")
for m in (a, b):
    print(m.succeed("rdma statistic show link tbrdma0/1"))
    check_kernel_log(m)

# 5. teardown: disconnect, target down, device and module gone, dmesg clean.
a.succeed(f"echo 1 > /sys/class/nvme/{ctrl}/delete_controller")
a.wait_until_succeeds(f"! test -e /sys/block/{disk}", timeout=60)
a.succeed("modprobe -r nvme-rdma")
b.succeed(f"rm {NVMET}/ports/1/subsystems/{NQN} && rmdir {NVMET}/ports/1 && "
          f"echo 0 > {NVMET}/subsystems/{NQN}/namespaces/1/enable && "
          f"rmdir {NVMET}/subsystems/{NQN}/namespaces/1 && rmdir {NVMET}/subsystems/{NQN} && "
          f"losetup -d {loopdev} && modprobe -r nvmet-rdma")
for m in (a, b):
    m.succeed("PYTHONPATH=/usr/local/lib/tbctl python3 -c 'from tbctl.node import native; "
              "native.destroy(\"tbrdma0\")'")
    m.succeed("modprobe -r tbrdma")
    check_kernel_log(m)
