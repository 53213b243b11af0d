"""ONNX Runtime latency and throughput per provider and batch size, through the service's code.

    python benchmarks/infer_gpu.py --model model.onnx [--batches 1 8 32] [--repeats 100]
        [--providers cuda cpu] [--json out.json]

For each provider (the CUDA provider exactly as the service configures it: cuDNN's heuristic
convolution search and the service's session options), and each batch of 512x512 images
prepared by the service's own preprocessing: p50 and p99 of one run (inputs copied in and
outputs out, as in serving), and images/s over back-to-back runs. Then batches whose shape
(batch size, image size) changes from run to run, as a dynamic batcher forms them, on one
session and padded to powers of two with a session per shape (`infer serve --pad-batches`).
The providers run one after the other in one process, so their figures compare. Written for
the device machine (see benchmarks/gpu/device.sh); with `--providers cpu` it runs anywhere.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from infer_service.localizer import OnnxLocalizer, batch_buckets
from infer_service.repository import providers_for, session_options

_DEVICES = {"cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}


def gpu_name() -> str:
    """nvidia-smi's name and driver of GPU 0, or '' without one."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else ""


def measure(localizer: OnnxLocalizer, batch: np.ndarray, repeats: int) -> dict[str, float]:
    """p50/p99 of single runs in ms, and images/s over `repeats` back-to-back runs."""
    for _ in range(5):  # warm-up: cuDNN picks kernels, the arena grows to its size
        localizer.run(batch)
    times = []
    began = time.perf_counter()
    for _ in range(repeats):
        start = time.perf_counter()
        localizer.run(batch)
        times.append(time.perf_counter() - start)
    elapsed = time.perf_counter() - began
    return {
        "p50_ms": round(1000 * statistics.median(times), 3),
        "p99_ms": round(1000 * float(np.percentile(times, 99)), 3),
        "images_per_s": round(repeats * batch.shape[0] / elapsed, 1),
    }


# What a dynamic batcher forms under uneven load from images of three sizes: (batch, side).
MIXED = ((8, 512), (5, 512), (3, 768), (8, 768), (2, 384), (7, 512), (1, 768), (6, 384))


def measure_mixed(localizer: OnnxLocalizer, repeats: int) -> dict:
    """Batches whose shape changes from run to run (MIXED, cycled): p50/p99 of one run and
    images/s; and the median first run of each shape, untimed otherwise (with a session per
    shape, that run makes the session)."""
    rng = np.random.default_rng(0)
    prepared = {
        side: localizer.prepare(rng.integers(0, 256, (side, side), dtype=np.uint8))
        for _, side in MIXED
    }
    batches = [np.stack([prepared[side]] * size) for size, side in MIXED]
    first = []
    for batch in batches:
        start = time.perf_counter()
        localizer.run(batch)
        first.append(time.perf_counter() - start)
    times, images = [], 0
    began = time.perf_counter()
    for i in range(repeats):
        batch = batches[i % len(batches)]
        start = time.perf_counter()
        localizer.run(batch)
        times.append(time.perf_counter() - start)
        images += batch.shape[0]
    elapsed = time.perf_counter() - began
    return {
        "p50_ms": round(1000 * statistics.median(times), 3),
        "p99_ms": round(1000 * float(np.percentile(times, 99)), 3),
        "images_per_s": round(images / elapsed, 1),
        "first_run_p50_ms": round(1000 * statistics.median(first), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--providers", nargs="+", choices=sorted(_DEVICES), default=["cuda", "cpu"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not args.model.is_file():
        print(f"error: {args.model}: no such model file", file=sys.stderr)
        return 2
    image = np.random.default_rng(0).integers(0, 256, (512, 512), dtype=np.uint8)
    result: dict = {
        "gpu": gpu_name(),
        "onnxruntime": ort.__version__,
        "python": platform.python_version(),
        "model": args.model.name,
        "image": "512x512 uint8",
        "runs": {},
    }
    for device in args.providers:
        localizer = OnnxLocalizer(args.model, providers_for(device), session_options())
        if localizer.provider != _DEVICES[device]:
            ran = localizer.provider
            print(f"error: asked for {device}, ONNX Runtime runs on {ran}", file=sys.stderr)
            return 1
        prepared = localizer.prepare(image)
        for size in args.batches:
            figures = measure(localizer, np.stack([prepared] * size), args.repeats)
            result["runs"][f"{device}_batch{size}"] = figures
            print(f"{device:5s} batch {size:3d}  {figures}", flush=True)
        # Varying shapes on one session, then batches padded to powers of two with a session
        # per shape, as `infer serve --pad-batches` runs them.
        for name in ("mixed_one_session", "mixed_padded"):
            if name == "mixed_padded":
                localizer.session_per_shape(batch_buckets(max(size for size, _ in MIXED)))
            figures = measure_mixed(localizer, args.repeats)
            result["runs"][f"{device}_{name}"] = figures
            print(f"{device:5s} {name:18s} {figures}", flush=True)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
