"""Where objects sit relative to each other in the real images, learned from the annotations.

In mnfinder, 69 % of micronuclei touch a nucleus's box and 90 % lie within 5 px of one; pasted
anywhere, synthetic micronuclei never look like that. From the annotated pairs of a library's
images this learns, per class, the larger class its objects sit beside (the anchor) and the
box gaps seen to it. Placement (placement.py) then puts an object beside a placed anchor with
the recipe's context_probability, at one of those gaps, in any direction.

Only annotated pairs count: with sparse annotations fewer pairs are seen, but the gaps of the
pairs that are seen are the real ones.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from synthloc.coco import CocoDataset

RADIUS_PX = 16.0  # a neighbour farther than this (box to box) is not context
MIN_PAIRS = 5  # fewer observed pairs than this teach nothing reliable

Box = tuple[float, float, float, float]  # x, y, w, h as in COCO


@dataclass(frozen=True)
class PlacementContext:
    """Per class id: the anchor class id, and the box gaps (px) seen to its nearest anchor."""

    anchor: dict[int, int] = field(default_factory=dict)
    gaps: dict[int, tuple[float, ...]] = field(default_factory=dict)

    def describe(self, class_names: list[str]) -> str:
        """One line per class with an anchor, for logs."""
        return "; ".join(
            f"{class_names[c]} beside {class_names[a]} ({len(self.gaps[c])} pairs, median gap "
            f"{float(np.median(self.gaps[c])):.1f} px)"
            for c, a in sorted(self.anchor.items())
        )


def box_gap(a: Box, b: Box) -> float:
    """Euclidean distance between two boxes (0 when they touch or overlap)."""
    dx = max(0.0, max(a[0] - (b[0] + b[2]), b[0] - (a[0] + a[2])))
    dy = max(0.0, max(a[1] - (b[1] + b[3]), b[1] - (a[1] + a[3])))
    return math.hypot(dx, dy)


def boxes_by_image(ds: CocoDataset, class_of: dict[int, int]) -> list[list[tuple[int, Box]]]:
    """The (class, box) of every annotation, image by image; class_of maps category ids."""
    by_image = ds.annotations_by_image()
    return [
        [(class_of[a["category_id"]], tuple(a["bbox"])) for a in by_image[image["id"]]]
        for image in ds.images
    ]


def median_areas(images: list[list[tuple[int, Box]]]) -> dict[int, float]:
    """Median box area per class."""
    areas: dict[int, list[float]] = defaultdict(list)
    for objects in images:
        for cls, (_, _, w, h) in objects:
            areas[cls].append(w * h)
    return {cls: float(np.median(values)) for cls, values in areas.items()}


def learn_from_coco(ds: CocoDataset, class_of: dict[int, int]) -> PlacementContext:
    """The placement context of a dataset's (kept) annotations."""
    images = boxes_by_image(ds, class_of)
    return learn_context(images, median_areas(images))


def learn_context(
    images: list[list[tuple[int, Box]]], class_areas: dict[int, float]
) -> PlacementContext:
    """Context from the annotated (class id, box) of each image.

    An object's neighbour is the nearest annotated object of a class with a larger median area
    (so micronuclei get nuclei as anchors, never the other way); a class's anchor is the class
    it has most neighbours of within RADIUS_PX, kept if seen at least MIN_PAIRS times.
    """
    seen: dict[int, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for objects in images:
        for cls, box in objects:
            best: tuple[float, int] | None = None
            for other, other_box in objects:
                if class_areas.get(other, 0.0) <= class_areas.get(cls, 0.0):
                    continue
                gap = box_gap(box, other_box)
                if gap <= RADIUS_PX and (best is None or gap < best[0]):
                    best = (gap, other)
            if best is not None:
                seen[cls][best[1]].append(best[0])
    anchor: dict[int, int] = {}
    gaps: dict[int, tuple[float, ...]] = {}
    for cls, by_anchor in seen.items():
        counts = Counter({a: len(g) for a, g in by_anchor.items()})
        (top, count), *_ = counts.most_common(1)
        if count >= MIN_PAIRS:
            anchor[cls], gaps[cls] = top, tuple(sorted(by_anchor[top]))
    return PlacementContext(anchor, gaps)


def beside(
    anchor: tuple[int, int, int, int], size: tuple[int, int], gap: float, angle: float
) -> tuple[float, float]:
    """Top-left (x, y) of a w x h box `gap` px outside the anchor's box (x0, y0, x1, y1, end
    exclusive), its centre moved from the anchor's centre in direction `angle` (radians).

    The box leaves the anchor across the axis it reaches first, and then moves on by `gap`
    across that axis: the gap is exact unless that puts it past a corner (then a little more).
    """
    x0, y0, x1, y1 = anchor
    w, h = size
    dx, dy = math.cos(angle), math.sin(angle)
    half_x, half_y = ((x1 - x0) + w) / 2, ((y1 - y0) + h) / 2
    # Per axis: how far along the direction the boxes touch across it, and how far the gap
    # across it is; the axis touched first decides.
    crossings = [
        (half / abs(d), (half + gap) / abs(d))
        for half, d in ((half_x, dx), (half_y, dy))
        if abs(d) > 1e-9
    ]
    reach = min(crossings)[1]
    cx, cy = (x0 + x1) / 2 + dx * reach, (y0 + y1) / 2 + dy * reach
    return cx - w / 2, cy - h / 2
