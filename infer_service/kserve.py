"""The KServe v2 Open Inference Protocol (inference.GRPCInferenceService) over the repository.

So that unmodified KServe and Triton clients (tritonclient[grpc]) can list the models and run
them on raw tensors: the input is the model's own FP32 "image" [B, C, H, W] (already
preprocessed and padded, H and W multiples of the card's size_divisor) and the answer is its
raw outputs (detector: heatmap, size, offset; cam: logits, cam), no decoding.

ModelInfer sends every image of the request through the shared DynamicBatcher rather than
calling ONNX Runtime directly: KServe and Localize traffic then share one compute path, one
bounded queue (RESOURCE_EXHAUSTED), deadlines (DEADLINE_EXCEEDED before compute) and batch
metrics, and many small KServe requests are batched together as Localize requests are.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import grpc
import numpy as np

import synthloc
from infer_service.batcher import DynamicBatcher
from infer_service.repository import LoadedModel, ModelRepository
from synthloc.errors import InvalidInput, NotFound, ResourceExhausted
from synthloc.kserve import grpc_predict_v2_pb2 as pb
from synthloc.kserve import grpc_predict_v2_pb2_grpc as pb_grpc
from synthloc.modelcard import ModelCard

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
PLATFORM = "onnxruntime_onnx"
INPUT_NAME = "image"
DATATYPE = "FP32"
_WIRE_FP32 = np.dtype("<f4")  # the protocol's raw contents are little-endian


def decode_image_batch(request: pb.ModelInferRequest, card: ModelCard) -> np.ndarray:
    """The request's "image" tensor as float32 NCHW, checked against the model card."""
    inputs = request.inputs
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME:
        raise InvalidInput(
            f"the model takes one input {INPUT_NAME!r} ({DATATYPE} [B, {card.input_channels}, "
            f"H, W]); got inputs {[i.name for i in inputs]}"
        )
    tensor = inputs[0]
    if tensor.datatype != DATATYPE:
        raise InvalidInput(
            f"input {INPUT_NAME!r} must be {DATATYPE} (float32, preprocessed as the model card "
            f"says), got {tensor.datatype or 'no datatype'}"
        )
    shape = list(tensor.shape)
    step, channels = card.size_divisor, card.input_channels
    if (
        len(shape) != 4
        or min(shape) <= 0
        or shape[1] != channels
        or shape[2] % step
        or shape[3] % step
    ):
        raise InvalidInput(
            f"input {INPUT_NAME!r} must have shape [B, {channels}, H, W] with B >= 1 and H, W "
            f"positive multiples of {step} (pad bottom/right with zeros), got {shape}"
        )
    count = math.prod(shape)
    raw = request.raw_input_contents
    if raw:
        if tensor.HasField("contents"):
            raise InvalidInput(
                f"input {INPUT_NAME!r}: set either raw_input_contents or contents, not both"
            )
        if len(raw) != 1:
            raise InvalidInput(
                f"raw_input_contents has {len(raw)} entries for 1 input; send one per input"
            )
        if len(raw[0]) != count * _WIRE_FP32.itemsize:
            raise InvalidInput(
                f"input {INPUT_NAME!r}: raw_input_contents holds {len(raw[0])} bytes, but shape "
                f"{shape} of {DATATYPE} needs {count * _WIRE_FP32.itemsize} (4 per value)"
            )
        values = np.frombuffer(raw[0], dtype=_WIRE_FP32)
    else:
        typed = tensor.contents.fp32_contents
        if len(typed) != count:
            raise InvalidInput(
                f"input {INPUT_NAME!r}: contents.fp32_contents holds {len(typed)} values, but "
                f"shape {shape} needs {count} (or send the bytes in raw_input_contents)"
            )
        values = np.asarray(typed, dtype=np.float32)
    return values.astype(np.float32, copy=False).reshape(shape)


def requested_outputs(request: pb.ModelInferRequest, available: Sequence[str]) -> list[str]:
    """The output names to answer with, in the order asked (all of them when none asked)."""
    names = [output.name for output in request.outputs] or list(available)
    unknown = [name for name in names if name not in available]
    if unknown:
        raise InvalidInput(f"unknown outputs {unknown}; the model outputs {list(available)}")
    return names


def run_batch(
    batcher: DynamicBatcher, model: LoadedModel, batch: np.ndarray, deadline: float | None
) -> dict[str, np.ndarray]:
    """Each image through the batcher; the outputs stacked back into the request's batch."""
    if len(batch) > batcher.max_queue_size:
        raise ResourceExhausted(
            f"a batch of {len(batch)} images exceeds the inference queue "
            f"({batcher.max_queue_size}); send at most {batcher.max_queue_size} per request"
        )
    if len(batch) == 1:  # on the caller's thread when nothing else computes
        return {k: v[None] for k, v in batcher.call(model, batch[0], deadline).outputs.items()}
    futures = []
    try:
        for image in batch:
            futures.append(batcher.submit(model, image, deadline))
        results = [future.result() for future in futures]
    except BaseException:
        for future in futures:  # the rest of the batch is answered nowhere: drop it
            future.cancel()
        raise
    return {name: np.stack([r.outputs[name] for r in results]) for name in results[0].outputs}


