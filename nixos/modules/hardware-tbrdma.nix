# SPDX-License-Identifier: MIT
# hardware.tbrdma: the kernel side (kernel choice, tbrdma module) and the RDMA userspace
# plumbing every libibverbs consumer needs (provider, device permissions, memlock, firewall).
# Needs nixpkgs 25.11 or newer (asserted; nixos/lib/nixpkgs-version.nix).
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.hardware.tbrdma;
  tbrdmaPackages = import ../../pkgs/packages.nix { inherit pkgs; };

  # libibverbs appends -rdmav<ABI>.so to an absolute driver name (dynamic_driver.c), so this
  # loads the provider whatever rdma-core build the consuming program links.
  providerPath = "${cfg.rdmaCorePackage}/lib/libibverbs/libtbrdma";

  nixpkgsVersion = import ../lib/nixpkgs-version.nix { inherit (lib) version; };

  # RoCEv2, the rdma_rxe transport.
  rocev2Port = 4791;
  firewallBackend =
    config.networking.firewall.backend
      or (if config.networking.nftables.enable then "nftables" else "iptables");
  linkFirewall = import ../lib/link-firewall.nix {
    links = cfg.linkInterfaces;
    udpPorts = [ rocev2Port ];
    tcpPorts = cfg.linkTCPPorts;
    ipv6 = config.networking.enableIPv6;
    reject = config.networking.firewall.rejectPackets;
  };

  # systemd spells "no limit" infinity, pam_limits unlimited; sizes are KiB for both.
  systemdMemlock = if cfg.memlockLimit == "unlimited" then "infinity" else "${cfg.memlockLimit}K";
