"""Large images as tiles: the plan, and localize_tiled against a real server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
import pytest

from infer_service.client import LocalizationClient
from infer_service.client_types import Found
from infer_service.server import InferServer
from infer_service.servicer import LocalizationServicer
from infer_service.tiling import plan_tiles
from synthloc.cli import main
from synthloc.errors import FailedPrecondition, InvalidInput, ResourceExhausted, Unavailable
from synthloc.imageio import write_png
from synthloc.v1 import localization_pb2_grpc
from tests.infer.test_service import _start, _write_model

HEIGHT, WIDTH, TILE, OVERLAP = 1000, 1500, 512, 64
# A 4x4 square every 40 px in the left 1000 columns: 625 objects, 0.67 % of the pixels, so
# the image's 99.9th percentile is the squares' 255. The right 500 columns hold noise only.
SQUARES = [(r, c) for r in range(20, 1000, 40) for c in range(20, 1000, 40)]
EXPECTED = sorted((c - 2.0, r - 2.0, 8.0, 8.0) for r, c in SQUARES)


def _big_image() -> np.ndarray:
    image = np.random.default_rng(11).integers(0, 41, (HEIGHT, WIDTH), dtype=np.uint8)
    for r, c in SQUARES:
        image[r : r + 4, c : c + 4] = 255
    return image


@pytest.mark.parametrize(("height", "width"), [(1000, 1500), (512, 513), (100, 2000), (7, 9)])
@pytest.mark.parametrize(("tile", "overlap"), [(512, 64), (256, 128), (64, 0)])
def test_the_cores_split_the_image_and_keep_clear_of_the_tile_edges(
    height: int, width: int, tile: int, overlap: int
) -> None:
    tiles = plan_tiles(height, width, tile, overlap)
    owners = np.zeros((height, width), np.int32)
    ys, xs = np.mgrid[0:height, 0:width] + 0.5  # pixel centres
    for t in tiles:
        assert 0 <= t.top < t.bottom <= height and 0 <= t.left < t.right <= width
        assert t.bottom - t.top == min(tile, height) and t.right - t.left == min(tile, width)
        top, left, bottom, right = t.core
        inside = (ys >= top) & (ys < bottom) & (xs >= left) & (xs < right)
        owners += inside
        # An object owned here, up to `overlap` px across, lies whole in the tile.
        assert not inside.any() or (
            (t.top == 0 or top - t.top >= overlap / 2)
            and (t.bottom == height or t.bottom - bottom >= overlap / 2)
            and (t.left == 0 or left - t.left >= overlap / 2)
            and (t.right == width or t.right - right >= overlap / 2)
        )
    assert (owners == 1).all()  # every pixel has exactly one owner


def test_a_point_on_the_image_edge_has_an_owner() -> None:
    tiles = plan_tiles(HEIGHT, WIDTH, TILE, OVERLAP)
    for point in [(0.0, 0.0), (WIDTH, HEIGHT), (WIDTH, 0.0), (749.0, HEIGHT)]:
        found = [t for t in tiles if t.owns(Found("x", 1.0, (0, 0, 1, 1), _local(t, point)))]
        assert len(found) == 1


def _local(tile, point: tuple[float, float]) -> tuple[float, float]:
    return point[0] - tile.left, point[1] - tile.top


def _boxes(founds: list[Found]) -> list[tuple[float, ...]]:
    return sorted(f.box for f in founds)


def test_tiles_find_every_object_once_and_nothing_in_the_empty_ones(
    server: InferServer,
) -> None:
    image = _big_image()
    with LocalizationClient(f"127.0.0.1:{server.port}") as client:
        result = client.localize_tiled(image, tile=TILE, overlap=OVERLAP)
        small = client.localize_tiled(image[:300, :400], tile=TILE, overlap=OVERLAP)
        whole = client.localize(image[:300, :400])
    assert (result.height, result.width) == (HEIGHT, WIDTH) and len(
        plan_tiles(1000, 1500, 512, 64)
    ) == 12
    assert _boxes(result.detections) == EXPECTED  # 625, none doubled, none lost at the seams
    assert result.model == "nuclei" and result.timings_ms["compute"] > 0
    assert _boxes(small.detections) == _boxes(whole.detections)  # one tile: sent whole


def test_a_tile_the_server_refuses_names_the_tile(tmp_path: Path) -> None:
    _write_model(tmp_path / "models", "nuclei", "1")
    strict = _start(tmp_path / "models", max_pixels=200_000)  # a 512 x 512 tile has 262144
    try:
        with LocalizationClient(f"127.0.0.1:{strict.port}") as client:
            with pytest.raises(ResourceExhausted) as info:
                client.localize_tiled(_big_image(), tile=TILE, overlap=OVERLAP)
            assert "tile 1 of 12 (rows 0-511, columns 0-511): inference service at" in str(
                info.value
            )
            assert "the image is 512x512 = 262144 pixels, above this server's limit" in str(
                info.value
            )
            found = client.localize_tiled(_big_image(), tile=384, overlap=OVERLAP)
    finally:
        strict.stop(grace=1)
    assert _boxes(found.detections) == EXPECTED


def test_bad_tiling_is_refused_before_anything_is_sent(server: InferServer) -> None:
    with LocalizationClient(f"127.0.0.1:{server.port}") as client:
        for tile, overlap in [(32, 0), (512, 300), (512, -1)]:
            with pytest.raises(InvalidInput, match="tiles must be at least 64 pixels and overlap"):
                client.localize_tiled(_big_image(), tile=tile, overlap=overlap)


def test_localize_tile_flag(
    server: InferServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slide = tmp_path / "slide.png"
    write_png(slide, _big_image())
    address = f"127.0.0.1:{server.port}"
    assert main(["localize", "--server", address, str(slide), "--tile", "512", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["file"] == str(slide) and (printed["height"], printed["width"]) == (1000, 1500)
    assert sorted(tuple(d["box"]) for d in printed["detections"]) == EXPECTED
    assert main(["localize", "--server", address, str(slide), "--tile", "16"]) == 2
    assert "tiles must be at least 64 pixels and overlap by 0 to half a tile; got tile 16" in (
        capsys.readouterr().err
    )


class _Predating(LocalizationServicer):
    """The service as a build from before intensity windows answers: protobuf drops the fields
    it does not know, so each tile is scaled by its own percentiles and nothing is echoed."""

    def _answer(self, request, context):  # the servicer's own signature
        request.ClearField("intensity_low")
        request.ClearField("intensity_high")
        response = super()._answer(request, context)
        response.ClearField("intensity_low")
        response.ClearField("intensity_high")
        return response


@contextmanager
def _serving(servicer: LocalizationServicer) -> Iterator[int]:
    """A real gRPC server of `servicer` on a free port; yields the port."""
    other = grpc.server(ThreadPoolExecutor(4))
    localization_pb2_grpc.add_LocalizationServiceServicer_to_server(servicer, other)
    port = other.add_insecure_port("127.0.0.1:0")
    other.start()
    try:
        yield port
    finally:
        other.stop(grace=1).wait()


class _Quitting(LocalizationServicer):
    """A faulty service: it closes a stream, without an error, after its first answer."""

    def LocalizeStream(self, request_iterator, context):  # the servicer's own signature
        yield next(iter(super().LocalizeStream(request_iterator, context)))


def test_a_stream_closed_before_every_answer_is_an_error_not_a_short_result(
    server: InferServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    died: list[str] = []  # the server's reader must not die when its answers are closed
    monkeypatch.setattr(threading, "excepthook", lambda args: died.append(str(args.exc_value)))
    image = _big_image()[:300, :400]
    short = r"ended the stream with [1-9]\d* of \d+ images unanswered; retry"
    servicer = _Quitting(server.engine, server.metrics, 1 << 30)
    with _serving(servicer) as port, LocalizationClient(f"127.0.0.1:{port}") as client:
        items = client.localize_stream([image, image, image])
        assert next(items).ok
        with pytest.raises(Unavailable, match=short):
            next(items)  # not StopIteration: two answers are missing
        with pytest.raises(Unavailable, match=short):
            client.localize_tiled(_big_image(), tile=TILE, overlap=OVERLAP)
    assert died == []


def test_a_server_that_predates_windows_is_not_trusted_with_tiles(server: InferServer) -> None:
    servicer = _Predating(server.engine, server.metrics, 1 << 30)
    with _serving(servicer) as port, LocalizationClient(f"127.0.0.1:{port}") as client:
        with pytest.raises(FailedPrecondition) as info:
            client.localize_tiled(_big_image(), tile=TILE, overlap=OVERLAP)
        whole = client.localize(_big_image()[:300, :400])  # one piece needs no window
    assert str(info.value) == (
        f"inference service at 127.0.0.1:{port} scaled a tile from its own percentiles instead "
        "of the image's (0.0, 255.0): it predates intensity windows; upgrade it to localize in "
        "tiles"
    )
    assert whole.intensity_window is None and len(whole.detections) > 0


def test_the_answer_says_how_the_image_was_scaled(server: InferServer) -> None:
    image = _big_image()[:300, :400]
    with LocalizationClient(f"127.0.0.1:{server.port}") as client:
        own = client.localize(image)
        given = next(client.localize_stream([image], window=(3.0, 200.0)))
    assert own.intensity_window == (0.0, 255.0)  # its 1st and 99.9th percentiles
    assert given.result.intensity_window == (3.0, 200.0)
