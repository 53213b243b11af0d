"""What the engine process's hop costs one request: RemoteBatcher.call against an in-process
DynamicBatcher.call, same model, same prepared image, alternating call by call.

    .venv/bin/python benchmarks/engine_hop.py --model model.onnx [--sides 64,512,1024]

For each image side it reports the p50 of both and the p50 of their paired differences (the
hop: the socket both ways, the engine's threads, the pickled answer), with both sides idle so
that no batching is involved (`--processes N --engine-process`, infer_service.engine_process).
On the 2-core VM, 2026-11-27, the analytic test model, images through the socket: 0.22 ms at
64x64, 0.56-0.78 ms at 512x512, 1.6-1.8 ms at 1024x1024 (runs of 200-300 repeats). With the
shared slots (infer_service.engine_wire.Slots), which spare the engine its copy from the
socket: 0.80-0.87 ms at 512x512, no better, and 1.35-1.55 ms at 1024x1024.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from infer_service.batcher import DynamicBatcher
from infer_service.engine_process import EngineProcess, RemoteBatcher
from infer_service.server import load_repository
from infer_service.settings import InferSettings
from synthloc.memory import keep_freed_memory


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--sides", default="64,512,1024", help="image sides, comma-separated")
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    keep_freed_memory()  # as in a replica
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "m" / "1").mkdir(parents=True)
        (Path(tmp) / "m" / "1" / "model.onnx").write_bytes(args.model.read_bytes())
        sides = [int(side) for side in args.sides.split(",")]
        warm = ",".join(map(str, sides))
        settings = InferSettings(models=Path(tmp), metrics_port=-1, poll_seconds=0, warm_sizes=warm)
        handle = EngineProcess.spawn(settings, 30)
        remote = RemoteBatcher(handle.ready(), 64)
        local = DynamicBatcher(8)
        model = load_repository(settings).get("m")
        try:
            for side in sides:
                shape = (model.localizer.card.input_channels, side, side)
                image = np.random.default_rng(0).random(shape, dtype=np.float32)
                times: dict[str, list[float]] = {"engine": [], "here": []}
                for i in range(args.repeats + 20):
                    for name, batcher in (("engine", remote), ("here", local)):
                        began = time.perf_counter()
                        batcher.call(model, image, None)
                        if i >= 20:  # the first calls warm both
                            times[name].append(time.perf_counter() - began)
                pairs = zip(times["engine"], times["here"], strict=True)
                hop = statistics.median(a - b for a, b in pairs)
                print(
                    f"side {side}: engine p50 {1000 * statistics.median(times['engine']):.3f} ms, "
                    f"here p50 {1000 * statistics.median(times['here']):.3f} ms, "
                    f"hop (paired p50) {1000 * hop:.3f} ms",
                    flush=True,
                )
        finally:
            remote.stop()
            local.stop(10)
            handle.stop(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
