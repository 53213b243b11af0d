"""compose(): determinism, exact labels, occlusion, weak labels, blending placement."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from synth_service.blend import poisson_patch
from synth_service.compose import compose
from synth_service.recipe import BlendMode, LabelMode, NoiseModel, Recipe
from synthloc.coco import tight_bbox

from .conftest import FlatBackground

EXACT = Recipe(
    height=128,
    width=128,
    count_range=(6, 10),
    blending=((BlendMode.HARD, 1.0),),
    noise=NoiseModel.NONE,
    blur_probability=0.0,
    brightness=(0.0, 0.0),
    border_truncation=0.0,
)


def test_same_seed_and_index_give_the_same_bytes_in_any_order(disc_library) -> None:
    recipe = Recipe(height=96, width=96)
    bg = FlatBackground()
    forward = [compose(recipe, disc_library, bg, 7, i).image.tobytes() for i in range(6)]
    backward = [compose(recipe, disc_library, bg, 7, i).image.tobytes() for i in reversed(range(6))]
    assert forward == backward[::-1]
    assert len(set(forward)) == 6
    assert compose(recipe, disc_library, bg, 8, 0).image.tobytes() != forward[0]


def test_every_changed_pixel_is_annotated_and_boxes_are_tight(disc_library) -> None:
    bg = FlatBackground(level=0.0)
    untouched = np.uint8(0)
    for index in range(20):
        s = compose(EXACT, disc_library, bg, 1, index, with_masks=True)
        labels = s.instance_labels
        assert labels is not None and labels.max() == len(s.objects)
        changed = s.image[..., 0] != untouched
        # Hard pastes change only owned pixels (a dark object pixel may equal the background).
        assert not (changed & (labels == 0)).any()
        for k, obj in enumerate(s.objects):
            mine = labels == k + 1
            assert list(obj.box) == tight_bbox(mine)
            assert obj.area == int(mine.sum()) > 0
            assert 0 < obj.visible_fraction <= 1


def test_occluded_objects_are_recomputed_or_dropped(disc_library) -> None:
    crowded = dataclasses.replace(
        EXACT, height=64, width=64, count_range=(14, 14), max_iou=1.0, min_visible_fraction=0.5
    )
    fractions = []
    for index in range(30):
        s = compose(crowded, disc_library, FlatBackground(0.0), 3, index, with_masks=True)
        for k, obj in enumerate(s.objects):
            assert obj.visible_fraction >= 0.5
            assert list(obj.box) == tight_bbox(s.instance_labels == k + 1)
            fractions.append(obj.visible_fraction)
        assert len(s.objects) < 14 or min(fractions) < 1.0
    assert min(fractions) < 0.9  # occlusion really happened and was measured


def test_border_truncation_clips_boxes_to_the_canvas(disc_library) -> None:
    edge = dataclasses.replace(EXACT, border_truncation=1.0, min_visible_fraction=0.3)
    touching = 0
    for index in range(20):
        s = compose(edge, disc_library, FlatBackground(0.0), 2, index, with_masks=True)
        for k, obj in enumerate(s.objects):
            x, y, w, h = obj.box
            assert x >= 0 and y >= 0 and x + w <= 128 and y + h <= 128
            assert list(obj.box) == tight_bbox(s.instance_labels == k + 1)
            touching += x == 0 or y == 0 or x + w == 128 or y + h == 128
    assert touching > 0


def test_weak_single_class_is_balanced_and_single(disc_library) -> None:
    weak = dataclasses.replace(Recipe(height=64, width=64), label_mode=LabelMode.WEAK_SINGLE_CLASS)
    chosen = []
    for index in range(200):
        s = compose(weak, disc_library, FlatBackground(), 0, index)
        assert s.image_labels.sum() == 1.0
        cls = int(np.argmax(s.image_labels))
        assert {o.class_id for o in s.objects} == {cls}
        chosen.append(cls)
    assert 70 <= chosen.count(0) <= 130  # balanced, not proportional to object counts


def test_class_weights_pick_only_the_named_class(disc_library) -> None:
    only_oval = dataclasses.replace(EXACT, class_weights={"oval": 1.0})
    s = compose(only_oval, disc_library, FlatBackground(), 0, 0)
    assert s.objects and {o.class_id for o in s.objects} == {1}
    assert s.image_labels.tolist() == [0.0, 1.0]


@pytest.mark.parametrize("mode", list(BlendMode))
def test_boxes_stay_tight_with_every_blend_mode(disc_library, mode: BlendMode) -> None:
    recipe = dataclasses.replace(Recipe(height=128, width=128), blending=((mode, 1.0),))
    s = compose(recipe, disc_library, FlatBackground(), 4, 0, with_masks=True)
    assert s.objects
    for k, obj in enumerate(s.objects):
        assert list(obj.box) == tight_bbox(s.instance_labels == k + 1)
        mine = s.instance_labels == k + 1
        # The object is visible: brighter than the flat background where it owns pixels.
        assert s.image[..., 0][mine].mean() > 0.05 * 255 + 20


def test_poisson_clone_lands_exactly_where_asked() -> None:
    canvas = np.full((60, 60, 1), 0.1, np.float32)
    patch = np.full((15, 11, 1), 0.1, np.float32)
    patch[5:9, 3:6] = 0.9  # a bright block, 4x3, at a known place
    cloned = poisson_patch(canvas, 20, 30, patch)
    assert cloned is not None and cloned.shape == patch.shape
    bright = np.argwhere(cloned[..., 0] > 0.5)
    assert bright.min(axis=0).tolist() == [5, 3] and bright.max(axis=0).tolist() == [8, 5]
    assert poisson_patch(canvas, 0, 30, patch) is None  # too close to the border


def test_distractors_change_pixels_but_carry_no_label(disc_library) -> None:
    plain = dataclasses.replace(EXACT, count_range=(0, 0))
    debris = dataclasses.replace(plain, distractor_mean=6.0)
    clean = compose(plain, disc_library, FlatBackground(0.2), 5, 0)
    dirty = compose(debris, disc_library, FlatBackground(0.2), 5, 0)
    assert not clean.objects and not dirty.objects
    assert (clean.image != 51).sum() == 0  # 0.2 * 255 everywhere
    assert (dirty.image > 51).sum() > 20
    assert dirty.image_labels.tolist() == [0.0, 0.0]
