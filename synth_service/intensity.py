"""Intensity handling shared by objects and backgrounds: one float32 working space per image."""

from __future__ import annotations

import numpy as np

from synth_service import _kernel
from synthloc.preprocess import percentile_normalize


def normalize_intensity(image: np.ndarray) -> np.ndarray:
    """HW or HWC image -> float32 HxWxC on the common scale (synthloc.preprocess).

    Source images differ in bit depth and exposure (mnfinder mixes 8-bit and raw 16-bit);
    objects and backgrounds from different images only mix well on a common scale, and it is
    the scale the trained models normalise their inputs to.
    """
    return percentile_normalize(image)


def to_dtype(pixels: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Float working space -> uint8/uint16, mapping [0, 1] to the full range (rounded, clipped).

    One pass in the compose kernel (synth_service/kernel/canvas.c).
    """
    bits = 8 if np.dtype(dtype) == np.uint8 else 16
    out = np.empty(pixels.shape, np.uint8 if bits == 8 else np.uint16)
    _kernel.quantize(np.ascontiguousarray(pixels, np.float32), out, bits)
    return out
