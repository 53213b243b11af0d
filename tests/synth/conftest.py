"""Fixtures for the synthesis tests: a small real-format library made here, flat backgrounds."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from synth_service.draws import Draws
from synth_service.library import ObjectLibrary
from synthloc.coco import CocoDataset, mask_annotation
from synthloc.imageio import write_png


class FlatBackground:
    """A constant canvas: every pixel that changes belongs to a pasted object."""

    def __init__(self, level: float = 0.05, channels: int = 1) -> None:
        self.level = level
        self.channels = channels

    def sample(self, draws: Draws, height: int, width: int) -> np.ndarray:
        return np.full((height, width, self.channels), self.level, np.float32)


def write_disc_dataset(folder: Path, images: int = 2, seed: int = 0) -> Path:
    """COCO file of 16-bit images with bright discs (class 'round') and ellipses ('oval')."""
    rng = np.random.default_rng(seed)
    ds = CocoDataset([], [], [{"id": 1, "name": "round"}, {"id": 2, "name": "oval"}])
    for image_id in range(1, images + 1):
        pixels = rng.normal(1000, 20, (160, 160)).astype(np.float32)
        for k in range(6):
            mask = np.zeros((160, 160), np.uint8)
            centre = (25 + 45 * (k % 3), 40 + 70 * (k // 3))
            if k % 2 == 0:
                cv2.circle(mask, centre, 9 + k, 1, -1)
            else:
                cv2.ellipse(mask, centre, (14, 6), 30 * k, 0, 360, 1, -1)
            pixels[mask > 0] += 3000 + 300 * k
            ds.annotations.append(
                mask_annotation(mask > 0, len(ds.annotations) + 1, image_id, 1 + k % 2)
            )
        write_png(folder / f"img{image_id}.png", np.clip(pixels, 0, 65535).astype(np.uint16))
        ds.images.append(
            {"id": image_id, "file_name": f"img{image_id}.png", "height": 160, "width": 160}
        )
    ds.save(folder / "discs.json")
    return folder / "discs.json"


@pytest.fixture(scope="session")
def disc_coco(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_disc_dataset(tmp_path_factory.mktemp("discs"))


@pytest.fixture(scope="session")
def disc_library(disc_coco: Path) -> ObjectLibrary:
    library, _ = ObjectLibrary.from_coco(CocoDataset.load(disc_coco))
    return library
