"""The shared input normalisation: the counting percentile equals numpy's, channels rule."""

from __future__ import annotations

import numpy as np
import pytest

from synthloc._native import order_statistics, scale_into
from synthloc.preprocess import match_channels, normalize_into, percentile_normalize, percentiles


@pytest.mark.parametrize("dtype,top", [(np.uint8, 256), (np.uint16, 65536), (np.uint16, 900)])
@pytest.mark.parametrize("shape", [(512, 512), (37, 53), (1, 1), (40, 30, 3)])
def test_counting_percentiles_equal_numpy(dtype, top: int, shape) -> None:
    image = np.random.default_rng(1).integers(0, top, shape).astype(dtype)
    for qs in ((1.0, 99.9), (0.0, 100.0), (50.0,), (12.5, 87.5)):
        assert percentiles(image, qs) == pytest.approx(np.percentile(image, qs), abs=1e-9)


def test_percentiles_of_swapped_and_strided_16_bit_images() -> None:
    image = np.random.default_rng(2).integers(0, 4096, (60, 70)).astype(np.uint16)
    for view in (image.astype(">u2"), image[::2, ::3], image.T):
        assert percentiles(view, (1.0, 99.9)) == pytest.approx(np.percentile(view, (1.0, 99.9)))


def test_order_statistics_reads_the_counts_and_refuses_bad_input() -> None:
    pixels = np.array([5, 1, 1, 300, 2], np.uint16)
    assert order_statistics(pixels, [0, 1, 2, 3, 4]) == [1, 1, 2, 5, 300]
    assert order_statistics(pixels.astype(np.uint8), [4]) == [44]  # 300 wraps to 44
    assert order_statistics(pixels, []) == []
    with pytest.raises(TypeError, match="native uint8 or uint16 pixels, not format 'f'"):
        order_statistics(pixels.astype(np.float32), [0])
    with pytest.raises(TypeError, match="not format '>H'"):
        order_statistics(pixels.astype(">u2"), [0])
    with pytest.raises(ValueError, match="ranks must ascend and be below the pixel count"):
        order_statistics(pixels, [2, 1])
    with pytest.raises(ValueError, match="ranks must ascend and be below the pixel count"):
        order_statistics(pixels, [5])
    with pytest.raises(ValueError, match="1 to 2\\*\\*32 - 1 pixels, not 0"):
        order_statistics(np.zeros(0, np.uint8), [])


def test_scale_into_matches_numpy_and_refuses_bad_input() -> None:
    pixels = np.random.default_rng(3).integers(0, 4096, (9, 14)).astype(np.uint16)
    lo, factor = np.float32(7.25), np.float32(1 / 3001)
    want = (pixels.astype(np.float32) - lo) * factor
    out = np.zeros((9, 20), np.float32)
    scale_into(pixels, out[:, :14], float(lo), float(factor))  # rows of a wider buffer
    assert out[:, :14].tobytes() == want.tobytes() and not out[:, 14:].any()
    scale_into(pixels[:, ::2], out[:, :7], float(lo), float(factor))  # strided pixels
    assert out[:, :7].tobytes() == np.ascontiguousarray(want[:, ::2]).tobytes()
    with pytest.raises(TypeError, match="native uint8 or uint16 pixels, not format 'f'"):
        scale_into(want, out[:, :14], 0.0, 1.0)
    with pytest.raises(TypeError, match="writes native float32"):
        scale_into(pixels, np.zeros((9, 14)), 0.0, 1.0)
    with pytest.raises(ValueError, match="2-D pixels and a target of their shape"):
        scale_into(pixels, out, 0.0, 1.0)
    with pytest.raises(ValueError, match="rows of contiguous floats"):
        scale_into(pixels[:, :7], out[:, ::2][:, :7], 0.0, 1.0)


def test_normalize_maps_the_percentiles_to_0_and_1() -> None:
    image = np.arange(1000, dtype=np.uint16).reshape(25, 40)
    norm = percentile_normalize(image, 0.0, 100.0)
    assert norm.shape == (25, 40, 1) and norm.dtype == np.float32
    assert norm.min() == 0.0 and norm.max() == pytest.approx(1.0)
    floats = percentile_normalize(image.astype(np.float32), 0.0, 100.0)
    np.testing.assert_allclose(floats, norm, atol=1e-6)


def test_match_channels() -> None:
    gray = np.ones((4, 5, 1), np.float32)
    assert match_channels(gray, 3).shape == (4, 5, 3)
    rgb = np.stack([np.zeros((4, 5)), np.ones((4, 5)), 2 * np.ones((4, 5))], axis=2)
    assert match_channels(rgb, 1)[..., 0].tolist() == np.ones((4, 5)).tolist()
    with pytest.raises(ValueError, match="3-channel image into 2 channels"):
        match_channels(rgb, 2)


@pytest.mark.parametrize(
    "image",
    [
        np.random.default_rng(1).integers(0, 256, (37, 52), dtype=np.uint8),
        np.random.default_rng(2).integers(0, 65536, (37, 52), dtype=np.uint16),
        np.random.default_rng(3).integers(0, 256, (37, 52, 3), dtype=np.uint8),
        np.random.default_rng(4).normal(size=(37, 52)),  # float64
        np.random.default_rng(5).integers(-500, 500, (37, 52), dtype=np.int16),
        np.full((37, 52), 9, np.uint8),  # flat: no spread between the percentiles
    ],
    ids=["u8", "u16", "rgb", "f64", "i16", "flat"],
)
def test_normalize_into_writes_exactly_what_percentile_normalize_computes(
    image: np.ndarray,
) -> None:
    expected = percentile_normalize(image).transpose(2, 0, 1)
    out = np.full((expected.shape[0], 40, 64), 7.0, np.float32)
    normalize_into(image, out[:, :37, :52])
    assert out[:, :37, :52].tobytes() == np.ascontiguousarray(expected).tobytes()
    assert (out[:, 37:, :] == 7).all() and (out[:, :37, 52:] == 7).all()  # nothing else


def test_normalize_into_refuses_another_shape() -> None:
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match=r"cannot write a \(8, 8, 3\) image into \(1, 8, 8\)"):
        normalize_into(image, np.zeros((1, 8, 8), np.float32))
