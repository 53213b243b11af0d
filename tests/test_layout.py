"""The dependency rules of DESIGN.md, checked on the source: rooms meet only on the wire."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "synth_service": {"torch", "training", "infer_service"},
    "infer_service": {"torch", "training", "synth_service"},
    "synthloc": {"torch", "training", "synth_service", "infer_service"},
}


def imported_roots(path: Path) -> set[str]:
    """Top-level package names a Python file imports (absolute imports only)."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_imported_roots_sees_both_import_forms(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("import torch.nn as nn\nfrom training.data import x\nfrom . import y\n")
    assert imported_roots(source) == {"torch", "training"}


@pytest.mark.parametrize("room", sorted(FORBIDDEN))
def test_room_imports_respect_the_design(room: str) -> None:
    files = sorted((REPO / room).rglob("*.py"))
    assert files, f"{room}/ has no Python files"
    offenders = {
        str(f.relative_to(REPO)): sorted(imported_roots(f) & FORBIDDEN[room]) for f in files
    }
    assert not {k: v for k, v in offenders.items() if v}
