"""ObjectLibrary: masks from segmentations or boxes alone, border objects, annotated fraction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from synth_service.library import MARGIN, LibrarySettings, ObjectLibrary
from synthloc.coco import CocoDataset, segmentation_to_mask


def _load(path: Path) -> CocoDataset:
    return CocoDataset.load(path)


def test_objects_keep_class_source_and_mask(disc_coco: Path) -> None:
    ds = _load(disc_coco)
    library, sources = ObjectLibrary.from_coco(ds)
    assert library.class_names == ["round", "oval"]
    assert len(library.objects) == len(ds.annotations) == 12
    assert library.dtype == "uint16" and library.channels == 1
    by_id = {a["id"]: a for a in ds.annotations}
    for obj in library.objects:
        ann = by_id[obj.object_id]
        assert obj.class_id == ann["category_id"] - 1
        assert obj.area == ann["area"] == int((obj.alpha > 0.5).sum())
        assert obj.alpha.shape == (ann["bbox"][3] + 2 * MARGIN, ann["bbox"][2] + 2 * MARGIN)
    assert len(sources.pixels) == 2 and sources.annotated[0].sum() > 0


def test_box_only_annotations_get_a_mask_from_the_pixels(disc_coco: Path, tmp_path: Path) -> None:
    raw = json.loads(disc_coco.read_text())
    truth = {a["id"]: a["segmentation"] for a in raw["annotations"]}
    for ann in raw["annotations"]:
        del ann["segmentation"]
        x, y, w, h = ann["bbox"]
        ann["bbox"] = [x - 3, y - 3, w + 6, h + 6]  # a loose box, as people draw them
    for image in raw["images"]:
        image["file_name"] = str(disc_coco.parent / image["file_name"])
    boxes_only = tmp_path / "boxes.json"
    boxes_only.write_text(json.dumps(raw))
    library, _ = ObjectLibrary.from_coco(_load(boxes_only))
    assert len(library.objects) == 12
    for obj in library.objects:
        expected = segmentation_to_mask(truth[obj.object_id], 160, 160).sum()
        assert abs(obj.area - expected) <= 0.15 * expected  # Otsu recovers the object


def test_objects_cut_by_the_border_are_skipped_unless_asked(tmp_path: Path, disc_coco) -> None:
    raw = json.loads(disc_coco.read_text())
    for image in raw["images"]:
        image["file_name"] = str(disc_coco.parent / image["file_name"])
    first = raw["annotations"][0]
    first.pop("segmentation")
    first["bbox"] = [0, 10, 20, 20]  # touches the left border
    path = tmp_path / "border.json"
    path.write_text(json.dumps(raw))
    skipped, _ = ObjectLibrary.from_coco(_load(path))
    kept, _ = ObjectLibrary.from_coco(_load(path), LibrarySettings(include_truncated=True))
    assert first["id"] not in {o.object_id for o in skipped.objects}
    assert first["id"] in {o.object_id for o in kept.objects}


def test_annotated_fraction_keeps_a_quarter_per_image(disc_coco: Path) -> None:
    library, sources = ObjectLibrary.from_coco(
        _load(disc_coco), LibrarySettings(annotated_fraction=0.5, fraction_seed=3)
    )
    assert len(library.objects) == 6  # round(0.5 * 6) of each image's 6
    again, _ = ObjectLibrary.from_coco(
        _load(disc_coco), LibrarySettings(annotated_fraction=0.5, fraction_seed=3)
    )
    assert [o.object_id for o in again.objects] == [o.object_id for o in library.objects]
    assert again.content_hash() == library.content_hash()
    assert np.mean([m.sum() for m in sources.annotated]) > 0
