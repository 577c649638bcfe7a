# SPDX-License-Identifier: MIT
# tbctl from pyproject.toml (setuptools backend); version and dependencies are read from it so
# the two cannot drift apart.
{
  lib,
  buildPythonApplication,
  setuptools,
  click,
  paramiko,
  jinja2,
  rich,
  src,
  # pyverbs as a Python module (python3Packages.toPythonModule rdma-core-tbrdma): what
  # `tbctl node rdma-peer` needs on a host; the controller side works without it.
  pyverbsModule ? null,
}:
let
  project = (builtins.fromTOML (builtins.readFile "${src}/pyproject.toml")).project;
  # pyproject lists requirements as "name>=x"; nixpkgs provides one version of each, so only
  # the names matter here, and an unknown name fails evaluation instead of being dropped.
  available = {
    inherit
      click
      paramiko
      jinja2
      rich
      ;
  };
  requirementName = spec: builtins.head (builtins.match "([A-Za-z0-9_.-]+).*" spec);
  dependencyFor =
    spec:
    available.${requirementName spec}
      or (throw "pkgs/tbctl: pyproject dependency '${spec}' has no nixpkgs package mapped here");
in
buildPythonApplication {
  pname = project.name;
  inherit (project) version;
  pyproject = true;
  inherit src;

  build-system = [ setuptools ];
  dependencies =
    map dependencyFor project.dependencies ++ lib.optional (pyverbsModule != null) pyverbsModule;

  # The tests live outside this source (see pkgs/tbctl/tests.nix, run as a flake check).
  pythonImportsCheck = [
    "tbctl"
    "tbctl.cli"
  ];

  meta = {
    inherit (project) description;
    license = lib.licenses.mit;
    mainProgram = "tbctl";
    platforms = lib.platforms.linux;
  };
}
