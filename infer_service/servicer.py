"""The thin gRPC layer of LocalizationService: decode the request, call the engine, encode."""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import grpc

from infer_service.decoding import decode_image_bytes, decode_tensor
from infer_service.engine import Localization, LocalizationEngine
from infer_service.metrics import InferMetrics
from synthloc.errors import InvalidInput, SynthlocError
from synthloc.v1 import common_pb2, localization_pb2, localization_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = "synthloc.v1.LocalizationService"
_TASKS = {"detector": localization_pb2.MODEL_TASK_DETECTOR, "cam": localization_pb2.MODEL_TASK_CAM}


class LocalizationServicer(localization_pb2_grpc.LocalizationServiceServicer):
    """Localize, LocalizeStream and ListModels over one engine."""

    def __init__(
        self,
        engine: LocalizationEngine,
        metrics: InferMetrics,
        max_pixels: int,
        stream_parallelism: int = 8,
    ) -> None:
        self.engine, self.metrics, self.max_pixels = engine, metrics, max_pixels
        self.stream_parallelism = stream_parallelism

    def Localize(
        self, request: localization_pb2.LocalizeRequest, context: grpc.ServicerContext
    ) -> localization_pb2.LocalizeResponse:
        return self._answer(request, context)

    def _answer(
        self, request: localization_pb2.LocalizeRequest, context: grpc.ServicerContext
    ) -> localization_pb2.LocalizeResponse:
        started = time.monotonic()
        request_id = request.request_id or uuid.uuid4().hex[:16]
        model_label = request.model_name or "default"
        try:
            decoded = self._decode(request)
            decoded_at = time.monotonic()
            remaining = context.time_remaining()
            result = self.engine.localize(
                decoded.pixels,
                request.model_name,
                request.model_version,
                request.score_threshold if request.HasField("score_threshold") else None,
                request.return_heatmap,
                None if remaining is None else time.monotonic() + remaining,
                _window(request),
            )
        except SynthlocError as exc:
            self.metrics.requests.labels(
                model_label, request.model_version or "latest", exc.grpc_code.name
            ).inc()
            log.info("request %s failed: %s %s", request_id, exc.grpc_code.name, exc)
            raise
        total = time.monotonic() - started
        self._observe(result, total)
        log.debug(
            "request %s: %s/%s, %d detections, %.1f ms",
            request_id,
            result.model.name,
            result.model.version,
            len(result.detections),
            total * 1000,
        )
        return _response(request_id, result, decoded_at - started, total)

    def _decode(self, request: localization_pb2.LocalizeRequest):  # -> DecodedImage
        which = request.WhichOneof("input")
        if which == "encoded_image":
            return decode_image_bytes(request.encoded_image, self.max_pixels)
        if which == "tensor":
            t = request.tensor
            return decode_tensor(t.dtype, list(t.shape), t.data, self.max_pixels)
        raise InvalidInput("the request has no image: set encoded_image (file bytes) or tensor")

    def _observe(self, result: Localization, total: float) -> None:
        model = result.model.name
        self.metrics.requests.labels(model, result.model.version, "OK").inc()
        self.metrics.request_seconds.labels(model).observe(total)
        self.metrics.queue_seconds.labels(model).observe(result.timings["queue"])
        self.metrics.compute_seconds.labels(model).observe(result.timings["compute"])

    def LocalizeStream(
        self,
        request_iterator: Iterator[localization_pb2.LocalizeRequest],
        context: grpc.ServicerContext,
    ) -> Iterator[localization_pb2.LocalizeResponse]:
        # A reader thread takes requests as they come, so clients that wait for each answer
        # and clients that send everything first both work; answers keep request order.
        pending: queue.Queue[Future | None] = queue.Queue(maxsize=self.stream_parallelism)
        over = threading.Event()  # the answers have ended (gRPC closed them): read no more

        def offer(item: Future | None) -> bool:
            """Queue an answer to come (None: the end), unless the stream is over meanwhile:
            nobody would take it, and the reader would wait for ever."""
            while context.is_active() and not over.is_set():
                try:
                    pending.put(item, timeout=0.5)
                    return True
                except queue.Full:
                    continue
            return False

        with ThreadPoolExecutor(self.stream_parallelism, thread_name_prefix="stream") as pool:

            def read() -> None:
                try:
                    for request in request_iterator:
                        try:
                            future = pool.submit(self._stream_item, request, context)
                        except RuntimeError:  # the pool shut down: the answers have ended
                            return
                        if not offer(future):
                            return
                except grpc.RpcError:  # cancelled, or the connection broke: nothing follows
                    log.debug("a stream ended before its client finished sending")
                finally:
                    offer(None)

            threading.Thread(target=read, daemon=True, name="stream-reader").start()
            try:
                while True:
                    try:
                        future = pending.get(timeout=0.5)
                    except queue.Empty:
                        if context.is_active():
                            continue
                        return  # the stream is over: the reader may have left silently
                    if future is None:
                        return
                    yield future.result()
            finally:
                over.set()

    def _stream_item(
        self, request: localization_pb2.LocalizeRequest, context: grpc.ServicerContext
    ) -> localization_pb2.LocalizeResponse:
        try:
            return self._answer(request, context)
        except SynthlocError as exc:
            return localization_pb2.LocalizeResponse(
                request_id=request.request_id,
                error=common_pb2.ItemError(code=exc.grpc_code.value[0], message=str(exc)),
            )

    def ListModels(
        self, request: localization_pb2.ListModelsRequest, context: grpc.ServicerContext
    ) -> localization_pb2.ListModelsResponse:
        models = self.engine.repository.list()
        response = localization_pb2.ListModelsResponse(
            default_model=self.engine.default_model or (models[0].name if models else "")
        )
        for m in models:
            card = m.localizer.card
            response.models.add(
                name=m.name,
                version=m.version,
                task=_TASKS[card.task],
                class_names=card.class_names,
                input_channels=card.input_channels,
                stride=card.stride,
                score_threshold=card.score_threshold,
                provider=m.provider,
                state=localization_pb2.MODEL_STATE_READY,
                model_card_json=card.to_json(),
            )
        return response