in
{
  options.hardware.tbrdma = {
    enable = lib.mkEnableOption "RDMA over USB4/Thunderbolt cables (the tbrdma driver)";

    kernel = lib.mkOption {
      type = lib.types.enum [
        "patched"
        "stock"
      ];
      default = "patched";
      description = ''
        Which kernel to boot. `patched` sets {option}`boot.kernelPackages` to
        linuxPackages_latest with the series in driver/patches and the kernel options the driver
        needs. `stock` leaves {option}`boot.kernelPackages` as configured elsewhere and builds
        the tbrdma module against it.
      '';
    };

    kernelModules = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [
        "thunderbolt_net"
        "tbrdma"
      ];
      description = ''
        Kernel modules loaded at boot: thunderbolt_net provides the cable's network links,
        tbrdma the RDMA devices on top of them.
      '';
    };

    rdmaCorePackage = lib.mkOption {
      type = lib.types.package;
      default = tbrdmaPackages.rdma-core-tbrdma;
      defaultText = lib.literalExpression "rdma-core-tbrdma (pkgs/rdma-core-tbrdma)";
      description = "rdma-core with the tbrdma provider; installed and exported to consumers.";
    };

    perftestPackage = lib.mkOption {
      type = lib.types.nullOr lib.types.package;
      default = tbrdmaPackages.perftest-tbrdma;
      defaultText = lib.literalExpression "perftest-tbrdma (pkgs/perftest)";
      description = "perftest to install system-wide, or null for none.";
    };

    pythonPackage = lib.mkOption {
      type = lib.types.nullOr lib.types.package;
      default = pkgs.python3.withPackages (ps: [ (ps.toPythonModule cfg.rdmaCorePackage) ]);
      defaultText = lib.literalExpression ''
        pkgs.python3.withPackages (ps: [ (ps.toPythonModule cfg.rdmaCorePackage) ])
      '';
      description = ''
        python3 installed system-wide, with pyverbs from {option}`hardware.tbrdma.rdmaCorePackage`
        (`python3 -c 'import pyverbs'`); null for none.
      '';
    };

    providerForAllConsumers = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = ''
        Export RDMAV_DRIVERS, pointing at the tbrdma provider, to login sessions and to every
        systemd service, so programs linked against nixpkgs' own rdma-core (MPI, UCX, NCCL,
        ...) find tbrdma devices too. nixpkgs' rdma-core reads provider lists only from its
        own store path, so this variable is the one system-wide hook libibverbs offers.
      '';
    };

    group = lib.mkOption {
      type = lib.types.str;
      default = "rdma";
      description = ''
        Group that owns /dev/infiniband/uverbs* and rdma_cm, and whose members' login sessions
        (PAM) get the memlock limit below. Add users who run RDMA programs to it.
      '';
    };

    memlockLimit = lib.mkOption {
      type = lib.types.strMatching "unlimited|[1-9][0-9]*";
      default = "unlimited";
      example = "67108864";
      description = ''
        Locked-memory limit (RLIMIT_MEMLOCK) for login sessions of members of
        {option}`hardware.tbrdma.group` and for the units in
        {option}`hardware.tbrdma.memlockServices`: RDMA registers (pins) every buffer it
        transfers. `unlimited` or a size in KiB. Every other unit keeps systemd's default.
      '';
    };

    memlockServices = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      example = [ "vllm" ];
      description = ''
        systemd services (names without `.service`) that register RDMA memory and get
        {option}`hardware.tbrdma.memlockLimit` as their LimitMEMLOCK.
      '';
    };

    linkInterfaces = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [
        "thunderbolt0"
        "thunderbolt1"
        "thunderbolt2"
        "thunderbolt3"
      ];
      description = "Network interfaces that are cable links (thunderbolt-net names them so).";
    };

    firewall = lib.mkOption {
      type = lib.types.enum [
        "rocev2"
        "trust"
        "unchanged"
      ];
      default = "rocev2";
      description = ''
        What the firewall lets through on {option}`hardware.tbrdma.linkInterfaces`.
        `rocev2` (the default) treats a cable like any untrusted network: only UDP 4791
        (RoCEv2, the rdma_rxe transport), {option}`hardware.tbrdma.linkTCPPorts`, ping and
        ICMPv6 pass; ports opened on every interface (such as sshd's) are refused on the links,
        with the iptables and the nftables firewall alike. That is all a paired peer
        needs on the cable: tbctl talks to both ends over SSH on the LAN, and tbrdma's own
        frames (ethertype 0x88B5) are not IP, so the IP firewall neither sees nor blocks them.
        `trust` makes the links trusted interfaces (every port open to whoever plugs in a
        cable); `unchanged` leaves the firewall alone.
      '';
    };

    linkTCPPorts = lib.mkOption {
      type = lib.types.listOf lib.types.port;
      default = [ 18515 ];
      description = ''
        TCP ports opened on the links when {option}`hardware.tbrdma.firewall` is `rocev2`.
        18515 is perftest's out-of-band exchange (ib_write_bw and friends run against the
        peer's cable address); a listener exists there only while a benchmark runs.
      '';
    };
  };

  config = lib.mkIf cfg.enable (
    lib.mkMerge [
      {
        boot.kernelPackages = lib.mkIf (
          cfg.kernel == "patched"
        ) tbrdmaPackages.linuxPackages-tbrdma;
        boot.extraModulePackages = [ (tbrdmaPackages.tbrdmaModuleFor config.boot.kernelPackages) ];
        boot.kernelModules = cfg.kernelModules;

        environment.systemPackages = [
          cfg.rdmaCorePackage
        ]
        ++ lib.optional (cfg.perftestPackage != null) cfg.perftestPackage
        ++ lib.optional (cfg.pythonPackage != null) cfg.pythonPackage;

        users.groups.${cfg.group} = { };
        services.udev.extraRules = ''
          SUBSYSTEM=="infiniband_verbs", KERNEL=="uverbs*", GROUP="${cfg.group}", MODE="0660"
          KERNEL=="rdma_cm", GROUP="${cfg.group}", MODE="0660"
        '';

        security.pam.loginLimits = [
          {
            domain = "@${cfg.group}";
            type = "-";
            item = "memlock";
            value = cfg.memlockLimit;
          }
        ];
        systemd.services = lib.genAttrs cfg.memlockServices (_: {
          serviceConfig.LimitMEMLOCK = systemdMemlock;
        });

        assertions = [
          {
            assertion = nixpkgsVersion.supported;
            message = "hardware.tbrdma needs nixpkgs ${nixpkgsVersion.minimum} or newer; this is ${lib.version}.";
          }
        ];
      }

      (lib.mkIf cfg.providerForAllConsumers {
        environment.variables.RDMAV_DRIVERS = providerPath;
        systemd.globalEnvironment.RDMAV_DRIVERS = providerPath;
      })

      (lib.mkIf (cfg.firewall == "trust") {
        networking.firewall.trustedInterfaces = cfg.linkInterfaces;
      })

      (lib.mkIf (cfg.firewall == "rocev2") {
        networking.firewall.interfaces = lib.genAttrs cfg.linkInterfaces (_: {
          allowedUDPPorts = [ rocev2Port ];
          allowedTCPPorts = cfg.linkTCPPorts;
        });
      })

      # Ports other modules open (sshd's openFirewall, for one) are open on every interface;
      # these rules refuse them on the links (nixos/lib/link-firewall.nix).
      (lib.mkIf (cfg.firewall == "rocev2" && config.networking.firewall.enable) {
        networking.firewall.extraCommands = lib.mkIf (
          firewallBackend == "iptables"
        ) linkFirewall.iptables;
        networking.nftables.tables.tbrdma-links = lib.mkIf (firewallBackend == "nftables") {
          family = "inet";
          content = linkFirewall.nftables;
        };
      })
    ]
  );
}
