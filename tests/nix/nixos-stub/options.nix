# SPDX-License-Identifier: MIT
# The NixOS options this project's modules and configurations define, declared with the
# types nixpkgs gives them (nixos/modules/..., see docs/nix.md), so that lib.evalModules
# merges several modules' definitions the way NixOS does: lists concatenate, attribute sets
# merge, priorities (mkDefault, mkForce, mkImageMediaOverride) decide. Every other option is
# accepted as a freeform value. Not a NixOS: nothing here builds, and `pkgs` is absent.
{ lib, ... }:
let
  inherit (lib) mkOption types;
  list = elem: mkOption {
    type = types.listOf elem;
    default = [ ];
  };
in
{
  freeformType = types.lazyAttrsOf types.anything;

  options = {
    assertions = list types.unspecified;
    warnings = list types.str;

    # Package-valued options are `raw` (never forced): there is no pkgs to build them from.
    boot.kernelPackages = mkOption { type = types.raw; };
    boot.kernelParams = list types.str;
    boot.kernelModules = list types.str;
    boot.extraModulePackages = list types.package;
    boot.growPartition = mkOption {
      type = types.bool;
      default = false;
    };
    boot.loader.systemd-boot.enable = mkOption {
      type = types.bool;
      default = false;
    };
    boot.loader.systemd-boot.editor = mkOption {
      type = types.bool;
      default = true;
    };

    environment.systemPackages = list types.package;
    environment.etc = mkOption {
      type = types.attrsOf (types.lazyAttrsOf types.raw);
      default = { };
    };
    environment.variables = mkOption {
      type = types.attrsOf types.str;
      default = { };
    };

    fileSystems = mkOption {
      type = types.attrsOf (
        types.submodule {
          freeformType = types.attrsOf types.anything;
          options.options = list types.str;
        }
      );
      default = { };
    };

    networking.enableIPv6 = mkOption {
      type = types.bool;
      default = true;
    };
    networking.firewall.enable = mkOption {
      type = types.bool;
      default = true;
    };
    networking.firewall.rejectPackets = mkOption {
      type = types.bool;
      default = false;
    };
    networking.firewall.extraCommands = mkOption {
      type = types.lines;
      default = "";
    };
    networking.nftables.enable = mkOption {
      type = types.bool;
      default = false;
    };
    networking.nftables.tables = mkOption {
      type = types.attrsOf (
        types.submodule {
          options.family = mkOption { type = types.str; };
          options.content = mkOption { type = types.lines; };
        }
      );
      default = { };
    };
    networking.firewall.trustedInterfaces = list types.str;
    networking.firewall.interfaces = mkOption {
      type = types.attrsOf (
        types.submodule {
          options.allowedTCPPorts = list types.port;
          options.allowedUDPPorts = list types.port;
        }
      );
      default = { };
    };

    security.pam.loginLimits = list types.attrs;

    services.openssh.authorizedKeysFiles = list types.str;
    services.udev.extraRules = mkOption {
      type = types.lines;
      default = "";
    };
    services.udev.packages = list types.package;

    systemd.packages = list types.package;
    systemd.globalEnvironment = mkOption {
      type = types.attrsOf types.raw;
      default = { };
    };
    systemd.services = mkOption {
      type = types.attrsOf (
        types.submodule {
          # Lazy: `script` and `path` name packages, which do not exist here.
          freeformType = types.lazyAttrsOf types.raw;
          options.wantedBy = list types.str;
          options.before = list types.str;
          options.path = list types.package;
          options.serviceConfig = mkOption {
            type = types.attrsOf types.anything;
            default = { };
          };
          options.unitConfig = mkOption {
            type = types.attrsOf types.anything;
            default = { };
          };
          options.environment = mkOption {
            type = types.attrsOf types.str;
            default = { };
          };
        }
      );
      default = { };
    };

    system.build = mkOption {
      type = types.lazyAttrsOf types.unspecified;
      default = { };
    };

    users.users = mkOption {
      type = types.attrsOf (
        types.submodule {
          freeformType = types.attrsOf types.anything;
          options.extraGroups = list types.str;
          options.openssh.authorizedKeys.keys = list types.str;
        }
      );
      default = { };
    };
  };
}
