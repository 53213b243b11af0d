"""COCO detection JSON, the exchange format for datasets: reading, validating, writing, masks.

`bbox` is required on every annotation; `segmentation` may be a polygon list, a compressed RLE
(`counts` a string) or an uncompressed RLE (`counts` a list). `file_name` is relative to the
JSON file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from synthloc.errors import InvalidInput, NotFound
from synthloc.files import atomic_write


@dataclass
class CocoDataset:
    """A COCO detection dataset held in memory as plain dicts, as the format defines them."""

    images: list[dict[str, Any]]
    annotations: list[dict[str, Any]]
    categories: list[dict[str, Any]]
    info: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None  # where it was loaded from; file names are relative to its folder

    @classmethod
    def load(cls, path: str | Path) -> CocoDataset:
        """Read and validate a COCO file; InvalidInput names the file and the bad entry."""
        path = Path(path)
        if not path.is_file():
            raise NotFound(f"{path}: no such COCO file")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"{path}: not valid JSON ({exc})") from exc
        if not isinstance(raw, dict):
            raise InvalidInput(f"{path}: expected a JSON object with images/annotations/categories")
        for key in ("images", "annotations", "categories"):
            if not isinstance(raw.get(key), list):
                raise InvalidInput(f"{path}: missing the list '{key}'")
        dataset = cls(
            raw["images"], raw["annotations"], raw["categories"], raw.get("info", {}), path
        )
        dataset.validate()
        return dataset

    def validate(self) -> None:
        """Check ids, references and boxes; raise InvalidInput naming the first problem."""
        where = str(self.path) if self.path else "COCO dataset"
        cat_ids = _unique_ids(self.categories, "category", where)
        img_ids = _unique_ids(self.images, "image", where)
        _unique_ids(self.annotations, "annotation", where)
        known = ", ".join(f"{c['id']} {c.get('name', '?')}" for c in self.categories)
        for ann in self.annotations:
            if ann.get("image_id") not in img_ids:
                raise InvalidInput(
                    f"{where}: annotation {ann['id']} refers to image {ann.get('image_id')}, "
                    "which is not in 'images'"
                )
            if ann.get("category_id") not in cat_ids:
                raise InvalidInput(
                    f"{where}: annotation {ann['id']} has category {ann.get('category_id')}, "
                    f"which is not in 'categories' (known: {known})"
                )
            bbox = ann.get("bbox")
            if not (isinstance(bbox, list) and len(bbox) == 4 and bbox[2] >= 0 and bbox[3] >= 0):
                raise InvalidInput(
                    f"{where}: annotation {ann['id']} needs 'bbox' as [x, y, width, height] "
                    f"with width, height >= 0, got {bbox!r}"
                )
        for img in self.images:
            for key in ("file_name", "height", "width"):
                if key not in img:
                    raise InvalidInput(f"{where}: image {img['id']} has no '{key}'")

    def save(self, path: str | Path) -> None:
        """Write the dataset as JSON atomically (a crash never leaves a half-written file)."""
        path = Path(path)
        body = {
            "info": self.info,
            "images": self.images,
            "annotations": self.annotations,
            "categories": self.categories,
        }
        atomic_write_text(path, json.dumps(body, separators=(",", ":")))
        self.path = path

    @property
    def category_names(self) -> dict[int, str]:
        """Category id -> name."""
        return {c["id"]: c["name"] for c in self.categories}

    def image_path(self, image: dict[str, Any]) -> Path:
        """The image file of an entry of `images`, resolved against the JSON's folder."""
        base = self.path.parent if self.path else Path.cwd()
        return base / image["file_name"]

    def annotations_by_image(self) -> dict[int, list[dict[str, Any]]]:
        """Image id -> its annotations (every image present, possibly with none)."""
        grouped: dict[int, list[dict[str, Any]]] = {img["id"]: [] for img in self.images}
        for ann in self.annotations:
            grouped[ann["image_id"]].append(ann)
        return grouped


def _unique_ids(entries: list[dict[str, Any]], kind: str, where: str) -> set[int]:
    ids: set[int] = set()
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), int):
            raise InvalidInput(f"{where}: every {kind} needs an integer 'id', got {entry!r:.80}")
        if entry["id"] in ids:
            raise InvalidInput(f"{where}: {kind} id {entry['id']} appears twice")
        ids.add(entry["id"])
    return ids


def atomic_write_text(path: Path, text: str) -> None:
    """Write text to path via a temporary file in the same folder and a rename."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def tight_bbox(mask: np.ndarray) -> list[int]:
    """[x, y, width, height] spanning exactly the mask's extreme pixels ([0,0,0,0] if empty)."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return [0, 0, 0, 0]
    return [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """Compressed COCO RLE of a binary HW mask, JSON-ready (counts as a string)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode()}


def segmentation_to_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """Decode any COCO segmentation (polygons, compressed or uncompressed RLE) to a bool mask."""
    if isinstance(segmentation, list):
        if not segmentation:
            return np.zeros((height, width), bool)
        rles = mask_utils.frPyObjects(segmentation, height, width)
        rle = mask_utils.merge(rles)
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), str):
        rle = {"size": segmentation["size"], "counts": segmentation["counts"].encode()}
    else:
        raise InvalidInput(f"unsupported COCO segmentation: {str(segmentation)[:80]}")
    return mask_utils.decode(rle).astype(bool)


def mask_annotation(
    mask: np.ndarray, ann_id: int, image_id: int, category_id: int, **extra: Any
) -> dict[str, Any]:
    """A COCO annotation (tight bbox, RLE segmentation, pixel area) for a binary mask."""
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": tight_bbox(mask),
        "area": int(np.count_nonzero(mask)),
        "segmentation": mask_to_rle(mask),
        "iscrowd": 0,
        **extra,
    }


def subsample_annotations(ds: CocoDataset, fraction: float, seed: int) -> CocoDataset:
    """Keep a random `fraction` of each image's annotations, as a partial annotator would.

    Per image, round(fraction * n) annotations are kept, chosen by a generator seeded with
    (seed, image id): the same call keeps the same objects on every machine, so the sparse
    real training arm and the synthesis library built from it see the same annotations.
    """
    if not 0.0 < fraction <= 1.0:
        raise InvalidInput(f"annotated fraction must be in (0, 1], got {fraction}")
    kept: list[dict[str, Any]] = []
    for image_id, anns in ds.annotations_by_image().items():
        rng = np.random.default_rng([seed, image_id])
        count = round(fraction * len(anns))
        chosen = sorted(rng.choice(len(anns), size=count, replace=False)) if anns else []
        kept.extend(anns[i] for i in chosen)
    info = {**ds.info, "annotated_fraction": fraction, "fraction_seed": seed}
    return CocoDataset(ds.images, kept, ds.categories, info, ds.path)
