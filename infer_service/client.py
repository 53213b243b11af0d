"""LocalizationClient: a small typed client for the inference service.

    with LocalizationClient("127.0.0.1:8001") as client:
        result = client.localize("slide.png", threshold=0.4)
        for found in result.detections:
            print(found.class_name, found.score, found.box)

Failed calls raise the synthloc.errors class of their status code (InvalidInput, NotFound,
Unavailable, ...), with a message that names the server and repeats its explanation.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from infer_service.client_types import (
    Found,
    ImageInput,
    LocalizeResult,
    ModelInfo,
    ModelList,
    StreamItem,
)
from synthloc.errors import InvalidInput, NotFound, SynthlocError, Unavailable
from synthloc.rpc_client import ServiceClient, error_from_status, status_code
from synthloc.v1 import common_pb2, localization_pb2, localization_pb2_grpc

__all__ = ["Found", "LocalizationClient", "LocalizeResult", "ModelInfo", "ModelList", "StreamItem"]

# Frames a client decodes from its own files before sending them: no limit worth the name
# (the service applies its own to each frame it is sent).
CLIENT_MAX_PIXELS = 1 << 34
_TENSOR_DTYPES = {
    np.dtype(np.uint8): common_pb2.DTYPE_UINT8,
    np.dtype(np.uint16): common_pb2.DTYPE_UINT16,
    np.dtype(np.float32): common_pb2.DTYPE_FLOAT32,
}


class LocalizationClient(ServiceClient):
    """Calls synthloc.v1.LocalizationService at `target` (see ServiceClient for TLS and tokens)."""

    service_name = "synthloc.v1.LocalizationService"
    description = "inference service"
    stub_class = localization_pb2_grpc.LocalizationServiceStub

    def localize(
        self,
        image: ImageInput,
        *,
        model: str = "",
        version: str = "",
        threshold: float | None = None,
        return_heatmap: bool = False,
        request_id: str = "",
    ) -> LocalizeResult:
        """Localize objects in one image: encoded bytes (PNG, JPEG, TIFF, DICOM), a file path,
        or an HW / HWC array (uint8, uint16 or float32). Empty model and version: the server's
        default model, newest version; threshold None: the model card's."""
        request = build_request(image, model, version, threshold, return_heatmap, request_id)
        return result_from_reply(self._unary(self._stub.Localize, request))

    def localize_bytes(
        self, data: bytes, model: str = "", version: str = "", score_threshold: float | None = None
    ) -> LocalizeResult:
        """Localize objects in an encoded image (PNG, JPEG, TIFF or DICOM bytes)."""
        return self.localize(data, model=model, version=version, threshold=score_threshold)

    def localize_file(
        self, path: Path, model: str = "", version: str = "", score_threshold: float | None = None
    ) -> LocalizeResult:
        """Localize objects in an image file."""
        return self.localize(Path(path), model=model, version=version, threshold=score_threshold)

    def localize_stream(
        self,
        images: Iterable[ImageInput],
        *,
        model: str = "",
        version: str = "",
        threshold: float | None = None,
        return_heatmap: bool = False,
        timeout: float | None = None,
        window: tuple[float, float] | None = None,
    ) -> Iterator[StreamItem]:
        """Localize many images over one stream, read lazily from `images`.

        Yields one StreamItem per image, in input order, with the image's position as `index`.
        An image that cannot be read or is refused yields an item with `error` set, and the
        stream goes on; a broken stream raises. `timeout` bounds the whole stream (default
        none). `window` (low, high) has the server scale every image from low to high instead
        of by its own percentiles: for tiles of one image, that image's (see localize_tiled).
        """
        check_threshold(threshold)  # here, not per image: it would refuse every one
        return self._stream_items(
            images, model, version, threshold, return_heatmap, timeout, window
        )

    def localize_frames(
        self,
        dicom: bytes | Path,
        *,
        model: str = "",
        version: str = "",
        threshold: float | None = None,
        timeout: float | None = None,
    ) -> tuple[int, Iterator[StreamItem]]:
        """Localize every frame of a DICOM Part-10 file (bytes or a path) over one stream:
        (the number of frames, an item per frame in frame order, `index` 0-based).

        The frames are decoded here, one at a time as the stream takes them, by the rules the
        service applies to a single-frame file, and sent as tensors: a multi-frame file does
        not fit one request, and the service refuses it. A file that cannot be opened raises
        InvalidInput; a frame that cannot be decoded ends the stream with an item for it.
        """
        from infer_service.decoding import dicom_frames

        data = read_image_file(Path(dicom)) if isinstance(dicom, (str, Path)) else bytes(dicom)
        if not is_dicom(data):
            raise InvalidInput("not a DICOM Part-10 file (no 'DICM' after the 128-byte preamble)")
        check_threshold(threshold)
        count, frames = dicom_frames(data, CLIENT_MAX_PIXELS)
        items = self._stream_items(frames, model, version, threshold, False, timeout)
        return count, _all_of(items, count)

    def localize_tiled(
        self,
        image: ImageInput,
        *,
        tile: int = 1024,
        overlap: int = 128,
        model: str = "",
        version: str = "",
        threshold: float | None = None,
        timeout: float | None = None,
    ) -> LocalizeResult:
        """Localize objects in an image too large for one request (or for the server's pixel
        limit) as overlapping tiles over one stream; one result for the whole image.

        The image (bytes, path or array) is decoded here. Every tile is scaled by the whole
        image's percentiles, and each object is kept once, from the tile that holds its
        centre away from the tile's edges (infer_service.tiling); objects up to `overlap`
        pixels across are seen whole. An image no larger than a tile goes in one piece.
        """
        from infer_service.tiling import localize_in_tiles

        check_threshold(threshold)
        return localize_in_tiles(
            self,
            image,
            tile,
            overlap,
            model=model,
            version=version,
            threshold=threshold,
            timeout=timeout,
        )

    def _stream_items(
        self,
        images: Iterable[ImageInput],
        model: str,
        version: str,
        threshold: float | None,
        return_heatmap: bool,
        timeout: float | None,
        window: tuple[float, float] | None = None,
    ) -> Iterator[StreamItem]:
        refused: dict[int, SynthlocError] = {}  # images that failed before they could be sent
        lock = threading.Lock()

        def requests() -> Iterator[localization_pb2.LocalizeRequest]:
            source, i = iter(images), 0
            while True:
                try:
                    image = next(source)
                except StopIteration:
                    return
                except SynthlocError as exc:  # reading the images failed: nothing follows
                    with lock:
                        refused[i] = exc
                    return
                try:
                    yield build_request(
                        image, model, version, threshold, return_heatmap, str(i), window
                    )
                except SynthlocError as exc:
                    with lock:
                        refused[i] = exc
                i += 1

        def refused_before(index: int | None) -> list[StreamItem]:
            with lock:
                due = sorted(i for i in refused if index is None or i < index)
                return [StreamItem(i, None, refused.pop(i)) for i in due]

        for reply in self._streaming(self._stub.LocalizeStream, requests(), timeout):
            index = int(reply.request_id)
            yield from refused_before(index)
            if reply.HasField("error"):
                code = status_code(reply.error.code)
                error = error_from_status(code, reply.error.message, self.peer)
                yield StreamItem(index, None, error)
            else:
                yield StreamItem(index, result_from_reply(reply), None)
        yield from refused_before(None)

    def list_models(self) -> ModelList:
        """What the service serves: every loaded version with its card, and the default model."""
        reply = self._unary(self._stub.ListModels, localization_pb2.ListModelsRequest())
        return ModelList.from_proto(reply)


