"""Files per second of `synthloc pacs` over a folder of DICOM files, against one call per file.

Writes N single-frame 512x512 CT files (pydicom's CT_small with seeded noise as pixels),
serves MODEL with `synthloc infer serve` in its own process, and in alternating rounds runs
`localize_folder` (files streamed FILES_PER_STREAM at a time) and the loop it replaced (read a
file, one Localize call, write its result). Both write every result (--overwrite). Prints the
median files/s of each and the per-round ratios.

    .venv/bin/python benchmarks/pacs_throughput.py --model MODEL.onnx [--files 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file

from infer_service.client import LocalizationClient, read_image_file
from infer_service.pacs import dicom_header, find_dicom_files, result_document, write_result
from infer_service.pacs_folder import localize_folder

SYNTHLOC = str(Path(sys.executable).parent / "synthloc")


def write_folder(folder: Path, files: int) -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    rng = np.random.default_rng(0)
    for i in range(files):
        pixels = rng.integers(0, 1000, (512, 512)).astype(ds.pixel_array.dtype)
        ds.Rows, ds.Columns = pixels.shape
        ds.PixelData = pixels.tobytes()
        ds.save_as(folder / f"IM{i:05d}", enforce_file_format=True)


def one_call_per_file(client: LocalizationClient, folder: Path) -> int:
    """The loop localize_folder replaced: a Localize round trip per file."""
    files, _ = find_dicom_files(folder)
    for path in files:
        data = read_image_file(path)
        link = dicom_header(data)[0]
        write_result(path, result_document(path, link, [client.localize(data)]))
    return len(files)


def serve(models: Path, log: Path) -> tuple[subprocess.Popen, int]:
    """`synthloc infer serve` writing to `log` (a pipe nobody reads would stall it)."""
    command = [SYNTHLOC, "infer", "serve", "--models", str(models), "--port", "0"]
    with log.open("w") as out:
        proc = subprocess.Popen([*command, "--metrics-port", "-1"], stderr=out, stdout=out)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        for line in log.read_text().splitlines():
            if "inference service on" in line:
                return proc, int(line.split("127.0.0.1:")[1].split()[0])
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"the server did not serve: {log.read_text()[-2000:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        models, folder = Path(root) / "models", Path(root) / "inbox"
        (models / "det" / "1").mkdir(parents=True)
        (models / "det" / "1" / "model.onnx").symlink_to(args.model.resolve())
        folder.mkdir()
        write_folder(folder, args.files)
        proc, port = serve(models, Path(root) / "server.log")
        rates: dict[str, list[float]] = {"streamed": [], "one_call_per_file": []}
        try:
            with LocalizationClient(f"127.0.0.1:{port}") as client:
                localize_folder(client, folder, overwrite=True)  # warm: sessions, page cache
                for _ in range(args.rounds):
                    started = time.monotonic()
                    report = localize_folder(client, folder, overwrite=True)
                    assert len(report.written) == args.files, report.summary(folder)
                    rates["streamed"].append(args.files / (time.monotonic() - started))
                    started = time.monotonic()
                    done = one_call_per_file(client, folder)
                    rates["one_call_per_file"].append(done / (time.monotonic() - started))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    ratios = [s / o for s, o in zip(rates["streamed"], rates["one_call_per_file"], strict=True)]
    figures = {
        "files": args.files,
        "streamed_files_per_s": round(statistics.median(rates["streamed"]), 1),
        "one_call_per_file_files_per_s": round(statistics.median(rates["one_call_per_file"]), 1),
        "ratio_median": round(statistics.median(ratios), 2),
        "ratio_rounds": [round(r, 2) for r in ratios],
    }
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
