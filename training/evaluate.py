"""Evaluate an exported ONNX localizer on real COCO images, through the served code path.

Images run whole (padded to the model's divisor) through infer_service.localizer.OnnxLocalizer,
exactly as the inference service runs them. Box AP uses every detection down to a low score
(a full precision-recall curve); the CAM hit rate uses the model card's threshold, i.e. the
points a user would be shown, and the hit rate at count ranks every point instead (as many
guesses as objects, whatever the threshold). torch-free.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from infer_service.localizer import OnnxLocalizer
from synthloc.coco import CocoDataset
from synthloc.errors import InvalidInput
from synthloc.imageio import read_image
from training.metrics import (
    cam_hit_rate,
    cam_hit_rate_at_count,
    coco_detection_metrics,
    detections_to_coco_results,
)

AP_SCORE_FLOOR = 0.01  # detections below this cannot move AP measurably


def category_map(model_classes: Sequence[str], ds: CocoDataset) -> dict[int, int]:
    """Model class index -> dataset category id, by name; InvalidInput for unknown categories."""
    by_name = {c["name"]: c["id"] for c in ds.categories}
    unknown = sorted(set(by_name) - set(model_classes))
    if unknown:
        raise InvalidInput(
            f"{ds.path}: categories {unknown} are unknown to the model, which localizes "
            f"{', '.join(model_classes)}; evaluate on a dataset with those classes"
        )
    return {i: by_name[name] for i, name in enumerate(model_classes) if name in by_name}


def evaluate(
    model_path: Path, coco_path: Path, providers: Sequence[str] | None = None
) -> dict[str, Any]:
    """mAP@0.5, mAP@[.5:.95] overall and per class (and the CAM hit rate) as a JSON-ready dict."""
    localizer = OnnxLocalizer(model_path, providers)
    card = localizer.card
    ds = CocoDataset.load(coco_path)
    mapping = category_map(card.class_names, ds)
    category_ids = [mapping.get(i, -1) for i in range(len(card.class_names))]
    boxes: list[dict[str, Any]] = []
    points: list[dict[str, Any]] = []
    ranked: list[dict[str, Any]] = []  # every point down to the floor, for the budgeted rate
    started = time.perf_counter()
    for image in tqdm(ds.images, desc=f"eval {model_path.name}", unit="image"):
        detections = [
            d
            for d in localizer.predict(read_image(ds.image_path(image)), AP_SCORE_FLOOR)
            if d.class_id in mapping
        ]
        image_boxes, image_points = detections_to_coco_results(
            image["id"], detections, category_ids
        )
        boxes.extend(image_boxes)
        ranked.extend(image_points)
        points.extend(p for p in image_points if p["score"] >= card.score_threshold)
    result: dict[str, Any] = {
        **coco_detection_metrics(ds, boxes),
        "model": str(model_path),
        "task": card.task,
        "provider": localizer.provider,
        "score_threshold": card.score_threshold,
        "seconds": round(time.perf_counter() - started, 2),
    }
    if card.task == "cam":
        hits = cam_hit_rate(ds, points)
        budgeted = cam_hit_rate_at_count(ds, ranked)
        result.update(
            hit_rate=hits["hit_rate"],
            point_precision=hits["point_precision"],
            point_f1=hits["point_f1"],
            hit_rate_at_count=budgeted["hit_rate_at_count"],
            per_class_hits={
                name: {
                    **{k: v[k] for k in ("hit_rate", "point_precision", "point_f1")},
                    "hit_rate_at_count": budgeted["per_class"][name],
                }
                for name, v in hits["per_class"].items()
            },
        )
    return result


def format_result(result: dict[str, Any]) -> str:
    """A small table for people."""

    def fmt(value: float | None) -> str:
        return "  n/a" if value is None else f"{value:.3f}"

    lines = [
        f"{result['model']} ({result['task']}, {result['provider']})",
        f"  {'class':<16}{'mAP@0.5':>9}{'mAP@.5:.95':>12}",
    ]
    lines.append(f"  {'all':<16}{fmt(result['map50']):>9}{fmt(result['map50_95']):>12}")
    for name, entry in result["per_class"].items():
        lines.append(f"  {name:<16}{fmt(entry['map50']):>9}{fmt(entry['map50_95']):>12}")
    if "hit_rate" in result:
        lines.append(
            f"  CAM hit rate {fmt(result['hit_rate'])}, "
            f"point precision {fmt(result['point_precision'])}, point F1 "
            f"{fmt(result['point_f1'])}"
        )
    return "\n".join(lines)
