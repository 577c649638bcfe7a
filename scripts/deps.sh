#!/usr/bin/env bash
# Installs everything the tests and the lab need on a Debian machine (run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
mapfile -t pkgs < <(grep -v '^\s*#' .ci/apt-packages | sed '/^\s*$/d')
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
python3 -m pip install -q -e '.[dev,lab]'
