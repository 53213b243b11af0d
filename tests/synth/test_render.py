"""render.py: the batched object rendering and its noise source."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from synth_service.compose import compose
from synth_service.recipe import NoiseModel, Recipe
from synth_service.render import standard_normal

from .conftest import FlatBackground


def test_standard_normal_is_deterministic_and_standard() -> None:
    z = standard_normal(np.random.default_rng(1), 1_000_001)
    assert z.dtype == np.float32 and z.shape == (1_000_001,)
    assert abs(float(z.mean())) < 0.005 and abs(float(z.std()) - 1.0) < 0.005
    assert abs(float(np.mean(np.abs(z) > 2.0)) - 0.0455) < 0.002  # two-sided normal tail
    assert np.array_equal(z[:1000], standard_normal(np.random.default_rng(1), 1_000_001)[:1000])
    assert standard_normal(np.random.default_rng(1), 0).shape == (0,)


@pytest.mark.parametrize("model", list(NoiseModel))
def test_noise_changes_pixels_only(disc_library, model: NoiseModel) -> None:
    quiet = dataclasses.replace(
        Recipe(height=96, width=96), noise=NoiseModel.NONE, blur_probability=0.5
    )
    noisy = dataclasses.replace(quiet, noise=model, noise_sigma=(0.02, 0.05))
    bg = FlatBackground(0.1)
    for index in range(4):
        a = compose(quiet, disc_library, bg, 9, index, with_masks=True)
        b = compose(noisy, disc_library, bg, 9, index, with_masks=True)
        again = compose(noisy, disc_library, bg, 9, index, with_masks=True)
        assert np.array_equal(b.image, again.image)
        assert [o.box for o in a.objects] == [o.box for o in b.objects]
        assert np.array_equal(a.instance_labels, b.instance_labels)
        # Object pixels that neither image saturates (the discs are bright).
        free = (b.instance_labels > 0) & (a.image[..., 0] < 255) & (b.image[..., 0] < 255)
        changed = a.image[..., 0][free] != b.image[..., 0][free]
        if model is NoiseModel.NONE:
            assert not changed.any()
        else:
            assert changed.mean() > 0.3


def test_more_than_255_objects_keep_distinct_masks(disc_library) -> None:
    crowd = dataclasses.replace(
        Recipe(height=512, width=512),
        count_range=(320, 320),
        max_iou=1.0,
        min_visible_fraction=0.05,
        border_truncation=0.0,
    )
    s = compose(crowd, disc_library, FlatBackground(), 2, 0, with_masks=True)
    assert len(s.objects) > 255  # owner ids beyond one byte
    assert s.instance_labels is not None and s.instance_labels.max() == len(s.objects)
    for k, obj in enumerate(s.objects):
        assert obj.area == int((s.instance_labels == k + 1).sum())
