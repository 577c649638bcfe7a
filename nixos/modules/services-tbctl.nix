# SPDX-License-Identifier: MIT
# services.tbctl: the state directory and the units that re-apply recorded pairings at boot
# and whenever a link appears. The units, the hotplug rule and the modules-load file are not
# written here: `tbctl render-host-files` renders them at build time from the same templates
# `tbctl pair` writes on other distributions, and this module installs that output unchanged.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.services.tbctl;
  tbrdmaPackages = import ../../pkgs/packages.nix { inherit pkgs; };
  pyverbsModule = pkgs.python3Packages.toPythonModule config.hardware.tbrdma.rdmaCorePackage;

  hostFiles = import ../lib/host-files.nix {
    inherit (cfg) stateDir kernelModules tbctlExec;
  };

  renderedHostFiles =
    pkgs.runCommand "tbctl-host-files" { nativeBuildInputs = [ cfg.package ]; }
      ''
        tbctl render-host-files --out "$out" ${lib.escapeShellArgs hostFiles.args} >/dev/null
        for file in ${lib.escapeShellArgs hostFiles.manifest.files}; do
          test -f "$out/$file" || { echo "tbctl did not render $file" >&2; exit 1; }
        done
      '';
in
{
  # Its defaults follow hardware.tbrdma, so that module's options must exist even when only
  # this one is imported (importing declares options; nothing is enabled by it).
  imports = [ ./hardware-tbrdma.nix ];

  options.services.tbctl = {
    enable = lib.mkEnableOption "tbctl's re-application of cable pairings at boot and hotplug";

    package = lib.mkOption {
      type = lib.types.package;
      default =
        if config.hardware.tbrdma.enable then
          tbrdmaPackages.tbctl.override { inherit pyverbsModule; }
        else
          tbrdmaPackages.tbctl;
      defaultText = lib.literalExpression ''
        tbctl (pkgs/tbctl), with pyverbs from hardware.tbrdma.rdmaCorePackage when that is enabled
      '';
      description = ''
        The tbctl package, installed system-wide. With pyverbs its node agent can run the
        RDMA round trip `tbctl pair` uses to verify a cable.
      '';
    };

    tbctlExec = lib.mkOption {
      type = lib.types.str;
      default = "/run/current-system/sw/bin/tbctl";
      description = ''
        How the unit runs tbctl. The default is the path `tbctl pair` finds on a NixOS host's
        PATH (the package is in environment.systemPackages), so both render the same unit;
        it also keeps the unit file unchanged across tbctl upgrades.
      '';
    };

    stateDir = lib.mkOption {
      type = lib.types.str;
      default = "/var/lib/tbctl";
      description = ''
        Where `tbctl pair` records this host's pairings (state.json) and the unit re-applies
        them from. Keep it on persistent storage.
      '';
    };

    kernelModules = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = lib.optionals config.hardware.tbrdma.enable [ "tbrdma" ];
      defaultText = lib.literalExpression ''
        lib.optionals config.hardware.tbrdma.enable [ "tbrdma" ]
      '';
      description = ''
        Modules listed in /etc/modules-load.d/tbctl.conf. `tbctl pair` lists the modules of
        the transport it chose there (tbrdma for native, rdma_rxe for rxe, none for ip); the
        default matches a native pairing. hardware.tbrdma.kernelModules loads its own list at
        boot regardless.
      '';
    };

    declaredLinks = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      example = [
        "enp5s0f0"
        "enp5s0f1"
      ];
      description = ''
        Network interfaces tbctl treats as cable links besides thunderbolt-net's, written one
        per line to /etc/tbctl/links.conf (e.g. direct Ethernet cables, or VM test NICs).
      '';
    };

    unitPath = lib.mkOption {
      type = lib.types.listOf lib.types.package;
      default = with pkgs; [
        iproute2
        iputils
        kmod
      ];
      defaultText = lib.literalExpression "with pkgs; [ iproute2 iputils kmod ]";
      description = "Tools `tbctl node reapply` runs (ip, rdma, ping, modprobe).";
    };
  };

  config = lib.mkIf cfg.enable {
    environment.systemPackages = [ cfg.package ];

    # systemd.packages links etc/systemd/system/* unchanged; services.udev.packages copies
    # etc/udev/rules.d/* unchanged (nixos/lib/systemd-lib.nix, services/hardware/udev.nix).
    systemd.packages = [ renderedHostFiles ];
    services.udev.packages = [ renderedHostFiles ];
    environment.etc."modules-load.d/tbctl.conf".source =
      "${renderedHostFiles}/etc/modules-load.d/tbctl.conf";

    # NixOS does not act on [Install] sections of packaged units, and units run with an empty
    # PATH; both go into a drop-in, leaving the rendered unit file itself as tbctl wrote it.
    systemd.services.tbctl-reapply = {
      wantedBy = [ "multi-user.target" ];
      path = cfg.unitPath;
    };
    # The hotplug rule starts one instance of the template per cable link that appears.
    systemd.services."tbctl-reapply@".path = cfg.unitPath;

    systemd.tmpfiles.settings."10-tbctl".${cfg.stateDir}.d = {
      mode = "0700";
      user = "root";
      group = "root";
    };

    # Tells `tbctl node` that NixOS owns the host files, and with which parameters.
    environment.etc."tbctl/nixos-host-files.json".text = builtins.toJSON hostFiles.manifest;

    environment.etc."tbctl/links.conf" = lib.mkIf (cfg.declaredLinks != [ ]) {
      text = lib.concatMapStrings (link: link + "\n") cfg.declaredLinks;
    };
  };
}
