"""Where objects go: class draws and geometric placement (rendering: render.py)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from synth_service.context import beside
from synth_service.library import ObjectLibrary
from synth_service.recipe import BlendMode, LabelMode, Recipe

# Bilinear resampling at random sub-pixel offsets keeps about 44 % of white-noise variance;
# adding back sqrt(1 - 0.44) ~ 0.75 of the source noise restores the grain of a real object.
MATCHED_NOISE_FACTOR = 0.75


@dataclass
class Placement:
    """One object drawn for a sample: which, how transformed, and where."""

    object_index: int
    class_id: int
    scale: float
    angle_deg: float
    flip_h: bool
    flip_v: bool
    blend: BlendMode
    matrix: np.ndarray  # 2x3 affine from the library patch to the placed patch
    alpha: np.ndarray  # float32 (h, w) placed alpha
    hard: np.ndarray  # bool (h, w): alpha > 0.5, the pixels the object owns
    top: int  # canvas row of the patch's first row (may be negative: truncated)
    left: int
    full_area: int  # hard pixels, including any outside the canvas
    bounds: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive) of `hard` on the canvas
    window: tuple[int, int, int, int]  # y0, x0, y1, x1 of the patch clipped to the canvas
    inside: np.ndarray  # `hard` restricted to the window (the part on the canvas)


def class_weights(recipe: Recipe, library: ObjectLibrary) -> np.ndarray:
    """Sampling weight per library class; classes without objects get 0."""
    counts = np.array([len(ix) for ix in library.by_class], float)
    if recipe.class_weights is None:
        weights = counts.copy()
    else:
        weights = np.array([recipe.class_weights.get(n, 0.0) for n in library.class_names])
    weights[counts == 0] = 0.0
    return weights


def draw_classes(recipe: Recipe, library: ObjectLibrary, rng: np.random.Generator) -> list[int]:
    """The class of every object to place, per the recipe's count and label mode."""
    if recipe.poisson_mean is not None:
        count = int(rng.poisson(recipe.poisson_mean))
    else:
        count = int(rng.integers(recipe.count_range[0], recipe.count_range[1] + 1))
    weights = class_weights(recipe, library)
    eligible = np.flatnonzero(weights > 0)
    if recipe.label_mode is LabelMode.STRONG:
        # rng.choice(len(weights), size=count, p=...) spelled out: the same inverse-CDF draws
        # without choice()'s checks of p, which cost as much as the draws.
        cdf = np.cumsum(weights / weights.sum())
        cdf /= cdf[-1]
        return np.searchsorted(cdf, rng.random(count), side="right").tolist()
    if recipe.label_mode is LabelMode.WEAK_SINGLE_CLASS:
        # Class-balanced: every eligible class equally often, whatever the library holds.
        chosen = int(rng.choice(eligible))
        return [chosen] * max(count, 1)
    present = eligible[rng.random(len(eligible)) < 0.5]
    if present.size == 0:
        present = np.array([rng.choice(eligible)])
    extra = rng.choice(present, size=max(count - present.size, 0))
    return [int(c) for c in np.concatenate([present, extra])]


PLACEMENT_DRAWS = 9  # uniforms one placement attempt consumes (see draw_placement)
RENDER_DRAWS = 6  # uniforms one rendering consumes (see render.RenderedObjects)


def _lerp(interval: tuple[float, float], u: float) -> float:
    return interval[0] + (interval[1] - interval[0]) * u


