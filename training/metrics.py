"""Localization metrics on COCO ground truth: box AP by pycocotools, point hit rate for CAMs.

Torch-free, so that `synthloc eval` and the tests run it anywhere. Box AP is COCOeval's, never a
re-implementation; this module only feeds it in-memory data and reads its precision array.

Conventions:
- `bbox` is `[x, y, width, height]`; a point `[x, y]` is in continuous pixel coordinates and
  lies in pixel `(floor(x), floor(y))`, so it is inside a box when `x <= px < x + width`.
- A class without ground-truth objects has no AP (COCOeval marks it -1): it is reported as
  None and left out of the overall mean, exactly as COCO's own summary leaves it out.
- Microscopy images hold hundreds of objects, so COCOeval's `maxDets` is raised to
  `MAX_DETECTIONS` (COCO's default of 100 would silently cap recall) and the largest is used.
"""

from __future__ import annotations

import contextlib
import io
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from synthloc.coco import CocoDataset, segmentation_to_mask
from synthloc.errors import InvalidInput

MAX_DETECTIONS = (1, 100, 1000)


def coco_detection_metrics(
    ground_truth: CocoDataset,
    predictions: list[dict[str, Any]],
    max_detections: Sequence[int] = MAX_DETECTIONS,
) -> dict[str, Any]:
    """COCO box mAP@0.5 and mAP@[.5:.95], overall and per class, computed by COCOeval."""
    results = [_box_result(p) for p in predictions]
    _check_references(ground_truth, results, "prediction")
    with _quiet():
        gt = _coco_api(ground_truth, _gt_annotations(ground_truth))
        # loadRes asserts on an empty list; an empty result set is what it would build.
        dt = gt.loadRes(results) if results else _coco_api(ground_truth, [])
        evaluator = COCOeval(gt, dt, iouType="bbox")
        evaluator.params.maxDets = sorted(max_detections)
        # Only 'all' is reported (micronuclei are all "small"); each extra range costs a pass.
        evaluator.params.areaRng = [[0.0, 1e10]]
        evaluator.params.areaRngLbl = ["all"]
        evaluator.evaluate()
        evaluator.accumulate()
    params = evaluator.params
    area_all = params.areaRngLbl.index("all")
    # precision is [iou threshold, recall threshold, class, area range, maxDets]; -1 = no GT.
    precision = evaluator.eval["precision"][:, :, :, area_all, -1]
    iou50 = int(np.flatnonzero(np.isclose(params.iouThrs, 0.5))[0])
    names = ground_truth.category_names
    per_class = {
        names[cat_id]: {
            "map50": _valid_mean(precision[iou50, :, k]),
            "map50_95": _valid_mean(precision[:, :, k]),
        }
        for k, cat_id in enumerate(params.catIds)
    }
    return {
        "map50": _valid_mean(precision[iou50]),
        "map50_95": _valid_mean(precision),
        "per_class": per_class,
        "images": len(ground_truth.images),
        "ground_truth_objects": len(ground_truth.annotations),
        "predictions": len(results),
        # The precision-recall curve at IoU 0.5 per class (COCO's interpolated precision at
        # 101 recall levels; None where the class has no ground truth).
        "pr50": {
            "recall": [round(float(r), 2) for r in params.recThrs],
            "precision": {
                names[cat_id]: _curve(precision[iou50, :, k])
                for k, cat_id in enumerate(params.catIds)
            },
        },
    }


