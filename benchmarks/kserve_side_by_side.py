"""synthloc's inference service vs KServe's Python ModelServer, same model, same client.

    /path/to/kserve-venv/bin/python benchmarks/kserve_side_by_side.py \\
        --synthloc .venv/bin/synthloc --model model.onnx [--rounds 3] [--seconds 10]

Both servers serve the same ONNX file over the KServe v2 gRPC protocol; an unmodified
tritonclient sends a [1, 1, 512, 512] FP32 tensor from 16 closed-loop client threads. Rounds
alternate between the servers; medians of requests/s and p99 latency are reported. Run with
a Python that has `kserve` and `tritonclient[grpc]` (they cannot share synthloc's venv, which
needs protobuf 7); synthloc runs from its own venv as a subprocess.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc as triton


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, model: str, timeout: float = 120) -> None:
    client = triton.InferenceServerClient(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if client.is_model_ready(model):
                return
        except Exception:  # not listening yet
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} never became ready")


def load(url: str, model: str, seconds: float, concurrency: int) -> tuple[float, float]:
    image = np.random.default_rng(0).random((1, 1, 512, 512), dtype=np.float32)
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker() -> None:
        client = triton.InferenceServerClient(url)
        request = triton.InferInput("image", list(image.shape), "FP32")
        request.set_data_from_numpy(image)
        while time.monotonic() < stop:
            start = time.monotonic()
            client.infer(model, [request])
            with lock:
                latencies.append(time.monotonic() - start)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(latencies) / (time.monotonic() - began), 1000 * float(np.percentile(latencies, 99))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthloc", required=True, help="synthloc executable of its venv")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    ours_port, peer_grpc, peer_http = free_port(), free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "det" / "1"
        repo.mkdir(parents=True)
        (repo / "model.onnx").write_bytes(args.model.read_bytes())
        procs = [
            subprocess.Popen(
                [
                    args.synthloc,
                    "infer",
                    "serve",
                    "--models",
                    str(Path(tmp)),
                    "--port",
                    str(ours_port),
                    "--metrics-port",
                    "-1",
                ],
                stderr=subprocess.DEVNULL,
            ),
            subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__).with_name("kserve_peer_server.py")),
                    "--model",
                    str(args.model),
                    "--grpc-port",
                    str(peer_grpc),
                    "--http-port",
                    str(peer_http),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ),
        ]
        try:
            targets = {"synthloc": f"127.0.0.1:{ours_port}", "kserve": f"127.0.0.1:{peer_grpc}"}
            for url in targets.values():
                wait_ready(url, "det")
            figures: dict[str, list[float]] = {}
            for _ in range(args.rounds):
                for name, url in targets.items():
                    rate, p99 = load(url, "det", args.seconds, args.concurrency)
                    figures.setdefault(f"{name}_requests_per_s", []).append(rate)
                    figures.setdefault(f"{name}_p99_ms", []).append(p99)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=30)
    result = {k: round(statistics.median(v), 2) for k, v in figures.items()}
    result["throughput_ratio"] = round(
        result["synthloc_requests_per_s"] / result["kserve_requests_per_s"], 2
    )
    for key, value in result.items():
        print(f"{key:28s} {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
