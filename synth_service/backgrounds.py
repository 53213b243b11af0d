"""Clean real backgrounds: remove every object from real images, then cut them into tiles.

Annotations are partial, so the unannotated objects that remain in a real image would teach the
detector that objects are background. Everything that stands out from a smooth background
estimate is therefore removed (not only the annotated objects) and refilled with that estimate
plus noise drawn from the image's own background.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import cv2
import numpy as np

from synth_service import _kernel
from synth_service.cleaning import BackgroundSettings, clean_background, clean_images
from synth_service.draws import Draws
from synthloc.errors import FailedPrecondition, InvalidInput


@dataclass(frozen=True)
class TileSource:
    """Where a background tile came from and how much of it is refill."""

    image_index: int
    y: int
    x: int
    height: int
    width: int
    removed_fraction: float


def tile_windows(height: int, width: int, tile_size: int) -> list[tuple[int, int, int, int]]:
    """(y, x, h, w) windows of at most tile_size that cover the image with minimal overlap."""
    th, tw = min(tile_size, height), min(tile_size, width)
    ys = np.linspace(0, height - th, -(-height // th)).round().astype(int)
    xs = np.linspace(0, width - tw, -(-width // tw)).round().astype(int)
    return [(int(y), int(x), th, tw) for y in ys for x in xs]


def surviving_object_fraction(
    removed: list[np.ndarray], kept_regions: list[np.ndarray], ground_truth: list[np.ndarray]
) -> float:
    """Share of ground-truth object pixels that reach a background tile as real pixels.

    Per image (all HxW bool): an object pixel survives if it lies in a kept tile
    (kept_regions) and was not removed, so its real value is in the bank. Returns
    sum(truth & kept & ~removed) / sum(truth) over all images; 0.0 when there is no truth.
    """
    survived = total = 0
    for gone, kept, truth in zip(removed, kept_regions, ground_truth, strict=True):
        survived += int(np.count_nonzero(truth & kept & ~gone))
        total += int(np.count_nonzero(truth))
    return survived / total if total else 0.0


class BackgroundBank:
    """Clean float32 HxWxC background tiles and fast random canvases cut from them."""

    def __init__(self, tiles: list[np.ndarray], sources: list[TileSource]) -> None:
        if not tiles:
            raise FailedPrecondition(
                "no background tile survived cleaning; raise max_removed_fraction or add images"
            )
        channels = {t.shape[2] for t in tiles}
        if len(channels) != 1:
            raise InvalidInput(f"background tiles mix channel counts {sorted(channels)}")
        self.tiles = tuple(np.ascontiguousarray(t, np.float32) for t in tiles)
        self.sources = tuple(sources)
        self.channels = channels.pop()

    @classmethod
    def from_cleaned(
        cls, cleaned: list[np.ndarray], removed: list[np.ndarray], settings: BackgroundSettings
    ) -> BackgroundBank:
        """Cut cleaned images into tiles, dropping tiles that are mostly refill."""
        tiles, sources = [], []
        for index, (image, mask) in enumerate(zip(cleaned, removed, strict=True)):
            for y, x, h, w in tile_windows(*mask.shape, settings.tile_size):
                fraction = float(mask[y : y + h, x : x + w].mean())
                if fraction <= settings.max_removed_fraction:
                    tiles.append(image[y : y + h, x : x + w].copy())
                    sources.append(TileSource(index, y, x, h, w, fraction))
        return cls(tiles, sources)

    @classmethod
    def build(
        cls,
        images: list[np.ndarray],
        annotated: list[np.ndarray],
        settings: BackgroundSettings,
        seed: int = 0,
    ) -> BackgroundBank:
        """Clean float32 HxWxC images (annotated: HxW union masks) and tile them."""
        return cls.from_cleaned(*clean_images(images, annotated, settings, seed), settings)

    def __len__(self) -> int:
        return len(self.tiles)

    def kept_regions(self, shapes: list[tuple[int, int]]) -> list[np.ndarray]:
        """Per source image (given its HxW), the bool mask of pixels that made it into a tile."""
        regions = [np.zeros(shape, bool) for shape in shapes]
        for s in self.sources:
            regions[s.image_index][s.y : s.y + s.height, s.x : s.x + s.width] = True
        return regions

    def content_hash(self) -> str:
        """sha256 over every tile's shape and float32 bytes, in order."""
        digest = hashlib.sha256()
        for tile in self.tiles:
            digest.update(np.asarray(tile.shape, np.int64).tobytes())
            digest.update(tile.tobytes())
        return digest.hexdigest()

    def sample(self, draws: Draws, height: int, width: int) -> np.ndarray:
        """A new float32 (height, width, C) canvas: a random tile, flipped/rotated, mirror-tiled."""
        if height <= 0 or width <= 0:
            raise InvalidInput(f"canvas size must be positive, got {height}x{width}")
        which, transpose, flip, y0, x0, top, left = draws.raw(7)
        tile = self.tiles[which % len(self.tiles)]
        transpose &= 1  # with the 4 flips below: all 8 rotations and reflections
        th, tw = tile.shape[transpose], tile.shape[1 - transpose]
        # Where the canvas fits in the tile, a crop avoids seams; beyond it the tile is
        # mirrored (reflection keeps edges continuous) at a random place in the canvas.
        ch, cw = min(height, th), min(width, tw)
        y0, x0 = y0 % (th - ch + 1), x0 % (tw - cw + 1)
        top, left = top % (height - ch + 1), left % (width - cw + 1)
        if transpose:  # OpenCV's blocked transpose; the kernel does the rest in one pass
            piece = cv2.transpose(tile[x0 : x0 + cw, y0 : y0 + ch])
        else:
            piece = tile[y0 : y0 + ch, x0 : x0 + cw]
        code = flip % 4  # none, both, rows, columns
        canvas = np.empty((height, width, self.channels), np.float32)
        _kernel.background(
            np.ascontiguousarray(piece, np.float32),
            ch,
            cw,
            self.channels,
            code in (1, 2),
            code in (1, 3),
            top,
            left,
            canvas,
            height,
            width,
        )
        return canvas


__all__ = [
    "BackgroundBank",
    "BackgroundSettings",
    "TileSource",
    "clean_background",
    "clean_images",
    "surviving_object_fraction",
    "tile_windows",
]
