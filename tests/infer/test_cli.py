"""`synthloc infer serve` and `synthloc localize` as a user runs them."""

from __future__ import annotations

import ctypes
import os
import platform
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import onnx
import pydicom.data
import pytest
from prometheus_client.parser import text_string_to_metric_families

from synthloc.imageio import read_image, write_png
from tests.infer.graphs import analytic_detector, detector_card
from tests.infer.test_service import EXPECTED_BOX, _image

SYNTHLOC = str(Path(sys.executable).parent / "synthloc")


def _serve(models: Path) -> tuple[subprocess.Popen, int, int]:
    proc = subprocess.Popen(
        [
            SYNTHLOC,
            "infer",
            "serve",
            "--models",
            str(models),
            "--port",
            "0",
            "--metrics-port",
            "0",
            "--grace-seconds",
            "2",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(
            r"inference service on 127\.0\.0\.1:(\d+) \(metrics on port (\d+)\)",
            proc.stderr.readline(),
        )
        if found:
            return proc, int(found.group(1)), int(found.group(2))
    proc.kill()
    raise AssertionError("the server never said it was listening")


def test_serve_localize_overlay_metrics_and_sigterm(tmp_path: Path) -> None:
    models = tmp_path / "models" / "nuclei" / "1"
    models.mkdir(parents=True)
    onnx.save(analytic_detector(detector_card()), str(models / "model.onnx"))
    image = tmp_path / "slide.png"
    write_png(image, _image())
    proc, port, metrics_port = _serve(tmp_path / "models")
    try:
        out = tmp_path / "overlay.png"
        done = subprocess.run(
            [SYNTHLOC, "localize", "--server", f"127.0.0.1:{port}", str(image), "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert "slide.png: 1 objects (nuclei/1 on CPUExecutionProvider" in done.stdout
        x, y, w, h = EXPECTED_BOX
        assert f"x={x:7.1f} y={y:7.1f} w={w:6.1f} h={h:6.1f}" in done.stdout
        overlay = read_image(out)
        assert overlay.shape == (64, 96, 3) and (overlay[int(y) - 1, int(x) : int(x + w)] > 0).any()
        dicom = pydicom.data.get_testdata_file("CT_small.dcm")
        done = subprocess.run(
            [SYNTHLOC, "localize", "--server", f"127.0.0.1:{port}", dicom, "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert '"height": 128, "width": 128' in done.stdout
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
        names = {f.name for f in text_string_to_metric_families(text)}
        assert {
            "synthloc_infer_requests",
            "synthloc_infer_request_seconds",
            "synthloc_infer_queue_seconds",
            "synthloc_infer_compute_seconds",
            "synthloc_infer_batch_size",
            "synthloc_infer_queue_depth",
            "synthloc_infer_model_loaded",
        } <= names
        assert 'synthloc_infer_model_loaded{model="nuclei",provider="CPUExecutionProvider"' in text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()


def test_metric_names_pass_promtool(tmp_path: Path) -> None:
    from prometheus_client import generate_latest

    from infer_service.metrics import InferMetrics

    metrics = InferMetrics()
    metrics.requests.labels("nuclei", "1", "OK").inc()
    metrics.request_seconds.labels("nuclei").observe(0.01)
    metrics.batch_size.labels("nuclei").observe(4)
    metrics.models.labels(model="nuclei", version="1", provider="CPUExecutionProvider").set(1)
    promtool = Path(sys.executable).parent / "promtool"
    assert promtool.exists(), "run `make test` (it installs promtool) or put promtool in .venv/bin"
    done = subprocess.run(
        [str(promtool), "check", "metrics"],
        input=generate_latest(metrics.registry),
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout + done.stderr == b""


SYS_TGKILL = {"x86_64": 234, "aarch64": 131}  # the syscall that signals one thread


def _blocks(pid: int, tid: int, sig: int) -> bool:
    """Whether thread `tid` of `pid` blocks `sig` (a signal sent to it would wait there)."""
    status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
    mask = int(
        next(line.split()[1] for line in status.splitlines() if line.startswith("SigBlk")), 16
    )
    return bool(mask >> (sig - 1) & 1)


@pytest.mark.skipif(platform.machine() not in SYS_TGKILL, reason="tgkill's number unknown here")
def test_sigterm_delivered_to_another_thread_still_drains(tmp_path: Path) -> None:
    """The kernel may hand a process's SIGTERM to any thread that does not block it (ONNX
    Runtime's, gRPC's); the server must not sleep through it (synthloc.serving.wait_for)."""
    models = tmp_path / "models" / "nuclei" / "1"
    models.mkdir(parents=True)
    onnx.save(analytic_detector(detector_card()), str(models / "model.onnx"))
    proc, _, _ = _serve(tmp_path / "models")
    try:
        other = next(
            tid
            for tid in map(int, os.listdir(f"/proc/{proc.pid}/task"))
            if tid != proc.pid and not _blocks(proc.pid, tid, signal.SIGTERM)
        )
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.syscall(SYS_TGKILL[platform.machine()], proc.pid, other, signal.SIGTERM) == 0
        assert proc.wait(timeout=15) == 0
    finally:
        proc.kill()
        proc.wait()
