# SPDX-License-Identifier: MIT
import pytest

from tbctl.errors import EXIT_USAGE, TbctlError
from tbctl.hostspec import HostSpec, parse_host


@pytest.mark.parametrize("spec, expect", [
    ("strix-a", HostSpec("strix-a")),
    ("root@strix-a", HostSpec("strix-a", "root")),
    ("me@10.0.0.2:2222", HostSpec("10.0.0.2", "me", 2222)),
    ("[fe80::1%eth0]:22", HostSpec("fe80::1%eth0", None, 22)),
    ("u@[::1]", HostSpec("::1", "u")),
])
def test_parse(spec, expect):
    assert parse_host(spec) == expect
    assert parse_host(str(expect)) == expect


@pytest.mark.parametrize("spec", ["", "a:b", "host:70000", "@host", "a b"])
def test_bad_specs(spec):
    with pytest.raises(TbctlError) as info:
        parse_host(spec)
    assert info.value.exit_code == EXIT_USAGE and "[user@]host[:port]" in str(info.value) or (
        "port" in str(info.value))
