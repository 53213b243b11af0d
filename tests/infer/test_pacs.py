"""`synthloc pacs` over a real server: a folder of pydicom's own DICOM files, results as JSON."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from infer_service import pacs_folder
from infer_service.client import LocalizationClient
from infer_service.pacs import find_dicom_files, is_dicom_part10, result_path
from infer_service.server import InferServer
from synthloc.cli import main
from synthloc.errors import DeadlineExceeded
from tests.infer.test_frames import _multiframe
from tests.infer.test_service import EXPECTED_BOX, _image

# file in the folder -> pydicom test file; all single-frame and decodable with numpy alone.
GOOD = {
    "IM0001": "CT_small.dcm",  # no extension: found by its preamble
    "IM0002.dcm": "MR_small_RLE.dcm",  # RLE Lossless
    "IM0003": "ExplVR_BigEnd.dcm",  # big endian, RGB
}
UNSUPPORTED = {"IM0004.dcm": "JPEG2000.dcm"}  # JPEG 2000: the server refuses it
NOT_PART10 = {"IM0005.dcm": "no_meta.dcm"}  # a DICOM dataset without the Part-10 preamble
NESTED = {"series2/IM0101": "liver_1frame.dcm"}
KNOWN = "IM9000"  # made here from CT_small: one bright square, so one known box


def _known_square_dicom(path: Path) -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    pixels = (_image().astype(np.int16) * 4).astype(ds.pixel_array.dtype)
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelData = pixels.tobytes()
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.10.543.1.1"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.10.543.2"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.10.543.3"
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "Doe^Jane"  # export folders carry patient names: never in the results
    for name, source in {**GOOD, **UNSUPPORTED, **NOT_PART10, **NESTED}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(get_testdata_file(source), root / name)
    (root / "notes.txt").write_text("not an image\n")
    _known_square_dicom(root / KNOWN)
    return root


def _pacs(server: InferServer, folder: Path, *flags: str) -> int:
    return main(["pacs", str(folder), "--server", f"127.0.0.1:{server.port}", *flags])


def test_detection_is_by_preamble_not_by_name(folder: Path) -> None:
    assert is_dicom_part10(folder / "IM0001") and not is_dicom_part10(folder / "IM0005.dcm")
    files, ignored = find_dicom_files(folder)
    assert [p.name for p in files] == ["IM0001", "IM0002.dcm", "IM0003", "IM0004.dcm", KNOWN]
    assert ignored == 2  # IM0005.dcm and notes.txt; the subfolder is not a file
    assert len(find_dicom_files(folder, recursive=True)[0]) == 6


def test_folder_gets_results_next_to_each_file_and_the_bad_one_is_reported(
    server: InferServer, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _pacs(server, folder) == 2  # the JPEG 2000 file was refused: INVALID_ARGUMENT
    out, err = capsys.readouterr()
    assert f"{folder}: 4 results written, 0 skipped (results exist), 1 failed, 2 non-DICOM" in out
    assert f"{folder / 'IM0004.dcm'}: inference service at 127.0.0.1:{server.port} answered " in err
    assert "INVALID_ARGUMENT: DICOM transfer syntax JPEG 2000 Image Compression" in err
    written = sorted(p.name for p in folder.rglob("*.synthloc.json"))
    assert written == sorted(f"{n}.synthloc.json" for n in [*GOOD, KNOWN])
    for name, source in GOOD.items():
        original = pydicom.dcmread(get_testdata_file(source))
        text = result_path(folder / name).read_text()
        doc = json.loads(text)
        assert doc["schema"] == "synthloc.pacs.result/v1" and doc["file"] == name
        assert doc["dicom"] == {
            "SOPInstanceUID": original.SOPInstanceUID,
            "SeriesInstanceUID": original.SeriesInstanceUID,
            "StudyInstanceUID": original.StudyInstanceUID,
            "SOPClassUID": original.SOPClassUID,
            "Modality": original.Modality,
        }
        assert doc["model"] == {
            "name": "nuclei",
            "version": "1",
            "provider": "CPUExecutionProvider",
        }
        height, width = original.Rows, original.Columns
        assert doc["image"] == {"height": height, "width": width, "frames": 1}
        assert sum(doc["counts"].values()) == len(doc["detections"]) > 0
        for d in doc["detections"]:
            x, y, w, h = d["box"]
            assert 0 <= x < x + w <= width and 0 <= y < y + h <= height
            assert d["class_name"] == "nucleus" and 0.5 <= d["score"] <= 1 and d["frame"] == 1
        for private in (str(original.PatientName), original.get("PatientID"), "Doe^Jane"):
            assert not private or private not in text
        assert "Patient" not in text
    known = json.loads(result_path(folder / KNOWN).read_text())
    assert [(d["class_name"], *d["box"]) for d in known["detections"]] == [
        ("nucleus", *EXPECTED_BOX)
    ]
    assert known["dicom"]["SOPInstanceUID"] == "1.2.826.0.1.3680043.10.543.1.1"
    assert known["counts"] == {"nucleus": 1}
    assert not result_path(folder / "IM0005.dcm").exists()
    assert not result_path(folder / "series2" / "IM0101").exists()  # not --recursive


def test_rerun_skips_done_files_retries_failed_ones_and_overwrite_redoes_all(
    server: InferServer, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (folder / "IM0004.dcm").unlink()
    assert _pacs(server, folder) == 0
    done = result_path(folder / "IM0001")
    done.write_text("{}")  # a skipped file keeps its result untouched
    shutil.copyfile(get_testdata_file("JPEG2000.dcm"), folder / "IM0004.dcm")
    capsys.readouterr()
    assert _pacs(server, folder, "--recursive") == 2
    out = capsys.readouterr().out
    # IM0101 is new; the result files are not counted as ignored files.
    assert "1 results written, 4 skipped (results exist), 1 failed, 2 non-DICOM files" in out
    assert done.read_text() == "{}" and result_path(folder / "series2" / "IM0101").exists()
    assert _pacs(server, folder, "--overwrite", "--threshold", "0.99") == 2
    assert "4 results written, 0 skipped" in capsys.readouterr().out
    redone = json.loads(done.read_text())
    assert all(d["score"] >= 0.99 for d in redone["detections"])


def test_bad_flags_and_an_unreachable_server_fail_before_any_file(
    server: InferServer, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _pacs(server, folder, "--model", "cells") == 2
    assert "--model: 'cells' is not served by" in capsys.readouterr().err
    assert _pacs(server, folder, "--threshold", "1.5") == 2
    assert "threshold: must be in [0, 1], got 1.5" in capsys.readouterr().err
    assert _pacs(server, folder / "missing") == 2
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    assert main(["pacs", str(folder), "--server", f"127.0.0.1:{free}"]) == 3
    assert f"inference service at 127.0.0.1:{free} is unreachable" in capsys.readouterr().err
    assert not list(folder.rglob("*.synthloc.json"))


def test_files_stream_in_chunks_and_multiframe_files_follow(
    server: InferServer, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pacs_folder, "FILES_PER_STREAM", 2)  # 5 files: streams of 2, 2 and 1
    (folder / "IM0006").write_bytes(_multiframe())
    (folder / "IM0007").write_bytes(bytes(128) + b"DICM" + b"\xff" * 40)  # unreadable header
    failures: list[str] = []
    with LocalizationClient(f"127.0.0.1:{server.port}") as client:
        report = pacs_folder.localize_folder(
            client, folder, on_error=lambda path, error: failures.append(path.name)
        )
    assert sorted(p.name for p in report.written) == sorted([*GOOD, KNOWN, "IM0006"])
    assert sorted(failures) == ["IM0004.dcm", "IM0007"] and report.exit_code == 2
    assert json.loads(result_path(folder / "IM0006").read_text())["image"]["frames"] == 3
    known = json.loads(result_path(folder / KNOWN).read_text())
    assert [d["box"] for d in known["detections"]] == [list(EXPECTED_BOX)]


def test_a_stream_that_breaks_fails_every_file_it_had_not_answered(
    server: InferServer, folder: Path
) -> None:
    failures: list[str] = []
    with LocalizationClient(f"127.0.0.1:{server.port}", timeout=1e-4) as client:
        report = pacs_folder.localize_folder(
            client, folder, on_error=lambda path, error: failures.append(path.name)
        )
    assert report.written == [] and report.exit_code == 3  # DEADLINE_EXCEEDED
    assert sorted(failures) == sorted([*GOOD, *UNSUPPORTED, KNOWN])  # each once
    assert all(isinstance(error, DeadlineExceeded) for _, error in report.failed)
    assert not list(folder.rglob("*.synthloc.json"))
