"""A large image as overlapping tiles, and the tiles' detections as the image's.

Tiles of `tile` x `tile` pixels step by `tile - overlap`; the last row and column of tiles end at
the image's edge. Each tile owns a core: the tiles' cores split the image without gaps or
overlaps, their borders in the middle of each overlap. A detection counts once, for the tile
whose core holds its point (the object's centre), so an object seen by two tiles is neither
dropped nor doubled, and an object up to `overlap` pixels across lies whole in the tile that
owns it. Every tile is scaled by the whole image's percentiles (LocalizeRequest's intensity
window), so a tile of empty background is not stretched into noise.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from infer_service.client_types import Found, ImageInput, LocalizeResult
from synthloc.errors import FailedPrecondition, InvalidInput, NotFound
from synthloc.preprocess import percentiles

if TYPE_CHECKING:
    from infer_service.client import LocalizationClient

MIN_TILE = 64


@dataclass(frozen=True)
class Tile:
    """Rows top..bottom and columns left..right (ends excluded) of the image, and the core:
    where a detection's point must lie to be this tile's (may reach past the image's edge)."""

    top: int
    left: int
    bottom: int
    right: int
    core: tuple[float, float, float, float]  # top, left, bottom, right; ends excluded

    def owns(self, found: Found) -> bool:
        """Whether `found` (in this tile's pixels) lies in this tile's core."""
        x, y = found.point[0] + self.left, found.point[1] + self.top
        top, left, bottom, right = self.core
        return top <= y < bottom and left <= x < right

    def to_image(self, found: Found) -> Found:
        """`found` in the whole image's pixels."""
        x, y, w, h = found.box
        px, py = found.point
        return replace(
            found, box=(x + self.left, y + self.top, w, h), point=(px + self.left, py + self.top)
        )


def check_tiling(tile: int, overlap: int) -> None:
    """InvalidInput unless `tile` >= MIN_TILE and 0 <= `overlap` <= tile / 2."""
    if tile < MIN_TILE or not 0 <= overlap <= tile // 2:
        raise InvalidInput(
            f"tiles must be at least {MIN_TILE} pixels and overlap by 0 to half a tile; got "
            f"tile {tile}, overlap {overlap}"
        )


def plan_tiles(height: int, width: int, tile: int, overlap: int) -> list[Tile]:
    """The tiles of a height x width image, row by row."""
    check_tiling(tile, overlap)
    return [
        Tile(top, left, bottom, right, (core_top, core_left, core_bottom, core_right))
        for top, bottom, core_top, core_bottom in _spans(height, tile, overlap)
        for left, right, core_left, core_right in _spans(width, tile, overlap)
    ]


def _spans(size: int, tile: int, overlap: int) -> list[tuple[int, int, float, float]]:
    """(start, end, core start, core end) along one axis."""
    if size <= tile:
        return [(0, size, -math.inf, math.inf)]
    starts = [*range(0, size - tile, tile - overlap), size - tile]
    # Core borders in the middle of each overlap; the outer ones open, for points on the edge.
    borders = [-math.inf, *((a + tile + b) / 2 for a, b in pairwise(starts)), math.inf]
    return [(start, start + tile, borders[i], borders[i + 1]) for i, start in enumerate(starts)]


def merge(tiles: list[Tile], found_per_tile: list[list[Found]]) -> list[Found]:
    """The detections each tile owns, in the image's pixels, highest score first."""
    merged = [
        tile.to_image(found)
        for tile, founds in zip(tiles, found_per_tile, strict=True)
        for found in founds
        if tile.owns(found)
    ]
    return sorted(merged, key=lambda f: -f.score)


def localize_in_tiles(
    client: LocalizationClient,
    image: ImageInput,
    tile: int,
    overlap: int,
    *,
    model: str = "",
    version: str = "",
    threshold: float | None = None,
    timeout: float | None = None,
    on_tile: Callable[[int, int], None] | None = None,
) -> LocalizeResult:
    """LocalizationClient.localize_tiled: see there."""
    check_tiling(tile, overlap)
    pixels = _pixels(image)
    height, width = pixels.shape[:2]
    if height <= tile and width <= tile:  # one piece: the server scales it by its own
        return client.localize(pixels, model=model, version=version, threshold=threshold)
    low, high = _card_percentiles(client, model, version)
    lo, hi = percentiles(pixels, (low, high))
    window = (lo, hi) if hi > lo else None  # a flat image: each tile is as flat
    tiles = plan_tiles(height, width, tile, overlap)
    started = time.monotonic()
    items = client.localize_stream(
        (pixels[t.top : t.bottom, t.left : t.right] for t in tiles),
        model=model,
        version=version,
        threshold=threshold,
        timeout=timeout,
        window=window,
    )
    results: list[LocalizeResult] = []
    for item in items:
        t = tiles[item.index]
        if item.error is not None:
            where = f"rows {t.top}-{t.bottom - 1}, columns {t.left}-{t.right - 1}"
            message = f"tile {item.index + 1} of {len(tiles)} ({where}): {item.error}"
            raise type(item.error)(message) from item.error
        assert item.result is not None  # an item holds a result or an error
        if window is not None and item.result.intensity_window != window:
            raise FailedPrecondition(
                f"{client.peer} scaled a tile from "
                f"{item.result.intensity_window or 'its own percentiles'} instead of the "
                f"image's {window}: it predates intensity windows; upgrade it to localize "
                "in tiles"
            )
        results.append(item.result)
        if on_tile is not None:
            on_tile(len(results), len(tiles))
    first = results[0]
    timings = {
        stage: sum(r.timings_ms.get(stage, 0.0) for r in results) for stage in first.timings_ms
    }
    return LocalizeResult(
        detections=merge(tiles, [r.detections for r in results]),
        model=first.model,
        version=first.version,
        provider=first.provider,
        height=height,
        width=width,
        total_ms=(time.monotonic() - started) * 1000,
        timings_ms=timings,  # summed over the tiles
    )


def _pixels(image: ImageInput) -> np.ndarray:
    """An HW or HWC (1 or 3 channels) array of the image, decoded here if encoded."""
    from infer_service.client import CLIENT_MAX_PIXELS, read_image_file
    from infer_service.decoding import decode_image_bytes

    if isinstance(image, (str, Path)):
        image = read_image_file(Path(image))
    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode_image_bytes(bytes(image), CLIENT_MAX_PIXELS).pixels
    pixels = np.asarray(image)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] != 3):
        raise InvalidInput(f"image: tiles need an HW or HWC RGB array, got shape {pixels.shape}")
    return pixels


def _card_percentiles(client: LocalizationClient, model: str, version: str) -> tuple[float, float]:
    """The percentiles the model that will answer scales images by (its card's)."""
    served = client.list_models()
    name = model or served.default_model
    versions = [
        m for m in served.models if m.name == name and (not version or m.version == version)
    ]
    if not versions:
        raise NotFound(
            f"model {name!r}{f' version {version!r}' if version else ''} is not served "
            f"(served: {', '.join(served.names()) or 'none'})"
        )
    pre = versions[0].card.get("preprocessing", {})  # newest first
    return float(pre.get("low", 1.0)), float(pre.get("high", 99.9))
