"""The one input normalisation of synthloc: each image scaled by its own percentiles.

Synthesis, training, evaluation and serving all call this, so a model sees the same
numbers wherever its input comes from (8-bit PNG, raw 16-bit TIFF, DICOM).
"""

from __future__ import annotations

import math

import numpy as np

from synthloc._native import order_statistics, scale_into

LOW_PERCENTILE = 1.0
HIGH_PERCENTILE = 99.9


def percentiles(image: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """np.percentile(image, qs) (linear interpolation), in one counting pass for 8/16-bit.

    Sorting 262,144 pixels to find two of them took most of a 512x512 request's
    preprocessing; integer images up to 16 bits have at most 65,536 values, so a histogram
    finds the same order statistics in linear time. It is counted and read in C
    (synthloc/native/pixels.c): np.bincount widens every pixel to 64 bits first, and
    OpenCV's is slower for 16-bit images.
    """
    if image.dtype not in (np.uint8, np.uint16):
        return [float(v) for v in np.percentile(image, qs)]
    flat = np.ascontiguousarray(image.ravel(), image.dtype.newbyteorder("="))
    n = flat.size
    if n == 0 or n >= 1 << 32:
        return [float(v) for v in np.percentile(image, qs)]
    # Linear interpolation between order statistics `below` and `above` of each q.
    ranks = [q / 100 * (n - 1) for q in qs]
    pairs = [(math.floor(r), min(math.floor(r) + 1, n - 1)) for r in ranks]
    wanted = sorted({i for pair in pairs for i in pair})
    value = dict(zip(wanted, order_statistics(flat, wanted), strict=True))
    return [
        value[below] + (value[above] - value[below]) * (r - below)
        for r, (below, above) in zip(ranks, pairs, strict=True)
    ]


Window = tuple[float, float]  # intensities to scale to 0 and 1, given instead of percentiles


def percentile_normalize(
    image: np.ndarray,
    low: float = LOW_PERCENTILE,
    high: float = HIGH_PERCENTILE,
    window: Window | None = None,
) -> np.ndarray:
    """HW or HWC image -> float32 HxWxC with its `low` percentile at 0 and `high` at 1.

    Values are not clipped: bright objects keep their contrast above 1. `window` gives the two
    intensities instead (a tile scaled by its whole image's percentiles).
    """
    lo, hi = window if window is not None else percentiles(image, (low, high))
    scale = float(hi - lo) or 1.0
    pixels = image.astype(np.float32)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    pixels -= np.float32(lo)
    pixels *= np.float32(1.0 / scale)
    return pixels


def normalize_into(
    image: np.ndarray,
    out: np.ndarray,
    low: float = LOW_PERCENTILE,
    high: float = HIGH_PERCENTILE,
    window: Window | None = None,
) -> Window:
    """percentile_normalize(image) written channel-first into out, a float32 [C, H, W] array
    (or view) with the image's channel count: the same float32 arithmetic, so the same values,
    without percentile_normalize's copies (the inference service's hot path). Returns the two
    intensities it scaled from."""
    lo, hi = window if window is not None else percentiles(image, (low, high))
    factor = np.float32(1.0 / (float(hi - lo) or 1.0))
    planes = [image] if image.ndim == 2 else [image[..., c] for c in range(image.shape[2])]
    if len(planes) != out.shape[0] or out.shape[1:] != image.shape[:2]:
        raise ValueError(f"cannot write a {image.shape} image into {out.shape}")
    native = image.dtype in (np.uint8, np.uint16) and image.dtype.isnative
    for plane, target in zip(planes, out, strict=True):
        if native and target.strides[-1] == 4:
            # One pass in C (synthloc/native/pixels.c), the same float32 arithmetic.
            scale_into(plane, target, float(np.float32(lo)), float(factor))
            continue
        np.subtract(plane, np.float32(lo), out=target, dtype=np.float32, casting="unsafe")
        target *= factor
    return float(lo), float(hi)


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
