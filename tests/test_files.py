"""Atomic writes: whole files or none, with the permissions an ordinary open() would give."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from synthloc.files import atomic_write, atomic_write_text


def test_atomic_write_text_honours_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "a" / "results.json", "{}")
    finally:
        os.umask(old)
    path = tmp_path / "a" / "results.json"
    assert path.read_text() == "{}"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"old")

    def explode(tmp: str) -> None:
        Path(tmp).write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, explode)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