def cam_hit_rate(ground_truth: CocoDataset, points: list[dict[str, Any]]) -> dict[str, Any]:
    """Fraction of GT objects containing a predicted point of their class, point precision,
    and their harmonic mean `point_f1`.

    An object contains a point if the point lies in its mask (when it has a segmentation) or
    else in its box. `hit_rate` is hits / objects, `point_precision` the fraction of points
    inside at least one GT object of their class; either is None where its denominator is 0.
    """
    for point in points:
        if len(point.get("point", ())) != 2:
            raise InvalidInput(f"a point result needs 'point' as [x, y], got {point!r:.80}")
    _check_references(ground_truth, points, "point")
    by_image_class: dict[tuple[int, int], list[list[float]]] = defaultdict(list)
    for point in points:
        by_image_class[(point["image_id"], point["category_id"])].append(point["point"])
    counts: dict[str, Counter[int]] = {
        key: Counter() for key in ("objects", "hits", "points", "points_inside")
    }
    images = {image["id"]: image for image in ground_truth.images}
    cat_ids = sorted(ground_truth.category_names)
    for image_id, anns in ground_truth.annotations_by_image().items():
        for cat_id in cat_ids:
            objects = [a for a in anns if a["category_id"] == cat_id]
            xy = np.asarray(by_image_class.get((image_id, cat_id), []), float).reshape(-1, 2)
            inside = _containment(objects, xy, images[image_id])
            counts["objects"][cat_id] += len(objects)
            counts["hits"][cat_id] += int(inside.any(axis=1).sum())
            counts["points"][cat_id] += len(xy)
            counts["points_inside"][cat_id] += int(inside.any(axis=0).sum())
    per_class = {
        name: _hit_summary({key: c[cat_id] for key, c in counts.items()})
        for cat_id, name in ground_truth.category_names.items()
    }
    overall = _hit_summary({key: sum(c.values()) for key, c in counts.items()})
    return {**overall, "per_class": per_class, "images": len(ground_truth.images)}


def cam_hit_rate_at_count(
    ground_truth: CocoDataset, points: list[dict[str, Any]]
) -> dict[str, Any]:
    """Hit rate with as many guesses as objects: per image and class, the |GT| best-scored
    points, and the fraction of GT objects that contain one of them (mask, else box).

    Threshold-free and budget-matched: a localizer cannot raise it by showing more points,
    only by ranking points on objects above points elsewhere. Points need a 'score'.
    """
    ranked: dict[tuple[int, int], list[tuple[float, list[float]]]] = defaultdict(list)
    for point in points:
        ranked[(point["image_id"], point["category_id"])].append((point["score"], point["point"]))
    _check_references(ground_truth, points, "point")
    objects: Counter[int] = Counter()
    hits: Counter[int] = Counter()
    images = {image["id"]: image for image in ground_truth.images}
    for image_id, anns in ground_truth.annotations_by_image().items():
        for cat_id in ground_truth.category_names:
            mine = [a for a in anns if a["category_id"] == cat_id]
            best = sorted(ranked.get((image_id, cat_id), []), key=lambda sp: -sp[0])[: len(mine)]
            xy = np.asarray([p for _, p in best], float).reshape(-1, 2)
            objects[cat_id] += len(mine)
            hits[cat_id] += int(_containment(mine, xy, images[image_id]).any(axis=1).sum())

    def rate(c: Iterable[int]) -> float | None:
        total = sum(objects[i] for i in c)
        return sum(hits[i] for i in c) / total if total else None

    return {
        "hit_rate_at_count": rate(objects),
        "per_class": {name: rate([i]) for i, name in ground_truth.category_names.items()},
    }


