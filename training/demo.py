"""`synthloc demo`: the whole product on the fetched data, each step the command a user would run.

Draws a contact sheet of synthetic samples, starts the synthesis service on 25 % of mnfinder's
training annotations, trains a detector from its stream, exports it, starts the inference
service on the exported model, localizes a held-out test image through `synthloc localize`,
writes the overlay, shows the metrics endpoints and stops both services with SIGTERM (each must
exit 0). Every command is printed before it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from infer_service.client import LocalizationClient
from synth_service.client import SynthesisClient
from synthloc.coco import CocoDataset
from synthloc.datasets.fetch import default_root
from synthloc.errors import FailedPrecondition, Unavailable
from synthloc.rpc_client import ServiceClient

SYNTHLOC = [sys.executable, "-m", "synthloc"]
MODEL = "nuclei"
STARTUP_SECONDS = 180.0


def add_parser(subparsers: Any) -> None:
    """Register `synthloc demo`."""
    p = subparsers.add_parser(
        "demo", help="synthesize -> train -> export -> serve -> localize, on the fetched data"
    )
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="where everything goes")
    p.add_argument("--steps", type=int, default=600, help="training steps (batch 8)")
    p.add_argument("--annotated-fraction", type=float, default=0.25)
    p.set_defaults(run=run_demo)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _show(command: list[str]) -> None:
    shown = ["synthloc", *command[len(SYNTHLOC) :]] if command[:3] == SYNTHLOC else command
    print(f"\n$ {shlex.join(shown)}", flush=True)


def _run(command: list[str]) -> None:
    _show(command)
    code = subprocess.call(command)
    if code:
        raise FailedPrecondition(f"`{shlex.join(command[2:])}` failed with exit code {code}")


def _wait_serving(name: str, client: ServiceClient, process: subprocess.Popen) -> None:
    """Block until grpc.health.v1 says SERVING; Unavailable if the server dies or takes
    longer than STARTUP_SECONDS."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        if process.poll() is not None:
            raise Unavailable(f"the {name} exited with code {process.returncode} at startup")
        try:
            client.wait_until_serving(timeout=2.0)
            return
        except Unavailable:
            if time.monotonic() >= deadline:
                raise


@contextlib.contextmanager
def _service(name: str, command: list[str], client: ServiceClient, log: Path) -> Iterator[None]:
    """A server subprocess that is SERVING inside the block and stopped by SIGTERM after it."""
    _show(command)
    with log.open("w") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    try:
        _wait_serving(name, client, process)
        print(f"  {name} is SERVING on {client.target} (log: {log})", flush=True)
        yield
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait()
            print(f"  {name} stopped (SIGTERM, exit code {code})", flush=True)


def _metrics_lines(port: int, prefix: str) -> list[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return [line for line in text.splitlines() if line.startswith(prefix)][:4]


def run_demo(args: argparse.Namespace) -> int:
    root = default_root() / "mnfinder"
    train_json, test_json = root / "train.json", root / "test.json"
    if not train_json.is_file():
        raise FailedPrecondition(f"{train_json}: no data; run `synthloc data fetch mnfinder`")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    test = CocoDataset.load(test_json)
    image = test.image_path(min(test.images, key=lambda i: i["width"] * i["height"]))
    synth_port, synth_metrics = _free_port(), _free_port()
    infer_port, infer_metrics = _free_port(), _free_port()
    started = time.perf_counter()
    sample = [*SYNTHLOC, "synth", "sample", "--library", str(train_json), "--count", "8"]
    fraction = ["--annotated-fraction", str(args.annotated_fraction)]
    _run([*sample, *fraction, "--out", str(out / "gallery.png")])
    synth = [*SYNTHLOC, "synth", "serve", "--library", str(train_json)]
    synth += ["--annotated-fraction", str(args.annotated_fraction), "--port", str(synth_port)]
    synth += ["--metrics-port", str(synth_metrics), "--workers", "1"]
    synth_client = SynthesisClient(f"127.0.0.1:{synth_port}")
    with synth_client, _service("synthesis service", synth, synth_client, out / "synth.log"):
        train = [*SYNTHLOC, "train", "detector", "--synth", f"127.0.0.1:{synth_port}"]
        _run([*train, "--steps", str(args.steps), "--out", str(out / "run")])
        for line in _metrics_lines(synth_metrics, "synthloc_synth_images"):
            print(f"  {line}")
    model = out / "models" / MODEL / "1" / "model.onnx"
    export = [*SYNTHLOC, "export", str(out / "run" / "checkpoint.pt"), "--out", str(model)]
    _run([*export, "--parity-coco", str(test_json), "--parity-images", "1"])
    infer = [*SYNTHLOC, "infer", "serve", "--models", str(out / "models")]
    infer += ["--port", str(infer_port), "--metrics-port", str(infer_metrics)]
    infer_client = LocalizationClient(f"127.0.0.1:{infer_port}")
    with infer_client, _service("inference service", infer, infer_client, out / "infer.log"):
        overlay = out / "overlay.png"
        localize = [*SYNTHLOC, "localize", "--server", f"127.0.0.1:{infer_port}", str(image)]
        _run([*localize, "--out", str(overlay)])
        print("\nmetrics while the services ran (Prometheus text format):")
        print(f"  synthesis  http://127.0.0.1:{synth_metrics}/metrics (stopped after training)")
        print(f"  inference  http://127.0.0.1:{infer_metrics}/metrics")
        for line in _metrics_lines(infer_metrics, "synthloc_infer_requests"):
            print(f"    {line}")
    minutes = (time.perf_counter() - started) / 60
    print(
        f"\ndone in {minutes:.1f} min: synthetic samples {out / 'gallery.png'}, overlay "
        f"{overlay}, model {model}, training run {out / 'run'}"
    )
    return 0
