# SPDX-License-Identifier: MIT
from click.testing import CliRunner

from tbctl.cli import main
from tbctl.hostfiles import render_host_files


def test_render_host_files_command_matches_library(tmp_path):
    result = CliRunner().invoke(
        main,
        ["render-host-files", "--out", str(tmp_path), "--state-dir", "/srv/tb",
         "--tbctl-exec", "/opt/tbctl", "--module", "rdma_rxe", "--module", "rdma_rxe"],
    )
    assert result.exit_code == 0, result.output
    expected = render_host_files(state_dir="/srv/tb", tbctl_exec="/opt/tbctl", modules=["rdma_rxe"])
    for rel, content in expected.items():
        assert (tmp_path / rel).read_text() == content
    unit = expected["etc/systemd/system/tbctl-reapply.service"]
    assert "ExecStart=/opt/tbctl node reapply --state-dir /srv/tb\n" in unit
    assert expected["etc/modules-load.d/tbctl.conf"].splitlines()[-1] == "rdma_rxe"
