"""Does localizing an image in tiles give what localizing it whole gives?

Serves a detector (an ONNX file exported by synthloc) and localizes every image of a mnfinder
split three ways over a real channel: whole, in tiles scaled by the whole image's percentiles
(`LocalizationClient.localize_tiled`), and in tiles each scaled by its own percentiles (what a
client that cuts tiles itself would get). Reports box mAP@0.5 on the split's ground truth for
each, how many of the whole-image detections the tiled runs find again (IoU >= 0.5, same
class), and the wall time of each run.

    .venv/bin/python benchmarks/tiling_agreement.py --model MODEL.onnx \\
        [--split test] [--tile 256] [--overlap 64] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from infer_service.client import LocalizationClient
from infer_service.client_types import Found
from infer_service.decoding import decode_image_bytes
from infer_service.server import create_server
from infer_service.settings import InferSettings
from infer_service.tiling import merge, plan_tiles
from synthloc.coco import CocoDataset
from synthloc.datasets.fetch import default_root
from training.metrics import coco_detection_metrics, detections_to_coco_results

ARMS = ("whole", "tiles", "tiles_own_percentiles")


def own_percentile_tiles(
    client: LocalizationClient, pixels: np.ndarray, tile: int, overlap: int
) -> list[Found]:
    """Tiles sent as separate images, each scaled by its own percentiles, merged alike."""
    tiles = plan_tiles(*pixels.shape[:2], tile, overlap)
    items = client.localize_stream(pixels[t.top : t.bottom, t.left : t.right] for t in tiles)
    return merge(tiles, [item.result.detections for item in items if item.result is not None])


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    union = aw * ah + bw * bh - w * h
    return w * h / union if union > 0 else 0.0


def found_again(reference: list[Found], other: list[Found]) -> int:
    """How many of `reference` have a match in `other` (greedy by score, IoU >= 0.5, class)."""
    free = list(other)
    hits = 0
    for ref in sorted(reference, key=lambda f: -f.score):
        best = max(
            (f for f in free if f.class_id == ref.class_id),
            key=lambda f: iou(ref.box, f.box),
            default=None,
        )
        if best is not None and iou(ref.box, best.box) >= 0.5:
            free.remove(best)
            hits += 1
    return hits


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    dataset = CocoDataset.load(default_root() / "mnfinder" / f"{args.split}.json")
    category_ids = sorted(dataset.category_names)
    with tempfile.TemporaryDirectory() as root:
        version = Path(root) / "det" / "1"
        version.mkdir(parents=True)
        (version / "model.onnx").symlink_to(args.model.resolve())
        server, port = create_server(InferSettings(models=Path(root), port=0, metrics_port=-1))
        server.start()
        try:
            with LocalizationClient(f"127.0.0.1:{port}", timeout=600) as client:
                found, seconds, tiles = run_arms(client, dataset, args.tile, args.overlap)
        finally:
            server.stop(grace=1)
    figures: dict[str, Any] = {
        "images": len(dataset.images),
        "tile": args.tile,
        "overlap": args.overlap,
        "tiles": tiles,
    }
    for arm in ARMS:
        boxes = [
            box
            for image, founds in zip(dataset.images, found[arm], strict=True)
            for box in detections_to_coco_results(image["id"], founds, category_ids)[0]
        ]
        figures[f"{arm}_map50"] = round(coco_detection_metrics(dataset, boxes)["map50"], 4)
        figures[f"{arm}_detections"] = sum(len(f) for f in found[arm])
        figures[f"{arm}_seconds"] = round(seconds[arm], 2)
    whole = sum(len(f) for f in found["whole"])
    for arm in ARMS[1:]:
        hits = sum(found_again(w, t) for w, t in zip(found["whole"], found[arm], strict=True))
        figures[f"{arm}_find_whole_detections"] = round(hits / max(whole, 1), 4)
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def run_arms(
    client: LocalizationClient, dataset: CocoDataset, tile: int, overlap: int
) -> tuple[dict[str, list[list[Found]]], dict[str, float], int]:
    """Every image through every arm: detections per arm and image, seconds per arm, tiles."""
    found: dict[str, list[list[Found]]] = {arm: [] for arm in ARMS}
    seconds = dict.fromkeys(ARMS, 0.0)
    tiles = 0
    for image in dataset.images:
        data = dataset.image_path(image).read_bytes()
        pixels = decode_image_bytes(data, 1 << 31).pixels
        tiles += len(plan_tiles(*pixels.shape[:2], tile, overlap))
        for arm in ARMS:
            started = time.monotonic()
            if arm == "whole":
                detections = client.localize(data).detections
            elif arm == "tiles":
                detections = client.localize_tiled(data, tile=tile, overlap=overlap).detections
            else:
                detections = own_percentile_tiles(client, pixels, tile, overlap)
            seconds[arm] += time.monotonic() - started
            found[arm].append(detections)
    return found, seconds, tiles


if __name__ == "__main__":
    raise SystemExit(main())
