# SPDX-License-Identifier: MIT
"""The NixOS modules and configurations, evaluated with lib.evalModules from a real nixpkgs lib.

Needs a nixpkgs `lib` tree: NIXPKGS_LIB=<dir with lib/default.nix> (a nixpkgs checkout, or
github.com/nix-community/nixpkgs.lib). Without it every test here skips and says so; the Debian
CI has no copy of nixpkgs. docs/nix.md records a run. tests/nix/eval-modules.nix evaluates
flake.nix's own outputs with that lib; NixOS's option declarations are stood in for by
tests/nix/nixos-stub (the options these modules define, with nixpkgs' types).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from nixtool import REPO, NixEvalError, eval_json, nix_string

EVAL_NIX = Path(__file__).resolve().parent / "eval-modules.nix"
NIXPKGS_LIB = os.environ.get("NIXPKGS_LIB", "")

pytestmark = pytest.mark.skipif(
    not NIXPKGS_LIB,
    reason="NIXPKGS_LIB is not set: point it at a nixpkgs or nixpkgs.lib tree (a directory "
    "holding lib/default.nix) to evaluate the NixOS modules with lib.evalModules (docs/nix.md)",
)

MODULE_CASES = [
    "default", "hardware-tbrdma", "services-tbctl", "hardware-and-services",
    "default-and-appliance", "all",
]
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


def evaluate(attribute: str, doc_flake: Path | None = None) -> Any:
    lib = Path(NIXPKGS_LIB).resolve()
    if not (lib / "lib" / "default.nix").is_file():
        pytest.fail(f"NIXPKGS_LIB={NIXPKGS_LIB} has no lib/default.nix; point it at a nixpkgs "
                    "or nixpkgs.lib tree")
    extra = f" docFlake = {doc_flake};" if doc_flake else ""
    return eval_json(
        f"(import {EVAL_NIX} {{ nixpkgsLib = {lib}; repo = {REPO};{extra} }}).{attribute}"
    )


def test_modules_are_exported_as_paths() -> None:
    # An imported function has no key the module system could deduplicate it by.
    assert evaluate("moduleKinds") == dict.fromkeys(
        ["appliance", "default", "hardware-tbrdma", "services-tbctl"], "path")


def link_rules(links: list[str], reject: bool = False) -> dict[str, str]:
    """nixos/lib/link-firewall.nix for the module's ports (test_link_firewall_netns.py runs
    these rules in network namespaces)."""
    quoted = " ".join(nix_string(link) for link in links)
    return eval_json(f"import {REPO}/nixos/lib/link-firewall.nix {{ links = [ {quoted} ]; "
                     f"udpPorts = [ 4791 ]; tcpPorts = [ 18515 ]; "
                     f"reject = {str(reject).lower()}; }}")


DEFAULT_LINKS = [f"thunderbolt{i}" for i in range(4)]


@pytest.mark.parametrize("case", MODULE_CASES)
def test_module_combination_declares_each_option_once(case: str) -> None:
    try:
        summary = evaluate(f"modules.{case}")
    except NixEvalError as error:
        pytest.fail(f"nixosModules combination {case} does not evaluate:\n{error}")
    assert summary["failedAssertions"] == []
    # The driver's defaults: links untrusted, only RoCEv2 and perftest's exchange opened;
    # memlock raised for the group's sessions only, no unit-wide default.
    assert summary["firewall"]["trustedInterfaces"] == []
    assert summary["firewall"]["interfaces"] == {
        f"thunderbolt{i}": {"allowedTCPPorts": [18515], "allowedUDPPorts": [4791]}
        for i in range(4)
    }
    # Globally opened ports (sshd's) are refused on the links, by the iptables firewall here.
    assert summary["firewall"]["extraCommands"] == link_rules(DEFAULT_LINKS)["iptables"]
    assert summary["firewall"]["nftablesTables"] == {}
    assert summary["defaultMemlock"] is None
    assert summary["memlockUnits"] == {}
    assert summary["loginLimits"] == [
        {"domain": "@rdma", "item": "memlock", "type": "-", "value": "unlimited"}]


def test_links_refuse_global_ports_with_either_firewall_backend() -> None:
    variants = evaluate("firewallVariants")
    nftables = variants["nftables"]["firewall"]
    assert nftables["extraCommands"] == ""  # NixOS asserts it is empty with nftables
    assert nftables["nftablesTables"] == {
        "tbrdma-links": {"family": "inet", "content": link_rules(DEFAULT_LINKS)["nftables"]}}
    assert variants["reject"]["firewall"]["extraCommands"] == link_rules(
        DEFAULT_LINKS, reject=True)["iptables"]
    for off in ("off", "trust"):
        assert variants[off]["firewall"]["extraCommands"] == "", off
        assert variants[off]["firewall"]["nftablesTables"] == {}, off
    assert variants["trust"]["firewall"]["trustedInterfaces"] == DEFAULT_LINKS


def test_every_rendered_unit_gets_the_modules_drop_in() -> None:
    """Units start with an empty PATH on NixOS: each unit file tbctl renders (the boot unit
    and the hotplug template alike) needs the module's drop-in with the tools' PATH."""
    from tbctl.hostfiles import HOST_FILES

    rendered = sorted(Path(rel).name.removesuffix(".service") for rel in HOST_FILES
                      if rel.startswith("etc/systemd/system/"))
    assert rendered == ["tbctl-reapply", "tbctl-reapply@"]
    for case in ("services-tbctl", "all"):
        assert evaluate(f"modules.{case}")["tbctlUnits"] == rendered, case


def test_driver_module_refuses_nixpkgs_older_than_25_11() -> None:
    """Configurations that bring their own nixpkgs (not the flake's, which refuses it itself)
    get a NixOS assertion."""
    failed = evaluate("oldNixpkgs.failedAssertions")
    assert any("needs nixpkgs 25.11 or newer" in message for message in failed), failed


def test_memlock_is_raised_for_listed_units_only() -> None:
    summary = evaluate("memlockForOneUnit")
    assert summary["memlockUnits"] == {"vllm": "65536K"}
    assert summary["defaultMemlock"] is None
    assert summary["loginLimits"][0]["value"] == "65536"


@pytest.mark.parametrize("name", ["appliance", "appliance-iso"])
def test_configuration_assertions_hold(name: str) -> None:
    assert evaluate(f"configurations.{name}.failedAssertions") == []


@pytest.mark.parametrize("name", ["appliance", "appliance-iso"])
def test_appliance_sshd_is_refused_on_the_cables(name: str) -> None:
    """sshd opens port 22 on every interface (services.openssh.openFirewall); on the cable
    links the appliance refuses it (docs/appliance.md, security model)."""
    firewall = evaluate(f"configurations.{name}.firewall")
    assert firewall["trustedInterfaces"] == []
    assert firewall["extraCommands"] == link_rules(DEFAULT_LINKS)["iptables"]


def test_raw_efi_layout_uses_this_builds_ids() -> None:
    raw = evaluate("configurations.appliance")
    assert sorted(raw["fileSystems"]) == ["/", "/boot"]
    assert re.fullmatch(f"/dev/disk/by-uuid/{UUID}", raw["fileSystems"]["/"]["device"])
    assert re.fullmatch(f"/dev/disk/by-partuuid/{UUID}", raw["fileSystems"]["/boot"]["device"])
    assert {"nosuid", "nodev", "noexec"} <= set(raw["fileSystems"]["/boot"]["options"])
    assert raw["systemdBoot"] == {"enable": True, "editor": False}
    assert raw["growPartition"] is True

    other = evaluate("otherBuild.appliance")
    for mount in ("/", "/boot"):
        assert other["fileSystems"][mount]["device"] != raw["fileSystems"][mount]["device"]


def test_raw_image_is_built_with_the_ids_its_file_systems_are_mounted_by() -> None:
    """make-disk-image.nix writes the root file system's UUID and label; postVM sets the ESP's
    (partition 1 in the `efi` layout) GPT GUID. Both must be what fileSystems mounts."""
    raw = evaluate("configurations.appliance")
    image = raw["image"]
    root_uuid = raw["fileSystems"]["/"]["device"].removeprefix("/dev/disk/by-uuid/")
    esp_guid = raw["fileSystems"]["/boot"]["device"].removeprefix("/dev/disk/by-partuuid/")
    assert image["partitionTableType"] == "efi"
    assert image["format"] == "raw" and image["fsType"] == "ext4"
    assert image["rootFSUID"] == root_uuid
    assert re.fullmatch(UUID, image["rootGPUID"]) and image["rootGPUID"] != root_uuid
    assert re.fullmatch(r"tbrdma-[0-9a-f]{8}", image["label"])
    assert f"--partition-guid=1:{esp_guid} " in image["postVM"]
    assert image["copyChannel"] is False
    other = evaluate("otherBuild.appliance.image")
    assert other["label"] != image["label"] and other["rootFSUID"] != image["rootFSUID"]


def doc_flakes(doc: Path) -> list[str]:
    blocks = re.findall(r"```nix\n(.*?)```", doc.read_text(), flags=re.S)
    return [block for block in blocks if "tbrdma.nixosConfigurations" in block]


def test_the_documented_flake_that_bakes_a_key_builds_this_projects_raw_image(
    tmp_path: Path,
) -> None:
    """docs/appliance.md's own flake must build the image with this build's layout, not
    nixpkgs' raw-efi image variant (labels nixos/ESP, one root UUID for every image)."""
    (snippet,) = doc_flakes(REPO / "docs/appliance.md")
    doc_flake = tmp_path / "flake.nix"
    doc_flake.write_text(snippet)
    try:
        built = evaluate("docFlakeImage", doc_flake)
    except NixEvalError as error:
        pytest.fail(f"the flake in docs/appliance.md does not evaluate:\n{error}")
    image, ids = built["image"], built["ids"]
    assert image["name"] == "tbrdma-appliance-raw-efi"
    assert (image["rootFSUID"], image["label"]) == (ids["rootUuid"], ids["rootLabel"])


def test_iso_never_touches_the_boxs_disks() -> None:
    iso = evaluate("configurations.appliance-iso")
    # nixpkgs' iso-image.nix adds the live file systems (tmpfs, the medium, the store); this
    # configuration must add none of the box's.
    assert iso["fileSystems"] == {}
    assert iso["systemdBoot"]["enable"] is False
    assert iso["growPartition"] is False
    assert iso["keyImport"]["requiresMounts"] == []
    assert iso["keyImport"]["environment"]["BOOT_KEY_FILE"] == ""
    assert iso["keyImport"]["environment"]["BOOT_HOSTNAME_FILE"] == ""
    assert re.fullmatch(r"tbrdma-[0-9a-f]{8}", iso["isoVolumeId"])
    assert evaluate("otherBuild.appliance-iso.isoVolumeId") != iso["isoVolumeId"]


def test_ssh_keys_come_only_from_files_the_module_rewrites() -> None:
    raw = evaluate("configurations.appliance")
    # ~/.ssh is not read: every key in use comes from the image or from a file that
    # nixos/lib/import-keys.sh rewrites whole (tests/nix/test_import_keys.py runs it).
    assert raw["openssh"]["authorizedKeysInHomedir"] is False
    assert raw["openssh"]["authorizedKeysFiles"] == ["/var/lib/tbrdma-keys/%u"]
    assert raw["openssh"]["settings"]["PasswordAuthentication"] is False
    environment = raw["keyImport"]["environment"]
    assert environment["KEY_DIR"] == "/var/lib/tbrdma-keys"
    assert environment["BOOT_KEY_FILE"] == "/boot/tbrdma/authorized_keys"
    assert raw["keyImport"]["requiresMounts"] == ["/boot"]
    assert raw["keyImport"]["before"] == ["sshd.service"]


def test_key_stick_is_opt_in_and_mounted_read_only_vfat() -> None:
    assert evaluate("configurations.appliance.keyImport.environment.STICK_DEVICE") == ""
    for name in ("rawWithStick", "configurations.appliance-iso"):
        environment = evaluate(f"{name}.keyImport.environment")
        assert environment["STICK_DEVICE"] == "/dev/disk/by-label/TBRDMA_KEYS"
        options = environment["STICK_MOUNT_OPTIONS"].split(",")
        assert {"ro", "nosuid", "nodev", "noexec"} <= set(options)


@pytest.mark.parametrize("node", ["a", "b"])
def test_vm_test_hosts_open_what_the_shared_scripts_use_on_cables(node: str) -> None:
    summary = evaluate(f"vmTestNodes.{node}")
    assert summary["failedAssertions"] == []
    # pair.py runs rdma_rxe (UDP 4791) and perftest against the peer's cable address (TCP
    # 18515) over the two cables; nothing else is open on them.
    assert summary["firewall"]["trustedInterfaces"] == []
    assert summary["firewall"]["interfaces"] == {
        f"thunderbolt{i}": {"allowedTCPPorts": [18515], "allowedUDPPorts": [4791]}
        for i in range(2)
    }
    assert summary["firewall"]["extraCommands"] == link_rules(
        ["thunderbolt0", "thunderbolt1"])["iptables"]


def test_vm_test_controller_evaluates() -> None:
    assert evaluate("vmTestNodes.controller.failedAssertions") == []
