# SPDX-License-Identifier: MIT
"""doctor findings from recorded trees: each problem named, each with its fix."""

from __future__ import annotations

from tbctl.node import doctor, probe
from tests.unit import sysfs_tree as tree
from tests.unit.test_probe import UID_A, UID_B, host


def facts(root, memlock_soft=-1, release="6.12.0", shipped=("infiniband/sw/rxe/rdma_rxe",
                                                              "infiniband/core/ib_uverbs")):
    tree.kernel(root, release, list(shipped), [])
    return {
        "kernel": release,
        "modules": probe.modules(root, release),
        "native_available": False,
        "thunderbolt": probe.thunderbolt(root),
        "links": probe.candidate_links(root, [], []),
        "iommu": probe.iommu(root),
        "memlock": {"soft": memlock_soft, "hard": memlock_soft},
        "tools": {"ip": True, "ping": True, "rdma": False, "modprobe": True},
    }


def by_check(findings):
    out = {}
    for f in findings:
        out.setdefault(f["check"], []).append(f)
    return out


def test_healthy_parts_and_each_problem_with_a_fix(tmp_path):
    root = host(tmp_path, UID_A, UID_B, lanes=1, mtu=1500)
    tree.write(root / "etc/libibverbs.d/rxe.driver", "driver rxe")
    tree.write(root / "etc/libibverbs.d/tbrdma.driver", "driver tbrdma")
    tree.write(root / "usr/lib/x86_64-linux-gnu/libibverbs/librxe-rdmav34.so", "")
    tree.write(root / "usr/lib/x86_64-linux-gnu/libibverbs/libmlx5-rdmav34.so", "")
    tree.write(root / "usr/lib/x86_64-linux-gnu/libibverbs/libtbrdma-rdmav25.so", "")
    found = by_check(doctor.findings(facts(root, memlock_soft=8 << 20), root))
    assert found["kernel"][0]["status"] == "ok"
    assert found["rdma transport"][0]["status"] == "warn"  # rxe only
    assert found["iommu"][0]["status"] == "ok"
    assert found["memlock"][0]["status"] == "warn" and "limits.d" in found["memlock"][0]["fix"]
    assert found["link speed"][0]["status"] == "warn" and "1 lane" in found["link speed"][0][
        "detail"]
    assert found["mtu"][0]["status"] == "warn" and "65520" in found["mtu"][0]["fix"]
    (provider,) = found["providers"]
    assert provider["status"] == "fail" and "ABI 25" in provider["detail"]
    assert "ABI 34" not in provider["detail"] and "the others for 34" in provider["detail"]
    (tool,) = found["tools"]
    assert "rdma" in tool["detail"] and tool["fix"] == "install iproute2"
    assert all(f["fix"] for f in doctor.findings(facts(root, 8 << 20), root)
               if f["status"] != "ok")


def test_old_kernel_and_no_rdma(tmp_path):
    found = by_check(doctor.findings(facts(tmp_path, release="5.15.0", shipped=()), tmp_path))
    assert found["kernel"][0]["status"] == "fail"
    assert found["rdma transport"][0]["status"] == "fail"
    assert found["ib_uverbs"][0]["status"] == "fail"
    assert found["providers"][0]["detail"] == "rdma-core is not installed"
