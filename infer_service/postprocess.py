"""Decoding raw localizer outputs into detections: the one implementation, served and evaluated.

numpy and OpenCV only (no torch), so the inference service and training's evaluation run the
same code. Inputs are one image's outputs (no batch axis) as the ONNX contract of
synthloc.modelcard defines them; output coordinates are input pixels of the network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

from synthloc.errors import InvalidInput

_KERNEL_3X3 = np.ones((3, 3), np.uint8)
# Offsets of a cell's 8 neighbours in a map framed by one cell on every side.
_NEIGHBOURS = [(dr, dc) for dr in range(3) for dc in range(3) if (dr, dc) != (1, 1)]


@dataclass(frozen=True)
class Detection:
    """One localized object: COCO box (x, y, w, h) and point (x, y) in pixels, class, score."""

    box: tuple[float, float, float, float]
    point: tuple[float, float]
    class_id: int
    score: float


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function, float32, without overflow warnings for large negative inputs."""
    x = np.asarray(x, np.float32)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(np.float32)


def _logit(p: float) -> float:
    """Inverse of the sigmoid, with 0 and 1 mapping to -inf and inf."""
    if p <= 0:
        return float("-inf")
    if p >= 1:
        return float("inf")
    return math.log(p / (1 - p))


def local_peaks(score_map: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of 3x3 local maxima >= threshold, one per plateau, in raster order."""
    values = np.ascontiguousarray(score_map, np.float32)
    above = np.flatnonzero(values >= threshold)  # raster order
    if above.size == 0:
        return above, above
    if above.size * 16 > values.size:
        # Dense: cv2.dilate is a 3x3 max filter; its border never wins, so edge cells can be
        # peaks.
        rows, cols = np.nonzero((values == cv2.dilate(values, _KERNEL_3X3)) & (values >= threshold))
    else:
        # Sparse (the usual case: a few objects in a large map): the same test at the cells
        # above the threshold only, each against its 8 neighbours, outside the map -inf.
        rows, cols = np.divmod(above, values.shape[1])
        framed = cv2.copyMakeBorder(values, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=-np.inf)
        centre = values.ravel()[above]
        keep = np.ones(above.size, bool)
        for dr, dc in _NEIGHBOURS:
            keep &= framed[rows + dr, cols + dc] <= centre
        rows, cols = rows[keep], cols[keep]
    if len(rows) < 2:
        return rows, cols
    peak = np.zeros(values.shape, np.uint8)
    peak[rows, cols] = 1
    # Touching peaks share one value (each is the maximum of a window holding the other), so an
    # 8-connected group of peaks is a plateau: keep its first cell in raster order. Only the
    # peak cells are searched, not the whole map.
    _, labels = cv2.connectedComponents(peak, connectivity=8)
    _, first = np.unique(labels[rows, cols], return_index=True)
    first.sort()
    return rows[first], cols[first]


def _top(
    candidates: list[tuple[float, int, int, int]], limit: int
) -> list[tuple[float, int, int, int]]:
    """The `limit` best (score, class, row, col) by score, ties in class/raster order."""
    return sorted(candidates, key=lambda c: (-c[0], c[1], c[2], c[3]))[:limit]


def decode_detector(
    heatmap: np.ndarray,
    size: np.ndarray,
    offset: np.ndarray,
    stride: int,
    score_threshold: float,
    max_detections: int = 500,
) -> list[Detection]:
    """Heatmap [K,h,w] scores, size [2,h,w] px, offset [2,h,w] cells -> detections by score."""
    found = [local_peaks(class_map, score_threshold) for class_map in heatmap]
    if not any(len(rows) for rows, _ in found):
        return []
    classes = np.concatenate([np.full(len(r), k) for k, (r, _) in enumerate(found)] or [[]])
    rows = np.concatenate([r for r, _ in found] or [[]]).astype(np.intp)
    cols = np.concatenate([c for _, c in found] or [[]]).astype(np.intp)
    classes = classes.astype(np.intp)
    scores = heatmap[classes, rows, cols]
    # Best score first, ties in class then raster order; the arithmetic below is float64, as
    # Python floats were, so the numbers are the same as one detection at a time.
    order = np.lexsort((cols, rows, classes, -scores))[:max_detections]
    classes, rows, cols, scores = classes[order], rows[order], cols[order], scores[order]
    cx = (cols + offset[0, rows, cols].astype(np.float64)) * stride
    cy = (rows + offset[1, rows, cols].astype(np.float64)) * stride
    w = size[0, rows, cols].astype(np.float64)
    h = size[1, rows, cols].astype(np.float64)
    columns = (cx - w / 2, cy - h / 2, w, h, cx, cy, classes, scores)
    return [
        Detection((x, y, bw, bh), (px, py), k, score)
        for x, y, bw, bh, px, py, k, score in zip(*(c.tolist() for c in columns), strict=True)
    ]


def _region(cam: np.ndarray, row: int, col: int, level: float) -> tuple[int, int, int, int]:
    """Bounding rectangle (x, y, w, h) in cells of the 4-connected region >= level at a peak."""
    mask = np.zeros((cam.shape[0] + 2, cam.shape[1] + 2), np.uint8)
    # A peak at or below the map's background level (possible on a map that is high almost
    # everywhere) gets a region of its own plateau only.
    low = max(float(cam[row, col]) - level, 0.0)
    flags = 4 | cv2.FLOODFILL_FIXED_RANGE | cv2.FLOODFILL_MASK_ONLY | (1 << 8)
    _, _, _, rect = cv2.floodFill(cam, mask, (col, row), 0, low, 1e30, flags)
    return rect


def decode_cam(
    cam: np.ndarray,
    logits: np.ndarray,
    stride: int,
    score_threshold: float,
    region_fraction: float = 0.5,
    max_detections: int = 500,
) -> list[Detection]:
    """Class maps [K,h,w] and image logits [K] (pre-sigmoid) -> one detection per map peak.

    Only classes whose image score passes are searched; each peak whose own score passes gives
    a point at its cell centre and a box around the connected region that stays above
    `region_fraction` of the way from the map's background level (its median) to the peak.
    """
    cam = np.ascontiguousarray(cam, np.float32)
    candidates = []
    for class_id in np.nonzero(sigmoid(logits) >= score_threshold)[0].tolist():
        # Peaks on the logits: sigmoid is monotonic but saturates to ties in float32.
        rows, cols = local_peaks(cam[class_id], _logit(score_threshold))
        scores = sigmoid(cam[class_id][rows, cols])
        candidates += zip(
            scores.tolist(), [class_id] * len(rows), rows.tolist(), cols.tolist(), strict=True
        )
    background = {k: float(np.median(cam[k])) for k in {c[1] for c in candidates}}
    detections = []
    for score, class_id, row, col in _top(candidates, max_detections):
        floor = background[class_id]
        level = floor + region_fraction * (float(cam[class_id, row, col]) - floor)
        x, y, w, h = _region(cam[class_id], row, col, level)
        box = (float(x * stride), float(y * stride), float(w * stride), float(h * stride))
        point = ((col + 0.5) * stride, (row + 0.5) * stride)
        detections.append(Detection(box, point, class_id, score))
    return detections


def scale_detections(detections: list[Detection], sx: float, sy: float) -> list[Detection]:
    """Detections with x coordinates multiplied by sx and y by sy (to undo a resize)."""
    return [
        replace(
            d,
            box=(d.box[0] * sx, d.box[1] * sy, d.box[2] * sx, d.box[3] * sy),
            point=(d.point[0] * sx, d.point[1] * sy),
        )
        for d in detections
    ]


def crop_to_image(detections: list[Detection], width: int, height: int) -> list[Detection]:
    """Drop detections centred outside (width, height) (padding) and clip the rest's boxes."""
    kept = []
    for d in detections:
        if not (0 <= d.point[0] < width and 0 <= d.point[1] < height):
            continue
        x0, y0 = max(d.box[0], 0.0), max(d.box[1], 0.0)
        x1, y1 = min(d.box[0] + d.box[2], float(width)), min(d.box[1] + d.box[3], float(height))
        box = (x0, y0, max(x1 - x0, 0.0), max(y1 - y0, 0.0))
        kept.append(Detection(box, d.point, d.class_id, d.score))  # replace() is 3x slower
    return kept


def decode_outputs(
    task: str, outputs: dict[str, np.ndarray], stride: int, score_threshold: float
) -> list[Detection]:
    """Decode one image's named raw outputs (no batch axis) of a "detector" or "cam" model."""
    if task == "detector":
        return decode_detector(
            outputs["heatmap"], outputs["size"], outputs["offset"], stride, score_threshold
        )
    if task == "cam":
        return decode_cam(outputs["cam"], outputs["logits"], stride, score_threshold)
    raise InvalidInput(f"unknown task {task!r}; expected 'detector' or 'cam'")