def encode_outputs(
    response: pb.ModelInferResponse,
    outputs: dict[str, np.ndarray],
    names: Sequence[str],
    raw: bool,
) -> None:
    """Append the named outputs as FP32 tensors, raw bytes or typed contents."""
    for name in names:
        value = np.ascontiguousarray(outputs[name], dtype=_WIRE_FP32)
        tensor = response.outputs.add(name=name, datatype=DATATYPE, shape=value.shape)
        if raw:
            response.raw_output_contents.append(value.tobytes())
        else:
            tensor.contents.fp32_contents.extend(value.ravel().tolist())


def _deadline(request: pb.ModelInferRequest, context: grpc.ServicerContext) -> float | None:
    """The earlier of the call's deadline and Triton's "timeout" parameter (microseconds)."""
    now = time.monotonic()
    limits = []
    remaining = context.time_remaining()
    if remaining is not None:
        limits.append(now + remaining)
    if "timeout" in request.parameters:
        timeout = request.parameters["timeout"]
        if timeout.WhichOneof("parameter_choice") in ("int64_param", "uint64_param"):
            microseconds = timeout.int64_param or timeout.uint64_param
            if microseconds > 0:
                limits.append(now + microseconds / 1e6)
    return min(limits, default=None)


class KServeServicer(pb_grpc.GRPCInferenceServiceServicer):
    """ServerLive/Ready, ModelReady, Server/ModelMetadata and ModelInfer over loaded models."""

    def __init__(
        self,
        repository: ModelRepository,
        batcher: DynamicBatcher,
        ready: Callable[[], bool],
        server_name: str = "synthloc",
        server_version: str = synthloc.__version__,
    ) -> None:
        self.repository, self.batcher, self._ready = repository, batcher, ready
        self.server_name, self.server_version = server_name, server_version

    def _model(self, name: str, version: str) -> LoadedModel:
        if not name:
            loaded = sorted({m.name for m in self.repository.list()})
            raise InvalidInput(f"the model name is empty; name one of {loaded}")
        return self.repository.get(name, version)

    def ServerLive(
        self, request: pb.ServerLiveRequest, context: grpc.ServicerContext
    ) -> pb.ServerLiveResponse:
        """Live while the process answers."""
        return pb.ServerLiveResponse(live=True)

    def ServerReady(
        self, request: pb.ServerReadyRequest, context: grpc.ServicerContext
    ) -> pb.ServerReadyResponse:
        """Ready once models are loaded and warm, and until draining starts."""
        return pb.ServerReadyResponse(ready=self._ready())

    def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.ServicerContext
    ) -> pb.ModelReadyResponse:
        """Whether the model (version) is loaded and the server ready; unknown ones are not."""
        try:
            self._model(request.name, request.version)
        except NotFound:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=self._ready())

    def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.ServicerContext
    ) -> pb.ServerMetadataResponse:
        """The server's name and version; no protocol extensions."""
        return pb.ServerMetadataResponse(name=self.server_name, version=self.server_version)

    def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.ServicerContext
    ) -> pb.ModelMetadataResponse:
        """The model's loaded versions and tensor signatures (-1: any size)."""
        model = self._model(request.name, request.version)
        localizer = model.localizer
        graph_outputs = {o.name: o.shape for o in localizer.session.get_outputs()}
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=model.name,
            versions=[m.version for m in self.repository.list() if m.name == model.name],
            platform=PLATFORM,
            inputs=[
                tensor(
                    name=INPUT_NAME,
                    datatype=DATATYPE,
                    shape=[-1, localizer.card.input_channels, -1, -1],
                )
            ],
            outputs=[
                tensor(
                    name=name,
                    datatype=DATATYPE,
                    shape=[d if isinstance(d, int) else -1 for d in graph_outputs[name]],
                )
                for name in localizer.output_names
            ],
        )

    def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.ServicerContext
    ) -> pb.ModelInferResponse:
        """The model's raw outputs for a preprocessed FP32 image batch."""
        model = self._model(request.model_name, request.model_version)
        batch = decode_image_batch(request, model.localizer.card)
        names = requested_outputs(request, model.localizer.output_names)
        outputs = run_batch(self.batcher, model, batch, _deadline(request, context))
        response = pb.ModelInferResponse(
            model_name=model.name, model_version=model.version, id=request.id
        )
        # Raw answers raw, as Triton does (tritonclient reads only raw_output_contents).
        encode_outputs(response, outputs, names, raw=bool(request.raw_input_contents))
        return response


def add_kserve_to_server(servicer: KServeServicer, server: grpc.Server) -> None:
    """Serve inference.GRPCInferenceService on the server."""
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
