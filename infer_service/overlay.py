"""Detections drawn over their image, for people."""

from __future__ import annotations

import cv2
import numpy as np

COLOURS = ((255, 200, 0), (0, 220, 255), (255, 80, 200), (120, 255, 80))


def draw_overlay(
    image: np.ndarray, detections: list, class_names: list[str] | None = None
) -> np.ndarray:
    """RGB uint8 image (contrast-stretched) with each detection's box in its class colour."""
    gray = image.astype(np.float32)
    if gray.ndim == 3 and gray.shape[2] > 3:
        gray = gray[..., :3]
    low, high = np.percentile(gray, [1, 99.8])
    shown = np.clip((gray - low) / max(high - low, 1e-6) * 255, 0, 255).astype(np.uint8)
    if shown.ndim == 2 or shown.shape[2] == 1:
        shown = cv2.cvtColor(shown.reshape(shown.shape[:2]), cv2.COLOR_GRAY2RGB)
    shown = np.ascontiguousarray(shown)
    names = class_names or sorted({d.class_name for d in detections})
    for d in detections:
        colour = COLOURS[names.index(d.class_name) % len(COLOURS)]
        x, y, w, h = (round(v) for v in d.box)
        cv2.rectangle(shown, (x - 1, y - 1), (x + w, y + h), colour, 1)
    return shown
