"""Multi-frame DICOM: decoded frame by frame on the client, localized over one stream, reported
per frame by `synthloc localize` and `synthloc pacs`."""

from __future__ import annotations

import json
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.pixels import pixel_array
from pydicom.sequence import Sequence

from infer_service.client import LocalizationClient, frame_count
from infer_service.decoding import decode_image_bytes, dicom_frames
from infer_service.pacs import result_path
from infer_service.server import InferServer
from synthloc.cli import main
from synthloc.errors import InvalidInput
from synthloc.imageio import read_image, write_png
from tests.infer.test_decoding import DICOM_DIR
from tests.infer.test_service import _start, _write_model

SQUARES = [(20, 40), (8, 8), (40, 80)]  # (row, column) of each frame's bright 4x4 square
BOXES = [(c - 2.0, r - 2.0, 8.0, 8.0) for r, c in SQUARES]  # the analytic detector's boxes
LIMIT = 1 << 30


def _save(ds: Dataset) -> bytes:
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _stored() -> np.ndarray:
    frames = np.zeros((len(SQUARES), 64, 96), np.uint16)
    for frame, (r, c) in zip(frames, SQUARES, strict=True):
        frame[r : r + 4, c : c + 4] = 1000
    return frames


def _multiframe(**attributes: object) -> bytes:
    """CT_small made into a 3-frame MONOCHROME2 object, one known square per frame."""
    ds = pydicom.dcmread(DICOM_DIR / "CT_small.dcm")
    stored = _stored()
    ds.Rows, ds.Columns = stored.shape[1:]
    ds.NumberOfFrames = len(stored)
    ds.PixelRepresentation, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 0, 16, 16, 15
    ds.PixelData = stored.tobytes()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return _save(ds)


def _transform(slope: float, intercept: float) -> Dataset:
    """A functional-group item holding a Pixel Value Transformation."""
    item, transform = Dataset(), Dataset()
    transform.RescaleSlope, transform.RescaleIntercept = slope, intercept
    item.PixelValueTransformationSequence = Sequence([transform])
    return item


RESCALES = [(1.0, -10.0), (2.0, 0.0), (0.5, 5.0)]


@pytest.mark.parametrize("where", ["top level", "shared group", "per frame"])
def test_each_frame_gets_its_own_rescale(where: str) -> None:
    attributes: dict[str, object] = {"RescaleSlope": 3.0, "RescaleIntercept": 7.0}
    if where == "shared group":
        attributes["SharedFunctionalGroupsSequence"] = Sequence([_transform(0.25, -1.0)])
    if where == "per frame":
        attributes["PerFrameFunctionalGroupsSequence"] = Sequence(
            [_transform(*r) for r in RESCALES]
        )
    count, frames = dicom_frames(_multiframe(**attributes), LIMIT)
    got = list(frames)
    assert count == len(got) == 3
    expected = {
        "top level": [(3.0, 7.0)] * 3,
        "shared group": [(0.25, -1.0)] * 3,
        "per frame": RESCALES,
    }[where]
    for pixels, stored, (slope, intercept) in zip(got, _stored(), expected, strict=True):
        assert pixels.dtype == np.float32
        want = stored.astype(np.float32) * np.float32(slope) + np.float32(intercept)
        np.testing.assert_array_equal(pixels, want)


@pytest.mark.parametrize(
    ("name", "dtype"), [("SC_rgb_rle_2frame.dcm", np.uint8), ("rtdose.dcm", np.float32)]
)
def test_real_multiframe_files_split_into_their_frames(name: str, dtype: type) -> None:
    data = (DICOM_DIR / name).read_bytes()
    ds = pydicom.dcmread(DICOM_DIR / name)
    count, frames = dicom_frames(data, LIMIT)
    got = list(frames)
    assert frame_count(data) == count == len(got) == int(ds.NumberOfFrames) > 1
    for index, pixels in enumerate(got):
        assert pixels.dtype == dtype  # rtdose's 32-bit values travel as float32 tensors
        want = pixel_array(ds, index=index, decoding_plugin="pydicom").astype(dtype)
        np.testing.assert_array_equal(pixels, want)
    assert not np.array_equal(got[0], got[1])


def test_a_frame_decodes_as_the_service_decodes_that_frame_alone() -> None:
    ds = pydicom.dcmread(DICOM_DIR / "SC_rgb_rle_2frame.dcm")
    second = pixel_array(ds, index=1, decoding_plugin="pydicom")
    ds.NumberOfFrames = 1
    ds.PixelData = second.tobytes()
    ds.PlanarConfiguration = 0
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    alone = decode_image_bytes(_save(ds), LIMIT).pixels
    _, frames = dicom_frames((DICOM_DIR / "SC_rgb_rle_2frame.dcm").read_bytes(), LIMIT)
    next(frames)
    np.testing.assert_array_equal(next(frames), alone)


def test_frame_count_reads_headers_only_and_counts_other_images_as_one() -> None:
    assert frame_count((DICOM_DIR / "CT_small.dcm").read_bytes()) == 1
    assert frame_count(_multiframe()) == 3
    assert frame_count(b"\x89PNG\r\n\x1a\n" + bytes(200)) == 1
    assert frame_count(bytes(128) + b"DICM" + b"\xff" * 40) == 1  # unreadable: the server says


