# SPDX-License-Identifier: MIT
# Firewall rules that keep the cable links untrusted (hardware.tbrdma.firewall = "rocev2").
# NixOS opens a port listed in networking.firewall.allowedTCPPorts on every interface, and
# services add theirs there (sshd's openFirewall does, by default), so per-link rules alone
# would still let whoever plugs in a cable reach sshd. These rules refuse, on the links, every
# new connection the links' own ports do not name, whatever is open elsewhere.
# Builtins only: tests/nix evaluates it without nixpkgs and runs the rules in a network
# namespace (test_link_firewall_netns.py).
{
  links,
  udpPorts,
  tcpPorts,
  ipv6 ? true,
  # networking.firewall.rejectPackets: refuse with a reject instead of dropping silently.
  reject ? false,
}:
let
  concatMap = f: list: builtins.concatStringsSep "" (map f list);
  join = builtins.concatStringsSep ", ";
  # The names land unquoted on iptables command lines and in nft sets.
  checkedLinks = map (
    link:
    if builtins.match "[A-Za-z0-9_.-]{1,15}" link == null then
      throw "hardware.tbrdma.linkInterfaces: '${link}' is not an interface name (1-15 of A-Z a-z 0-9 _ . -)"
    else
      link
  ) links;
  portSet = ports: join (map toString ports);
in
{
  # networking.firewall.extraCommands of the iptables firewall. NixOS runs them after it
  # rebuilt its nixos-fw chain (so the chain below is no longer referenced and can be
  # replaced) and before the final refuse rule. Each link's packets go through tbrdma-links
  # first: established traffic and the links' ports return to nixos-fw, whose per-link rules
  # accept them; ping and ICMPv6 (neighbour discovery) return to nixos-fw's own ICMP rules;
  # everything else is refused here, before nixos-fw's globally opened ports can accept it.
  # The chain refuses by itself instead of jumping to nixos-fw-log-refuse: a reference to
  # that chain from one NixOS does not delete would make its next reload fail (it deletes
  # and re-creates its chains).
  iptables = ''
    ip46tables -F tbrdma-links 2>/dev/null || true
    ip46tables -X tbrdma-links 2>/dev/null || true
    ip46tables -N tbrdma-links
    ip46tables -A tbrdma-links -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN
  ''
  + concatMap (port: ''
    ip46tables -A tbrdma-links -p udp --dport ${toString port} -j RETURN
  '') udpPorts
  + concatMap (port: ''
    ip46tables -A tbrdma-links -p tcp --dport ${toString port} -j RETURN
  '') tcpPorts
  + ''
    iptables -w -A tbrdma-links -p icmp --icmp-type echo-request -j RETURN
  ''
  + (
    if ipv6 then
      ''
        ip6tables -w -A tbrdma-links -p icmpv6 -j RETURN
      ''
    else
      ""
  )
  + ''
    ip46tables -A tbrdma-links -j ${if reject then "REJECT" else "DROP"}
  ''
  + concatMap (link: ''
    ip46tables -I nixos-fw 1 -i ${link} -j tbrdma-links
  '') checkedLinks;

  # The content of a table of its own (networking.nftables.tables) for the nftables
  # firewall, whose allowed ports are likewise open on every interface. An accept here only
  # ends this chain (NixOS's nixos-fw table still judges the packet); a drop is final.
  nftables = ''
    chain input {
      type filter hook input priority filter - 1; policy accept;
      iifname != { ${join (map (link: ''"${link}"'') checkedLinks)} } accept
      ct state established,related accept
      ${if udpPorts == [ ] then "" else "udp dport { ${portSet udpPorts} } accept"}
      ${if tcpPorts == [ ] then "" else "tcp dport { ${portSet tcpPorts} } accept"}
      icmp type echo-request accept
      meta l4proto 58 accept comment "ICMPv6, incl. neighbour discovery"
      counter ${if reject then "reject" else "drop"} comment "the cable links are untrusted (hardware.tbrdma.firewall)"
    }
  '';
}
