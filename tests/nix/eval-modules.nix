# SPDX-License-Identifier: MIT
# Evaluates this repository's NixOS modules and configurations with lib.evalModules from a
# real nixpkgs `lib` tree (test_nix_modules.py; NIXPKGS_LIB=<tree with lib/>). The modules
# come from flake.nix's own outputs, evaluated with that lib; NixOS's option declarations
# are stood in for by nixos-stub/options.nix. Returns, per case, what the tests judge.
{
  nixpkgsLib,
  repo,
  # A file holding a flake like the one docs/appliance.md shows (tbrdma as its input).
  docFlake ? null,
}:
let
  lib = import (nixpkgsLib + "/lib");
  stub = ./nixos-stub/options.nix;
  # A string, not a path: "${modulesPath}/..." must not copy it into a (here absent) store.
  modulesPath = toString ./nixos-stub/modules;

  # The one package an evaluated value here names: the raw image's postVM runs sgdisk. Every
  # other `pkgs.<name>` stays an error, so nothing judged here depends on a package.
  pkgs.gptfdisk = {
    type = "derivation";
    outPath = "/stub/gptfdisk";
  };

  evalNixosWith =
    moduleLib: modules:
    moduleLib.evalModules {
      modules = [
        stub
        { _module.args.pkgs = pkgs; }
      ]
      ++ modules;
      specialArgs = {
        inherit modulesPath;
        lib = moduleLib;
      };
    };
  evalNixos = evalNixosWith lib;

  # flake.nix with a nixpkgs input that has the real lib and a nixosSystem on evalModules.
  nixpkgs = {
    lib = lib // {
      nixosSystem = { modules, ... }: evalNixos modules;
    };
  };
  flake = (import (repo + "/flake.nix")).outputs {
    self = flake;
    inherit nixpkgs;
  };
  inherit (flake) nixosModules;

  # What the tests judge of one evaluated configuration. Only values that need no package
  # are read (there is no pkgs here).
  summary =
    config:
    let
      services = config.systemd.services;
      keyImport = services.tbrdma-import-keys or null;
    in
    {
      failedAssertions = map (a: a.message) (builtins.filter (a: !a.assertion) config.assertions);
      fileSystems = lib.mapAttrs (_: fs: {
        device = fs.device or null;
        fsType = fs.fsType or null;
        options = fs.options;
      }) config.fileSystems;
      systemdBoot = {
        inherit (config.boot.loader.systemd-boot) enable editor;
      };
      growPartition = config.boot.growPartition;
      firewall = {
        inherit (config.networking.firewall) trustedInterfaces extraCommands;
        nftablesTables = config.networking.nftables.tables;
        interfaces = lib.mapAttrs (_: i: {
          inherit (i) allowedTCPPorts allowedUDPPorts;
        }) config.networking.firewall.interfaces;
      };
      defaultMemlock = config.systemd.settings.Manager.DefaultLimitMEMLOCK or null;
      memlockUnits = lib.mapAttrs (_: s: s.serviceConfig.LimitMEMLOCK) (
        lib.filterAttrs (_: s: s.serviceConfig ? LimitMEMLOCK) services
      );
      loginLimits = config.security.pam.loginLimits;
      # The units the module gives a drop-in (wantedBy, PATH) for tbctl's rendered unit files.
      tbctlUnits = builtins.attrNames (
        lib.filterAttrs (name: _: lib.hasPrefix "tbctl-" name) services
      );
      openssh = {
        authorizedKeysInHomedir = config.services.openssh.authorizedKeysInHomedir or true;
        inherit (config.services.openssh) authorizedKeysFiles;
        settings = config.services.openssh.settings or { };
      };
      keyImport =
        if keyImport == null then
          null
        else
          {
            # Not `script`: it names the store paths of bash and nixos/lib/import-keys.sh.
            inherit (keyImport) environment before;
            requiresMounts = keyImport.unitConfig.RequiresMountsFor or [ ];
          };
      isoVolumeId = config.isoImage.volumeID or null;
      hostName = config.networking.hostName or null;
      # What the raw image's builder is asked for (nixos-stub/lib/make-disk-image.nix).
      image = config.system.build.tbrdmaImage or null;
    };

  withEnabled = modules: settings: (evalNixos (modules ++ [ settings ])).config;
  hardwareWith = settings: summary (withEnabled [ nixosModules.hardware-tbrdma ] settings);
  driver = {
    hardware.tbrdma.enable = true;
    services.tbctl.enable = true;
  };
