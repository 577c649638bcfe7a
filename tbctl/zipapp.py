# SPDX-License-Identifier: MIT
"""The node agent as a zipapp, and the one shell command that delivers it to a host as root.

Trust model (docs/tbctl.md, "Agent delivery and trust"): the archive travels on the SSH
channel's stdin, never through a file a non-root user could create first. As root, the
command checks that the python3 it will run is root-owned and writable by nobody else, writes
the archive into a fresh `mktemp -d` directory (root-owned, 0700), checks its sha256 against
the digest the controller computed, and only then runs it. All in one SSH round trip.
"""

from __future__ import annotations

import functools
import hashlib
import io
import shlex
import zipfile
from pathlib import Path

PACKAGE = Path(__file__).parent
MAIN = "import sys\nfrom tbctl.node.agent import main\nsys.exit(main(sys.argv[1:]))\n"


@functools.lru_cache(maxsize=1)
def agent_zipapp() -> tuple[bytes, str]:
    """(archive bytes, sha256) of tbctl/__init__.py + tbctl/node/, runnable by python3."""
    buffer = io.BytesIO()
    buffer.write(b"#!/usr/bin/env python3\n")
    files = [PACKAGE / "__init__.py", *sorted((PACKAGE / "node").glob("*.py"))]
    with zipfile.ZipFile(buffer, "a", zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            info = zipfile.ZipInfo(str(path.relative_to(PACKAGE.parent)), (2020, 1, 1, 0, 0, 0))
            archive.writestr(info, path.read_bytes())
        archive.writestr(zipfile.ZipInfo("__main__.py", (2020, 1, 1, 0, 0, 0)), MAIN)
    data = buffer.getvalue()
    return data, hashlib.sha256(data).hexdigest()


# Runs as root. $1: the SSH session's address on this host. Every answer is key=value lines,
# then (once the agent runs) the agent's JSON answer to `hello`. `tbctl-error=KIND DETAIL`
# ends it early. Paths are trusted when they and every directory above them are root-owned
# and writable by nobody else; a sticky directory (/tmp) may be world-writable, since others
# cannot rename or delete root's entries in it.
_ROOT_SCRIPT = r"""
umask 077
fail() { echo "tbctl-error=$*"; exit 0; }
safe() {
  o=$(stat -L -c %u "$1" 2>/dev/null) && a=$(stat -L -c %a "$1" 2>/dev/null) || return 1
  [ "$o" = 0 ] || return 1
  [ $((0$a & 022)) = 0 ] && return 0
  [ -d "$1" ] && [ $((0$a & 01000)) != 0 ]
}
chain() {
  f=$1
  while :; do
    safe "$f" || { echo "$f"; return 1; }
    [ "$f" = / ] && return 0
    f=$(dirname "$f")
  done
}
trusted() {
  case $1 in /*) ;; *) fail "untrusted $1 $1 is not an absolute path" ;; esac
  bad=$(chain "$(dirname "$1")") || fail "untrusted $1 $bad"
  real=$(readlink -f "$1") || fail "untrusted $1 $1"
  bad=$(chain "$real") || fail "untrusted $1 $bad"
}
ssh_at=$1
p=$(command -v python3)
if [ -z "$p" ]; then
  t=$(command -v tbctl) || fail "no-python"
  trusted "$t"
  case $("$t" --version 2>/dev/null) in *" @VERSION@") ;; *) fail "no-python" ;; esac
  echo "tbctl=$t"
  exec "$t" node --ssh-address "$ssh_at" hello
fi
trusted "$p"
echo "python=$p"
v=$("$p" -I -c 'import sys; print("version=%d.%d.%d" % sys.version_info[:3])') || fail "python $p"
v=${v#version=}
echo "version=$v"
major=${v%%.*} minor=${v#*.}
minor=${minor%%.*}
case "$major.$minor" in *[!0-9.]*|.*|*.) fail "old-python $v" ;; esac
[ "$major" -gt @MAJOR@ ] || { [ "$major" -eq @MAJOR@ ] && [ "$minor" -ge @MINOR@ ]; } ||
  fail "old-python $v"
d=$(mktemp -d /tmp/tbctl-agent.XXXXXXXXXX) || fail "mktemp cannot create a directory in /tmp"
bad=$(chain "$d") || { rm -rf "$d"; fail "untrusted $d $bad"; }
cat > "$d/tbctl.pyz"
h=$("$p" -I -c 'import hashlib, sys
print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$d/tbctl.pyz")
[ "$h" = @SHA256@ ] || { rm -rf "$d"; fail "checksum $h"; }
echo "agent=$d/tbctl.pyz"
exec "$p" -I "$d/tbctl.pyz" node --ssh-address "$ssh_at" hello
"""

# Runs as the SSH user: become root (directly or by non-interactive sudo), keeping stdin.
_USER_SCRIPT = r"""
echo "uid=$(id -u)"
s=${SSH_CONNECTION:-}
set -- $s
at=${3:-}
if [ "$(id -u)" = 0 ]; then exec sh -c "$1_" tbctl-install "$at"; fi
command -v sudo >/dev/null 2>&1 || { echo "tbctl-error=no-sudo"; exit 0; }
exec sudo -n sh -c "$1_" tbctl-install "$at"
"""


def install_command(digest: str, version: str, min_python: tuple[int, int]) -> str:
    """The command that installs, verifies and runs the agent (archive on its stdin)."""
    root = (_ROOT_SCRIPT.replace("@SHA256@", digest).replace("@VERSION@", version)
            .replace("@MAJOR@", str(min_python[0])).replace("@MINOR@", str(min_python[1])))
    user = _USER_SCRIPT.replace('"$1_"', shlex.quote(root))
    return f"sh -c {shlex.quote(user)}"


def cleanup_command(agent_path: str, sudo: bool) -> str:
    """Remove the session's private agent directory (made by install_command)."""
    directory = str(Path(agent_path).parent)
    if not directory.startswith("/tmp/tbctl-agent."):
        raise ValueError(f"not an agent directory: {directory}")
    return shlex.join([*(["sudo", "-n"] if sudo else []), "rm", "-rf", "--", directory])
