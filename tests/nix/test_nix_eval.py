# SPDX-License-Identifier: MIT
"""Strict evaluation of this project's pure Nix functions, offline, with Debian's nix-bin.

The central one: nixos/lib/host-files.nix turns services.tbctl options into the arguments the
NixOS module passes to `tbctl render-host-files` at build time. Rendering with those arguments
must give byte for byte what `tbctl pair` installs on a non-NixOS host
(tbctl.hostfiles.render_host_files), for every option set below.
"""

from __future__ import annotations

import subprocess
import sys
import traceback
from pathlib import Path

import pytest
from nixtool import REPO, NixEvalError, eval_json, nix_string

from tbctl.hostfiles import HOST_FILES, render_host_files

HOST_FILES_NIX = REPO / "nixos/lib/host-files.nix"
PATCH_SERIES_NIX = REPO / "pkgs/linux-tbrdma/patch-series.nix"
STRIX_HALO_NIX = REPO / "nixos/lib/strix-halo.nix"
CABLES_NIX = REPO / "vm-tests/cables.nix"
TEST_SCRIPT_NIX = REPO / "vm-tests/test-script.nix"


def nix_list(values: list[str]) -> str:
    return "[ " + " ".join(nix_string(v) for v in values) + " ]"


def host_files_eval(state_dir: str, tbctl_exec: str, modules: list[str]) -> dict:
    return eval_json(
        f"import {HOST_FILES_NIX} {{ stateDir = {nix_string(state_dir)}; "
        f"tbctlExec = {nix_string(tbctl_exec)}; kernelModules = {nix_list(modules)}; }}"
    )


OPTION_SETS = [
    # The module defaults with hardware.tbrdma enabled (a native pairing's module list).
    ("/var/lib/tbctl", "/run/current-system/sw/bin/tbctl", ["tbrdma"]),
    # The VM tests' nodes (what `tbctl pair --transport rxe` renders).
    ("/var/lib/tbctl", "/run/current-system/sw/bin/tbctl", ["rdma_rxe"]),
    # hardware.tbrdma disabled: no modules at all.
    ("/srv/state/tbctl", "/run/current-system/sw/bin/tbctl", []),
    # A store path for tbctl, a custom state dir, modules listed twice and out of order.
    ("/persist/tbctl-state", "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-tbctl-0.1.0/bin/tbctl",
     ["tbrdma", "rdma_rxe", "thunderbolt_net", "tbrdma"]),
]


@pytest.mark.parametrize(("state_dir", "tbctl_exec", "modules"), OPTION_SETS)
def test_module_renders_what_pair_writes(
    tmp_path: Path, state_dir: str, tbctl_exec: str, modules: list[str]
) -> None:
    evaluated = host_files_eval(state_dir, tbctl_exec, modules)

    # What the NixOS module's runCommand does, with the arguments Nix computed.
    out = tmp_path / "out"
    subprocess.run(
        [sys.executable, "-m", "tbctl", "render-host-files", "--out", str(out),
         *evaluated["args"]],
        cwd=REPO, check=True, capture_output=True, text=True,
    )
    written = sorted(
        str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()
    )

    # What `tbctl pair` writes on a Debian host for the same parameters.
    expected = render_host_files(state_dir=state_dir, tbctl_exec=tbctl_exec, modules=modules)

    assert written == sorted(expected)
    for rel, content in expected.items():
        assert (out / rel).read_bytes() == content.encode(), rel
    # The module installs exactly these paths, so its list must match tbctl's.
    assert evaluated["manifest"]["files"] == list(HOST_FILES)
    assert evaluated["manifest"]["modules"] == sorted(set(modules))
    assert evaluated["manifest"]["state_dir"] == state_dir
    unit = (out / "etc/systemd/system/tbctl-reapply.service").read_text()
    assert f"ExecStart={tbctl_exec} node reapply --state-dir {state_dir}\n" in unit


@pytest.mark.parametrize(
    ("state_dir", "tbctl_exec", "modules", "message"),
    [
        ("var/lib/tbctl", "/bin/tbctl", [], "must be an absolute path"),
        ("/var/lib/tbctl", "tbctl", [], "must be an absolute path"),
        ("/var/lib/tb ctl", "/bin/tbctl", [], "must not contain whitespace"),
        ("/var/lib/tbctl", "/bin/tbctl", ["rdma_rxe\ntbrdma"], "must not contain whitespace"),
        ("/var/lib/tbctl", "/bin/tbctl", [""], "must not be empty"),
    ],
)
def test_host_files_rejects_values_the_templates_cannot_carry(
    state_dir: str, tbctl_exec: str, modules: list[str], message: str
) -> None:
    with pytest.raises(NixEvalError, match=message):
        host_files_eval(state_dir, tbctl_exec, modules)


