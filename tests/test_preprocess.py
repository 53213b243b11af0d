"""The shared input normalisation: the counting percentile equals numpy's, channels rule."""

from __future__ import annotations

import numpy as np
import pytest

from synthloc.preprocess import match_channels, percentile_normalize, percentiles


@pytest.mark.parametrize("dtype,top", [(np.uint8, 256), (np.uint16, 65536), (np.uint16, 900)])
@pytest.mark.parametrize("shape", [(512, 512), (37, 53), (1, 1), (40, 30, 3)])
def test_counting_percentiles_equal_numpy(dtype, top: int, shape) -> None:
    image = np.random.default_rng(1).integers(0, top, shape).astype(dtype)
    for qs in ((1.0, 99.9), (0.0, 100.0), (50.0,), (12.5, 87.5)):
        assert percentiles(image, qs) == pytest.approx(np.percentile(image, qs), abs=1e-9)


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
