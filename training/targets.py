"""Training targets from boxes, in numpy (runs in DataLoader workers without touching torch).

Boxes are float32 [N, 4] xyxy in input pixels with int64 labels [N]; N may be 0. Objects that
were not annotated are simply absent (no ignore regions): with sparse annotation they become
negatives, which is exactly the effect the sparse-real arm measures.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from synthloc.errors import InvalidInput


@dataclass(frozen=True)
class DetectorTargets:
    """Dense CenterNet targets for one image at the output stride."""

    heatmap: np.ndarray  # [K, h, w] float32, 1.0 exactly at object centres
    size: np.ndarray  # [2, h, w] float32 box (width, height) in input pixels at centres
    offset: np.ndarray  # [2, h, w] float32 centre minus its cell, in cells, at centres
    mask: np.ndarray  # [h, w] float32, 1 where size/offset are supervised


def _check_labels(labels: np.ndarray, num_classes: int) -> None:
    """Raise InvalidInput unless every label is a class index in [0, num_classes)."""
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        found = sorted(set(labels.tolist()))
        raise InvalidInput(f"labels must lie in [0, {num_classes}), got {found}")


def gaussian_radius(height: float, width: float, min_overlap: float = 0.7) -> float:
    """CenterNet's radius: the largest centre shift that keeps IoU >= min_overlap (in cells)."""
    # The three cases of CornerNet/CenterNet (both corners inside, outside, one of each).
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1**2 - 4 * c1)) / 2
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2**2 - 16 * c2)) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


@functools.lru_cache(maxsize=256)
def _gaussian_kernel(radius: int) -> np.ndarray:
    """(2r+1)^2 Gaussian with peak 1.0 and sigma = diameter / 6, shared read-only."""
    sigma = (2 * radius + 1) / 6
    ys, xs = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    kernel = np.exp(-(xs * xs + ys * ys) / (2 * sigma * sigma)).astype(np.float32)
    kernel.setflags(write=False)
    return kernel


def draw_gaussian(heatmap: np.ndarray, cx: int, cy: int, radius: int) -> None:
    """Max-merge a 2D Gaussian (peak 1.0, sigma = diameter / 6) centred on cell (cx, cy)."""
    kernel = _gaussian_kernel(radius)
    h, w = heatmap.shape
    left, right = min(cx, radius), min(w - cx, radius + 1)
    top, bottom = min(cy, radius), min(h - cy, radius + 1)
    region = heatmap[cy - top : cy + bottom, cx - left : cx + right]
    patch = kernel[radius - top : radius + bottom, radius - left : radius + right]
    np.maximum(region, patch, out=region)


def detector_targets(
    boxes: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    image_size: tuple[int, int],
    stride: int,
) -> DetectorTargets:
    """CenterNet targets for an image of (height, width) pixels, `stride` pixels per cell."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    labels = np.asarray(labels, np.int64).reshape(-1)
    if len(boxes) != len(labels):
        raise InvalidInput(f"{len(boxes)} boxes but {len(labels)} labels")
    _check_labels(labels, num_classes)
    h, w = image_size[0] // stride, image_size[1] // stride
    heatmap = np.zeros((num_classes, h, w), np.float32)
    size = np.zeros((2, h, w), np.float32)
    offset = np.zeros((2, h, w), np.float32)
    mask = np.zeros((h, w), np.float32)
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    # Largest first, so where two centres share a cell the smaller object (a micronucleus beside
    # its nucleus) keeps the size/offset regression target.
    for i in np.argsort(-(widths * heights), kind="stable"):
        bw, bh = float(widths[i]), float(heights[i])
        if bw <= 0 or bh <= 0:
            continue
        centre_x = (boxes[i, 0] + boxes[i, 2]) / 2 / stride
        centre_y = (boxes[i, 1] + boxes[i, 3]) / 2 / stride
        cx = min(max(math.floor(centre_x), 0), w - 1)
        cy = min(max(math.floor(centre_y), 0), h - 1)
        radius = max(0, int(gaussian_radius(bh / stride, bw / stride)))
        draw_gaussian(heatmap[labels[i]], cx, cy, radius)
        size[:, cy, cx] = bw, bh
        offset[:, cy, cx] = centre_x - cx, centre_y - cy
        mask[cy, cx] = 1.0
    return DetectorTargets(heatmap, size, offset, mask)


def image_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Multi-hot [K] float32 image-level labels: which classes the image contains."""
    labels = np.asarray(labels, np.int64).reshape(-1)
    _check_labels(labels, num_classes)
    multi_hot = np.zeros(num_classes, np.float32)
    multi_hot[labels] = 1.0
    return multi_hot
