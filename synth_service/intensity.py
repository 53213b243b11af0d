"""Intensity handling shared by objects and backgrounds: one float32 working space per image."""

from __future__ import annotations

import cv2
import numpy as np

from synthloc.preprocess import percentile_normalize


def normalize_intensity(image: np.ndarray) -> np.ndarray:
    """HW or HWC image -> float32 HxWxC on the common scale (synthloc.preprocess).

    Source images differ in bit depth and exposure (mnfinder mixes 8-bit and raw 16-bit);
    objects and backgrounds from different images only mix well on a common scale, and it is
    the scale the trained models normalise their inputs to.
    """
    return percentile_normalize(image)


def to_dtype(pixels: np.ndarray, dtype: np.dtype, scratch: bool = False) -> np.ndarray:
    """Float working space -> uint8/uint16, mapping [0, 1] to the full range.

    OpenCV's saturating, rounding conversions scale, round and clip in one pass. With
    scratch=True the caller gives up `pixels` (clipped below at 0 in place), which lets 8-bit
    output take convertScaleAbs, about twice as fast as addWeighted (same bytes).
    """
    eight_bit = np.dtype(dtype) == np.uint8
    full = 255.0 if eight_bit else 65535.0  # np.iinfo costs more than the 8-bit conversion
    if scratch and eight_bit:
        cv2.threshold(pixels, 0.0, 0.0, cv2.THRESH_TOZERO, dst=pixels)
        out = cv2.convertScaleAbs(pixels, alpha=full)
    else:
        depth = cv2.CV_8U if eight_bit else cv2.CV_16U
        # addWeighted with a zero second weight: twice as fast as cv2.multiply by a scalar.
        out = cv2.addWeighted(pixels, full, pixels, 0.0, 0.0, dtype=depth)
    return out.reshape(pixels.shape)
