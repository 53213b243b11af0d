"""Import a folder of images with instance label images (0 = background) as a COCO dataset."""

from __future__ import annotations

import os
from pathlib import Path

from tqdm import tqdm

from synthloc.coco import CocoDataset, mask_annotation
from synthloc.datasets.labels import check_label_image, label_masks
from synthloc.errors import InvalidInput, NotFound
from synthloc.imageio import IMAGE_SUFFIXES, read_image

MASK_SUFFIXES = (".png", ".tif", ".tiff")


def _images_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise NotFound(f"{folder}: no such directory")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def find_mask(image: Path, masks_dir: Path) -> Path:
    """The label image for `image`: same stem in masks_dir, as .png, .tif or .tiff."""
    for suffix in MASK_SUFFIXES:
        for candidate in (
            masks_dir / f"{image.stem}{suffix}",
            masks_dir / f"{image.stem}{suffix.upper()}",
        ):
            if candidate.is_file():
                return candidate
    raise InvalidInput(
        f"{image}: no mask for this image; expected {masks_dir / image.stem}.png (or .tif) "
        "holding its instance labels"
    )


def import_label_images(
    images_dir: Path, masks_dir: Path, out: Path, class_name: str = "object"
) -> CocoDataset:
    """Build and write a COCO file with one annotation per nonzero id of every label image.

    An id is one object even if its pixels are disconnected; ids need not be contiguous.
    Image paths in the file are relative to its folder; images are not copied.
    """
    images = _images_in(images_dir)
    if not images:
        raise InvalidInput(
            f"{images_dir}: no images found (expected files ending in {', '.join(IMAGE_SUFFIXES)})"
        )
    if not masks_dir.is_dir():
        raise NotFound(f"{masks_dir}: no such directory")
    pairs = [(image, find_mask(image, masks_dir)) for image in images]
    ds = CocoDataset(
        [],
        [],
        [{"id": 1, "name": class_name}],
        {"description": f"imported from {images_dir} and {masks_dir}"},
    )
    out_dir = out.resolve().parent
    for image_path, mask_path in tqdm(pairs, desc="import", unit="image"):
        image = read_image(image_path)
        labels = check_label_image(read_image(mask_path), str(mask_path))
        if labels.shape != image.shape[:2]:
            raise InvalidInput(
                f"{mask_path}: mask is {labels.shape[0]}x{labels.shape[1]} (HxW) but its image "
                f"{image_path} is {image.shape[0]}x{image.shape[1]}; they must match"
            )
        image_id = len(ds.images) + 1
        ds.images.append(
            {
                "id": image_id,
                "file_name": os.path.relpath(image_path.resolve(), out_dir),
                "height": int(image.shape[0]),
                "width": int(image.shape[1]),
            }
        )
        for label_id, mask in label_masks(labels):
            ds.annotations.append(
                mask_annotation(mask, len(ds.annotations) + 1, image_id, 1, source_label=label_id)
            )
    ds.save(out)
    return ds
