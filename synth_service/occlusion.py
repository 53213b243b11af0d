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


def settle_occlusion(
    placements: list[Placement], canvas_hw: tuple[int, int], recipe: Recipe
) -> tuple[list[Survivor], np.ndarray]:
    """Drop objects less visible than recipe.min_visible_fraction; later objects cover earlier.

    Returns the survivors in painting order and the owner map (uint8 or uint16, the
    owner_id of each pixel). Dropping an object can only uncover others, so the loop ends.
    """
    for k, p in enumerate(placements):
        p.owner_id = k + 1
    active = list(placements)
    # Half the memory to clear and scan when every owner_id fits in a byte (the usual case).
    dtype = np.uint8 if len(placements) < 255 else np.uint16
    while True:
        owner = np.zeros(canvas_hw, dtype)
        for p in active:
            y0, x0, y1, x1 = p.window
            np.putmask(owner[y0:y1, x0:x1], p.inside, p.owner_id)  # faster than mask indexing
        survivors = []
        for p in active:
            y0, x0, y1, x1 = p.window
            mine = (owner[y0:y1, x0:x1] == p.owner_id).view(np.uint8)
            area = cv2.countNonZero(mine)
            fraction = area / p.full_area
            if area > 0 and fraction >= recipe.min_visible_fraction:
                bx, by, bw, bh = cv2.boundingRect(mine)
                survivors.append(Survivor(p, fraction, (x0 + bx, y0 + by, bw, bh), area))
        if len(survivors) == len(active):
            return survivors, owner
        active = [s.placement for s in survivors]
