"""COCO reading, validation, writing and mask encodings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from synthloc.coco import (
    CocoDataset,
    mask_annotation,
    mask_to_rle,
    segmentation_to_mask,
    tight_bbox,
)
from synthloc.errors import InvalidInput, NotFound


def test_tight_bbox_spans_the_extreme_pixels() -> None:
    mask = np.zeros((20, 30), bool)
    mask[3, 7] = mask[9, 4] = mask[5, 12] = True
    assert tight_bbox(mask) == [4, 3, 9, 7]  # x 4..12, y 3..9
    assert tight_bbox(np.zeros((4, 4), bool)) == [0, 0, 0, 0]
    one = np.zeros((5, 5), bool)
    one[2, 2] = True
    assert tight_bbox(one) == [2, 2, 1, 1]


def test_rle_round_trip_keeps_holes_and_disconnected_parts() -> None:
    rng = np.random.default_rng(0)
    mask = rng.random((37, 53)) > 0.6  # many pieces and holes
    rle = mask_to_rle(mask)
    assert isinstance(rle["counts"], str) and rle["size"] == [37, 53]
    json.dumps(rle)
    np.testing.assert_array_equal(segmentation_to_mask(rle, 37, 53), mask)


def test_uncompressed_rle_and_polygon_decode() -> None:
    # Column-major runs: 2 zeros, 3 ones, 1 zero in a 2x3 image -> columns (0,0),(1,1),(1,0).
    mask = segmentation_to_mask({"size": [2, 3], "counts": [2, 3, 1]}, 2, 3)
    np.testing.assert_array_equal(mask, [[False, True, True], [False, True, False]])
    square = segmentation_to_mask([[2, 2, 6, 2, 6, 6, 2, 6]], 10, 10)
    assert square.sum() > 0 and tight_bbox(square)[:2] == [2, 2]
    with pytest.raises(InvalidInput, match="unsupported COCO segmentation"):
        segmentation_to_mask({"polygon": 1}, 4, 4)


def _dataset() -> CocoDataset:
    mask = np.zeros((8, 8), bool)
    mask[2:5, 3:7] = True
    return CocoDataset(
        images=[{"id": 1, "file_name": "a.png", "height": 8, "width": 8}],
        annotations=[mask_annotation(mask, 1, 1, 1)],
        categories=[{"id": 1, "name": "nucleus"}],
    )


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    ds = _dataset()
    ds.save(tmp_path / "d.json")
    loaded = CocoDataset.load(tmp_path / "d.json")
    assert loaded.annotations[0]["bbox"] == [3, 2, 4, 3]
    assert loaded.annotations[0]["area"] == 12
    assert loaded.image_path(loaded.images[0]) == tmp_path / "a.png"
    assert [p.name for p in tmp_path.iterdir()] == ["d.json"]  # no temporary file left


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["annotations"][0].update(category_id=9), "has category 9, which is not in"),
        (lambda d: d["annotations"][0].update(image_id=5), "refers to image 5"),
        (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), "needs 'bbox'"),
        (lambda d: d["images"].append(dict(d["images"][0])), "image id 1 appears twice"),
        (lambda d: d.pop("categories"), "missing the list 'categories'"),
        (lambda d: d["images"][0].pop("height"), "image 1 has no 'height'"),
    ],
)
def test_load_rejects_inconsistent_files(tmp_path: Path, mutate, message: str) -> None:
    path = tmp_path / "bad.json"
    _dataset().save(path)
    raw = json.loads(path.read_text())
    mutate(raw)
    path.write_text(json.dumps(raw))
    with pytest.raises(InvalidInput) as err:
        CocoDataset.load(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_load_names_missing_and_unparsable_files(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no such COCO file"):
        CocoDataset.load(tmp_path / "nope.json")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(InvalidInput, match=r"x\.json: not valid JSON"):
        CocoDataset.load(tmp_path / "x.json")
