"""Intensity handling shared by objects and backgrounds: one float32 working space per image."""

from __future__ import annotations

import cv2
import numpy as np

LOW_PERCENTILE = 1.0
HIGH_PERCENTILE = 99.9


def normalize_intensity(image: np.ndarray) -> np.ndarray:
    """HW or HWC integer image -> float32 HxWxC, its 1st percentile at 0 and 99.9th at 1.

    Source images differ in bit depth and exposure (mnfinder mixes 8-bit and raw 16-bit);
    objects and backgrounds from different images only mix well on a common scale. Values
    are not clipped, so bright objects keep their contrast above 1.
    """
    pixels = image.astype(np.float32)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    low, high = np.percentile(pixels, [LOW_PERCENTILE, HIGH_PERCENTILE])
    scale = float(high - low) or 1.0
    return (pixels - np.float32(low)) / np.float32(scale)


def to_dtype(pixels: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Float working space -> uint8/uint16, mapping [0, 1] to the full range.

    OpenCV's saturating, rounding conversion does scale, round and clip in one pass.
    """
    depth = cv2.CV_8U if np.dtype(dtype) == np.uint8 else cv2.CV_16U
    out = cv2.multiply(pixels, float(np.iinfo(dtype).max), dtype=depth)
    return out.reshape(pixels.shape)
