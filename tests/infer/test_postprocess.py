"""Decoding raw outputs into detections, on maps whose answers are known."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from infer_service.postprocess import (
    Detection,
    crop_to_image,
    decode_cam,
    decode_detector,
    decode_outputs,
    local_peaks,
    scale_detections,
    sigmoid,
)
from synthloc.errors import InvalidInput


def blob(shape: tuple[int, int], row: float, col: float, height: float, sigma: float) -> np.ndarray:
    """A Gaussian bump on a zero map."""
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    return height * np.exp(-((rows - row) ** 2 + (cols - col) ** 2) / (2 * sigma**2))


def test_local_peaks_keeps_one_cell_per_plateau_and_edge_peaks() -> None:
    scores = np.zeros((6, 6), np.float32)
    scores[1, 1:3] = 0.8  # a two-cell plateau: one peak
    scores[2, 2] = 0.8  # touching it diagonally: still the same plateau
    scores[5, 5] = 0.6  # a corner peak
    scores[4, 0] = 0.2  # below the threshold
    rows, cols = local_peaks(scores, 0.5)
    assert list(zip(rows.tolist(), cols.tolist(), strict=True)) == [(1, 1), (5, 5)]


def whole_map_peaks(values: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The definition: cells >= threshold equal to their 3x3 maximum (outside: -inf), first
    cell in raster order of each 8-connected group of them."""
    framed = np.pad(values, 1, constant_values=-np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(framed, (3, 3)).max(axis=(2, 3))
    peak = ((values == windows) & (values >= threshold)).astype(np.uint8)
    _, labels = cv2.connectedComponents(peak, connectivity=8)
    rows, cols = np.nonzero(peak)
    firsts = {}
    for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
        firsts.setdefault(labels[r, c], (r, c))
    kept = sorted(firsts.values())
    return np.array([r for r, _ in kept], np.intp), np.array([c for _, c in kept], np.intp)


@pytest.mark.parametrize("seed", range(12))
def test_local_peaks_matches_the_definition_on_sparse_and_dense_maps(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # Few levels, so plateaus and ties are common. Dense: most cells pass the threshold (the
    # whole-map path). Sparse: a few dozen raised cells, some in touching pairs, on a low map
    # (the path that looks at the passing cells only).
    dense = rng.integers(0, 6, (40, 33)).astype(np.float32) / 5
    sparse = rng.integers(0, 3, (40, 33)).astype(np.float32) / 10
    rows, cols = rng.integers(0, 40, 30), rng.integers(0, 32, 30)
    sparse[rows, cols] = rng.integers(3, 6, 30) / 5
    sparse[rows[:10], cols[:10] + 1] = sparse[rows[:10], cols[:10]]  # plateaus of two
    for values, thresholds in ((dense, (0.0, 0.4, 0.8)), (sparse, (0.5, 0.7, 0.9, 1.1))):
        for threshold in thresholds:
            got = local_peaks(values, threshold)
            want = whole_map_peaks(values, threshold)
            assert [a.tolist() for a in got] == [a.tolist() for a in want]
    assert np.count_nonzero(sparse >= 0.5) * 16 < sparse.size  # sparse enough for that path
    assert len(local_peaks(sparse, 0.5)[0]) >= 5


def test_local_peaks_keeps_one_cell_of_a_u_shaped_plateau() -> None:
    scores = np.zeros((5, 5), np.float32)
    scores[4, :] = scores[:, 0] = scores[:, 4] = 0.7  # joined only through the bottom row
    rows, cols = local_peaks(scores, 0.5)
    assert list(zip(rows.tolist(), cols.tolist(), strict=True)) == [(0, 0)]


def test_decode_detector_places_boxes_from_cell_offset_and_size() -> None:
    heatmap = np.zeros((2, 8, 10), np.float32)
    heatmap[0, 2, 3] = 0.9
    heatmap[1, 6, 7] = 0.7
    heatmap[1, 6, 8] = 0.3  # a shoulder of the class-1 peak, not a peak itself
    size = np.zeros((2, 8, 10), np.float32)
    size[:, 2, 3] = (12.0, 6.0)
    size[:, 6, 7] = (4.0, 4.0)
    offset = np.full((2, 8, 10), 0.25, np.float32)
    detections = decode_detector(heatmap, size, offset, stride=4, score_threshold=0.5)
    assert detections == [
        Detection(
            box=(7.0, 6.0, 12.0, 6.0), point=(13.0, 9.0), class_id=0, score=pytest.approx(0.9)
        ),
        Detection(
            box=(27.0, 23.0, 4.0, 4.0), point=(29.0, 25.0), class_id=1, score=pytest.approx(0.7)
        ),
    ]
    assert decode_detector(heatmap, size, offset, 4, 0.95) == []
    assert len(decode_detector(heatmap, size, offset, 4, 0.5, max_detections=1)) == 1


def test_decode_detector_caps_and_orders_by_score() -> None:
    heatmap = np.zeros((1, 20, 20), np.float32)
    heatmap[0, ::2, ::2] = np.linspace(0.5, 0.99, 100).reshape(10, 10)
    ones = np.ones((2, 20, 20), np.float32)
    detections = decode_detector(heatmap, ones, ones * 0, 4, 0.1, max_detections=7)
    assert len(detections) == 7
    assert [d.score for d in detections] == sorted((d.score for d in detections), reverse=True)
    assert detections[0].score == pytest.approx(0.99)


def test_decode_cam_finds_peaks_and_their_regions() -> None:
    cam = np.full((2, 32, 40), -6.0, np.float32)
    cam[1] += blob((32, 40), 10, 20, 12.0, 1.5) + blob((32, 40), 25, 5, 10.0, 1.0)
    cam[0] += blob((32, 40), 16, 16, 12.0, 2.0)  # class 0 is not in the image: its map is ignored
    logits = np.array([-3.0, 4.0], np.float32)
    detections = decode_cam(cam, logits, stride=4, score_threshold=0.5)
    assert [(d.class_id, d.point) for d in detections] == [(1, (82.0, 42.0)), (1, (22.0, 102.0))]
    assert detections[0].score == pytest.approx(float(sigmoid(np.float32(6.0))))
    # Half way from background (-6) to the peak (6): exp(-r^2 / 4.5) >= 0.5 -> |dr| <= 1.76,
    # so cells 9..11 and 19..21: 3 cells = 12 px from cell 19 (76 px) and 9 (36 px).
    assert detections[0].box == (76.0, 36.0, 12.0, 12.0)
    for d in detections:
        x, y, w, h = d.box
        assert x <= d.point[0] <= x + w and y <= d.point[1] <= y + h


def test_decode_cam_thresholds_on_image_and_peak_scores() -> None:
    cam = np.full((1, 16, 16), -6.0, np.float32) + blob((16, 16), 8, 8, 12.0, 1.5)
    assert decode_cam(cam, np.array([-1.0]), 8, 0.5) == []  # image score 0.27 < 0.5
    assert len(decode_cam(cam, np.array([1.0]), 8, 0.5)) == 1
    assert decode_cam(cam, np.array([1.0]), 8, 0.9999) == []  # peak sigmoid(6) = 0.9975


def test_decode_cam_on_a_flat_high_map_gives_one_detection_per_plateau() -> None:
    cam = np.full((1, 8, 8), 3.0, np.float32)
    cam[0, 1, 1] = 5.0
    cam[0, 4, 4] = 2.0
    detections = decode_cam(cam, np.array([5.0]), 4, 0.5)
    # The peak's region is its own cell (half way from the median 3 to 5 is 4); the plateau of
    # 3s around it is one more peak, at its first cell, whose region is the whole plateau.
    assert [(d.point, d.box) for d in detections] == [
        ((6.0, 6.0), (4.0, 4.0, 4.0, 4.0)),
        ((14.0, 2.0), (0.0, 0.0, 32.0, 32.0)),
    ]


def test_decode_outputs_dispatches_by_task() -> None:
    cam = np.full((1, 8, 8), -6.0, np.float32)
    cam[0, 3, 3] = 6.0
    found = decode_outputs("cam", {"cam": cam, "logits": np.array([6.0])}, 4, 0.5)
    assert [d.point for d in found] == [(14.0, 14.0)]
    with pytest.raises(InvalidInput, match="unknown task"):
        decode_outputs("segmenter", {}, 4, 0.5)


def test_crop_to_image_drops_padding_detections_and_clips_boxes() -> None:
    inside = Detection((90.0, 10.0, 20.0, 10.0), (100.0, 15.0), 0, 0.9)
    padding = Detection((100.0, 10.0, 10.0, 10.0), (105.0, 15.0), 0, 0.8)
    assert crop_to_image([inside, padding], width=104, height=50) == [
        Detection((90.0, 10.0, 14.0, 10.0), (100.0, 15.0), 0, 0.9)
    ]


def test_scale_detections_scales_x_and_y_separately() -> None:
    d = Detection((10.0, 20.0, 4.0, 8.0), (12.0, 24.0), 1, 0.5)
    assert scale_detections([d], 2.0, 0.5) == [
        Detection((20.0, 10.0, 8.0, 4.0), (24.0, 12.0), 1, 0.5)
    ]


def test_sigmoid_is_stable_for_large_inputs() -> None:
    with np.errstate(over="raise"):
        values = sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    assert values.tolist() == [0.0, 0.5, 1.0]