def _all_of(items: Iterator[StreamItem], count: int) -> Iterator[StreamItem]:
    """The items, then Unavailable if the stream ended before `count` of them."""
    seen, last = 0, None
    for last in items:
        seen += 1
        yield last
    # Fewer are expected only after a frame that could not be read here, which ends the stream.
    if seen < count and (last is None or last.ok):
        raise Unavailable(f"the stream ended after {seen} of {count} frames; retry")


def is_dicom(data: bytes) -> bool:
    """True for DICOM Part-10 bytes: a 128-byte preamble, then 'DICM'."""
    return data[128:132] == b"DICM"


def frame_count(data: bytes) -> int:
    """How many images encoded bytes hold: a DICOM file's Number of Frames (read from its
    header only), else 1. A header that cannot be read counts 1: the service will say why."""
    if not is_dicom(data):
        return 1
    from io import BytesIO

    from pydicom import dcmread

    try:
        ds = dcmread(BytesIO(data), stop_before_pixels=True, specific_tags=["NumberOfFrames"])
        return max(int(ds.get("NumberOfFrames") or 1), 1)
    except Exception:  # pydicom raises many kinds on malformed headers
        return 1


def check_threshold(threshold: float | None) -> None:
    """InvalidInput unless the score threshold is None or in [0, 1]."""
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise InvalidInput(f"threshold: must be in [0, 1], got {threshold}")


