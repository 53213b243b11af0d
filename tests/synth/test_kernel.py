"""The compiled compose kernel (synth_service/kernel): its primitives against OpenCV and
numpy, its noise, and what rendering does to a sample."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from synth_service import _kernel
from synth_service.compose import compose
from synth_service.draws import Draws
from synth_service.kernel import (
    PLACEMENT_DRAWS,
    PLACEMENT_TRIES,
    RENDER_DRAWS,
    compose_objects,
    normal_noise,
    prepare,
)
from synth_service.recipe import NoiseModel, Recipe

from .conftest import FlatBackground


def _warp(src: np.ndarray, matrix: np.ndarray, size: tuple[int, int], reflect: bool):
    h, w = src.shape[:2]
    channels = 1 if src.ndim == 2 else src.shape[2]
    out = _kernel.warp(
        np.ascontiguousarray(src, np.float32),
        h,
        w,
        channels,
        tuple(matrix.ravel()),
        *size,
        reflect,
    )
    return np.frombuffer(out, np.float32).reshape(size[0], size[1], channels)


@pytest.mark.parametrize("reflect", [False, True])
@pytest.mark.parametrize("channels", [1, 3])
def test_warp_matches_opencv_bilinear(reflect: bool, channels: int) -> None:
    rng = np.random.default_rng(0)
    src = rng.random((23, 31, channels), dtype=np.float32)
    matrix = cv2.getRotationMatrix2D((15.0, 11.0), 37.0, 1.13)
    matrix[:, 2] += (4.0, 6.0)
    ours = _warp(src, matrix, (40, 44), reflect)
    border = cv2.BORDER_REFLECT if reflect else cv2.BORDER_CONSTANT
    theirs = cv2.warpAffine(src, matrix, (44, 40), flags=cv2.INTER_LINEAR, borderMode=border)
    # OpenCV rounds coordinates to 1/32 px; the kernel does not: a 1/64 px shift at most.
    gradient = np.abs(np.diff(src, axis=0)).max() + np.abs(np.diff(src, axis=1)).max()
    assert np.abs(ours - theirs.reshape(ours.shape)).max() <= gradient / 32 + 1e-5


def test_warp_identity_is_exact_and_outside_is_zero() -> None:
    src = np.arange(20, dtype=np.float32).reshape(4, 5)
    same = _warp(src, np.array([[1.0, 0, 0], [0, 1.0, 0]]), (4, 5), False)[..., 0]
    assert np.array_equal(same, src)
    far = _warp(src, np.array([[1.0, 0, 50.0], [0, 1.0, 50.0]]), (4, 5), False)
    assert not far.any()
    huge = _warp(src, np.array([[1.0, 0, 1e12], [0, 1.0, -1e12]]), (4, 5), True)
    assert huge.shape == (4, 5, 1) and np.isfinite(huge).all()


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.3])
def test_blur_matches_opencv_gaussian(sigma: float) -> None:
    src = np.random.default_rng(1).random((17, 29, 2), dtype=np.float32)
    ours = np.frombuffer(_kernel.blur(src, 17, 29, 2, sigma), np.float32).reshape(src.shape)
    theirs = cv2.GaussianBlur(src, (0, 0), sigma)
    assert np.abs(ours - theirs).max() < 1e-5


def test_blur_refuses_a_bad_sigma() -> None:
    with pytest.raises(ValueError, match="sigma"):
        _kernel.blur(np.zeros(4, np.float32), 2, 2, 1, 0.0)


def test_gamma_curve_is_power_above_zero_and_identity_below() -> None:
    s = np.concatenate(
        [np.geomspace(1e-6, 4.0, 5000, dtype=np.float32), -np.linspace(0, 1, 11, dtype=np.float32)]
    )
    for gamma in (0.9, 1.0, 1.07):
        ours = np.frombuffer(_kernel.power(s, gamma), np.float32)
        want = np.where(s > 0, np.power(np.maximum(s, 1e-30), gamma), s)
        assert np.all(np.abs(ours - want) <= 3e-6 * np.abs(want))
        assert np.array_equal(ours[s <= 0], s[s <= 0])


def test_noise_is_standard_normal_counter_based_and_keyed() -> None:
    z = normal_noise(7, 0, 1_000_000)
    assert z.dtype == np.float32 and z.shape == (1_000_000,)
    assert abs(float(z.mean())) < 0.005 and abs(float(z.std()) - 1.0) < 0.005
    assert abs(float(np.mean(np.abs(z) > 2.0)) - 0.0455) < 0.002  # two-sided normal tail
    assert float(np.abs(z).max()) > 4.0  # quantiles reach 4.3 sigma
    # Neighbours are independent, and any run is had without the values before it.
    assert abs(float(np.corrcoef(z[:-1], z[1:])[0, 1])) < 0.005
    assert np.array_equal(normal_noise(7, 500_000, 1000), z[500_000:501_000])
    other = normal_noise(8, 0, 1_000_000)
    assert abs(float(np.corrcoef(z, other)[0, 1])) < 0.005
    assert normal_noise(7, 0, 0).shape == (0,)
    assert abs(float(np.median(z))) < 0.005


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


@pytest.mark.parametrize("channels", [1, 3])
def test_background_fill_is_opencv_flip_and_reflect_border(channels: int) -> None:
    rng = np.random.default_rng(3)
    for ch, cw, height, width in [(7, 5, 23, 31), (16, 16, 16, 40), (1, 9, 4, 20), (6, 1, 13, 3)]:
        piece = rng.random((ch, cw, channels), dtype=np.float32)
        for code in range(4):  # none, both, rows, columns
            for top, left in [(0, 0), (height - ch, width - cw), (3 % (height - ch + 1), 1)]:
                canvas = np.full((height, width, channels), np.nan, np.float32)
                _kernel.background(
                    piece,
                    ch,
                    cw,
                    channels,
                    code in (1, 2),
                    code in (1, 3),
                    top,
                    left,
                    canvas,
                    height,
                    width,
                )
                flipped = cv2.flip(piece, code - 2) if code else piece
                want = cv2.copyMakeBorder(
                    flipped.reshape(ch, cw, channels),
                    top,
                    height - ch - top,
                    left,
                    width - cw - left,
                    cv2.BORDER_REFLECT,
                )
                assert np.array_equal(canvas, want.reshape(canvas.shape)), (ch, cw, code)


def test_background_refuses_buffers_smaller_than_their_shape() -> None:
    with pytest.raises(ValueError, match="smaller than their shapes"):
        _kernel.background(
            np.zeros(4, np.float32), 2, 2, 1, False, False, 0, 0, np.zeros(4, np.float32), 4, 4
        )


def test_quantize_rounds_and_clips_to_8_and_16_bits() -> None:
    values = np.array([-0.5, 0.0, 0.5 / 255, 0.49 / 255, 0.5, 1.0, 1.7, np.inf], np.float32)
    eight = np.empty(values.shape, np.uint8)
    _kernel.quantize(values, eight, 8)
    assert eight.tolist() == [0, 0, 1, 0, 128, 255, 255, 255]
    sixteen = np.empty(values.shape, np.uint16)
    _kernel.quantize(values, sixteen, 16)
    assert sixteen.tolist() == [0, 0, 129, 126, 32768, 65535, 65535, 65535]
    with pytest.raises(ValueError, match="bits must be 8 or 16"):
        _kernel.quantize(values, eight, 12)


def test_compose_objects_refuses_indices_outside_its_buffers(disc_library) -> None:
    prepared = prepare(Recipe(height=32, width=32), disc_library)
    canvas = np.zeros((32, 32, 1), np.float32)
    tries = Draws(0, 0).uniforms(PLACEMENT_TRIES * PLACEMENT_DRAWS)
    looks = Draws(0, 1).uniforms(RENDER_DRAWS)
    with pytest.raises(ValueError, match="classes: 7 is not a library class"):
        compose_objects(disc_library, prepared, [7], tries, looks, canvas, None, 1)
    cut = dataclasses.replace(prepared, params=prepared.params[:-2])
    with pytest.raises(ValueError, match="params: blend modes missing or cut short"):
        compose_objects(disc_library, cut, [0], tries, looks, canvas, None, 1)
    (painted,) = compose_objects(disc_library, prepared, [0], tries, looks, canvas, None, 1)
    assert painted.class_id == 0 and canvas.any()  # the same call, whole, still paints