def detections_to_coco_results(
    image_id: int, detections: Iterable[Any], category_ids: Sequence[int]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """COCO box results and point results for one image's detections.

    Each detection needs `.class_id` (0-based index into `category_ids`, the dataset's
    category ids sorted by id) and `.score`; `.box` ([x, y, w, h]) and `.point` ([x, y]) are
    each optional (None or absent = no box / no point result).
    """
    boxes: list[dict[str, Any]] = []
    points: list[dict[str, Any]] = []
    for det in detections:
        class_id = int(det.class_id)
        if not 0 <= class_id < len(category_ids):
            raise InvalidInput(
                f"detection class {class_id} is outside the dataset's {len(category_ids)} "
                "categories; do the model's classes match the dataset's?"
            )
        common = {
            "image_id": int(image_id),
            "category_id": int(category_ids[class_id]),
            "score": float(det.score),
        }
        box = getattr(det, "box", None)
        if box is not None:
            boxes.append({**common, "bbox": [float(v) for v in box]})
        point = getattr(det, "point", None)
        if point is not None:
            points.append({**common, "point": [float(v) for v in point]})
    return boxes, points


def _box_result(prediction: dict[str, Any]) -> dict[str, Any]:
    # A fresh copy: loadRes writes area, id and a polygon into every result it is given.
    bbox = prediction.get("bbox")
    if bbox is None or len(bbox) != 4 or bbox[2] < 0 or bbox[3] < 0:
        raise InvalidInput(f"a box result needs 'bbox' as [x, y, w, h], got {prediction!r:.80}")
    return {
        "image_id": prediction.get("image_id"),
        "category_id": prediction.get("category_id"),
        "bbox": [float(v) for v in bbox],
        "score": float(prediction["score"]),
    }


def _check_references(ds: CocoDataset, results: list[dict[str, Any]], kind: str) -> None:
    image_ids = {image["id"] for image in ds.images}
    names = ds.category_names
    for result in results:
        if result.get("image_id") not in image_ids:
            raise InvalidInput(
                f"a {kind} refers to image {result.get('image_id')!r}, which is not in the "
                "ground truth"
            )
        if result.get("category_id") not in names:
            known = ", ".join(f"{i} {n}" for i, n in sorted(names.items()))
            raise InvalidInput(
                f"a {kind} has category {result.get('category_id')!r}, which is not in the "
                f"ground truth (known: {known})"
            )


def _gt_annotations(ds: CocoDataset) -> list[dict[str, Any]]:
    # COCOeval reads 'area' and 'iscrowd', which COCO files may leave out.
    return [
        {
            **ann,
            "area": ann.get("area", ann["bbox"][2] * ann["bbox"][3]),
            "iscrowd": ann.get("iscrowd", 0),
        }
        for ann in ds.annotations
    ]


def _coco_api(ds: CocoDataset, annotations: list[dict[str, Any]]) -> COCO:
    coco = COCO()  # no file: filled from memory, then indexed
    coco.dataset = {"images": ds.images, "annotations": annotations, "categories": ds.categories}
    coco.createIndex()
    return coco


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # pycocotools prints progress and timings to stdout, which belongs to the CLI's JSON.
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _curve(values: np.ndarray) -> list[float] | None:
    """A precision curve as rounded floats, or None for a class without ground truth."""
    if (values < 0).all():
        return None
    return [round(float(v), 4) for v in np.maximum(values, 0.0)]


def _valid_mean(values: np.ndarray) -> float | None:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else None


def _containment(
    objects: list[dict[str, Any]], xy: np.ndarray, image: dict[str, Any]
) -> np.ndarray:
    """Bool [object, point]: the point lies in the object's mask, or box if it has none."""
    if not objects or not len(xy):
        return np.zeros((len(objects), len(xy)), bool)
    x0, y0, w, h = np.asarray([a["bbox"] for a in objects], float).T[:, :, None]
    px, py = xy[:, 0], xy[:, 1]
    inside = (x0 <= px) & (px < x0 + w) & (y0 <= py) & (py < y0 + h)
    height, width = int(image["height"]), int(image["width"])
    col, row = np.floor(px).astype(int), np.floor(py).astype(int)
    for i, ann in enumerate(objects):
        # The mask is the object; its box (tight to the mask) only says where decoding is needed.
        if ann.get("segmentation") and inside[i].any():
            candidates = np.flatnonzero(inside[i])
            candidates = candidates[
                (col[candidates] >= 0)
                & (col[candidates] < width)
                & (row[candidates] >= 0)
                & (row[candidates] < height)
            ]
            mask = segmentation_to_mask(ann["segmentation"], height, width)
            inside[i] = False
            inside[i, candidates] = mask[row[candidates], col[candidates]]
    return inside


def _hit_summary(counts: dict[str, int]) -> dict[str, Any]:
    objects, points = counts["objects"], counts["points"]
    hit_rate = counts["hits"] / objects if objects else None
    precision = counts["points_inside"] / points if points else None
    # Hit rate alone rewards spraying points; their harmonic mean with precision does not.
    if hit_rate is None:
        f1 = None
    elif not precision or not hit_rate:  # no points, or none of them right
        f1 = 0.0
    else:
        f1 = 2 * hit_rate * precision / (hit_rate + precision)
    return {
        "hit_rate": hit_rate,
        "point_precision": precision,
        "point_f1": f1,
        **{key: int(value) for key, value in counts.items()},
    }
