"""A contact sheet of composed samples with their boxes, for people to look at."""

from __future__ import annotations

import cv2
import numpy as np

from synth_service.compose import Sample

# Distinct colours (RGB) per class, readable on dark fluorescence backgrounds.
PALETTE = ((255, 200, 0), (0, 220, 255), (255, 80, 200), (120, 255, 80), (255, 255, 255))


def _display(image: np.ndarray) -> np.ndarray:
    """Stretch to 8-bit RGB for viewing (1st..99.8th percentile)."""
    gray = image.astype(np.float32)
    low, high = np.percentile(gray, [1, 99.8])
    scaled = np.clip((gray - low) / max(high - low, 1e-6) * 255, 0, 255).astype(np.uint8)
    return np.repeat(scaled, 3, axis=2) if scaled.shape[2] == 1 else scaled


def contact_sheet(samples: list[Sample], class_names: list[str], columns: int = 4) -> np.ndarray:
    """Samples in a grid (RGB uint8) with each object's box in its class colour and a legend."""
    tiles = []
    for sample in samples:
        tile = np.ascontiguousarray(_display(sample.image))
        for obj in sample.objects:
            x, y, w, h = obj.box
            colour = PALETTE[obj.class_id % len(PALETTE)]
            cv2.rectangle(tile, (x - 1, y - 1), (x + w, y + h), colour, 1)
        cv2.putText(
            tile,
            f"#{sample.index}  {len(sample.objects)} objects",
            (6, 18),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
        tiles.append(tile)
    height, width = tiles[0].shape[:2]
    rows = -(-len(tiles) // columns)
    sheet = np.zeros((rows * (height + 4) + 28, columns * (width + 4), 3), np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        sheet[
            r * (height + 4) : r * (height + 4) + height, c * (width + 4) : c * (width + 4) + width
        ] = tile
    x = 6
    for class_id, name in enumerate(class_names):
        colour = PALETTE[class_id % len(PALETTE)]
        cv2.putText(
            sheet,
            name,
            (x, sheet.shape[0] - 9),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.55,
            colour,
            1,
            cv2.LINE_AA,
        )
        x += 16 + 11 * len(name)
    return sheet