def test_the_client_streams_the_frames_in_order(server: InferServer) -> None:
    with LocalizationClient(f"127.0.0.1:{server.port}") as client:
        count, items = client.localize_frames(_multiframe())
        got = list(items)
        with pytest.raises(InvalidInput, match="not a DICOM Part-10 file"):
            client.localize_frames(b"\x89PNG\r\n\x1a\n")
    assert count == 3 and [item.index for item in got] == [0, 1, 2]
    assert [[d.box for d in item.result.detections] for item in got] == [[b] for b in BOXES]


def _localize(server: InferServer, *args: str) -> int:
    return main(["localize", "--server", f"127.0.0.1:{server.port}", *args])


def test_localize_reports_and_draws_every_frame(
    server: InferServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = tmp_path / "study.dcm"
    study.write_bytes(_multiframe())
    assert _localize(server, str(study), "--json") == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(d["file"], d["frame"], d["frames"]) for d in lines] == [
        (str(study), n, 3) for n in (1, 2, 3)
    ]
    assert [[tuple(f["box"]) for f in d["detections"]] for d in lines] == [[b] for b in BOXES]
    out = tmp_path / "overlay.png"
    assert _localize(server, str(study), "--out", str(out)) == 0
    printed = capsys.readouterr().out
    assert f"{study} frame 2/3: 1 objects" in printed
    for number, (x, y, w, _) in enumerate(BOXES, start=1):
        overlay = read_image(tmp_path / f"overlay_frame{number}.png")
        assert overlay.shape == (64, 96, 3)
        assert (overlay[int(y) - 1, int(x) : int(x + w)] > 0).any()  # the box's top edge
        assert f"overlay: {tmp_path / f'overlay_frame{number}.png'}" in printed


def test_a_frame_the_server_refuses_names_the_frame(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_model(tmp_path / "models", "nuclei", "1")
    small = _start(tmp_path / "models", max_pixels=1000)  # each frame has 6144
    try:
        study = tmp_path / "study.dcm"
        study.write_bytes(_multiframe())
        assert _localize(small, str(study)) == 2
        err = capsys.readouterr().err
        assert f"{study}, frame 1 of 3: inference service at 127.0.0.1:{small.port}" in err
        assert "RESOURCE_EXHAUSTED: the image is 96x64 = 6144 pixels" in err
    finally:
        small.stop(grace=1)


def test_a_frame_that_cannot_be_read_here_ends_the_file_with_its_error(
    server: InferServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = tmp_path / "study.dcm"
    data = _multiframe()
    ds = pydicom.dcmread(BytesIO(data))
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]  # frames 2 and 3 are cut off
    study.write_bytes(_save(ds))
    assert _localize(server, str(study)) == 2
    captured = capsys.readouterr()
    assert f"{study}, frame 1 of 3: corrupt DICOM" in captured.err


def test_pacs_writes_one_result_with_every_frame(
    server: InferServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "IM1").write_bytes(_multiframe())
    (folder / "IM2").write_bytes((DICOM_DIR / "examples_ybr_color.dcm").read_bytes())  # JPEG
    assert main(["pacs", str(folder), "--server", f"127.0.0.1:{server.port}"]) == 2
    captured = capsys.readouterr()
    assert "1 results written, 0 skipped (results exist), 1 failed" in captured.out
    assert "IM2: DICOM transfer syntax JPEG Baseline (Process 1)" in captured.err
    doc = json.loads(result_path(folder / "IM1").read_text())
    assert doc["image"] == {"height": 64, "width": 96, "frames": 3}
    assert [(d["frame"], tuple(d["box"])) for d in doc["detections"]] == [
        (n, b) for n, b in enumerate(BOXES, start=1)
    ]
    assert doc["counts"] == {"nucleus": 3}
    assert not result_path(folder / "IM2").exists()


def test_localize_keeps_file_order_across_streams_and_names_a_failing_file(
    server: InferServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    square = np.zeros((64, 96), np.uint8)
    square[20:24, 40:44] = 255  # the first frame's square
    for name in ("a.png", "b.png", "c.png"):
        write_png(tmp_path / name, square)
    (tmp_path / "study.dcm").write_bytes(_multiframe())
    (tmp_path / "empty.png").write_bytes(b"")
    names = ["a.png", "study.dcm", "b.png", "c.png"]
    assert _localize(server, *(str(tmp_path / n) for n in names), "--json") == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(Path(d["file"]).name, d.get("frame")) for d in lines] == [
        ("a.png", None),
        ("study.dcm", 1),
        ("study.dcm", 2),
        ("study.dcm", 3),
        ("b.png", None),
        ("c.png", None),
    ]
    assert [tuple(d["detections"][0]["box"]) for d in lines] == [
        BOXES[0],
        *BOXES,
        BOXES[0],
        BOXES[0],
    ]
    for bad, says in [
        ("missing.png", "missing.png: no such file"),
        ("empty.png", "the image is empty"),
    ]:
        files = [str(tmp_path / n) for n in ("a.png", bad, "b.png")]
        assert _localize(server, *files) == 2
        captured = capsys.readouterr()
        assert f"{tmp_path / 'a.png'}: 1 objects" in captured.out
        assert "b.png" not in captured.out
        assert str(tmp_path / bad) in captured.err and says in captured.err
