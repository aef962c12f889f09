"""The toy world depends on the core and the core never imports it: only the toy package itself and the
command line's commands (entry points, not core) name it."""

from __future__ import annotations

import ast
from pathlib import Path

import subject_inpainting

PACKAGE = Path(subject_inpainting.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it, as an absolute name."""
    package = [*path.relative_to(PACKAGE.parent).with_suffix("").parts]
    package = package[:-1]  # the module's package (a package's __init__ is its own)
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            found.update([module, *(f"{module}.{alias.name}" for alias in node.names)])
    return found


def test_the_core_never_imports_the_toy_world():
    entry_points = {PACKAGE / "toy", PACKAGE / "commands"}
    core = [p for p in PACKAGE.rglob("*.py") if not any(p.is_relative_to(e) for e in entry_points)]
    assert len(core) > 40
    leaks = {
        str(p.relative_to(PACKAGE)): sorted(m for m in imported_modules(p) if m.startswith("subject_inpainting.toy"))
        for p in core
    }
    assert {p: m for p, m in leaks.items() if m} == {}
    assert "subject_inpainting.toy.dataset" in imported_modules(PACKAGE / "commands" / "train.py")  # the check sees