def draw_placement(
    recipe: Recipe,
    library: ObjectLibrary,
    class_id: int,
    canvas_hw: tuple[int, int],
    u: np.ndarray,
    placed: Sequence[tuple[int, tuple[int, int, int, int]]] = (),
) -> Placement | None:
    """Object of class_id, transformed and placed by PLACEMENT_DRAWS uniforms in u; None if
    it cannot be placed. Taking pre-drawn uniforms keeps the per-object cost in plain Python
    arithmetic instead of a dozen generator calls.

    `placed` holds the (class id, bounds) of the objects placed so far: with the recipe's
    context_probability the object goes beside one of its anchor class (context.py)."""
    u0, u1, u2, u3, u4, u5, u6, u7, u8 = u.tolist()
    members = library.by_class[class_id]
    object_index = int(members[min(int(u0 * len(members)), len(members) - 1)])
    obj = library.objects[object_index]
    scale = _lerp(recipe.scale, u1)
    angle = _lerp(recipe.rotation_deg, u2)
    flip_h, flip_v = recipe.flips and u3 < 0.5, recipe.flips and u4 < 0.5
    total = sum(w for _, w in recipe.blending)
    pick, blend = u5 * total, recipe.blending[-1][0]
    for mode, weight in recipe.blending:
        if pick < weight:
            blend = mode
            break
        pick -= weight
    h, w = obj.alpha.shape
    cx, cy = (w - 1) / 2, (h - 1) / 2
    # cv2.getRotationMatrix2D(centre, angle, scale) composed with the flips, written out.
    a, b = scale * math.cos(math.radians(angle)), scale * math.sin(math.radians(angle))
    fx, tx = (-1.0, w - 1.0) if flip_h else (1.0, 0.0)
    fy, ty = (-1.0, h - 1.0) if flip_v else (1.0, 0.0)
    m02 = (1 - a) * cx - b * cy + a * tx + b * ty
    m12 = b * cx + (1 - a) * cy - b * tx + a * ty
    m00, m01, m10, m11 = a * fx, b * fy, -b * fx, a * fy
    # Extremes of the four transformed corners, each term picked separately (same sums).
    lo_a, hi_a = sorted((m00 * (w - 1), 0.0))
    lo_b, hi_b = sorted((m01 * (h - 1), 0.0))
    low_x, out_w = math.floor(lo_a + lo_b + m02), math.ceil(hi_a + hi_b + m02)
    lo_a, hi_a = sorted((m10 * (w - 1), 0.0))
    lo_b, hi_b = sorted((m11 * (h - 1), 0.0))
    low_y, out_h = math.floor(lo_a + lo_b + m12), math.ceil(hi_a + hi_b + m12)
    out_w, out_h = out_w - low_x + 1, out_h - low_y + 1
    matrix = np.array([[m00, m01, m02 - low_x], [m10, m11, m12 - low_y]])
    alpha = cv2.warpAffine(obj.alpha, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR)
    hard = alpha > 0.5
    # OpenCV reads a bool mask as uint8 without a copy; one call each for box and count.
    bx, by, bw, bh = cv2.boundingRect(hard.view(np.uint8))
    if bw == 0:
        return None
    height, width = canvas_hw
    p = recipe.context_probability if class_id in library.context.anchor else 0.0
    near = [b for c, b in placed if c == library.context.anchor[class_id]] if p > 0 else []
    if near and u6 < p:
        # Beside a placed anchor: u6 / p picks which, u7 the gap, u8 the direction.
        gaps = library.context.gaps[class_id]
        anchor = near[min(int(u6 / p * len(near)), len(near) - 1)]
        gap = gaps[min(int(u7 * len(gaps)), len(gaps) - 1)]
        x, y = beside(anchor, (bw, bh), gap, 2 * math.pi * u8)
        top, left = round(y) - by, round(x) - bx
    else:
        if p > 0:  # the rest of u6's range, stretched back over [0, 1)
            u6 = (u6 - p) / (1 - p) if u6 >= p else u6 / p
        if u6 < recipe.border_truncation:
            top = -(out_h // 2) + int(u7 * height)
            left = -(out_w // 2) + int(u8 * width)
        elif out_h <= height and out_w <= width:
            top = int(u7 * (height - out_h + 1))
            left = int(u8 * (width - out_w + 1))
        else:
            return None
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + out_h, height), min(left + out_w, width)
    if y1 <= y0 or x1 <= x0:
        return None
    return Placement(
        object_index=object_index,
        class_id=class_id,
        scale=scale,
        angle_deg=angle,
        flip_h=flip_h,
        flip_v=flip_v,
        blend=blend,
        matrix=matrix,
        alpha=alpha,
        hard=hard,
        top=top,
        left=left,
        full_area=cv2.countNonZero(hard.view(np.uint8)),
        bounds=(left + bx, top + by, left + bx + bw, top + by + bh),
        window=(y0, x0, y1, x1),
        inside=hard[y0 - top : y1 - top, x0 - left : x1 - left],
    )
