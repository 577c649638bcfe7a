# SPDX-License-Identifier: MIT
# tbctl's pytest suite minus the tests that boot VMs, build kernels or need root namespaces
# (markers registered in pyproject.toml); those run in .ci/run on a Debian machine.
{
  runCommand,
  python3,
  openssh,
  src,
}:
let
  # The runtime dependencies of pkgs/tbctl plus the `dev` extra's test tools.
  python = python3.withPackages (ps: [
    ps.click
    ps.paramiko
    ps.jinja2
    ps.rich
    ps.pytest
    ps.pytest-benchmark
  ]);
in
# openssh: the lab unit tests make keys with ssh-keygen and resolve configs with `ssh -G`.
runCommand "tbctl-tests" {
  nativeBuildInputs = [
    python
    openssh
  ];
} ''
  cp -r ${src} source
  chmod -R u+w source
  cd source
  export HOME=$TMPDIR
  # tests/nix drives nix-instantiate, which does not run inside a Nix build; `nix flake check`
  # evaluates those same expressions anyway.
  python -m pytest -p no:cacheprovider -m "not vm and not kbuild and not netns" \
    --ignore=tests/nix tests
  touch $out
''
