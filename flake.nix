# SPDX-License-Identifier: MIT
# Wiring only: packages live in pkgs/, NixOS modules in nixos/, VM tests in vm-tests/.
# flake.lock pins nixpkgs (nixos-25.11); docs/nix.md says how to bump it.
{
  description = "tbrdma: RDMA over USB4/Thunderbolt cables, as packages, NixOS modules and images";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      supported = import ./nixos/lib/nixpkgs-version.nix { inherit (lib) version; };
      # The driver, the ROCm stack and the appliance target x86_64 (Strix Halo and other USB4
      # hosts); the modules themselves are not architecture specific.
      system = "x86_64-linux";
      pkgs = import nixpkgs {
        inherit system;
        overlays = [ self.overlays.default ];
      };

      # One id per source tree: the appliance images derive their file system UUIDs and
      # labels from it, so media flashed from different builds never share them.
      imageId = builtins.substring 0 12 (
        builtins.hashString "sha256" (self.narHash or self.rev or "unversioned")
      );
      appliance =
        layout:
        lib.nixosSystem {
          modules = [
            layout
            {
              nixpkgs.hostPlatform = system;
              tbrdma.appliance.imageId = lib.mkDefault imageId;
            }
          ];
        };

      vmTest = name: import ./vm-tests/${name}.nix { inherit pkgs; };
      vmTestFiles = builtins.readDir ./vm-tests;

      labApp = pkgs.writeShellApplication {
        name = "tbrdma-lab";
        runtimeInputs = with pkgs; [
          tbctl
          qemu
          debootstrap
          e2fsprogs
          zstd
          kmod
          openssh
        ];
        text = ''exec tbctl lab "$@"'';
      };

      # tbctl's dependencies and test tools, and pyverbs from rdma-core-tbrdma.
      python = pkgs.python3.withPackages (ps: [
        ps.click
        ps.paramiko
        ps.jinja2
        ps.rich
        ps.pytest
        ps.pytest-benchmark
        pkgs.pyverbs-tbrdma
      ]);
    in
    assert supported.check "flake.nix";
    {
      overlays.default = import ./pkgs/overlay.nix;

      # Paths, not imported functions: the module system deduplicates a module by its path, so
      # `hardware-tbrdma` next to `services-tbctl` (which imports it), or `default` next to
      # `appliance`, declares every option once.
      nixosModules = {
        default = ./nixos/modules;
        hardware-tbrdma = ./nixos/modules/hardware-tbrdma.nix;
        services-tbctl = ./nixos/modules/services-tbctl.nix;
        appliance = ./nixos/modules/appliance.nix;
      };

      # The installed system (raw EFI disk image) and the live system (ISO) are separate
      # configurations: the ISO has no /boot, boot loader or growpart to inherit.
      nixosConfigurations = {
        appliance = appliance ./nixos/configurations/appliance-raw-efi.nix;
        appliance-iso = appliance ./nixos/configurations/appliance-iso.nix;
      };

      packages.${system} = {
        inherit (pkgs)
          tbctl
          rdma-core-tbrdma
          linux-tbrdma
          tbrdma-kmod
          ;
        perftest = pkgs.perftest-tbrdma;
        python3-pyverbs = pkgs.python3-pyverbs;
        appliance-raw-efi = self.nixosConfigurations.appliance.config.system.build.tbrdmaImage;
        appliance-iso = self.nixosConfigurations.appliance-iso.config.system.build.isoImage;
        default = pkgs.tbctl;
      };

      # The ML environment (ROCm torch/vLLM/RCCL for gfx1151) is here and not in `packages`:
      # `nix flake check` evaluates every package and dev shell, and one broken or unfree
      # package in that graph would abort the whole check. `nix build .#tbrdma-ml-env` and
      # `nix develop .#ml` still find it (both look in legacyPackages too).
      legacyPackages.${system} = {
        inherit (pkgs) tbrdma-ml-env;
        ml = pkgs.mkShell {
          packages = [ pkgs.tbrdma-ml-env ];
          RDMAV_DRIVERS = "${pkgs.rdma-core-tbrdma}/lib/libibverbs/libtbrdma";
        };
      };

      apps.${system} = {
        tbctl = {
          type = "app";
          program = lib.getExe pkgs.tbctl;
        };
        lab = {
          type = "app";
          program = lib.getExe labApp;
        };
      };

      devShells.${system}.default = pkgs.mkShell {
        packages = [
          python
          pkgs.rdma-core-tbrdma
          pkgs.perftest-tbrdma
          pkgs.gcc
          pkgs.gnumake
          pkgs.clang
          pkgs.ruff
          pkgs.qemu
        ]
        ++ pkgs.linux-tbrdma.moduleBuildDependencies;
        # Build the module against the patched kernel: make -C "$KDIR" M=$PWD/driver/kernel
        KDIR = "${pkgs.linux-tbrdma.dev}/lib/modules/${pkgs.linux-tbrdma.modDirVersion}/build";
        RDMAV_DRIVERS = "${pkgs.rdma-core-tbrdma}/lib/libibverbs/libtbrdma";
      };

      checks.${system} = {
        vm-bringup = vmTest "bringup";
        vm-pair = vmTest "pair";
        vm-persistence = vmTest "persistence";
        vm-cable_pull = vmTest "cable_pull";
        vm-unpair = vmTest "unpair";
        kernel-config = pkgs.linux-tbrdma-config-check;
        kernel-patches-apply = pkgs.linux-tbrdma-patches-check;
        kmod-patched-kernel = pkgs.tbrdma-kmod;
        kmod-default-kernel = pkgs.tbrdmaModuleFor pkgs.linuxPackages;
        tbctl-tests = pkgs.tbctl-tests;
        appliance-toplevel = self.nixosConfigurations.appliance.config.system.build.toplevel;
        appliance-iso-toplevel = self.nixosConfigurations.appliance-iso.config.system.build.toplevel;
      }
      // lib.optionalAttrs (builtins.pathExists ./driver/proto/Makefile) {
        proto = pkgs.tbrdma-proto-check;
      }
      # The kernel engineer's vm-tests/tbrdma_*.py, each under the same runner as the lab's.
      // lib.mapAttrs' (
        file: _:
        lib.nameValuePair "vm-${lib.removeSuffix ".py" file}" (
          import ./vm-tests/kernel.nix {
            inherit pkgs;
            script = ./vm-tests + "/${file}";
          }
        )
      ) (lib.filterAttrs (file: _: builtins.match "tbrdma_.*[.]py" file != null) vmTestFiles);

      formatter.${system} = pkgs.nixfmt;
    };
}
