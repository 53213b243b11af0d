"""`synthloc data import`: label images -> COCO, and every bad input named with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from synthloc.cli import main
from synthloc.coco import CocoDataset, segmentation_to_mask


def _write(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)
    return path


@pytest.fixture()
def folders(tmp_path: Path) -> tuple[Path, Path]:
    images, masks = tmp_path / "images", tmp_path / "masks"
    _write(images / "a.png", np.full((40, 50), 900, np.uint16))
    _write(images / "b.tif", np.full((30, 30), 20, np.uint8))
    labels_a = np.zeros((40, 50), np.uint16)
    labels_a[2:6, 3:10] = 5
    labels_a[20:30, 40:45] = 1000  # ids with gaps, 16-bit
    _write(masks / "a.png", labels_a)
    labels_b = np.zeros((30, 30), np.uint8)
    labels_b[10:12, 10:13] = 2
    _write(masks / "b.tif", labels_b)
    return images, masks


def test_import_label_images_with_gaps(folders, tmp_path: Path) -> None:
    images, masks = folders
    out = tmp_path / "out" / "ds.json"
    assert (
        main(
            [
                "data",
                "import",
                "--images",
                str(images),
                "--masks",
                str(masks),
                "--out",
                str(out),
                "--class",
                "cell",
            ]
        )
        == 0
    )
    ds = CocoDataset.load(out)
    assert ds.category_names == {1: "cell"}
    assert [img["file_name"] for img in ds.images] == ["../images/a.png", "../images/b.tif"]
    assert all(ds.image_path(img).is_file() for img in ds.images)
    boxes = {(a["image_id"], a["source_label"]): a["bbox"] for a in ds.annotations}
    assert boxes == {(1, 5): [3, 2, 7, 4], (1, 1000): [40, 20, 5, 10], (2, 2): [10, 10, 3, 2]}
    mask = segmentation_to_mask(ds.annotations[1]["segmentation"], 40, 50)
    assert mask.sum() == 50 and mask[20:30, 40:45].all()


def _run_import(images: Path, masks: Path, out: Path, capsys) -> tuple[int, str]:
    code = main(
        ["data", "import", "--images", str(images), "--masks", str(masks), "--out", str(out)]
    )
    return code, capsys.readouterr().err


def test_mask_shape_differs_from_image(folders, tmp_path: Path, capsys) -> None:
    images, masks = folders
    _write(masks / "b.tif", np.zeros((31, 30), np.uint8))
    code, err = _run_import(images, masks, tmp_path / "o.json", capsys)
    assert code == 2
    assert f"{masks / 'b.tif'}: mask is 31x30 (HxW) but its image" in err
    assert str(images / "b.tif") in err
    assert not (tmp_path / "o.json").exists()


def test_non_integer_mask(folders, tmp_path: Path, capsys) -> None:
    images, masks = folders
    (masks / "a.png").unlink()
    _write(masks / "a.tif", np.zeros((40, 50), np.float32))
    code, err = _run_import(images, masks, tmp_path / "o.json", capsys)
    assert code == 2
    assert f"{masks / 'a.tif'}: a label image must hold integer ids (8/16-bit), got float32" in err


def test_empty_image_directory(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "masks").mkdir()
    code, err = _run_import(tmp_path / "empty", tmp_path / "masks", tmp_path / "o.json", capsys)
    assert code == 2
    assert f"{tmp_path / 'empty'}: no images found" in err


def test_image_without_mask(folders, tmp_path: Path, capsys) -> None:
    images, masks = folders
    _write(images / "c.png", np.zeros((5, 5), np.uint8))
    code, err = _run_import(images, masks, tmp_path / "o.json", capsys)
    assert code == 2
    assert f"{images / 'c.png'}: no mask for this image; expected {masks / 'c'}.png" in err


def test_stats_of_an_imported_file_through_the_console_script(folders, tmp_path: Path) -> None:
    images, masks = folders
    out = tmp_path / "ds.json"
    assert (
        main(["data", "import", "--images", str(images), "--masks", str(masks), "--out", str(out)])
        == 0
    )
    script = Path(sys.executable).parent / "synthloc"
    done = subprocess.run(
        [str(script), "data", "stats", str(out), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    summary = json.loads(done.stdout)
    assert summary["images"] == 2 and summary["objects"] == 3
    assert summary["classes"]["object"]["objects"] == 3
    assert summary["classes"]["object"]["box_side_px"]["p50"] == pytest.approx(np.sqrt(28), abs=0.1)
    bad = subprocess.run(
        [str(script), "data", "stats", str(tmp_path / "missing.json")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert "missing.json: no such COCO file" in bad.stderr
