"""Box AP (pycocotools) and CAM point hit rate against hand-checked cases."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from synthloc.coco import CocoDataset, mask_annotation
from synthloc.errors import InvalidInput
from training.metrics import (
    cam_hit_rate,
    cam_hit_rate_at_count,
    coco_detection_metrics,
    detections_to_coco_results,
)

CATEGORIES = [{"id": 1, "name": "nucleus"}, {"id": 2, "name": "micronucleus"}]
# COCOeval divides by tp + fp + np.spacing(1), so a perfect precision is 1 - 2e-16, not 1.
approx = pytest.approx


def boxes_dataset(boxes: list[tuple[int, list[float]]], size: int = 100) -> CocoDataset:
    """One image holding box-only annotations given as (category_id, bbox)."""
    image = {"id": 1, "file_name": "a.png", "width": size, "height": size}
    anns = [
        {"id": i + 1, "image_id": 1, "category_id": cat, "bbox": bbox}
        for i, (cat, bbox) in enumerate(boxes)
    ]
    return CocoDataset([image], anns, CATEGORIES)


def box(bbox: list[float], score: float = 1.0, cat: int = 1) -> dict[str, Any]:
    return {"image_id": 1, "category_id": cat, "bbox": bbox, "score": score}


def point(xy: list[float], cat: int = 1, image_id: int = 1, score: float = 1.0) -> dict[str, Any]:
    return {"image_id": image_id, "category_id": cat, "point": xy, "score": score}


def test_perfect_predictions_score_one_overall_and_per_class() -> None:
    gt = boxes_dataset([(1, [5, 5, 20, 20]), (1, [40, 40, 30, 10]), (2, [80, 80, 3, 4])])
    result = coco_detection_metrics(
        gt, [box(a["bbox"], cat=a["category_id"]) for a in gt.annotations]
    )
    assert result["map50"] == approx(1.0) and result["map50_95"] == approx(1.0)
    for name in ("nucleus", "micronucleus"):
        assert result["per_class"][name] == {"map50": approx(1.0), "map50_95": approx(1.0)}
    assert (result["images"], result["ground_truth_objects"], result["predictions"]) == (1, 3, 3)


def test_no_predictions_score_zero() -> None:
    gt = boxes_dataset([(1, [5, 5, 20, 20]), (2, [50, 50, 4, 4])])
    result = coco_detection_metrics(gt, [])
    assert (result["map50"], result["map50_95"], result["predictions"]) == (0.0, 0.0, 0)
    assert result["per_class"]["micronucleus"] == {"map50": 0.0, "map50_95": 0.0}


def test_shifted_box_by_5px_has_iou_one_third_and_misses() -> None:
    result = coco_detection_metrics(boxes_dataset([(1, [0, 0, 10, 10])]), [box([5, 0, 10, 10])])
    assert (result["map50"], result["map50_95"]) == (0.0, 0.0)  # IoU 50/150 < 0.5


def test_shifted_box_by_2px_passes_four_of_ten_thresholds() -> None:
    result = coco_detection_metrics(boxes_dataset([(1, [0, 0, 10, 10])]), [box([2, 0, 10, 10])])
    # IoU 80/120 = 0.667 clears 0.50, 0.55, 0.60, 0.65 and no higher threshold.
    assert result["map50"] == approx(1.0)
    assert result["map50_95"] == approx(0.4)


def test_false_positive_ranked_first_gives_coco_101_point_ap() -> None:
    gt = boxes_dataset([(1, [0, 0, 10, 10]), (1, [50, 50, 10, 10])])
    found, stray = box([0, 0, 10, 10], score=0.9), box([80, 80, 10, 10], score=0.95)
    # Ranked: FP then TP -> recall [0, .5], precision [0, .5], made monotone -> [.5, .5].
    # Recall thresholds 0.00..0.50 (51 of 101) read precision 0.5, the other 50 read 0.
    assert coco_detection_metrics(gt, [found, stray])["map50"] == approx(51 * 0.5 / 101)
    # Ranked TP first: precision 1 up to recall 0.5 -> 51 of 101 thresholds at 1.
    found["score"] = 0.99
    assert coco_detection_metrics(gt, [found, stray])["map50"] == approx(51 / 101)


def test_class_without_ground_truth_is_none_and_left_out_of_the_mean() -> None:
    gt = boxes_dataset([(1, [0, 0, 10, 10])])
    predictions = [box([0, 0, 10, 10]), box([30, 30, 5, 5], cat=2)]
    result = coco_detection_metrics(gt, predictions)
    assert result["per_class"]["micronucleus"] == {"map50": None, "map50_95": None}
    assert result["map50"] == approx(1.0) and result["map50_95"] == approx(1.0)
    assert coco_detection_metrics(boxes_dataset([]), [])["map50"] is None


def test_hundreds_of_objects_per_image_all_count() -> None:
    grid = [(1, [float(x * 10), float(y * 10), 8.0, 8.0]) for x in range(20) for y in range(15)]
    gt = boxes_dataset(grid, size=200)
    predictions = [box(b, score=1.0 - i / 1000) for i, (_, b) in enumerate(grid)]
    assert coco_detection_metrics(gt, predictions)["map50_95"] == approx(1.0)
    # COCO's default cap of 100 detections per image keeps recall at 1/3: 34 of 101 thresholds.
    capped = coco_detection_metrics(gt, predictions, max_detections=(1, 10, 100))
    assert capped["map50"] == approx(34 / 101)


def test_results_are_not_mutated_and_nothing_is_printed(capsys: pytest.CaptureFixture) -> None:
    predictions = [box([0, 0, 10, 10])]
    coco_detection_metrics(boxes_dataset([(1, [0, 0, 10, 10])]), predictions)
    assert predictions == [box([0, 0, 10, 10])]
    assert capsys.readouterr().out == ""


def test_predictions_outside_the_ground_truth_are_rejected() -> None:
    gt = boxes_dataset([(1, [0, 0, 10, 10])])
    with pytest.raises(InvalidInput, match="category 7"):
        coco_detection_metrics(gt, [box([0, 0, 10, 10], cat=7)])
    with pytest.raises(InvalidInput, match="image 3"):
        coco_detection_metrics(gt, [{**box([0, 0, 10, 10]), "image_id": 3}])
    with pytest.raises(InvalidInput, match="bbox"):
        coco_detection_metrics(gt, [box([0, 0, 10])])
    with pytest.raises(InvalidInput, match="category 7"):
        cam_hit_rate(gt, [point([1, 1], cat=7)])


def hit_dataset() -> CocoDataset:
    """40x40: an L-shaped nucleus mask, a box-only nucleus and a box-only micronucleus."""
    mask = np.zeros((40, 40), bool)
    mask[2, 2] = mask[2, 3] = mask[3, 2] = True  # bbox [2, 2, 2, 2]; pixel (row 3, col 3) is out
    masked = mask_annotation(mask, 1, 1, 1)
    boxed = {"id": 2, "image_id": 1, "category_id": 1, "bbox": [10, 10, 5, 5]}
    micro = {"id": 3, "image_id": 1, "category_id": 2, "bbox": [30, 30, 4, 4]}
    image = {"id": 1, "file_name": "a.png", "width": 40, "height": 40}
    return CocoDataset([image], [masked, boxed, micro], CATEGORIES)


def test_hit_rate_uses_masks_boxes_and_classes() -> None:
    points = [
        point([3.7, 2.2]),  # pixel (row 2, col 3): in the mask -> hits the masked nucleus
        point([3.5, 3.5]),  # in that nucleus's box but not its mask
        point([15.0, 12.0]),  # x == x0 + w: just right of the boxed nucleus
        point([12, 12], cat=2),  # inside the boxed nucleus, but a micronucleus point
        point([33.9, 30.0], cat=2),  # inside the micronucleus box
    ]
    result = cam_hit_rate(hit_dataset(), points)
    nucleus, micro = result["per_class"]["nucleus"], result["per_class"]["micronucleus"]
    assert (nucleus["objects"], nucleus["hits"], nucleus["hit_rate"]) == (2, 1, 0.5)
    assert (nucleus["points"], nucleus["points_inside"]) == (3, 1)
    assert nucleus["point_precision"] == approx(1 / 3)
    assert (micro["hit_rate"], micro["point_precision"]) == (1.0, 0.5)
    assert result["hit_rate"] == approx(2 / 3) and result["point_precision"] == approx(2 / 5)
    # harmonic mean: 2 * (2/3) * (2/5) / (2/3 + 2/5) = 1/2
    assert result["point_f1"] == approx(0.5) and micro["point_f1"] == approx(2 / 3)
    assert (result["objects"], result["points"], result["images"]) == (3, 5, 1)


def test_each_object_hit_once_and_each_point_counted() -> None:
    points = [point([14.99, 14.99]), point([10, 10]), point([2, 2]), point([39, 0])]
    nucleus = cam_hit_rate(hit_dataset(), points)["per_class"]["nucleus"]
    assert (nucleus["hits"], nucleus["hit_rate"]) == (2, 1.0)
    assert (nucleus["points_inside"], nucleus["point_precision"]) == (3, 0.75)


def test_hit_rate_without_points_or_ground_truth() -> None:
    result = cam_hit_rate(hit_dataset(), [])
    assert (result["hit_rate"], result["point_precision"], result["point_f1"]) == (0.0, None, 0.0)
    only_nuclei = boxes_dataset([(1, [0, 0, 10, 10])])
    micro = cam_hit_rate(only_nuclei, [point([5, 5], cat=2)])["per_class"]["micronucleus"]
    assert (micro["hit_rate"], micro["point_precision"], micro["point_f1"]) == (None, 0.0, None)


def test_hit_rate_at_microscopy_scale() -> None:
    rng = np.random.default_rng(0)
    images, anns, points = [], [], []
    for image_id in range(1, 17):
        images.append({"id": image_id, "file_name": f"{image_id}.png", "width": 512, "height": 512})
        for k in range(300):
            mask = np.zeros((512, 512), bool, order="F")  # what RLE encoding reads
            y, x = rng.integers(0, 500, 2)
            mask[y : y + 6, x : x + 6] = True
            anns.append(mask_annotation(mask, len(anns) + 1, image_id, 1 + k % 2))
            points.append(point([x + 3.0, y + 3.0], cat=1 + k % 2, image_id=image_id))
        # 700 more points per image, each far from every object (the bottom-right strip).
        points += [point([510.5, 510.5], image_id=image_id)] * 700
    result = cam_hit_rate(CocoDataset(images, anns, CATEGORIES), points)
    assert (result["objects"], result["points"]) == (4800, 16000)
    assert result["hit_rate"] == 1.0
    assert result["point_precision"] == approx(4800 / 16000)


def test_detections_convert_to_box_and_point_results() -> None:
    detections = [
        SimpleNamespace(box=(1, 2, 3, 4), class_id=1, score=np.float32(0.5), point=(2.5, 4)),
        SimpleNamespace(box=None, class_id=0, score=0.25, point=(7, 8)),
    ]
    boxes, points = detections_to_coco_results(3, detections, [1, 5])
    assert boxes == [{"image_id": 3, "category_id": 5, "score": 0.5, "bbox": [1.0, 2.0, 3.0, 4.0]}]
    assert points == [
        {"image_id": 3, "category_id": 5, "score": 0.5, "point": [2.5, 4.0]},
        {"image_id": 3, "category_id": 1, "score": 0.25, "point": [7.0, 8.0]},
    ]
    with pytest.raises(InvalidInput, match="class 2"):
        detections_to_coco_results(3, [SimpleNamespace(box=None, class_id=2, score=1.0)], [1, 5])


def test_ground_truth_as_detections_round_trips_to_perfect_scores() -> None:
    gt = hit_dataset()
    category_ids = sorted(c["id"] for c in gt.categories)
    detections = [
        SimpleNamespace(
            box=a["bbox"],
            class_id=category_ids.index(a["category_id"]),
            score=1.0,
            point=(a["bbox"][0] + 0.5, a["bbox"][1] + 0.5),
        )
        for a in gt.annotations
    ]
    boxes, points = detections_to_coco_results(1, detections, category_ids)
    assert coco_detection_metrics(gt, boxes)["map50_95"] == approx(1.0)
    assert cam_hit_rate(gt, points)["hit_rate"] == 1.0


def test_hit_rate_at_count_gives_each_class_as_many_guesses_as_objects() -> None:
    # Two nuclei, one micronucleus: the two best nucleus points and the best micronucleus point
    # count, whatever else was predicted.
    points = [
        point([12, 12], score=0.9),  # the boxed nucleus
        point([39, 0], score=0.8),  # background, outranks ...
        point([2.5, 2.5], score=0.7),  # ... this hit on the masked nucleus: beyond the budget
        point([31, 31], cat=2, score=0.2),  # the micronucleus, alone in its class
    ]
    result = cam_hit_rate_at_count(hit_dataset(), points)
    assert result["per_class"] == {"nucleus": 0.5, "micronucleus": 1.0}
    assert result["hit_rate_at_count"] == approx(2 / 3)
    # Spraying more points cannot raise it; ranking the hit higher does.
    spray = [point([x, 39], score=0.1) for x in range(40)]
    assert cam_hit_rate_at_count(hit_dataset(), points + spray)["hit_rate_at_count"] == approx(
        2 / 3
    )
    better = [{**p, "score": 0.85} if p["point"] == [2.5, 2.5] else p for p in points]
    assert cam_hit_rate_at_count(hit_dataset(), better)["hit_rate_at_count"] == 1.0
    assert cam_hit_rate_at_count(hit_dataset(), [])["hit_rate_at_count"] == 0.0
