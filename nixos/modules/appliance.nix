# SPDX-License-Identifier: MIT
# tbrdma.appliance: the profile of the flashable images (nixos/configurations). Boots, enables
# the driver and tbctl, and is reachable only over SSH with keys: baked in at build time,
# dropped by the user on the raw image's FAT (EFI system) partition, or, when enabled, read
# from a USB stick labelled TBRDMA_KEYS at boot. docs/appliance.md has the security model.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.tbrdma.appliance;
  tbrdmaPackages = import ../../pkgs/packages.nix { inherit pkgs; };

  # Keys this module installs live here, one file per source, and are rewritten (never
  # appended to) from that source; sshd reads `root` (services.openssh.authorizedKeysFiles).
  keyDir = "/var/lib/tbrdma-keys";

  # The raw image mounts its FAT partition at /boot; the ISO has none.
  bootPartitionKeys = cfg.bootPartitionKeyFile != null && config.fileSystems ? "/boot";
  stickOptions = "ro,nosuid,nodev,noexec,uid=0,gid=0,fmask=0177,dmask=0077";
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
        Host name baked into the image. On the raw image a file `tbrdma/hostname` on the FAT
        partition overrides it at boot, so one image can be flashed to every box.
      '';
    };

    imageId = lib.mkOption {
      type = lib.types.strMatching "[a-z0-9]{1,32}";
      example = "strix1";
      description = ''
        Identifies one build of the images: the root file system's UUID and label, the GPT
        GUIDs and the ISO's volume id are derived from it (nixos/lib/image-ids.nix). The flake
        sets it from the hash of its source tree; set your own to tell two media of the same
        build apart (for example the stick you boot from and the NVMe you install to).
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
        Path, relative to the FAT partition mounted at /boot, of an authorized_keys file the
        user may drop there (from any OS) before booting. At every boot its keys replace the
        ones it supplied before, so deleting a key from the file revokes it. Only used when
        /boot is a file system of the configuration (the raw image); null disables it.
      '';
    };

    keyStick = {
      enable = lib.mkEnableOption ''
        reading root's SSH keys from a USB stick at boot: a FAT file system labelled
        {option}`tbrdma.appliance.keyStick.label`, carrying
        {option}`tbrdma.appliance.bootPartitionKeyFile` (or `tbrdma/authorized_keys`). It is
        mounted read-only with nosuid,nodev,noexec; its keys replace those of the previous stick.
        Anyone who can plug in a stick at boot gains root, so only enable it where that is
        acceptable (the ISO, which has no partition of its own to drop keys on)
      '';
      label = lib.mkOption {
        type = lib.types.strMatching "[A-Z0-9_]{1,11}";
        default = "TBRDMA_KEYS";
        description = "FAT label of the key stick.";
      };
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
            assertion = cfg.authorizedKeys != [ ] || bootPartitionKeys || cfg.keyStick.enable;
            message = ''
              tbrdma.appliance: nobody could ever log in (passwords are disabled): set
              authorizedKeys, keep bootPartitionKeyFile on an image with a FAT /boot, or enable
              keyStick.
            '';
          }
        ];

        networking.hostName = cfg.hostName;

        hardware.tbrdma.enable = true;
        services.tbctl.enable = true;

        # Key-only access: no account has a usable password, and sshd accepts keys only, from
        # the image (authorized_keys.d) and from the files this module writes. ~/.ssh is not
        # read, so every key in use comes from a source the user controls and can revoke.
        # Users stay mutable when no key is baked in, because NixOS refuses an immutable user
        # set in which root has neither password nor key (the key then arrives at boot).
        users.mutableUsers = cfg.authorizedKeys == [ ];
        users.users.root = {
          hashedPassword = "!";
          openssh.authorizedKeys.keys = cfg.authorizedKeys;
        };
        services.openssh = {
          enable = true;
          authorizedKeysInHomedir = false;
          authorizedKeysFiles = [ "${keyDir}/%u" ];
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

      (lib.mkIf (bootPartitionKeys || cfg.keyStick.enable) {
        systemd.services.tbrdma-import-keys = {
          description = "Install root's SSH keys from the FAT partition or the key stick";
          wantedBy = [ "multi-user.target" ];
          before = [ "sshd.service" ];
          unitConfig.RequiresMountsFor = lib.optional bootPartitionKeys "/boot";
          path = [
            pkgs.coreutils
            pkgs.gnugrep
            pkgs.util-linux
            config.systemd.package
          ];
          serviceConfig.Type = "oneshot";
          environment = {
            KEY_DIR = keyDir;
            BOOT_KEY_FILE = lib.optionalString bootPartitionKeys "/boot/${cfg.bootPartitionKeyFile}";
            BOOT_HOSTNAME_FILE = lib.optionalString bootPartitionKeys "/boot/tbrdma/hostname";
            HOSTNAME_SYSCTL = "/proc/sys/kernel/hostname";
            STICK_DEVICE = lib.optionalString cfg.keyStick.enable "/dev/disk/by-label/${cfg.keyStick.label}";
            STICK_KEY_PATH =
              if cfg.bootPartitionKeyFile != null then cfg.bootPartitionKeyFile else "tbrdma/authorized_keys";
            STICK_MOUNT_OPTIONS = stickOptions;
          };
          # The stick may still be settling when this starts early in boot.
          script = ''
            ${lib.optionalString cfg.keyStick.enable "udevadm settle --timeout=10 || true"}
            exec ${pkgs.bash}/bin/bash ${../lib/import-keys.sh}
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
