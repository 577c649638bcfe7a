# SPDX-License-Identifier: MIT
"""nixos/lib/link-firewall.nix, the rules that keep cable links untrusted, applied for real in
network namespaces: an appliance host with a real sshd listening on its cable address too (as
NixOS's sshd listens on every address), a peer at the other end of the cable, and the test
process on the LAN. NixOS opens sshd's port on every interface (services.openssh.openFirewall);
through the cable only the link's own ports, ping and established traffic may pass."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator

import pytest
from nixtool import REPO, eval_json

from tests.netns import SSHD, Cluster, Host, sh

pytestmark = pytest.mark.netns

APPLIANCE_CABLE, PEER_CABLE = "172.31.77.1", "172.31.77.2"
PERFTEST = 18515

# The parts of NixOS's iptables firewall (nixos/modules/services/networking/firewall-iptables.nix)
# that the link rules work inside, for an appliance whose sshd opened port 22 everywhere and
# whose link has hardware.tbrdma's own ports. {extra} is networking.firewall.extraCommands.
NIXOS_IPTABLES_FIREWALL = """
ip46tables() {{ iptables -w "$@"; ip6tables -w "$@"; }}
ip46tables -D INPUT -j nixos-fw 2>/dev/null || true
for chain in nixos-fw nixos-fw-accept nixos-fw-log-refuse nixos-fw-refuse; do
  ip46tables -F "$chain" 2>/dev/null || true
  ip46tables -X "$chain" 2>/dev/null || true
done
ip46tables -N nixos-fw-accept
ip46tables -A nixos-fw-accept -j ACCEPT
ip46tables -N nixos-fw-refuse
ip46tables -A nixos-fw-refuse -j DROP
ip46tables -N nixos-fw-log-refuse
ip46tables -A nixos-fw-log-refuse -j nixos-fw-refuse
ip46tables -N nixos-fw
ip46tables -A nixos-fw -i lo -j nixos-fw-accept
ip46tables -A nixos-fw -m conntrack --ctstate ESTABLISHED,RELATED -j nixos-fw-accept
ip46tables -A nixos-fw -p tcp --dport 22 -j nixos-fw-accept
ip46tables -A nixos-fw -p tcp --dport {perftest} -j nixos-fw-accept -i thunderbolt0
ip46tables -A nixos-fw -p udp --dport 4791 -j nixos-fw-accept -i thunderbolt0
iptables -w -A nixos-fw -p icmp --icmp-type echo-request -j nixos-fw-accept
ip6tables -w -A nixos-fw -p icmpv6 -j nixos-fw-accept
{extra}
ip46tables -A nixos-fw -j nixos-fw-log-refuse
ip46tables -A INPUT -j nixos-fw
"""

LISTENER = """
import socket, sys
server = socket.create_server(("", int(sys.argv[1])))
print("listening", flush=True)
while True:
    server.accept()[0].close()
"""

PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.5).close()
    print("open")
except OSError as error:
    print(f"closed: {error}")
"""


def link_firewall(reject: bool) -> dict[str, str]:
    return eval_json(
        f"import {REPO}/nixos/lib/link-firewall.nix {{ links = [ \"thunderbolt0\" ]; "
        f"udpPorts = [ 4791 ]; tcpPorts = [ {PERFTEST} ]; reject = {str(reject).lower()}; }}"
    )


def skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    missing = [tool for tool in ("iptables", "ip6tables", "nft") if not shutil.which(tool)]
    if missing or not os.path.exists(SSHD):
        return (f"needs openssh-server, iptables and nftables (missing: "
                f"{missing or [SSHD]}; bash scripts/deps.sh)")
    return None