def _window(request: localization_pb2.LocalizeRequest) -> tuple[float, float] | None:
    """The request's intensity window, if it sets one (both ends or neither)."""
    low, high = request.HasField("intensity_low"), request.HasField("intensity_high")
    if low != high:
        raise InvalidInput(
            "set both intensity_low and intensity_high (the whole image's percentiles, for a "
            "tile), or neither (the image's own)"
        )
    return (request.intensity_low, request.intensity_high) if low else None


def _response(
    request_id: str, result: Localization, decode_seconds: float, total: float
) -> localization_pb2.LocalizeResponse:
    card = result.model.localizer.card
    response = localization_pb2.LocalizeResponse(
        request_id=request_id,
        model_name=result.model.name,
        model_version=result.model.version,
        provider=result.model.provider,
        image_height=result.height,
        image_width=result.width,
        intensity_low=result.window[0],
        intensity_high=result.window[1],
        timings=localization_pb2.Timings(
            decode_ms=decode_seconds * 1000,
            queue_ms=result.timings["queue"] * 1000,
            compute_ms=result.timings["compute"] * 1000,
            postprocess_ms=result.timings["postprocess"] * 1000,
            total_ms=total * 1000,
        ),
    )
    add = response.detections.add
    for d in result.detections:
        # Filling sub-messages in place: building Box and Point and copying them in took
        # twice as long for a few hundred detections.
        detection = add(class_id=d.class_id, class_name=card.class_names[d.class_id], score=d.score)
        box = detection.box
        box.x, box.y, box.width, box.height = d.box
        detection.point.x, detection.point.y = d.point
    if result.heatmap is not None:
        maps = result.heatmap
        response.heatmap.stride = card.stride
        response.heatmap.maps.CopyFrom(
            common_pb2.Tensor(
                dtype=common_pb2.DTYPE_FLOAT32,
                shape=list(maps.shape),
                data=maps.astype("<f4").tobytes(),
            )
        )
    return response
