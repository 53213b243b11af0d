"""compose(): one synthetic, exhaustively annotated sample from (recipe, library, seed, index).

Deterministic: every random draw comes from a generator seeded with (seed, index) alone, so a
sample is the same in any order, process or machine, and no global RNG is touched.

Order of work: draw all placements first, settle occlusion on hard masks (dropping objects
left less visible than the recipe allows, which can only uncover others), then paint the
survivors in order. An object is therefore never painted unless it is annotated, and every
box is tight to the visible part of its object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from synth_service.blend import paste
from synth_service.distractors import paint_distractors
from synth_service.intensity import to_dtype
from synth_service.library import ObjectLibrary
from synth_service.occlusion import max_iou, settle_occlusion
from synth_service.placement import (
    PLACEMENT_DRAWS,
    RENDER_DRAWS,
    Placement,
    draw_classes,
    draw_placement,
)
from synth_service.recipe import Recipe
from synth_service.render import RenderedObjects, standard_normal

_PLACEMENT_TRIES = 12


@dataclass(frozen=True)
class PastedObject:
    """A visible object of a sample with its label and provenance."""

    box: tuple[int, int, int, int]  # x, y, width, height: tight to the visible pixels
    class_id: int
    area: int  # visible pixels
    source_object_id: int
    scale: float
    angle_deg: float
    flipped_horizontally: bool
    flipped_vertically: bool
    blend: int  # BlendMode actually used
    visible_fraction: float


@dataclass
class Sample:
    """A composed image with its labels."""

    index: int
    image: np.ndarray  # (H, W, C) uint8 or uint16
    objects: list[PastedObject]
    image_labels: np.ndarray  # float32 multi-hot over the library's classes
    instance_labels: np.ndarray | None  # uint16 (H, W): objects[k] has value k + 1


class BackgroundSource(Protocol):
    """What compose needs from backgrounds (satisfied by backgrounds.BackgroundBank)."""

    def sample(self, rng: np.random.Generator, height: int, width: int) -> np.ndarray: ...


def compose(
    recipe: Recipe,
    library: ObjectLibrary,
    backgrounds: BackgroundSource,
    seed: int,
    index: int,
    with_masks: bool = False,
) -> Sample:
    """Compose sample `index` of the stream (recipe, seed) from the library and backgrounds."""
    rng = np.random.default_rng([seed, index])
    canvas = backgrounds.sample(rng, recipe.height, recipe.width)
    if recipe.distractor_mean > 0:
        paint_distractors(canvas, rng, recipe.distractor_mean)
    classes = draw_classes(recipe, library, rng)
    if recipe.context_probability > 0 and library.context.anchor:
        # Anchors first, so that objects placed beside one find it already placed.
        satellites = library.context.anchor
        classes = [c for c in classes if c not in satellites] + [
            c for c in classes if c in satellites
        ]
    placements: list[Placement] = []
    bounds: list[tuple[int, int, int, int]] = []
    # A fixed block of uniforms per sample: consumption never depends on what was placed.
    tries = rng.random((len(classes), _PLACEMENT_TRIES, PLACEMENT_DRAWS))
    looks = rng.random((len(classes), RENDER_DRAWS))
    placed: list[tuple[int, tuple[int, int, int, int]]] = []  # (class, bounds): anchors
    for class_id, attempts in zip(classes, tries, strict=True):
        for u in attempts:
            candidate = draw_placement(recipe, library, class_id, canvas.shape[:2], u, placed)
            if candidate is not None and (max_iou(candidate, bounds) <= recipe.max_iou):
                bounds.append(candidate.bounds)
                placed.append((class_id, candidate.bounds))
                placements.append(candidate)
                break
    survivors = settle_occlusion(placements, recipe)
    objects: list[PastedObject] = []
    labels = np.zeros(len(library.class_names), np.float32)
    instance = np.zeros(canvas.shape[:2], np.uint16) if with_masks else None
    size = sum(s.placement.hard.size for s in survivors) * canvas.shape[2]
    noise = standard_normal(rng, size)
    placed = [s.placement for s in survivors]
    rendered = RenderedObjects(
        recipe, library, placed, looks[: len(placed)], noise, canvas.shape[2]
    )
    for k, (p, visible_fraction, box, area) in enumerate(survivors):
        patch = rendered.finish(k, canvas)
        used = paste(canvas, p.top, p.left, patch, p.alpha, p.hard, p.blend)
        if instance is not None:
            _mark(instance, p, k + 1)
        labels[p.class_id] = 1.0
        objects.append(
            PastedObject(
                box=box,
                class_id=p.class_id,
                area=area,
                source_object_id=library.objects[p.object_index].object_id,
                scale=p.scale,
                angle_deg=p.angle_deg,
                flipped_horizontally=p.flip_h,
                flipped_vertically=p.flip_v,
                blend=int(used),
                visible_fraction=visible_fraction,
            )
        )
    image = _to_output(canvas, recipe)
    return Sample(index, image, objects, labels, instance)


def _mark(instance: np.ndarray, p: Placement, value: int) -> None:
    # Marked in painting order, so later objects overwrite what they cover.
    y0, x0, y1, x1 = p.window
    np.putmask(instance[y0:y1, x0:x1], p.inside, value)


def _to_output(canvas: np.ndarray, recipe: Recipe) -> np.ndarray:
    channels = canvas.shape[2]
    if recipe.channels == 3 and channels == 1:
        canvas = np.repeat(canvas, 3, axis=2)
    elif recipe.channels == 1 and channels == 3:
        canvas = canvas.mean(axis=2, keepdims=True)
    return to_dtype(canvas, np.dtype(recipe.dtype), scratch=True)  # the canvas is done
