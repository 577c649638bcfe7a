# SPDX-License-Identifier: MIT
"""Product code (everything but the CLI layer and the lab) never imports the lab or the CLI:
a real host must not need the lab's modules, and the library must work without click's
command objects."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[2] / "tbctl"
FORBIDDEN = ("tbctl.lab", "tbctl.commands", "tbctl.cli")


def imported(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def test_product_modules_import_neither_the_lab_nor_the_cli() -> None:
    product = [p for p in PACKAGE.rglob("*.py")
               if p.relative_to(PACKAGE).parts[0] not in ("lab", "commands", "cli.py",
                                                               "__main__.py")]
    assert any(p.name == "runner.py" for p in product)  # tbctl/bench is product code
    bad = [f"{p.relative_to(PACKAGE.parent)} imports {name}" for p in product
           for name in imported(p) if name.startswith(FORBIDDEN)]
    assert bad == []
