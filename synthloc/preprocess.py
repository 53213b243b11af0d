"""The one input normalisation of synthloc: each image scaled by its own percentiles.

Synthesis, training, evaluation and serving all call this, so a model sees the same
numbers wherever its input comes from (8-bit PNG, raw 16-bit TIFF, DICOM).
"""

from __future__ import annotations

import numpy as np

LOW_PERCENTILE = 1.0
HIGH_PERCENTILE = 99.9


def percentile_normalize(
    image: np.ndarray, low: float = LOW_PERCENTILE, high: float = HIGH_PERCENTILE
) -> np.ndarray:
    """HW or HWC image -> float32 HxWxC with its `low` percentile at 0 and `high` at 1.

    Values are not clipped: bright objects keep their contrast above 1.
    """
    pixels = image.astype(np.float32)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    lo, hi = np.percentile(pixels, [low, high])
    scale = float(hi - lo) or 1.0
    return (pixels - np.float32(lo)) / np.float32(scale)


def match_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """HxWxC float image -> HxWx`channels`: gray is replicated, colour averaged to gray.

    The one channel rule of training, evaluation and serving. Other conversions (say RGB to
    a 2-channel model) have no meaning and raise ValueError.
    """
    have = pixels.shape[2]
    if have == channels:
        return pixels
    if have == 1:
        return np.repeat(pixels, channels, axis=2)
    if channels == 1:
        return pixels.mean(axis=2, keepdims=True)
    raise ValueError(f"cannot turn a {have}-channel image into {channels} channels")
