"""A reference PACS-side integration: localize every DICOM file of a folder and write each
result as JSON next to its file (`<file>.synthloc.json`).

A multi-frame file (cine loop, enhanced CT/MR, tiled whole-slide image) is sent a frame at a
time over one stream; its result lists every frame's detections, each with its 1-based `frame`,
and is written only when every frame has been localized.

A PACS links a result back to its image by the DICOM UIDs (SOP Instance, Series, Study), so
those are copied into the result. Nothing that identifies the patient (name, ID, birth date)
is read into it, and the image is named by its file name only: the folders of PACS exports
often carry patient names.
"""

from __future__ import annotations

import datetime
import json
import os
from io import BytesIO
from pathlib import Path
from typing import Any

from pydicom import dcmread

from infer_service.client import LocalizationClient
from infer_service.client_types import LocalizeResult
from synthloc import __version__
from synthloc.errors import (
    FailedPrecondition,
    InvalidInput,
    NotFound,
)
from synthloc.files import atomic_write

RESULT_SUFFIX = ".synthloc.json"
SCHEMA = "synthloc.pacs.result/v1"
# Only these DICOM attributes ever reach a result file.
LINK_KEYWORDS = ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "SOPClassUID")
_TECHNICAL_KEYWORDS = ("Modality",)


def is_dicom_part10(path: Path) -> bool:
    """True if the file starts with the Part-10 preamble: 128 bytes, then 'DICM'."""
    try:
        with path.open("rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def result_path(path: Path) -> Path:
    """Where the result of a DICOM file goes: next to it, named <file name>.synthloc.json."""
    return path.with_name(path.name + RESULT_SUFFIX)


def find_dicom_files(folder: Path, recursive: bool = False) -> tuple[list[Path], int]:
    """(DICOM Part-10 files in name order, number of other files ignored, results aside)."""
    if not folder.is_dir():
        raise NotFound(f"{folder}: no such folder")
    candidates = sorted(folder.rglob("*") if recursive else folder.iterdir())
    files = [p for p in candidates if p.is_file() and not p.name.endswith(RESULT_SUFFIX)]
    dicom = [p for p in files if is_dicom_part10(p)]
    return dicom, len(files) - len(dicom)


def dicom_link(data: bytes) -> dict[str, str]:
    """The UIDs (and modality) of a DICOM file, read without its pixels."""
    return dicom_header(data)[0]


def dicom_header(data: bytes) -> tuple[dict[str, str], int]:
    """The UIDs (and modality) of a DICOM file and its number of frames, in one read of its
    header (reading it twice cost a fifth of a small file's turn)."""
    try:
        ds = dcmread(
            BytesIO(data),
            stop_before_pixels=True,
            specific_tags=[*LINK_KEYWORDS, *_TECHNICAL_KEYWORDS, "NumberOfFrames"],
        )
        meta_uid = ds.file_meta.get("MediaStorageSOPInstanceUID", "")
        link = {k: str(ds.get(k, "") or "") for k in (*LINK_KEYWORDS, *_TECHNICAL_KEYWORDS)}
        frames = max(int(ds.get("NumberOfFrames") or 1), 1)
    except Exception as exc:  # pydicom raises many kinds on malformed headers
        raise InvalidInput(f"not a readable DICOM header ({type(exc).__name__}: {exc})") from exc
    link["SOPInstanceUID"] = link["SOPInstanceUID"] or str(meta_uid)
    return link, frames


def result_document(
    path: Path, link: dict[str, str], results: LocalizeResult | list[LocalizeResult]
) -> dict[str, Any]:
    """The JSON result of one DICOM file: one result, or one per frame in frame order."""
    frames = results if isinstance(results, list) else [results]
    first = frames[0]
    counts: dict[str, int] = {}
    detections = []
    for number, result in enumerate(frames, start=1):
        for d in result.detections:
            counts[d.class_name] = counts.get(d.class_name, 0) + 1
            detections.append(
                {
                    "frame": number,
                    "class_id": d.class_id,
                    "class_name": d.class_name,
                    "score": round(d.score, 6),
                    "box": [round(v, 3) for v in d.box],
                    "point": [round(v, 3) for v in d.point],
                }
            )
    return {
        "schema": SCHEMA,
        "file": path.name,
        "dicom": link,
        "model": {"name": first.model, "version": first.version, "provider": first.provider},
        "image": {"height": first.height, "width": first.width, "frames": len(frames)},
        "detections": detections,
        "counts": counts,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "synthloc_version": __version__,
    }


def localize_frames(
    client: LocalizationClient,
    data: bytes,
    model: str = "",
    version: str = "",
    threshold: float | None = None,
) -> list[LocalizeResult]:
    """Every frame of a multi-frame file, in order; the first frame that fails raises, its
    message naming the frame."""
    count, items = client.localize_frames(data, model=model, version=version, threshold=threshold)
    results = []
    for item in items:
        if item.error is not None:
            raise type(item.error)(f"frame {item.index + 1} of {count}: {item.error}")
        assert item.result is not None  # an item holds a result or an error
        results.append(item.result)
    return results


def write_result(path: Path, document: dict[str, Any]) -> Path:
    """Write the result next to its DICOM file atomically, readable like the file itself."""
    target = result_path(path)

    def write(tmp: str) -> None:
        Path(tmp).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        # mkstemp makes owner-only files, and the PACS may read them as another user.
        os.chmod(tmp, path.stat().st_mode & 0o666)

    try:
        atomic_write(target, write)
    except OSError as exc:
        raise FailedPrecondition(f"cannot write {target}: {exc.strerror or exc}") from exc
    return target
