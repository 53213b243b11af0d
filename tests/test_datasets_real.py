"""The fetched real datasets: counts, tight boxes, masks that reproduce the source labels."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from synthloc.coco import CocoDataset, segmentation_to_mask, tight_bbox
from synthloc.datasets import mnfinder, stardist
from synthloc.datasets.archive import read_image_member
from synthloc.datasets.fetch import SOURCES
from synthloc.imageio import read_image


@pytest.fixture(scope="module")
def mnfinder_splits(data_root: Path) -> dict[str, CocoDataset]:
    return {
        s: CocoDataset.load(data_root / "mnfinder" / f"{s}.json") for s in ("train", "val", "test")
    }


def _by_class(ds: CocoDataset, name: str) -> list[dict]:
    cat = {v: k for k, v in ds.category_names.items()}[name]
    return [a for a in ds.annotations if a["category_id"] == cat]


def test_mnfinder_counts_match_the_published_figures(mnfinder_splits) -> None:
    assert {s: len(ds.images) for s, ds in mnfinder_splits.items()} == {
        "train": 30,
        "val": 3,
        "test": 16,
    }
    nuclei = [
        (s, a["image_id"], a["source_label"])
        for s, ds in mnfinder_splits.items()
        for a in _by_class(ds, "nucleus")
    ]
    assert len(set(nuclei)) == mnfinder.NUCLEUS_IDS == 3195
    assert len(nuclei) == mnfinder.NUCLEUS_OBJECTS == 3219
    micronuclei = sum(len(_by_class(ds, "micronucleus")) for ds in mnfinder_splits.values())
    assert micronuclei == mnfinder.MICRONUCLEI == 2690


def test_mnfinder_masks_reproduce_the_source_masks(mnfinder_splits, data_root: Path) -> None:
    archive = zipfile.ZipFile(data_root / "archives" / SOURCES["mnfinder"].filename)
    ds = mnfinder_splits["val"]
    for image in ds.images:
        h, w = image["height"], image["width"]
        source = read_image_member(
            archive, image["source"].replace("/images/", "/nucleus_masks/").replace(".tif", ".png")
        )
        expected = (source[..., 3] > 0) & (source[..., 2] > 0)
        union = np.zeros((h, w), bool)
        for ann in _by_class(ds, "nucleus"):
            if ann["image_id"] == image["id"]:
                mask = segmentation_to_mask(ann["segmentation"], h, w)
                assert not (union & mask).any(), "nuclei must not share pixels"
                assert (source[..., 2][mask] == ann["source_label"]).all()
                union |= mask
        np.testing.assert_array_equal(union, expected)
        pixels = read_image(ds.image_path(image))
        raw = read_image_member(archive, image["source"])
        np.testing.assert_array_equal(pixels, raw)  # intensities kept as they were


def test_every_box_is_tight_to_its_mask(mnfinder_splits, data_root: Path) -> None:
    sets = [*mnfinder_splits.values(), CocoDataset.load(data_root / "stardist" / "stardist.json")]
    checked = 0
    for ds in sets:
        sizes = {img["id"]: (img["height"], img["width"]) for img in ds.images}
        for ann in ds.annotations:
            mask = segmentation_to_mask(ann["segmentation"], *sizes[ann["image_id"]])
            assert ann["bbox"] == tight_bbox(mask), ann["id"]
            assert ann["area"] == int(mask.sum()) > 0
            checked += 1
    assert checked == 3219 + 2690 + 125


def test_stardist_reproduces_its_label_image(data_root: Path) -> None:
    ds = CocoDataset.load(data_root / "stardist" / "stardist.json")
    assert len(ds.images) == 1 and len(ds.annotations) == stardist.NUCLEI == 125
    archive = zipfile.ZipFile(data_root / "archives" / SOURCES["stardist"].filename)
    labels = read_image_member(archive, "stardist/data/images/mask2d.tif")
    assert labels.max() > 125  # ids have gaps
    for ann in ds.annotations:
        mask = segmentation_to_mask(ann["segmentation"], 512, 512)
        np.testing.assert_array_equal(mask, labels == ann["source_label"])
    assert read_image(ds.image_path(ds.images[0])).dtype == np.uint16
