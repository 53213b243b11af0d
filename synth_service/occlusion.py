"""Occlusion between placed objects: box IoU while placing, visible pixels once placed."""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from synth_service.placement import Placement
from synth_service.recipe import Recipe


class Survivor(NamedTuple):
    """A placed object that stays visible enough, with what is left of it on the canvas."""

    placement: Placement
    visible_fraction: float  # visible / placed pixels, so border truncation counts as hidden
    box: tuple[int, int, int, int]  # x, y, width, height: tight to the visible pixels
    area: int  # visible pixels


def max_iou(candidate: Placement, placed: list[tuple[int, int, int, int]]) -> float:
    """Largest box IoU between a candidate and already placed bounds (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = candidate.bounds
    area = (x1 - x0) * (y1 - y0)
    worst = 0.0
    # Plain comparisons instead of min()/max() calls: this loop runs n^2/2 times a sample.
    for bx0, by0, bx1, by1 in placed:
        iw = (x1 if x1 < bx1 else bx1) - (x0 if x0 > bx0 else bx0)
        if iw <= 0:
            continue
        ih = (y1 if y1 < by1 else by1) - (y0 if y0 > by0 else by0)
        if ih <= 0:
            continue
        inter = iw * ih
        iou = inter / (area + (bx1 - bx0) * (by1 - by0) - inter)
        if iou > worst:
            worst = iou
    return worst


def settle_occlusion(placements: list[Placement], recipe: Recipe) -> list[Survivor]:
    """Drop objects less visible than recipe.min_visible_fraction; later objects cover earlier.

    Returns the survivors in painting order. Dropping an object can only uncover others, so
    the loop ends.
    """
    active = list(placements)
    while True:
        survivors = []
        for k, p in enumerate(active):
            area, box = _visible(p, [q for q in active[k + 1 :] if _overlap(p.bounds, q.bounds)])
            fraction = area / p.full_area
            if area > 0 and fraction >= recipe.min_visible_fraction:
                survivors.append(Survivor(p, fraction, box, area))
        if len(survivors) == len(active):
            return survivors
        active = [s.placement for s in survivors]


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _visible(p: Placement, above: list[Placement]) -> tuple[int, tuple[int, int, int, int]]:
    """Visible pixels and their tight box (x, y, w, h) of p under the placements above it."""
    y0, x0, y1, x1 = p.window
    if not above and p.inside.shape == p.hard.shape:
        # Neither covered nor cut by the border (the usual case): all of it shows.
        bx0, by0, bx1, by1 = p.bounds
        return p.full_area, (bx0, by0, bx1 - bx0, by1 - by0)
    mine = p.inside
    if above:
        mine = mine.copy()
        for q in above:
            qy0, qx0, qy1, qx1 = q.window
            iy0, ix0, iy1, ix1 = max(y0, qy0), max(x0, qx0), min(y1, qy1), min(x1, qx1)
            if iy0 < iy1 and ix0 < ix1:
                cover = q.inside[iy0 - qy0 : iy1 - qy0, ix0 - qx0 : ix1 - qx0]
                mine[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] &= ~cover
    area = cv2.countNonZero(mine.view(np.uint8))
    bx, by, bw, bh = cv2.boundingRect(mine.view(np.uint8))
    return area, (x0 + bx, y0 + by, bw, bh)