def build_request(
    image: ImageInput,
    model: str = "",
    version: str = "",
    threshold: float | None = None,
    return_heatmap: bool = False,
    request_id: str = "",
    window: tuple[float, float] | None = None,
) -> localization_pb2.LocalizeRequest:
    """The LocalizeRequest for one image; InvalidInput / NotFound for what cannot be sent.
    `window`: the intensities the server scales to 0 and 1 (for a tile: its image's)."""
    check_threshold(threshold)
    request = localization_pb2.LocalizeRequest(
        request_id=request_id,
        model_name=model,
        model_version=version,
        return_heatmap=return_heatmap,
    )
    if window is not None:
        request.intensity_low, request.intensity_high = window
    if threshold is not None:
        request.score_threshold = threshold
    if isinstance(image, np.ndarray):
        request.tensor.CopyFrom(tensor_from_array(image))
    elif isinstance(image, (bytes, bytearray, memoryview)):
        request.encoded_image = bytes(image)
    elif isinstance(image, (str, Path)):
        request.encoded_image = read_image_file(Path(image))
    else:
        raise InvalidInput(
            "image: expected encoded image bytes, a file path or a numpy array, got "
            f"{type(image).__name__}"
        )
    return request


def read_image_file(path: Path) -> bytes:
    """The bytes of an image file, with errors that name it."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise NotFound(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InvalidInput(f"{path}: is a folder; give an image file") from None
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read ({exc.strerror})") from None


def tensor_from_array(pixels: np.ndarray) -> common_pb2.Tensor:
    """An HW or HWC array as a little-endian Tensor message."""
    dtype = pixels.dtype.newbyteorder("=")
    if dtype not in _TENSOR_DTYPES:
        raise InvalidInput(
            f"image: arrays of {pixels.dtype} are not supported; convert to uint8, uint16 or "
            "float32 (e.g. pixels.astype(np.float32))"
        )
    if pixels.ndim not in (2, 3):
        raise InvalidInput(f"image: expected an HW or HWC array, got shape {pixels.shape}")
    data = np.ascontiguousarray(pixels, dtype=dtype.newbyteorder("<")).tobytes()
    return common_pb2.Tensor(dtype=_TENSOR_DTYPES[dtype], shape=list(pixels.shape), data=data)


def result_from_reply(reply: localization_pb2.LocalizeResponse) -> LocalizeResult:
    """A LocalizeResponse as a LocalizeResult."""
    heatmap = None
    if reply.HasField("heatmap") and reply.heatmap.HasField("maps"):
        maps = reply.heatmap.maps
        heatmap = np.frombuffer(maps.data, "<f4").reshape(tuple(maps.shape)).astype(np.float32)
    t = reply.timings
    return LocalizeResult(
        detections=[
            Found(
                d.class_name,
                d.score,
                (d.box.x, d.box.y, d.box.width, d.box.height),
                (d.point.x, d.point.y),
                d.class_id,
            )
            for d in reply.detections
        ],
        model=reply.model_name,
        version=reply.model_version,
        provider=reply.provider,
        height=reply.image_height,
        width=reply.image_width,
        total_ms=t.total_ms,
        request_id=reply.request_id,
        timings_ms={
            "decode": t.decode_ms,
            "queue": t.queue_ms,
            "compute": t.compute_ms,
            "postprocess": t.postprocess_ms,
        },
        heatmap=heatmap,
        heatmap_stride=reply.heatmap.stride if heatmap is not None else 0.0,
    )
