"""`synthloc data fetch`: idempotent, offline-safe, and never leaves a half-written dataset."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from synthloc.cli import main
from synthloc.datasets.fetch import SOURCES, install_dataset
from synthloc.errors import IntegrityError

STARDIST = SOURCES["stardist"]


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob(".*") if p.name not in {".", ".."})


def test_second_fetch_downloads_and_rewrites_nothing(
    data_root: Path, tmp_path: Path, offline_pip_env, capsys
) -> None:
    root = tmp_path / "root"
    (root / "archives").mkdir(parents=True)
    shutil.copy(data_root / "archives" / STARDIST.filename, root / "archives")
    assert main(["data", "fetch", "stardist", "--root", str(root)]) == 0  # no index reachable
    coco = root / "stardist" / "stardist.json"
    first = coco.stat().st_mtime_ns
    assert main(["data", "fetch", "stardist", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "stardist: already present" in out and "nucleus              125" in out
    assert coco.stat().st_mtime_ns == first
    assert _leftovers(root) == []


def test_no_network_fails_clearly_and_leaves_nothing(
    tmp_path: Path, offline_pip_env, capsys
) -> None:
    root = tmp_path / "root"
    assert main(["data", "fetch", "stardist", "--root", str(root)]) == 3
    err = capsys.readouterr().err
    assert "could not download stardist==0.9.2 from the package index" in err
    assert "Check the network connection" in err
    assert not (root / "stardist").exists()
    assert list((root / "archives").iterdir()) == []


def _fake_wheel(path: Path, name: str, version: str) -> None:
    """A well-formed wheel that pip accepts but whose bytes are not the published ones."""
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(
            f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        )
        zf.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: cp311-cp311-manylinux_2_28_x86_64\n",
        )
        zf.writestr(f"{info}/RECORD", "")


def test_checksum_mismatch_is_refused(tmp_path: Path, offline_pip_env, monkeypatch, capsys) -> None:
    index = tmp_path / "index"
    index.mkdir()
    _fake_wheel(index / STARDIST.filename, "stardist", "0.9.2")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    root = tmp_path / "root"
    assert main(["data", "fetch", "stardist", "--root", str(root)]) == 4
    err = capsys.readouterr().err
    assert f"{STARDIST.filename}: checksum mismatch (expected sha256 {STARDIST.sha256}" in err
    assert not (root / "stardist").exists()
    assert list((root / "archives").iterdir()) == []  # the bad download is discarded


def test_corrupt_cached_archive_is_replaced(data_root: Path, tmp_path: Path, monkeypatch) -> None:
    index = tmp_path / "index"
    index.mkdir()
    shutil.copy(data_root / "archives" / STARDIST.filename, index)  # a local, correct mirror
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    root = tmp_path / "root"
    (root / "archives").mkdir(parents=True)
    (root / "archives" / STARDIST.filename).write_bytes(b"truncated")
    assert main(["data", "fetch", "stardist", "--root", str(root)]) == 0
    assert (root / "stardist" / "MANIFEST.json").is_file()


@pytest.mark.parametrize("damage", ["truncate", "corrupt-member"])
def test_broken_archive_leaves_no_dataset(data_root: Path, tmp_path: Path, damage: str) -> None:
    good = data_root / "archives" / STARDIST.filename
    broken = tmp_path / STARDIST.filename
    if damage == "truncate":
        broken.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    else:
        with zipfile.ZipFile(good) as src, zipfile.ZipFile(broken, "w") as dst:
            for item in src.infolist():
                data = src.read(item)
                if item.filename.endswith("mask2d.tif"):
                    data = data[:200]  # a TIFF cut short
                dst.writestr(item, data)
    root = tmp_path / "root"
    with pytest.raises(IntegrityError) as err:
        install_dataset(STARDIST, broken, root)
    assert str(broken) in str(err.value)
    assert not (root / "stardist").exists()
    assert _leftovers(root) == []


def test_data_path_points_into_the_root(data_root: Path, capsys) -> None:
    assert main(["data", "path", "stardist/stardist.json"]) == 0
    assert capsys.readouterr().out.strip() == str(data_root / "stardist" / "stardist.json")
    assert main(["data", "path", "nothing/here.json"]) == 2
    assert "run `synthloc data fetch all` first" in capsys.readouterr().err
