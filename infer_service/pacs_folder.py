"""`synthloc pacs FOLDER`: every DICOM file of a folder localized, each result written next to
its file (infer_service.pacs has the result's format).

Single-frame files go over LocalizeStream, FILES_PER_STREAM at a time: the server decodes and
computes the next files while this side reads and writes the others, instead of one round trip
per file. Multi-frame files go after them, each over a stream of its frames. A file that fails
is reported and the run goes on; a stream that breaks fails the files it had not answered.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from infer_service.client import LocalizationClient, read_image_file
from infer_service.pacs import (
    dicom_header,
    find_dicom_files,
    localize_frames,
    result_document,
    result_path,
    write_result,
)
from synthloc.errors import SynthlocError

FILES_PER_STREAM = 16  # a broken or stuck stream costs at most these; each has its deadline


@dataclass
class FolderReport:
    """What a run over a folder did."""

    written: list[Path] = field(default_factory=list)  # DICOM files that got a result
    skipped: list[Path] = field(default_factory=list)  # results existed already
    failed: list[tuple[Path, SynthlocError]] = field(default_factory=list)
    ignored: int = 0  # files that are not DICOM Part-10

    @property
    def exit_code(self) -> int:
        """0 if no file failed, else the largest exit code among the failures' errors."""
        return max((error.exit_code for _, error in self.failed), default=0)

    def summary(self, folder: Path) -> str:
        return (
            f"{folder}: {len(self.written)} results written, {len(self.skipped)} skipped "
            f"(results exist), {len(self.failed)} failed, {self.ignored} non-DICOM files ignored"
        )


@dataclass(frozen=True)
class _Request:
    model: str
    version: str
    threshold: float | None


class _Run:
    """One folder's run: the report, the progress bar and the error callback, under a lock
    (the stream reads files on gRPC's thread while answers are written on this one)."""

    def __init__(
        self,
        report: FolderReport,
        total: int,
        on_error: Callable[[Path, SynthlocError], None] | None,
    ) -> None:
        self.report, self._on_error, self._lock = report, on_error, threading.Lock()
        self._bar = tqdm(total=total, desc="localizing", unit="file", file=sys.stderr, disable=None)

    def written(self, path: Path) -> None:
        with self._lock:
            self.report.written.append(path)
            self._bar.update()

    def failed(self, path: Path, error: SynthlocError) -> None:
        with self._lock:
            self.report.failed.append((path, error))
            self._bar.update()
            if self._on_error is not None:
                self._on_error(path, error)

    def close(self) -> None:
        self._bar.close()


def localize_folder(
    client: LocalizationClient,
    folder: Path,
    *,
    model: str = "",
    version: str = "",
    threshold: float | None = None,
    recursive: bool = False,
    overwrite: bool = False,
    on_error: Callable[[Path, SynthlocError], None] | None = None,
) -> FolderReport:
    """Localize every DICOM file of `folder`; a file that fails is reported and skipped."""
    files, ignored = find_dicom_files(folder, recursive)
    report = FolderReport(ignored=ignored)
    todo = []
    for path in files:
        if not overwrite and result_path(path).exists():
            report.skipped.append(path)
        else:
            todo.append(path)
    run = _Run(report, len(todo), on_error)
    request = _Request(model, version, threshold)
    several: list[Path] = []  # multi-frame files, for after the others
    try:
        for start in range(0, len(todo), FILES_PER_STREAM):
            chunk = todo[start : start + FILES_PER_STREAM]
            several += _stream_files(client, chunk, request, run)
        for path in several:
            try:
                data = read_image_file(path)  # again: a study's frames need not wait in memory
                link = dicom_header(data)[0]
                results = localize_frames(client, data, model, version, threshold)
                write_result(path, result_document(path, link, results))
                run.written(path)
            except SynthlocError as exc:
                run.failed(path, exc)
    finally:
        run.close()
    return report


def _stream_files(
    client: LocalizationClient, paths: list[Path], request: _Request, run: _Run
) -> list[Path]:
    """The single-frame files of `paths` over one stream; returns the multi-frame ones."""
    sent: list[tuple[Path, dict[str, str]]] = []  # what the stream's items answer, in order
    several: list[Path] = []
    read = 0  # how many of `paths` the stream has taken
    broken = False  # the stream failed: take no more (gRPC's thread may still ask)
    guard = threading.Lock()

    def images() -> Iterator[bytes]:
        nonlocal read
        for path in paths:
            with guard:
                if broken:
                    return
                read += 1
                try:
                    data = read_image_file(path)
                    link, frames = dicom_header(data)
                except SynthlocError as exc:
                    run.failed(path, exc)
                    continue
                if frames > 1:
                    several.append(path)
                    continue
                sent.append((path, link))
            yield data

    answered = 0
    try:
        items = client.localize_stream(
            images(),
            model=request.model,
            version=request.version,
            threshold=request.threshold,
            timeout=client.timeout * len(paths),
        )
        for item in items:
            path, link = sent[item.index]
            answered += 1
            try:
                if item.error is not None:
                    raise item.error
                assert item.result is not None  # an item holds a result or an error
                write_result(path, result_document(path, link, [item.result]))
                run.written(path)
            except SynthlocError as exc:
                run.failed(path, exc)
    except SynthlocError as exc:  # the stream broke: what it had not answered fails with it
        with guard:
            broken = True
            unanswered = [path for path, _ in sent[answered:]] + paths[read:]
        for path in unanswered:
            run.failed(path, exc)
    return several