def parse_series(series: Path, patch_dir: Path) -> list[dict]:
    return eval_json(
        f"map (p: p // {{ patch = toString p.patch; }}) (import {PATCH_SERIES_NIX} "
        f"{{ seriesFile = {series}; patchDir = {patch_dir}; }})"
    )


def test_repository_series_parses() -> None:
    patch_dir = REPO / "driver/patches"
    parsed = parse_series(patch_dir / "series", patch_dir)
    listed = [
        line.strip() for line in (patch_dir / "series").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert [Path(p["patch"]).name for p in parsed] == listed
    assert all(p["reason"] for p in parsed)


def write_series(directory: Path, text: str, patches: list[str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in patches:
        (directory / name).write_text(f"--- a/{name}\n+++ b/{name}\n")
    (directory / "series").write_text(text)
    return directory / "series"


def test_series_keeps_order_names_and_reasons(tmp_path: Path) -> None:
    series = write_series(
        tmp_path,
        "# Header: what this file is.\n\n"
        "# thunderbolt-net: let RDMA frames use the full USB4 MTU\n"
        "0001-thunderbolt-net-mtu.patch\n"
        "  # export ib_register_device_net for out-of-tree rails  \n"
        "0002-export-helper.diff\n",
        ["0001-thunderbolt-net-mtu.patch", "0002-export-helper.diff"],
    )
    assert parse_series(series, tmp_path) == [
        {"name": "0001-thunderbolt-net-mtu",
         "patch": str(tmp_path / "0001-thunderbolt-net-mtu.patch"),
         "reason": "thunderbolt-net: let RDMA frames use the full USB4 MTU"},
        {"name": "0002-export-helper",
         "patch": str(tmp_path / "0002-export-helper.diff"),
         "reason": "export ib_register_device_net for out-of-tree rails"},
    ]


def test_series_with_only_comments_is_empty(tmp_path: Path) -> None:
    series = write_series(tmp_path, "# nothing to patch yet\n\n# really\n", [])
    assert parse_series(series, tmp_path) == []


@pytest.mark.parametrize(
    ("text", "patches", "message"),
    [
        ("0001-a.patch\n", ["0001-a.patch"], r"series:1: patch '0001-a.patch' needs a '# reason'"),
        ("# why\n\n0001-a.patch\n", ["0001-a.patch"], r"series:3: .*needs a '# reason'"),
        ("# why\n0001-a.patch\n# why again\n0001-b.patch\n", ["0001-a.patch"],
         r"series:4: patch file '0001-b.patch' does not exist"),
        ("# why\n0001-a.patch\n# twice\n0001-a.patch\n", ["0001-a.patch"], r"listed twice"),
        ("# why\n../escape.patch\n", [], r"is not a plain patch file name"),
    ],
)
def test_series_errors_name_the_line(
    tmp_path: Path, text: str, patches: list[str], message: str
) -> None:
    series = write_series(tmp_path, text, patches)
    with pytest.raises(NixEvalError, match=message):
        parse_series(series, tmp_path)


def test_strix_halo_gtt_parameters() -> None:
    assert eval_json(f"import {STRIX_HALO_NIX} {{ gttGiB = 96; }}") == [
        "amdgpu.gttsize=98304",
        "ttm.pages_limit=25165824",
        "ttm.page_pool_size=25165824",
    ]
    with pytest.raises(NixEvalError, match="positive whole number"):
        eval_json(f"import {STRIX_HALO_NIX} {{ gttGiB = 0; }}")


@pytest.mark.parametrize(
    ("interfaces", "count", "netdevs"),
    [
        # vlans = [ 1 ] gives eth1; the cables sort after it.
        (["eth1", "thunderbolt0", "thunderbolt1"], 2, ["vlan2", "vlan3"]),
        # A second management NIC shifts every cable by one.
        (["eth1", "eth2", "thunderbolt0", "thunderbolt1", "thunderbolt2"], 3,
         ["vlan3", "vlan4", "vlan5"]),
    ],
)
def test_cable_netdev_ids_follow_nic_order(
    interfaces: list[str], count: int, netdevs: list[str]
) -> None:
    cables = eval_json(
        f"import {CABLES_NIX} {{ interfaceNames = {nix_list(interfaces)}; cableCount = {count}; }}"
    )
    assert [c["netdev"] for c in cables] == netdevs
    assert [c["link"] for c in cables] == [f"thunderbolt{i}" for i in range(count)]


def test_cable_without_interface_is_an_error() -> None:
    with pytest.raises(NixEvalError, match="thunderbolt1 is not attached"):
        eval_json(
            f"import {CABLES_NIX} {{ interfaceNames = [ \"eth1\" \"thunderbolt0\" ]; "
            "cableCount = 2; }"
        )


SHARED_SCRIPT = '''"""A shared script as the lab writes them: docstring, __future__ import."""
from __future__ import annotations

log: list[str] = []
start_all()
log.append(f"{HOST_A}->{HOST_B} ‘quotes’ \\\\ and \\"escapes\\" ${{not nix}}")
cable(1).block()
cable(0).unblock()
try:
    cable(2)
except IndexError as error:
    log.append(str(error))
'''


class StandInMachine:
    """Records what the generated prelude asks of the NixOS test driver's machines."""

    def __init__(self, name: str, sent: list[tuple[str, str]]) -> None:
        self.name = name
        self.sent = sent

    def start(self, allow_reboot: bool = False) -> None:
        self.sent.append((self.name, f"start allow_reboot={allow_reboot}"))

    def send_monitor_command(self, command: str) -> str:
        self.sent.append((self.name, command))
        return "(qemu) "


def test_test_script_runs_shared_script_with_contract_globals(tmp_path: Path) -> None:
    first = tmp_path / "pair.py"
    first.write_text("log = ['pair ran first']\n")
    script = tmp_path / "cable_pull.py"
    script.write_text(SHARED_SCRIPT.replace("log: list[str] = []\n", ""))
    rendered = eval_json(
        f"import {TEST_SCRIPT_NIX} {{ netdevs = {{ a = [ \"vlan2\" \"vlan3\" ]; "
        f"b = [ \"vlan2\" \"vlan4\" ]; }}; scripts = ["
        f" {{ name = \"pair.py\"; text = builtins.readFile {first}; }}"
        f" {{ name = \"cable_pull.py\"; text = builtins.readFile {script}; }} ]; }}"
    )
    sent: list[tuple[str, str]] = []
    driver_start_all: list[bool] = []
    namespace = {
        "a": StandInMachine("a", sent),
        "b": StandInMachine("b", sent),
        "controller": StandInMachine("controller", sent),
        "start_all": lambda: driver_start_all.append(True),
    }
    exec(compile(rendered, "testScript", "exec"), namespace)

    # start_all() starts every VM so that reboot() restarts it (persistence.py reboots b).
    assert driver_start_all == []
    # The scripts share the driver's namespace, in order, as the local runner's sequence.
    assert namespace["log"] == [
        "pair ran first",
        "a->b ‘quotes’ \\ and \"escapes\" ${not nix}",
        "no cable 2: this test has 2",
    ]
    # Pulling a cable drops both ends, each through its own node's netdev id.
    assert sent == [
        ("a", "start allow_reboot=True"),
        ("b", "start allow_reboot=True"),
        ("controller", "start allow_reboot=True"),
        ("a", "set_link vlan3 off"),
        ("b", "set_link vlan4 off"),
        ("a", "set_link vlan2 on"),
        ("b", "set_link vlan2 on"),
    ]


def test_test_script_tracebacks_name_the_shared_script(tmp_path: Path) -> None:
    script = tmp_path / "bringup.py"
    script.write_text("x = 1\nraise RuntimeError('boom')\n")
    rendered = eval_json(
        f"import {TEST_SCRIPT_NIX} {{ netdevs = {{ a = [ ]; b = [ ]; }}; scripts = [ "
        f"{{ name = \"bringup.py\"; text = builtins.readFile {script}; }} ]; }}"
    )
    with pytest.raises(RuntimeError) as raised:
        exec(compile(rendered, "testScript", "exec"), {"a": None, "b": None})
    frames = [frame.filename for frame in traceback.extract_tb(raised.value.__traceback__)]
    assert frames[-1] == "vm-tests/bringup.py"


CONTRACT_SCRIPTS = ["bringup", "pair", "persistence", "cable_pull", "unpair"]
# The kernel engineer's scripts; flake.nix runs each through vm-tests/kernel.nix.
KERNEL_SCRIPTS = sorted(p.stem for p in (REPO / "vm-tests").glob("tbrdma_*.py"))


@pytest.mark.parametrize("name", CONTRACT_SCRIPTS + KERNEL_SCRIPTS)
def test_every_contract_script_has_a_nix_runner_and_compiles_inside_it(name: str) -> None:
    script = REPO / "vm-tests" / f"{name}.py"
    runner = REPO / "vm-tests" / ("kernel.nix" if name.startswith("tbrdma_") else f"{name}.nix")
    assert runner.is_file(), f"{runner} is missing"
    if not name.startswith("tbrdma_"):
        assert f"./{name}.py" in runner.read_text()
    if not script.is_file():
        pytest.fail(f"{script} (the lab engineer's) is missing; the Nix check would not evaluate")
    rendered = eval_json(
        f"import {TEST_SCRIPT_NIX} {{ netdevs = {{ a = [ \"vlan2\" \"vlan3\" ]; "
        f"b = [ \"vlan2\" \"vlan3\" ]; }}; scripts = [ "
        f"{{ name = \"{name}.py\"; text = builtins.readFile {script}; }} ]; }}"
    )
    compile(rendered, "testScript", "exec")
    # The shared script itself, as the generated exec() will compile it.
    compile(script.read_text(), f"vm-tests/{name}.py", "exec")
