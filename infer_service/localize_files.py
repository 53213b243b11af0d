"""`synthloc localize FILE...`: every file's boxes printed, and drawn on request.

A multi-frame DICOM file (a cine loop, an enhanced CT or MR series, a tiled whole-slide image)
goes over one LocalizeStream, a frame per message, and is reported frame by frame: frame numbers
are 1-based, as in DICOM's own Frame Number.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from infer_service.client import (
    CLIENT_MAX_PIXELS,
    LocalizationClient,
    frame_count,
    read_image_file,
)
from infer_service.client_types import LocalizeResult, StreamItem
from synthloc.errors import SynthlocError


@dataclass(frozen=True)
class LocalizeOptions:
    """What `synthloc localize` asks for besides the files."""

    model: str = ""
    version: str = ""
    threshold: float | None = None
    out: Path | None = None  # overlay PNG name (see overlay_path)
    as_json: bool = False
    tile: int = 0  # > 0: images larger than this go as tiles of this side (localize_tiled)
    overlap: int = 128


def overlay_path(out: Path, path: Path, several_files: bool, frame: tuple[int, int] | None) -> Path:
    """Where the overlay of `path` goes: `out` for one single-image file, <out stem>_<file
    stem>.png among several files; frame n of N adds _frame<n> (zero-padded to N's width)."""
    base = out.with_name(f"{out.stem}_{path.stem}.png") if several_files else out
    if frame is None:
        return base
    number, count = frame
    return base.with_name(f"{base.stem}_frame{number:0{len(str(count))}d}.png")


def localize_files(
    client: LocalizationClient,
    files: list[Path],
    options: LocalizeOptions,
    say: Callable[[str], None] = print,
) -> None:
    """Localize each file in order; the first failure raises, its message naming the file.
    Consecutive single images go over one stream (the server works on the next while this
    side prints and draws); a multi-frame file or, with `tile`, every file goes on its own."""
    index = 0
    while index < len(files):
        path = files[index]
        data = read_image_file(path)
        if frame_count(data) > 1:
            _localize_frames(client, path, data, len(files) > 1, options, say)
            index += 1
        elif options.tile > 0:
            _localize_tiled(client, path, data, len(files) > 1, options, say)
            index += 1
        else:
            index = _stream_run(client, files, index, data, options, say)


def _localize_tiled(
    client: LocalizationClient,
    path: Path,
    data: bytes,
    several_files: bool,
    options: LocalizeOptions,
    say: Callable[[str], None],
) -> None:
    with _progress(path.name, "tile") as bar:
        try:
            result = client.localize_tiled(
                data,
                tile=options.tile,
                overlap=options.overlap,
                model=options.model,
                version=options.version,
                threshold=options.threshold,
                on_tile=lambda done, total: bar.update_to(done, total),
            )
        except SynthlocError as error:
            raise type(error)(f"{path}: {error}") from error
    _answered(path, data, result, several_files, options, say)


def _stream_run(
    client: LocalizationClient,
    files: list[Path],
    start: int,
    first: bytes,
    options: LocalizeOptions,
    say: Callable[[str], None],
) -> int:
    """The single images from files[start] (whose bytes are `first`) on, over one stream,
    until a file that goes on its own; returns the index of the first file not taken."""
    taken: list[tuple[Path, bytes]] = []  # what the stream's answers are for, in order
    stop = start  # the first file the stream did not take
    unreadable: SynthlocError | None = None

    def images() -> Iterator[bytes]:
        nonlocal stop, unreadable
        for path in files[start:]:
            try:
                data = first if not taken else read_image_file(path)
            except SynthlocError as error:
                unreadable = error
                return
            if taken and frame_count(data) > 1:  # its frames take a stream of their own
                return
            taken.append((path, data))
            stop += 1
            yield data

    items = client.localize_stream(
        images(), model=options.model, version=options.version, threshold=options.threshold
    )
    for item in items:
        path, data = taken[item.index]
        if item.error is not None:
            raise type(item.error)(f"{path}: {item.error}") from item.error
        assert item.result is not None  # an item holds a result or an error
        _answered(path, data, item.result, len(files) > 1, options, say)
        taken[item.index] = (path, b"")  # printed and drawn: its bytes may go
    if unreadable is not None:
        raise unreadable
    return stop


def _answered(
    path: Path,
    data: bytes,
    result: LocalizeResult,
    several_files: bool,
    options: LocalizeOptions,
    say: Callable[[str], None],
) -> None:
    _report(path, result, None, options, say)
    if options.out is not None:
        from infer_service.decoding import decode_image_bytes

        pixels = decode_image_bytes(data, CLIENT_MAX_PIXELS).pixels
        _draw(overlay_path(options.out, path, several_files, None), pixels, result, say)


def _localize_frames(
    client: LocalizationClient,
    path: Path,
    data: bytes,
    several_files: bool,
    options: LocalizeOptions,
    say: Callable[[str], None],
) -> None:
    count, items = client.localize_frames(
        data, model=options.model, version=options.version, threshold=options.threshold
    )
    pixels = None
    if options.out is not None:  # the same frames again, decoded as the answers come
        from infer_service.decoding import dicom_frames

        pixels = dicom_frames(data, CLIENT_MAX_PIXELS)[1]
    with _progress(path.name, "frame") as bar:
        for item in items:
            bar.update_to(item.index + 1, count)
            _frame_answer(path, item, count, pixels, several_files, options, bar.around(say))


def _frame_answer(
    path: Path,
    item: StreamItem,
    count: int,
    pixels: Iterator[np.ndarray] | None,
    several_files: bool,
    options: LocalizeOptions,
    say: Callable[[str], None],
) -> None:
    frame = (item.index + 1, count)
    if item.error is not None:
        error = item.error
        raise type(error)(f"{path}, frame {frame[0]} of {count}: {error}") from error
    assert item.result is not None  # an item holds a result or an error
    _report(path, item.result, frame, options, say)
    if pixels is not None and options.out is not None:
        target = overlay_path(options.out, path, several_files, frame)
        _draw(target, next(pixels), item.result, say)


def _report(
    path: Path,
    result: LocalizeResult,
    frame: tuple[int, int] | None,
    options: LocalizeOptions,
    say: Callable[[str], None],
) -> None:
    if options.as_json:
        where = {"file": str(path)}
        if frame is not None:
            where |= {"frame": frame[0], "frames": frame[1]}
        say(json.dumps(where | result.to_dict()))
    else:
        say(result.table(str(path) if frame is None else f"{path} frame {frame[0]}/{frame[1]}"))


def _draw(target: Path, pixels: np.ndarray, result: LocalizeResult, say: Callable) -> None:
    from infer_service.overlay import draw_overlay
    from synthloc.imageio import write_png

    write_png(target, draw_overlay(pixels, result.detections))
    say(f"overlay: {target}")


class _Bar:
    """A tqdm bar on stderr (shown on a terminal only) that is told where it stands."""

    def __init__(self, desc: str, unit: str) -> None:
        from tqdm import tqdm

        self._bar = tqdm(desc=desc, unit=unit, file=sys.stderr, disable=None, leave=False)

    def update_to(self, done: int, total: int) -> None:
        self._bar.total = total
        self._bar.update(done - self._bar.n)

    def around(self, say: Callable[[str], None]) -> Callable[[str], None]:
        """`say`, made to print above the bar while the bar shows."""
        if self._bar.disable:
            return say
        return lambda text: self._bar.write(text, file=sys.stdout)

    def close(self) -> None:
        self._bar.close()


@contextmanager
def _progress(desc: str, unit: str) -> Iterator[_Bar]:
    bar = _Bar(desc, unit)
    try:
        yield bar
    finally:
        bar.close()