@pytest.fixture
def cable(tmp_path) -> Iterator[tuple[Host, Host]]:
    reason = skip_reason()
    if reason and os.environ.get("CI"):
        pytest.fail(reason)  # CI installs everything: a skip there would hide a broken setup
    if reason:
        pytest.skip(reason)
    cluster = Cluster(tmp_path, 2)
    appliance, peer = cluster.hosts
    listener = None
    try:
        cluster.cable(appliance, peer, "thunderbolt0", "thunderbolt0")
        appliance.run("ip", "addr", "add", f"{APPLIANCE_CABLE}/30", "dev", "thunderbolt0")
        peer.run("ip", "addr", "add", f"{PEER_CABLE}/30", "dev", "thunderbolt0")
        appliance.extra_sshd.append(f"ListenAddress {APPLIANCE_CABLE}")
        cluster.restart_sshd(appliance)
        listener = subprocess.Popen(
            ["ip", "netns", "exec", appliance.ns, "python3", "-c", LISTENER, str(PERFTEST)],
            stdout=subprocess.PIPE, text=True)
        assert listener.stdout is not None and listener.stdout.readline() == "listening\n"
        yield appliance, peer
    finally:
        if listener:
            listener.kill()
            listener.wait()
        cluster.close()


def over_cable(peer: Host, port: int) -> str:
    return peer.run("python3", "-c", PROBE, APPLIANCE_CABLE, str(port)).strip()


def over_lan(appliance: Host) -> str:
    try:
        socket.create_connection((appliance.mgmt_ip, 22), timeout=1.5).close()
        return "open"
    except OSError as error:
        return f"closed: {error}"


def ping_over_cable(peer: Host) -> bool:
    return subprocess.run(["ip", "netns", "exec", peer.ns, "ping", "-c1", "-W2", APPLIANCE_CABLE],
                          capture_output=True).returncode == 0


# networking.firewall.rejectPackets false (drop, NixOS's default) and true (reject).
REFUSED = {False: "closed: timed out", True: "closed: [Errno 111] Connection refused"}


@pytest.mark.parametrize("reject", [False, True])
def test_iptables_firewall_keeps_sshd_off_the_cable(
    cable: tuple[Host, Host], reject: bool
) -> None:
    appliance, peer = cable
    script = NIXOS_IPTABLES_FIREWALL.format(perftest=PERFTEST, extra="")
    appliance.run("bash", "-e", "-c", script)
    # Without the link rules, the globally opened port is open to whoever plugs in a cable.
    assert over_cable(peer, 22) == "open"

    script = NIXOS_IPTABLES_FIREWALL.format(perftest=PERFTEST,
                                            extra=link_firewall(reject)["iptables"])
    appliance.run("bash", "-e", "-c", script)
    # Applied twice, as a firewall reload does: the rules replace themselves.
    appliance.run("bash", "-e", "-c", script)
    assert over_cable(peer, 22) == REFUSED[reject]
    assert over_cable(peer, PERFTEST) == "open"
    assert ping_over_cable(peer)
    assert over_lan(appliance) == "open"
    jumps = appliance.run("iptables", "-S", "nixos-fw").count("-j tbrdma-links")
    assert jumps == 1


@pytest.mark.parametrize("reject", [False, True])
def test_nftables_table_keeps_sshd_off_the_cable(cable: tuple[Host, Host], reject: bool) -> None:
    appliance, peer = cable
    assert over_cable(peer, 22) == "open"
    table = f"table inet tbrdma-links {{\n{link_firewall(reject)['nftables']}}}\n"
    sh("ip", "netns", "exec", appliance.ns, "nft", "-f", "-", input=table)
    assert over_cable(peer, 22) == REFUSED[reject]
    assert over_cable(peer, PERFTEST) == "open"
    assert ping_over_cable(peer)
    assert over_lan(appliance) == "open"


@pytest.mark.parametrize("bad", ["thunder bolt0", "tb0;reboot", "a" * 16, ""])
def test_link_names_that_rules_cannot_carry_are_refused(bad: str) -> None:
    from nixtool import NixEvalError, nix_string

    with pytest.raises(NixEvalError, match="is not an interface name"):
        eval_json(f"(import {REPO}/nixos/lib/link-firewall.nix {{ links = [ {nix_string(bad)} ]; "
                  "udpPorts = [ ]; tcpPorts = [ ]; }).iptables")
