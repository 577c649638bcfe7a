# SPDX-License-Identifier: MIT
# From services.tbctl option values to the arguments of `tbctl render-host-files`, so the
# NixOS module installs exactly the files `tbctl pair` writes on other distributions.
# Builtins only: tests/nix evaluates it with a bare nix-instantiate and no nixpkgs.
{
  stateDir,
  tbctlExec,
  kernelModules,
}:
let
  isAbsolute = path: builtins.substring 0 1 path == "/";
  # The templates put these values on unit and rule lines unquoted, so whitespace or a
  # newline would silently split them; refuse them at evaluation time instead.
  hasNoWhitespace = value: builtins.match ".*[[:space:]].*" value == null;
  checked =
    name: value:
    if value == "" then
      throw "services.tbctl: ${name} must not be empty"
    else if !hasNoWhitespace value then
      throw "services.tbctl: ${name} must not contain whitespace: '${value}'"
    else
      value;
  moduleNames = map (checked "kernel module name") kernelModules;
  # render_host_files sorts and deduplicates; doing it here too keeps the arguments stable
  # (and the derivation hash unchanged) when options list the same modules in another order.
  uniqueSorted = builtins.sort builtins.lessThan (
    builtins.attrNames (
      builtins.listToAttrs (
        map (name: {
          inherit name;
          value = null;
        }) moduleNames
      )
    )
  );
in
if !isAbsolute stateDir then
  throw "services.tbctl.stateDir must be an absolute path, got '${stateDir}'"
else if !isAbsolute tbctlExec then
  throw "services.tbctl: the tbctl executable must be an absolute path, got '${tbctlExec}'"
else
  {
    args = [
      "--state-dir"
      (checked "stateDir" stateDir)
      "--tbctl-exec"
      (checked "tbctl executable" tbctlExec)
    ]
    ++ builtins.concatMap (name: [
      "--module"
      name
    ]) uniqueSorted;

    # What `tbctl node` reads to learn that NixOS owns these files (see docs/nix.md).
    manifest = {
      state_dir = stateDir;
      tbctl_exec = tbctlExec;
      modules = uniqueSorted;
      files = [
        "etc/systemd/system/tbctl-reapply.service"
        "etc/systemd/system/tbctl-reapply@.service"
        "etc/udev/rules.d/90-tbctl-hotplug.rules"
        "etc/modules-load.d/tbctl.conf"
      ];
    };
  }
