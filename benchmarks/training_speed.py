"""Training throughput and ONNX Runtime latency of the default localizers on this machine.

    .venv/bin/python benchmarks/training_speed.py [--coco TRAIN.json] [--rounds 5]

Side by side in one run, medians over --rounds:
1. training images/s at 256x256, batch 8 (real mnfinder crops, forward + backward + AdamW),
   for the detector and the CAM classifier;
2. detector latency per 512x512 image, batch 1 and 8: ONNX Runtime CPU vs torch eager.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from infer_service.localizer import OnnxLocalizer
from synthloc.datasets.fetch import default_root
from synthloc.modelcard import ModelCard
from training.coco_data import CocoCrops
from training.config import CONFIGS
from training.data import DataPosition, collate
from training.export import export_onnx
from training.models import build_model
from training.objective import compute_loss


def train_rate(task: str, crops: CocoCrops, steps: int, batch: int) -> float:
    cfg = CONFIGS[task](num_classes=len(crops.class_names))
    model = build_model(task, cfg).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    stream = iter(crops)
    batches = [collate([next(stream) for _ in range(batch)]) for _ in range(steps + 2)]
    for images, targets in batches[:2]:  # warm-up
        loss, _ = compute_loss(task, model(images), targets, cfg)
        loss.backward()
    start = time.perf_counter()
    for images, targets in batches[2:]:
        loss, _ = compute_loss(task, model(images), targets, cfg)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return steps * batch / (time.perf_counter() - start)


def latency_ms(run, batch: np.ndarray, repeats: int) -> float:
    run(batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(batch)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times) / len(batch)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coco", type=Path, default=default_root() / "mnfinder/train.json")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="training steps per round")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    crops = CocoCrops(args.coco, DataPosition(1), crop=256)
    cfg = CONFIGS["detector"](num_classes=len(crops.class_names))
    model = build_model("detector", cfg).eval()
    card = ModelCard(
        "detector", tuple(crops.class_names), cfg.in_channels, cfg.stride, cfg.size_divisor, 0.3
    )
    figures: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(model, cfg, card, Path(tmp) / "detector.onnx")
        localizer = OnnxLocalizer(onnx_path, ["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        for _ in range(args.rounds):
            for task in ("detector", "cam"):
                figures.setdefault(f"train_{task}_images_per_s", []).append(
                    train_rate(task, crops, args.steps, 8)
                )
            for batch in (1, 8):
                images = rng.random((batch, 1, 512, 512), dtype=np.float32)
                figures.setdefault(f"onnxruntime_ms_per_image_batch{batch}", []).append(
                    latency_ms(localizer.run, images, 10)
                )
                tensor = torch.from_numpy(images)
                with torch.inference_mode():
                    figures.setdefault(f"torch_eager_ms_per_image_batch{batch}", []).append(
                        latency_ms(model, tensor, 10)
                    )
    result = {k: round(statistics.median(v), 2) for k, v in figures.items()}
    result["params_detector"] = sum(p.numel() for p in model.parameters())
    result["params_cam"] = sum(
        p.numel() for p in build_model("cam", CONFIGS["cam"](num_classes=2)).parameters()
    )
    result["threads"] = args.threads
    for batch in (1, 8):
        result[f"torch_over_onnxruntime_batch{batch}"] = round(
            result[f"torch_eager_ms_per_image_batch{batch}"]
            / result[f"onnxruntime_ms_per_image_batch{batch}"],
            2,
        )
    for key, value in result.items():
        print(f"{key:40s} {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
