# SPDX-License-Identifier: MIT
"""The node agent as a zipapp, shipped to hosts that have no (or another) tbctl."""

from __future__ import annotations

import functools
import hashlib
import io
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
