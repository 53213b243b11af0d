"""`synthloc synth serve/sample` as a user runs them: real processes, real signals."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from synthloc.imageio import read_image

SYNTHLOC = str(Path(sys.executable).parent / "synthloc")


def test_a_library_without_objects_refuses_to_start(tmp_path: Path, disc_coco: Path) -> None:
    coco = json.loads(disc_coco.read_text())
    coco["annotations"] = []
    for image in coco["images"]:
        image["file_name"] = str(disc_coco.parent / image["file_name"])
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps(coco))
    done = subprocess.run(
        [SYNTHLOC, "synth", "serve", "--library", str(empty), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert f"{empty}: no usable objects" in done.stderr


def test_serve_drains_and_exits_zero_on_sigterm(data_root: Path) -> None:
    proc = subprocess.Popen(
        [
            SYNTHLOC,
            "synth",
            "serve",
            "--library",
            str(data_root / "mnfinder/val.json"),
            "--port",
            "0",
            "--metrics-port",
            "-1",
            "--workers",
            "1",
            "--grace-seconds",
            "2",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = None
        deadline = time.monotonic() + 120
        while port is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            found = re.search(r"synthesis service on 127\.0\.0\.1:(\d+)", line)
            port = int(found.group(1)) if found else None
        assert port, "the server never said it was listening"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()


def test_sample_writes_a_contact_sheet(tmp_path: Path, data_root: Path) -> None:
    out = tmp_path / "gallery.png"
    done = subprocess.run(
        [
            SYNTHLOC,
            "synth",
            "sample",
            "--library",
            str(data_root / "mnfinder/val.json"),
            "--out",
            str(out),
            "--count",
            "4",
            "--size",
            "128",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    sheet = read_image(out)
    assert sheet.shape == (132 + 28, 4 * 132, 3)
    assert re.search(r"4 samples, \d+ objects", done.stdout)
