"""compose(): one synthetic, exhaustively annotated sample from (recipe, library, seed, index).

Deterministic: every random draw comes from the sample's counter-based stream, keyed by (seed,
index) alone (draws.py), so a sample is the same in any order, process or machine, and no
global RNG is touched.

Order of work (in the compiled kernel, kernel.py): draw all placements first, settle occlusion
on hard masks (dropping objects left less visible than the recipe allows, which can only
uncover others), then paint the survivors in order. An object is therefore never painted
unless it is annotated, and every box is tight to the visible part of its object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from synth_service.distractors import paint_distractors
from synth_service.draws import Draws
from synth_service.intensity import to_dtype
from synth_service.kernel import (
    PLACEMENT_DRAWS,
    PLACEMENT_TRIES,
    RENDER_DRAWS,
    PastedObject,
    compose_objects,
    prepare,
)
from synth_service.library import ObjectLibrary
from synth_service.placement import draw_classes
from synth_service.recipe import Recipe

__all__ = ["BackgroundSource", "PastedObject", "Sample", "compose"]


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

    def sample(self, draws: Draws, height: int, width: int) -> np.ndarray: ...


def compose(
    recipe: Recipe,
    library: ObjectLibrary,
    backgrounds: BackgroundSource,
    seed: int,
    index: int,
    with_masks: bool = False,
) -> Sample:
    """Compose sample `index` of the stream (recipe, seed) from the library and backgrounds."""
    prepared = prepare(recipe, library)
    draws = Draws(seed, index)
    canvas = backgrounds.sample(draws, recipe.height, recipe.width)
    if recipe.distractor_mean > 0:
        paint_distractors(canvas, draws, recipe.distractor_mean)
    classes = draw_classes(recipe, prepared.classes, draws)
    if recipe.context_probability > 0 and library.context.anchor:
        # Anchors first, so that objects placed beside one find it already placed.
        satellites = library.context.anchor
        classes = [c for c in classes if c not in satellites] + [
            c for c in classes if c in satellites
        ]
    # Fixed blocks of uniforms per sample: consumption never depends on what was placed.
    n = len(classes)
    block = draws.uniforms(n * (PLACEMENT_TRIES * PLACEMENT_DRAWS + RENDER_DRAWS))
    tries = block[: n * PLACEMENT_TRIES * PLACEMENT_DRAWS]
    looks = block[n * PLACEMENT_TRIES * PLACEMENT_DRAWS :]
    noise_key = draws.raw(1)[0]
    instance = np.zeros(canvas.shape[:2], np.uint16) if with_masks else None
    objects = compose_objects(library, prepared, classes, tries, looks, canvas, instance, noise_key)
    labels = np.zeros(len(library.class_names), np.float32)
    labels[[o.class_id for o in objects]] = 1.0
    image = _to_output(canvas, recipe)
    return Sample(index, image, objects, labels, instance)


def _to_output(canvas: np.ndarray, recipe: Recipe) -> np.ndarray:
    channels = canvas.shape[2]
    if recipe.channels == 3 and channels == 1:
        canvas = np.repeat(canvas, 3, axis=2)
    elif recipe.channels == 1 and channels == 3:
        canvas = canvas.mean(axis=2, keepdims=True)
    return to_dtype(canvas, np.dtype(recipe.dtype))
