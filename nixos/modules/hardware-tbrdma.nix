# SPDX-License-Identifier: MIT
# hardware.tbrdma: the kernel side (kernel choice, tbrdma module) and the RDMA userspace
# plumbing every libibverbs consumer needs (provider, device permissions, memlock, firewall).
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
        Group that owns /dev/infiniband/uverbs* and rdma_cm and gets the memlock limit below.
        Add users who run RDMA programs to it.
      '';
    };

    memlockLimit = lib.mkOption {
      type = lib.types.str;
      default = "unlimited";
      example = "67108864";
      description = ''
        Locked-memory limit (RLIMIT_MEMLOCK) for members of {option}`hardware.tbrdma.group`
        and for systemd services: RDMA registers (pins) every buffer it transfers.
        `unlimited` or a size in KiB.
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
        "trust"
        "rocev2"
        "unchanged"
      ];
      default = "trust";
      description = ''
        What the firewall lets through on {option}`hardware.tbrdma.linkInterfaces`: `trust`
        adds them to the trusted interfaces (a cable joins two of your own machines),
        `rocev2` opens only UDP 4791 (RoCEv2, used by the rdma_rxe fallback), `unchanged`
        leaves the firewall alone.
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
        systemd.settings.Manager.DefaultLimitMEMLOCK =
          if cfg.memlockLimit == "unlimited" then "infinity" else "${cfg.memlockLimit}K";
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
          allowedUDPPorts = [ 4791 ];
        });
      })
    ]
  );
}
