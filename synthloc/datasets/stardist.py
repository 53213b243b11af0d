"""Convert the one annotated 2-D image in the stardist 0.9.2 wheel to COCO.

stardist/data/images/img2d.tif is a 512x512 16-bit fluorescence image and mask2d.tif its label
image (125 nuclei, ids 1..183 with gaps). Small enough for unit tests and the quick demo.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from synthloc.coco import CocoDataset, mask_annotation
from synthloc.datasets.archive import read_image_member
from synthloc.datasets.labels import check_label_image, label_masks
from synthloc.datasets.stats import class_counts
from synthloc.imageio import write_png

CATEGORIES = [{"id": 1, "name": "nucleus"}]
NUCLEI = 125


def convert(archive: zipfile.ZipFile, out: Path) -> dict[str, Any]:
    """Write stardist.json and images/img2d.png into `out`; return the counts."""
    image = read_image_member(archive, "stardist/data/images/img2d.tif")
    labels = check_label_image(
        read_image_member(archive, "stardist/data/images/mask2d.tif"), "mask2d.tif"
    )
    (out / "images").mkdir(parents=True, exist_ok=True)
    write_png(out / "images/img2d.png", image)
    ds = CocoDataset(
        images=[
            {
                "id": 1,
                "file_name": "images/img2d.png",
                "height": int(image.shape[0]),
                "width": int(image.shape[1]),
                "source": "stardist/data/images/img2d.tif",
            }
        ],
        annotations=[],
        categories=CATEGORIES,
        info={"description": "stardist 0.9.2 example image img2d, converted by synthloc"},
    )
    for label_id, mask in label_masks(labels):
        ds.annotations.append(
            mask_annotation(mask, len(ds.annotations) + 1, 1, 1, source_label=label_id)
        )
    ds.save(out / "stardist.json")
    return {"stardist": class_counts(ds)}
