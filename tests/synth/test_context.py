"""Placement context: what is learned from annotated pairs, and objects placed beside anchors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from synth_service.compose import compose
from synth_service.context import (
    MIN_PAIRS,
    RADIUS_PX,
    PlacementContext,
    beside,
    box_gap,
    learn_context,
)
from synth_service.library import ObjectLibrary
from synth_service.recipe import Recipe
from tests.synth.conftest import FlatBackground

BIG, SMALL = 0, 1
AREAS = {BIG: 400.0, SMALL: 16.0}


def test_box_gap() -> None:
    assert box_gap((0, 0, 10, 10), (10, 0, 4, 4)) == 0.0  # touching
    assert box_gap((0, 0, 10, 10), (5, 5, 4, 4)) == 0.0  # overlapping
    assert box_gap((0, 0, 10, 10), (13, 0, 4, 4)) == 3.0
    assert box_gap((0, 0, 10, 10), (13, 14, 4, 4)) == 5.0  # 3 across, 4 down


def test_learn_context_anchors_small_classes_to_larger_ones() -> None:
    # MIN_PAIRS images, each with a small object 2 px right of a big one, plus a far one.
    images = [
        [(BIG, (0.0, 0.0, 20.0, 20.0)), (SMALL, (22.0, 5.0, 4.0, 4.0)), (SMALL, (90, 90, 4, 4))]
        for _ in range(MIN_PAIRS)
    ]
    context = learn_context(images, AREAS)
    assert context.anchor == {SMALL: BIG}  # never the big class beside the small one
    assert context.gaps[SMALL] == (2.0,) * MIN_PAIRS  # the far object is not context
    assert learn_context(images[: MIN_PAIRS - 1], AREAS).anchor == {}  # too few pairs
    far = [[(BIG, (0, 0, 20, 20)), (SMALL, (20 + RADIUS_PX + 1, 0, 4, 4))]] * MIN_PAIRS
    assert learn_context(far, AREAS).anchor == {}


@pytest.mark.parametrize(("angle", "expected"), [(0.0, (33.0, 8.0)), (np.pi / 2, (8.0, 33.0))])
def test_beside_puts_the_box_gap_pixels_out_along_the_direction(angle, expected) -> None:
    x, y = beside((0, 0, 20, 20), (4, 4), 13.0, angle)
    assert (x, y) == pytest.approx(expected)
    assert box_gap((0, 0, 20, 20), (x, y, 4, 4)) == pytest.approx(13.0)


def _with_context(library: ObjectLibrary, gaps: tuple[float, ...]) -> ObjectLibrary:
    # The disc library's ovals beside its rounds, at the given gaps.
    return dataclasses.replace(library, context=PlacementContext({1: 0}, {1: gaps}))


def test_objects_go_beside_their_anchors_with_the_recipe_probability(disc_library) -> None:
    library = _with_context(disc_library, (0.0, 1.0, 2.0))
    recipe = Recipe(
        height=192,
        width=192,
        count_range=(10, 10),
        min_visible_fraction=0.0,
        context_probability=0.0,
    )
    near = total = 0
    for index in range(12):
        sample = compose(
            dataclasses.replace(recipe, context_probability=1.0),
            library,
            FlatBackground(),
            0,
            index,
        )
        rounds = [o.box for o in sample.objects if o.class_id == 0]
        for o in sample.objects:
            if o.class_id == 1 and rounds:
                total += 1
                near += min(box_gap(o.box, r) for r in rounds) <= 2.0 + 2.0  # rounding, masks
    assert total > 20 and near / total >= 0.9
    # With probability 0 a context changes nothing, byte for byte.
    for index in range(3):
        a = compose(recipe, library, FlatBackground(), 0, index)
        b = compose(recipe, disc_library, FlatBackground(), 0, index)
        assert a.image.tobytes() == b.image.tobytes() and a.objects == b.objects
