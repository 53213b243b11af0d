"""synthloc's inference service vs KServe's Python ModelServer, same model, same client.

    /path/to/kserve-venv/bin/python benchmarks/kserve_side_by_side.py \\
        --synthloc .venv/bin/synthloc --model model.onnx [--rounds 3] [--seconds 10] \\
        [--checkout old=/path/to/other/checkout --checkout new=.] \\
        [--checkout-args new='--max-queue-delay-ms 2']

The servers serve the same ONNX file over the KServe v2 gRPC protocol; an unmodified
tritonclient sends a [1, 1, 512, 512] FP32 tensor from 16 closed-loop clients, each with its
own connection, spread over --client-processes processes (benchmarks/loadgen.py). Rounds
alternate between the servers; medians of requests/s and p99 latency are reported. Each
--checkout runs synthloc with PYTHONPATH set to that checkout (default: synthloc as
installed); --checkout-args adds `infer serve` flags to one of them, so one checkout can run
twice with a setting changed. KServe runs twice: "kserve" with ONNX Runtime's default session
options, as a KServe user would write it, and "kserve_alike" with synthloc's options
(threads sleep between runs instead of spinning), so that ONNX Runtime is configured alike on
both sides. Both venvs must have the same onnxruntime version (check `pip list`). Run with a
Python that has `kserve` and `tritonclient[grpc]` (they cannot share synthloc's venv, which
needs protobuf 7); synthloc runs from its own venv as a subprocess. With --device cuda every
server runs on the CUDA provider (synthloc with --require-gpu; the device machine's run,
benchmarks/gpu/).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tritonclient.grpc as triton
from loadgen import LoadGenerator, TritonCall, default_processes, server_log, stop_servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(
    url: str, model: str, proc: subprocess.Popen, log, said: str = "", timeout: float = 120
) -> None:
    """Until the model is ready and the server's log holds `said`; fails at once, with the
    server's last words, if it dies."""
    client = triton.InferenceServerClient(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log.seek(0)
        text = log.read().decode(errors="replace")
        try:
            if said in text and client.is_model_ready(model):
                return
        except Exception:  # not listening yet
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"the server for {url} exited {proc.returncode}:\n{text[-2000:]}")
        time.sleep(0.5)
    raise RuntimeError(f"{url} never became ready")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthloc", required=True, help="synthloc executable of its venv")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--client-processes",
        type=int,
        default=default_processes(),
        help="processes the client threads are spread over (default: a quarter of the cores, "
        "1 to 4)",
    )
    parser.add_argument("--warmup-seconds", type=float, default=1.0, help="untimed load first")
    parser.add_argument("--checkout", action="append", default=[], help="NAME=PATH")
    parser.add_argument(
        "--checkout-args",
        action="append",
        default=[],
        help="NAME='FLAGS': extra `infer serve` flags for one checkout",
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    checkouts = dict(c.split("=", 1) for c in args.checkout) or {"synthloc": ""}
    pairs = (a.split("=", 1) for a in args.checkout_args)
    extra = {name: shlex.split(flags) for name, flags in pairs}
    if unknown := extra.keys() - checkouts.keys():
        parser.error(f"--checkout-args names checkouts not in --checkout: {sorted(unknown)}")
    targets, procs, logs, says = {}, [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "det" / "1"
        repo.mkdir(parents=True)
        (repo / "model.onnx").write_bytes(args.model.read_bytes())
        for name, checkout in checkouts.items():
            port = free_port()
            env = dict(os.environ, PYTHONPATH=str(Path(checkout).resolve())) if checkout else None
            command = [args.synthloc, "infer", "serve", "--models", str(Path(tmp))]
            command += ["--port", str(port), "--metrics-port", "-1", "--device", args.device]
            if args.device == "cuda":
                command.append("--require-gpu")
            command += extra.get(name, [])
            log = server_log(f"side-{name}")
            procs.append(subprocess.Popen(command, env=env, stdout=log, stderr=log))
            logs.append(log)
            says.append("inference service on")  # with --processes, once every replica serves
            targets[name] = f"127.0.0.1:{port}"
        cuda = ["--cuda"] if args.device == "cuda" else []
        for name, flags in (("kserve", cuda), ("kserve_alike", ["--no-spin", *cuda])):
            grpc_port, http_port = free_port(), free_port()
            command = [sys.executable, str(Path(__file__).with_name("kserve_peer_server.py"))]
            command += ["--model", str(args.model), "--grpc-port", str(grpc_port)]
            command += ["--http-port", str(http_port), *flags]
            log = server_log(f"side-{name}")
            procs.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log))
            logs.append(log)
            says.append("")
            targets[name] = f"127.0.0.1:{grpc_port}"
        load = LoadGenerator(args.client_processes)
        try:
            for url, proc, log, said in zip(targets.values(), procs, logs, says, strict=True):
                wait_ready(url, "det", proc, log, said)
            calls = {
                name: TritonCall(url, "det", (1, 1, 512, 512)) for name, url in targets.items()
            }
            for call in calls.values():  # every server meets the load once, untimed
                load.run(call, args.concurrency, args.warmup_seconds)
            figures: dict[str, list[float]] = {}
            for _ in range(args.rounds):
                for name, call in calls.items():
                    rate, p99 = load.run(call, args.concurrency, args.seconds)
                    figures.setdefault(f"{name}_requests_per_s", []).append(rate)
                    figures.setdefault(f"{name}_p99_ms", []).append(p99)
        finally:
            load.close()
            stop_servers(procs)
    for name in checkouts:  # per-round ratios, then their medians
        for peer in ("kserve", "kserve_alike"):
            pairs = zip(
                figures[f"{name}_requests_per_s"], figures[f"{peer}_requests_per_s"], strict=True
            )
            figures[f"{name}_over_{peer}"] = [a / b for a, b in pairs]
    result = {k: round(statistics.median(v), 2) for k, v in figures.items()}
    for key, value in result.items():
        print(f"{key:32s} {value:>9}   rounds {[round(x, 2) for x in figures[key]]}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
