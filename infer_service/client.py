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
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from infer_service.client_messages import (
    CLIENT_MAX_PIXELS,
    build_request,
    check_threshold,
    frame_count,
    is_dicom,
    read_image_file,
    result_from_reply,
    tensor_from_array,
)
from infer_service.client_types import (
    Found,
    ImageInput,
    LocalizeResult,
    ModelInfo,
    ModelList,
    StreamItem,
)
from synthloc.errors import InvalidInput, SynthlocError, Unavailable
from synthloc.rpc_client import ServiceClient, error_from_status, status_code
from synthloc.v1 import localization_pb2, localization_pb2_grpc

__all__ = [
    "CLIENT_MAX_PIXELS",
    "Found",
    "LocalizationClient",
    "LocalizeResult",
    "ModelInfo",
    "ModelList",
    "StreamItem",
    "build_request",
    "check_threshold",
    "frame_count",
    "is_dicom",
    "read_image_file",
    "result_from_reply",
    "tensor_from_array",
]


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
        return count, items

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
        on_tile: Callable[[int, int], None] | None = None,
    ) -> LocalizeResult:
        """Localize objects in an image too large for one request (or for the server's pixel
        limit) as overlapping tiles over one stream; one result for the whole image.
        `on_tile(done, total)` is called as each tile's answer arrives (a progress bar).

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
            on_tile=on_tile,
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
        sent = 0  # requests handed to the stream
        lock = threading.Lock()

        def requests() -> Iterator[localization_pb2.LocalizeRequest]:
            nonlocal sent
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
                    request = build_request(
                        image, model, version, threshold, return_heatmap, str(i), window
                    )
                except SynthlocError as exc:
                    with lock:
                        refused[i] = exc
                else:
                    with lock:
                        sent += 1
                    yield request
                i += 1

        def refused_before(index: int | None) -> list[StreamItem]:
            with lock:
                due = sorted(i for i in refused if index is None or i < index)
                return [StreamItem(i, None, refused.pop(i)) for i in due]

        answered = 0
        for reply in self._streaming(self._stub.LocalizeStream, requests(), timeout):
            answered += 1
            index = int(reply.request_id)
            yield from refused_before(index)
            if reply.HasField("error"):
                code = status_code(reply.error.code)
                error = error_from_status(code, reply.error.message, self.peer)
                yield StreamItem(index, None, error)
            else:
                yield StreamItem(index, result_from_reply(reply), None)
        yield from refused_before(None)
        with lock:
            unanswered = sent - answered
        if unanswered:  # the server closed the stream as if it were done
            raise Unavailable(
                f"{self.peer} ended the stream with {unanswered} of {sent} images unanswered; retry"
            )

    def list_models(self) -> ModelList:
        """What the service serves: every loaded version with its card, and the default model."""
        reply = self._unary(self._stub.ListModels, localization_pb2.ListModelsRequest())
        return ModelList.from_proto(reply)
