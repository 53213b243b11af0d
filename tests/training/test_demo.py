"""`synthloc demo` end to end, with real server processes, on a very short training run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_demo_runs_every_step_and_stops_both_services_cleanly(
    data_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "synthloc", "demo", "--steps", "3", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    text = done.stdout
    commands = ["synth serve", "train detector --synth 127.0.0.1:", "export", "infer serve"]
    for command in [*commands, "localize"]:
        assert f"$ synthloc {command}" in text
    assert text.count("is SERVING on 127.0.0.1:") == 2
    assert text.count("stopped (SIGTERM, exit code 0)") == 2
    assert "synthloc_synth_images_streamed_total" in text
    assert "synthloc_infer_requests_total{" in text
    assert (out / "overlay.png").read_bytes().startswith(PNG_MAGIC)
    assert (out / "models" / "nuclei" / "1" / "model.onnx").is_file()
    assert "overlay:" in text and "done in" in text
