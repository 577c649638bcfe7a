# SPDX-License-Identifier: MIT
"""The node agent as a zipapp, and the one shell command that delivers it to a host as root.

Trust model (docs/tbctl.md, "Running as root safely"): the archive travels on the SSH
channel's stdin, never through a file a non-root user could create first. As root, the
command checks that the python3 it will run is root-owned and writable by nobody else; that
python3 reads the archive into memory, checks its sha256 against the digest the controller
computed, writes it into a fresh mkdtemp directory (root-owned, 0700) and runs it from there.
All in one SSH round trip.
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
exec "$p" -I -c '@BOOT@' @SHA256@ "$ssh_at"
"""

# Runs as root in the checked python3 (-I: no PYTHON* variables, no user site-packages), so
# delivery costs one interpreter start: the archive is read from stdin into memory, checked,
# written into a fresh mkdtemp directory (root's, 0700) and run from there in this process.
# It runs unpacked (src/, from the checked bytes), not from the archive: zipimport compiles
# every module at every start and caches nothing, seconds per agent call on a slow host;
# from a directory python keeps the bytecode next to the sources, in that private directory.
# The archive stays beside src/ for the boot unit's persisted copy.
# The version line comes first and the syntax is old, so a too-old python still reports it.
_BOOT = """
import hashlib, os, stat, sys, tempfile
print("version=%d.%d.%d" % sys.version_info[:3])
sys.stdout.flush()
if sys.version_info[:2] < (@MAJOR@, @MINOR@):
    sys.exit(0)
data = sys.stdin.buffer.read()
digest = hashlib.sha256(data).hexdigest()
if digest != sys.argv[1]:
    print("tbctl-error=checksum " + digest)
    sys.exit(0)
for d in ("/tmp", "/"):
    st = os.stat(d)
    if st.st_uid != 0 or (st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX):
        print("tbctl-error=untrusted-tmp " + d)
        sys.exit(0)
home = tempfile.mkdtemp(prefix="tbctl-agent.", dir="/tmp")
archive = os.path.join(home, "tbctl.pyz")
fd = os.open(archive, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
with os.fdopen(fd, "wb") as f:
    f.write(data)
import io, zipfile
path = os.path.join(home, "src")
zipfile.ZipFile(io.BytesIO(data)).extractall(path)
print("agent=" + path)
sys.stdout.flush()
sys.argv = [path, "node", "--ssh-address", sys.argv[2], "hello"]
sys.path.insert(0, path)
import runpy
runpy.run_path(path, run_name="__main__")
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
    boot = _BOOT.replace("@MAJOR@", str(min_python[0])).replace("@MINOR@", str(min_python[1]))
    assert "'" not in boot  # it is single-quoted in the root script
    root = (_ROOT_SCRIPT.replace("@BOOT@", boot).replace("@SHA256@", digest)
            .replace("@VERSION@", version))
    user = _USER_SCRIPT.replace('"$1_"', shlex.quote(root))
    return f"sh -c {shlex.quote(user)}"


def cleanup_command(agent_path: str, sudo: bool) -> str:
    """Remove the session's private agent directory (made by install_command)."""
    directory = str(Path(agent_path).parent)
    if not directory.startswith("/tmp/tbctl-agent."):
        raise ValueError(f"not an agent directory: {directory}")
    return shlex.join([*(["sudo", "-n"] if sudo else []), "rm", "-rf", "--", directory])