in
{
  moduleKinds = lib.mapAttrs (_: builtins.typeOf) nixosModules;

  # Each exported module alone, and the combinations users write: each must declare every
  # option exactly once and evaluate with the driver enabled.
  modules = lib.mapAttrs (_: modules: summary (withEnabled modules driver)) {
    default = [ nixosModules.default ];
    hardware-tbrdma = [ nixosModules.hardware-tbrdma ];
    services-tbctl = [ nixosModules.services-tbctl ];
    hardware-and-services = [
      nixosModules.hardware-tbrdma
      nixosModules.services-tbctl
    ];
    default-and-appliance = [
      nixosModules.default
      nixosModules.appliance
    ];
    all = builtins.attrValues nixosModules;
  };

  # hardware.tbrdma in a configuration whose nixpkgs predates the supported range.
  oldNixpkgs = summary (
    (evalNixosWith (lib // { version = "25.05.20250601.abcdef0"; }) [
      nixosModules.hardware-tbrdma
      { hardware.tbrdma.enable = true; }
    ]).config
  );

  # The driver with the nftables firewall, with rejecting, and with the firewall off.
  firewallVariants = lib.mapAttrs (_: hardwareWith) {
    nftables = {
      hardware.tbrdma.enable = true;
      networking.nftables.enable = true;
    };
    reject = {
      hardware.tbrdma.enable = true;
      networking.firewall.rejectPackets = true;
    };
    off = {
      hardware.tbrdma.enable = true;
      networking.firewall.enable = false;
    };
    trust = {
      hardware.tbrdma.enable = true;
      hardware.tbrdma.firewall = "trust";
    };
  };

  memlockForOneUnit = summary (
    withEnabled [ nixosModules.hardware-tbrdma ] {
      hardware.tbrdma = {
        enable = true;
        memlockServices = [ "vllm" ];
        memlockLimit = "65536";
      };
    }
  );

  # flake.nix's nixosConfigurations, built by its own wiring.
  configurations = lib.mapAttrs (_: system: summary system.config) flake.nixosConfigurations;

  # The same configurations with another image id: nothing that names a disk may stay equal.
  otherBuild = lib.mapAttrs (
    _: system:
    summary
      (system.extendModules {
        modules = [ { tbrdma.appliance.imageId = "otherbuild"; } ];
      }).config
  ) flake.nixosConfigurations;

  # The NixOS VM tests' machines (vm-tests/nodes.nix). Their pkgs has only `lib` and a path
  # nothing reads unless a package is built.
  vmTestNodes =
    let
      machines = import (repo + "/vm-tests/nodes.nix") {
        pkgs = {
          inherit lib;
          path = "/nixpkgs-is-not-here";
        };
      };
    in
    lib.mapAttrs (_: node: summary (evalNixos [ node ]).config) machines.nodes;

  # What the flake in docs/appliance.md ("bake your key") builds: the image builder's arguments
  # and the ids its image id gives.
  docFlakeImage =
    let
      outputs = (import docFlake).outputs { tbrdma = flake; };
    in
    {
      image = outputs.packages.x86_64-linux.default;
      ids = import (repo + "/nixos/lib/image-ids.nix") { imageId = "strix1"; };
    };

  # A raw image with the key stick enabled as well.
  rawWithStick = summary (
    flake.nixosConfigurations.appliance.extendModules {
      modules = [ { tbrdma.appliance.keyStick.enable = true; } ];
    }
  ).config;
}
