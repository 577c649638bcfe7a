# SPDX-License-Identifier: MIT
# tbrdma.appliance: the profile of the flashable image. Boots, enables the driver and tbctl,
# and is reachable only over SSH with keys: baked in at build time, or dropped by the user on
# the image's FAT (EFI system) partition, or on any USB stick whose FAT label is TBRDMA_KEYS.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.tbrdma.appliance;
  tbrdmaPackages = import ../../pkgs/packages.nix { inherit pkgs; };
  keyStickLabel = "TBRDMA_KEYS";
in
{
  imports = [
    ./hardware-tbrdma.nix
    ./services-tbctl.nix
  ];

  options.tbrdma.appliance = {
    enable = lib.mkEnableOption "the tbrdma appliance profile (key-only SSH, driver, tbctl)";

    hostName = lib.mkOption {
      type = lib.types.str;
      default = "tbrdma";
      description = ''
        Host name baked into the image. A file `tbrdma/hostname` on the FAT partition
        overrides it at boot, so one image can be flashed to every box.
      '';
    };

    authorizedKeys = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      example = [ "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA... you@laptop" ];
      description = "SSH public keys for root, baked into the image at build time.";
    };

    bootPartitionKeyFile = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = "tbrdma/authorized_keys";
      description = ''
        Path, relative to the FAT partition, of an authorized_keys file the user may drop
        there (from any OS) before booting. Its keys are added to root's
        ~/.ssh/authorized_keys at every boot; a USB stick with FAT label TBRDMA_KEYS carrying
        the same path works too (the only way for the ISO). Null disables the import.
      '';
    };

    serialConsole = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = "ttyS0,115200";
      description = "Serial console (console=...), in addition to the screen; null for none.";
    };

    strixHalo = {
      enable = lib.mkOption {
        type = lib.types.bool;
        default = true;
        description = "AMD Strix Halo tuning: GPU firmware, microcode, GTT size.";
      };
      gttGiB = lib.mkOption {
        type = lib.types.ints.positive;
        default = 96;
        description = ''
          Unified memory the iGPU may map as GTT, in GiB (96 suits a 128 GiB box and leaves
          32 GiB to the OS). Sets amdgpu.gttsize and TTM's page limits.
        '';
      };
    };

    ml.enable = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = ''
        Install the ML environment (torch, vLLM, RCCL with ROCm for gfx1151, see
        pkgs/ml-env). Heavy: it is built from source, nothing of it is in the binary cache.
      '';
    };
  };

  config = lib.mkIf cfg.enable (
    lib.mkMerge [
      {
        assertions = [
          {
            assertion = cfg.authorizedKeys != [ ] || cfg.bootPartitionKeyFile != null;
            message = ''
              tbrdma.appliance: with no authorizedKeys and bootPartitionKeyFile = null nobody
              could ever log in (passwords are disabled).
            '';
          }
        ];

        networking.hostName = cfg.hostName;

        hardware.tbrdma.enable = true;
        services.tbctl.enable = true;

        # Key-only access: no account has a usable password, and sshd accepts keys only. Users
        # stay mutable when no key is baked in, because NixOS refuses an immutable user set
        # in which root has neither password nor key (the key then arrives at boot).
        users.mutableUsers = cfg.authorizedKeys == [ ];
        users.users.root = {
          hashedPassword = "!";
          openssh.authorizedKeys.keys = cfg.authorizedKeys;
        };
        services.openssh = {
          enable = true;
          authorizedKeysInHomedir = true;
          settings = {
            PasswordAuthentication = false;
            KbdInteractiveAuthentication = false;
            PermitRootLogin = "prohibit-password";
          };
        };

        boot.kernelParams = [
          "console=tty0"
        ]
        ++ lib.optional (cfg.serialConsole != null) "console=${cfg.serialConsole}";

        # Nobody can log in on the console (no passwords), so the login prompt says where to
        # SSH to instead; agetty replaces \4 with the machine's IPv4 address.
        services.getty.helpLine = ''
          tbrdma appliance: log in with `ssh root@\4` using a key you added (docs/appliance.md).
        '';
      }

      (lib.mkIf (cfg.bootPartitionKeyFile != null) {
        systemd.services.tbrdma-boot-partition-files = {
          description = "Apply SSH keys and host name dropped on the FAT partition";
          wantedBy = [ "multi-user.target" ];
          before = [ "sshd.service" ];
          unitConfig.RequiresMountsFor = "/boot";
          path = with pkgs; [
            coreutils
            gnugrep
            util-linux
          ];
          serviceConfig.Type = "oneshot";
          script = ''
            keys=/root/.ssh/authorized_keys
            install -d -m 0700 /root/.ssh
            touch "$keys"
            chmod 0600 "$keys"

            import_from() {
              [ -f "$1" ] || return 0
              # Files written on Windows carry CRLF; only lines that look like keys count.
              tr -d '\r' <"$1" | grep -E '^(ssh-|ecdsa-|sk-)' | while IFS= read -r key; do
                grep -qxF -- "$key" "$keys" || printf '%s\n' "$key" >>"$keys"
              done
              echo "imported keys from $1"
            }

            import_from /boot/${cfg.bootPartitionKeyFile}

            # One image for every box: a host name dropped next to the keys wins.
            if [ -f /boot/tbrdma/hostname ]; then
              name=$(tr -cd 'a-zA-Z0-9-' </boot/tbrdma/hostname | head -c 63)
              if [ -n "$name" ]; then
                echo "$name" >/proc/sys/kernel/hostname
                echo "host name set to $name from /boot/tbrdma/hostname"
              fi
            fi

            stick=/dev/disk/by-label/${keyStickLabel}
            if [ -e "$stick" ]; then
              mnt=$(mktemp -d)
              if mount -o ro "$stick" "$mnt"; then
                import_from "$mnt/${cfg.bootPartitionKeyFile}"
                umount "$mnt"
              fi
              rmdir "$mnt"
            fi
          '';
        };
      })

      (lib.mkIf cfg.strixHalo.enable {
        hardware.enableRedistributableFirmware = true;
        hardware.cpu.amd.updateMicrocode = true;
        boot.kernelParams = import ../lib/strix-halo.nix { inherit (cfg.strixHalo) gttGiB; };
      })

      (lib.mkIf cfg.ml.enable {
        environment.systemPackages = [ tbrdmaPackages.tbrdma-ml-env ];
      })
    ]
  );
}
