"""Convert the annotated fluorescence images shipped in the mnfinder 1.2.3 wheel to COCO.

Layout inside the archive: mnfinder/{training,validation,test}-data/<set>/{images,nucleus_masks,
mn_masks}/<stem>. Images are single-channel TIFFs (8- or 16-bit, kept as they are and written
as PNG). Masks are RGBA PNGs whose alpha marks annotated pixels:

- nucleus_masks: the blue channel is the nucleus id (0 is not an id). 28 of the 3195 ids cover
  two disconnected (8-connected) pieces. Most are one id given to two nuclei: one training
  image (2022-04-14_RPE1/5) reuses 19 ids for nuclei 250-790 px apart; five more ids hold two
  pieces 25-56 px apart edge to edge (three pairs of nucleus-sized pieces, two a nucleus and a
  37-44 px blob). Four are a nucleus with a fragment of 3-40 px at most 8 px from it. We
  count pieces as one nucleus when the gap between them is at most the larger piece's radius
  (group_nearby_pieces, reach 1) and as separate nuclei otherwise: the 3195 ids become 3219
  nucleus annotations (NUCLEUS_OBJECTS), each keeping its id as `source_label`.
- mn_masks: a micronucleus is a 4-connected piece of one (blue, green) value; blue is the
  parent nucleus, green the micronucleus code, and one code is shared by several micronuclei
  of a cell. Pixels with green 0 carry no micronucleus id and are skipped (one piece in the
  whole set). This gives the 2690 micronuclei the authors report.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from synthloc.coco import CocoDataset, mask_annotation
from synthloc.datasets.archive import read_image_member
from synthloc.datasets.labels import connected_pieces, group_nearby_pieces
from synthloc.datasets.stats import class_counts
from synthloc.errors import IntegrityError
from synthloc.imageio import write_png

SPLITS = {"training": "train", "validation": "val", "test": "test"}
CATEGORIES = [{"id": 1, "name": "nucleus"}, {"id": 2, "name": "micronucleus"}]
NUCLEUS_IDS = 3195
NUCLEUS_OBJECTS = 3219
MICRONUCLEI = 2690
_IMAGE_PATH = re.compile(r"^mnfinder/(training|validation|test)-data/([^/]+)/images/([^/]+)\.tif$")


def nucleus_masks(rgba: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(nucleus id, bool mask) per nucleus of an mnfinder nucleus mask (RGBA)."""
    blue, annotated = rgba[..., 2], rgba[..., 3] > 0
    masks: list[tuple[int, np.ndarray]] = []
    for nucleus_id in np.unique(blue[annotated]):
        if nucleus_id == 0:
            continue
        pieces = connected_pieces(annotated & (blue == nucleus_id), connectivity=8)
        masks.extend((int(nucleus_id), m) for m in group_nearby_pieces(pieces, reach=1.0))
    return masks


def micronucleus_masks(rgba: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(blue * 256 + green code, bool mask) per micronucleus of an mnfinder mn mask (RGBA)."""
    annotated = (rgba[..., 3] > 0) & (rgba[..., 1] > 0)
    code = rgba[..., 2].astype(np.int32) * 256 + rgba[..., 1]
    masks: list[tuple[int, np.ndarray]] = []
    for value in np.unique(code[annotated]):
        pieces = connected_pieces(annotated & (code == value), connectivity=4)
        masks.extend((int(value), m) for m in pieces)
    return masks


def convert(archive: zipfile.ZipFile, out: Path) -> dict[str, Any]:
    """Write train/val/test COCO files and their images into `out`; return the counts."""
    members = sorted(m for m in archive.namelist() if _IMAGE_PATH.match(m))
    if not members:
        raise IntegrityError(
            f"{archive.filename}: no mnfinder images inside; is it the right file?"
        )
    datasets = {
        split: CocoDataset([], [], CATEGORIES, {"split": split}) for split in SPLITS.values()
    }
    for member in tqdm(members, desc="mnfinder", unit="image"):
        folder, image_set, stem = _IMAGE_PATH.match(member).groups()  # type: ignore[union-attr]
        split = SPLITS[folder]
        base = f"mnfinder/{folder}-data/{image_set}"
        image = read_image_member(archive, member)
        nuclei = read_image_member(archive, f"{base}/nucleus_masks/{stem}.png")
        micronuclei = read_image_member(archive, f"{base}/mn_masks/{stem}.png")
        objects = [(1, *o) for o in nucleus_masks(nuclei)]
        objects += [(2, *o) for o in micronucleus_masks(micronuclei)]
        ds = datasets[split]
        image_id = len(ds.images) + 1
        file_name = f"images/{split}/{_safe(image_set)}__{_safe(stem)}.png"
        (out / file_name).parent.mkdir(parents=True, exist_ok=True)
        write_png(out / file_name, image)
        ds.images.append(
            {
                "id": image_id,
                "file_name": file_name,
                "height": int(image.shape[0]),
                "width": int(image.shape[1]),
                "source": member,
            }
        )
        for category_id, source_label, mask in objects:
            ds.annotations.append(
                mask_annotation(
                    mask, len(ds.annotations) + 1, image_id, category_id, source_label=source_label
                )
            )
    counts: dict[str, Any] = {}
    for split, ds in datasets.items():
        ds.info.update(description=f"mnfinder 1.2.3, {split} split, converted by synthloc")
        ds.save(out / f"{split}.json")
        counts[split] = class_counts(ds)
    return counts


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")
