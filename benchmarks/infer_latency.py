"""Inference service overhead and throughput, with its own load generator.

    .venv/bin/python benchmarks/infer_latency.py [--model MODEL.onnx] [--rounds 5]

Side by side in one run (medians over --rounds):
(a) p50 latency of Localize with a 512x512 raw uint8 tensor minus a direct ONNX Runtime call on
    the same prepared tensor (transport, pre- and post-processing count as overhead), also as a
    ratio; PNG decoding of a noisy 512x512 image measured on its own;
(b) throughput at concurrency 16 with dynamic batching (max batch 8) and without (max batch 1).
Without --model, a freshly initialised default detector is exported (latency does not depend
on the weights).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import grpc
import numpy as np
from loadgen import LOCALIZE, Call, LoadGenerator

from infer_service.localizer import OnnxLocalizer
from infer_service.server import create_server
from infer_service.settings import InferSettings
from synthloc.v1 import common_pb2, localization_pb2, localization_pb2_grpc


def default_model(folder: Path) -> Path:
    from synthloc.modelcard import ModelCard
    from training.config import DetectorConfig
    from training.export import export_onnx
    from training.models import build_model

    cfg = DetectorConfig(num_classes=2)
    card = ModelCard("detector", ("nucleus", "micronucleus"), 1, cfg.stride, cfg.size_divisor, 0.3)
    return export_onnx(build_model("detector", cfg).eval(), cfg, card, folder / "model.onnx")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def latencies(call, repeats: int) -> list[float]:
    call()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (512, 512), dtype=np.uint8)
    png = cv2.imencode(".png", image)[1].tobytes()
    tensor = common_pb2.Tensor(dtype=common_pb2.DTYPE_UINT8, shape=[512, 512], data=image.tobytes())
    figures: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "models"
        model_file = args.model or default_model(Path(tmp))
        (repo / "det" / "1").mkdir(parents=True)
        (repo / "det" / "1" / "model.onnx").write_bytes(model_file.read_bytes())
        local = OnnxLocalizer(model_file, ["CPUExecutionProvider"])
        prepared = local.prepare(image)[None]
        servers = {}
        for name, batch in (("batched", 8), ("unbatched", 1)):
            settings = InferSettings(
                models=repo,
                port=0,
                metrics_port=-1,
                poll_seconds=0,
                max_batch_size=batch,
            )
            servers[name], _ = create_server(settings)
            servers[name].start()
        channels = {k: grpc.insecure_channel(f"127.0.0.1:{s.port}") for k, s in servers.items()}
        stubs = {k: localization_pb2_grpc.LocalizationServiceStub(c) for k, c in channels.items()}
        request = localization_pb2.LocalizeRequest(tensor=tensor)
        load = LoadGenerator()
        for _ in range(args.rounds):
            direct = latencies(lambda: local.run(prepared), args.repeats)
            served = latencies(lambda: stubs["unbatched"].Localize(request), args.repeats)
            decode = latencies(
                lambda: cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED),
                args.repeats,
            )
            figures.setdefault("direct_onnxruntime_p50_ms", []).append(
                1000 * percentile(direct, 50)
            )
            figures.setdefault("service_p50_ms", []).append(1000 * percentile(served, 50))
            figures.setdefault("png_decode_p50_ms", []).append(1000 * percentile(decode, 50))
            for name in ("batched", "unbatched"):
                call = Call(
                    f"127.0.0.1:{servers[name].port}", LOCALIZE, request.SerializeToString()
                )
                rate, p99 = load.run(call, 16, args.seconds)
                figures.setdefault(f"{name}_c16_requests_per_s", []).append(rate)
                figures.setdefault(f"{name}_c16_p99_ms", []).append(p99)
        load.close()
        for c in channels.values():
            c.close()
        for s in servers.values():
            s.stop(grace=1)
    result = {k: round(statistics.median(v), 2) for k, v in figures.items()}
    result["overhead_p50_ms"] = round(
        result["service_p50_ms"] - result["direct_onnxruntime_p50_ms"], 2
    )
    result["service_over_direct"] = round(
        result["service_p50_ms"] / result["direct_onnxruntime_p50_ms"], 2
    )
    result["batching_speedup_c16"] = round(
        result["batched_c16_requests_per_s"] / result["unbatched_c16_requests_per_s"], 2
    )
    for key, value in result.items():
        print(f"{key:34s} {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
