# SPDX-License-Identifier: MIT
# Wiring only: packages live in pkgs/, NixOS modules in nixos/, VM tests in vm-tests/.
# No flake.lock is committed: it was written where nixpkgs cannot be fetched. The first
# `nix flake lock` (or any nix command) on a machine with network access creates it.
{
  description = "tbrdma: RDMA over USB4/Thunderbolt cables, as packages, NixOS modules and images";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      # The driver, the ROCm stack and the appliance target x86_64 (Strix Halo and other USB4
      # hosts); the modules themselves are not architecture specific.
      system = "x86_64-linux";
      pkgs = import nixpkgs {
        inherit system;
        overlays = [ self.overlays.default ];
      };
      images = self.nixosConfigurations.appliance.config.system.build.images;

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
    {
      overlays.default = import ./pkgs/overlay.nix;

      nixosModules = {
        default = import ./nixos/modules;
        hardware-tbrdma = import ./nixos/modules/hardware-tbrdma.nix;
        services-tbctl = import ./nixos/modules/services-tbctl.nix;
        appliance = import ./nixos/modules/appliance.nix;
      };

      nixosConfigurations.appliance = lib.nixosSystem {
        modules = [
          ./nixos/configurations/appliance.nix
          { nixpkgs.hostPlatform = system; }
        ];
      };

      packages.${system} = {
        inherit (pkgs)
          tbctl
          rdma-core-tbrdma
          linux-tbrdma
          tbrdma-kmod
          tbrdma-ml-env
          ;
        perftest = pkgs.perftest-tbrdma;
        python3-pyverbs = pkgs.python3-pyverbs;
        appliance-raw-efi = images.raw-efi;
        appliance-iso = images.iso;
        default = pkgs.tbctl;
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

      devShells.${system} = {
        default = pkgs.mkShell {
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
        ml = pkgs.mkShell {
          packages = [ pkgs.tbrdma-ml-env ];
          RDMAV_DRIVERS = "${pkgs.rdma-core-tbrdma}/lib/libibverbs/libtbrdma";
        };
      };

      checks.${system} = {
        vm-bringup = vmTest "bringup";
        vm-pair = vmTest "pair";
        vm-persistence = vmTest "persistence";
        vm-cable_pull = vmTest "cable_pull";
        vm-unpair = vmTest "unpair";
        kernel-config = pkgs.linux-tbrdma-config-check;
        kmod-patched-kernel = pkgs.tbrdma-kmod;
        kmod-default-kernel = pkgs.tbrdmaModuleFor pkgs.linuxPackages;
        tbctl-tests = pkgs.tbctl-tests;
        appliance-toplevel = self.nixosConfigurations.appliance.config.system.build.toplevel;
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
