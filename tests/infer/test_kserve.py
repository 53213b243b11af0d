"""KServe v2 (inference.GRPCInferenceService) on a real server, called by unmodified tritonclient.

tritonclient registers its own copy of the protocol (grpc_service.proto, package `inference`)
in protobuf's process-wide descriptor pool, as synthloc.kserve does: one process cannot import
both ("duplicate symbol 'inference.ServerLiveRequest'"). So the server runs here and every
tritonclient snippet runs in a fresh interpreter (`triton`); this process never imports
tritonclient, and other test modules may import synthloc.kserve freely.
"""

from __future__ import annotations

import importlib.util
import pickle
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnx
import pytest

import synthloc
from infer_service.batcher import DynamicBatcher
from infer_service.kserve import KServeServicer, add_kserve_to_server
from infer_service.repository import ModelRepository
from synthloc.grpc_errors import ErrorInterceptor
from synthloc.kserve import grpc_predict_v2_pb2 as pb
from synthloc.kserve import grpc_predict_v2_pb2_grpc as pb_grpc
from tests.infer.graphs import analytic_detector, detector_card

needs_tritonclient = pytest.mark.skipif(
    importlib.util.find_spec("tritonclient") is None,
    reason="tritonclient is not installed (pip install tritonclient, in the dev extra)",
)

MODEL = "det"

_PRELUDE = """
import pickle, sys
import numpy as np
import tritonclient.grpc as tc
from tritonclient.utils import InferenceServerException

client = tc.InferenceServerClient(sys.argv[1])

def error(call, *args, **kwargs):
    try:
        call(*args, **kwargs)
    except InferenceServerException as exc:
        return exc.status(), exc.message()
    return None

def image(shape, datatype="FP32", dtype=np.float32):
    data = np.random.default_rng(0).random(shape).astype(dtype)
    tensor = tc.InferInput("image", list(shape), datatype)
    tensor.set_data_from_numpy(data)
    return data, tensor
"""


@dataclass
class Server:
    """A running KServe server and what it serves."""

    address: str
    repository: ModelRepository
    channel: grpc.Channel
    stub: pb_grpc.GRPCInferenceServiceStub
    state: dict[str, bool] = field(default_factory=lambda: {"ready": True})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """ROOT/det/{1,2}/model.onnx behind the ErrorInterceptor and the KServe servicer."""
    root = tmp_path_factory.mktemp("models")
    for version in ("1", "2"):
        (root / MODEL / version).mkdir(parents=True)
        onnx.save(analytic_detector(detector_card()), str(root / MODEL / version / "model.onnx"))
    repository = ModelRepository(root)
    repository.scan()
    batcher = DynamicBatcher(max_batch_size=8, max_queue_delay=0.002, max_queue_size=16)
    grpc_server = grpc.server(ThreadPoolExecutor(4), interceptors=[ErrorInterceptor()])
    state = {"ready": True}
    add_kserve_to_server(KServeServicer(repository, batcher, lambda: state["ready"]), grpc_server)
    port = grpc_server.add_insecure_port("127.0.0.1:0")
    grpc_server.start()
    address = f"127.0.0.1:{port}"
    channel = grpc.insecure_channel(address)
    try:
        yield Server(address, repository, channel, pb_grpc.GRPCInferenceServiceStub(channel), state)
    finally:
        channel.close()
        grpc_server.stop(None)
        batcher.stop()


@pytest.fixture()
def triton(server: Server, tmp_path: Path) -> Callable[[str], Any]:
    """Runs tritonclient code (`client`, `error`, `image` bound) in a fresh interpreter and
    returns the value the code assigns to `result`."""

    def run(code: str) -> Any:
        out = tmp_path / "result.pickle"
        epilogue = "\nwith open(sys.argv[2], 'wb') as out:\n    pickle.dump(result, out)\n"
        script = _PRELUDE + textwrap.dedent(code) + epilogue
        proc = subprocess.run(
            [sys.executable, "-c", script, server.address, str(out)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        with out.open("rb") as f:
            return pickle.load(f)

    return run


def expected_outputs(server: Server, batch: np.ndarray, version: str = "") -> dict:
    """What the served localizer computes for the batch, called directly."""
    return server.repository.get(MODEL, version).localizer.run(batch)


@needs_tritonclient
def test_server_health_and_metadata(server: Server, triton: Callable[[str], Any]) -> None:
    result = triton("""
        meta = client.get_server_metadata()
        result = dict(
            live=client.is_server_live(), ready=client.is_server_ready(),
            name=meta.name, version=meta.version, extensions=list(meta.extensions),
            model=client.is_model_ready("det"), v1=client.is_model_ready("det", "1"),
            unknown=client.is_model_ready("nope"), no_version=client.is_model_ready("det", "9"),
        )
    """)
    assert result == dict(
        live=True,
        ready=True,
        name="synthloc",
        version=synthloc.__version__,
        extensions=[],
        model=True,
        v1=True,
        unknown=False,
        no_version=False,
    )


@needs_tritonclient
def test_model_metadata(server: Server, triton: Callable[[str], Any]) -> None:
    result = triton("""
        meta = client.get_model_metadata("det")
        tensors = lambda ts: [(t.name, t.datatype, list(t.shape)) for t in ts]
        result = dict(name=meta.name, versions=list(meta.versions), platform=meta.platform,
                      inputs=tensors(meta.inputs), outputs=tensors(meta.outputs))
    """)
    assert result == dict(
        name="det",
        versions=["2", "1"],  # newest first
        platform="onnxruntime_onnx",
        inputs=[("image", "FP32", [-1, 1, -1, -1])],
        outputs=[
            ("heatmap", "FP32", [-1, 1, -1, -1]),
            ("size", "FP32", [-1, 2, -1, -1]),
            ("offset", "FP32", [-1, 2, -1, -1]),
        ],
    )


@needs_tritonclient
def test_infer_returns_exactly_the_model_outputs(
    server: Server, triton: Callable[[str], Any]
) -> None:
    result = triton("""
        data, tensor = image((2, 1, 64, 64))
        answer = client.infer("det", [tensor], request_id="req-7")
        response = answer.get_response()
        result = dict(data=data, id=response.id, version=response.model_version,
                      outputs={o.name: answer.as_numpy(o.name) for o in response.outputs})
    """)
    assert (result["id"], result["version"]) == ("req-7", "2")
    expected = expected_outputs(server, result["data"])
    assert list(result["outputs"]) == ["heatmap", "size", "offset"]
    for name, value in expected.items():
        assert result["outputs"][name].shape == value.shape
        np.testing.assert_array_equal(result["outputs"][name], value)
    assert expected["heatmap"].shape == (2, 1, 16, 16)


@needs_tritonclient
def test_infer_honours_requested_outputs_and_version(
    server: Server, triton: Callable[[str], Any]
) -> None:
    result = triton("""
        data, tensor = image((1, 1, 32, 96))
        answer = client.infer("det", [tensor], model_version="1",
                              outputs=[tc.InferRequestedOutput("offset")])
        response = answer.get_response()
        result = dict(data=data, version=response.model_version,
                      names=[o.name for o in response.outputs],
                      offset=answer.as_numpy("offset"), heatmap=answer.as_numpy("heatmap"))
    """)
    assert (result["version"], result["names"], result["heatmap"]) == ("1", ["offset"], None)
    expected = expected_outputs(server, result["data"], "1")["offset"]
    np.testing.assert_array_equal(result["offset"], expected)


@needs_tritonclient
def test_unknown_model_or_version_is_not_found(
    server: Server, triton: Callable[[str], Any]
) -> None:
    result = triton("""
        _, tensor = image((1, 1, 32, 32))
        result = dict(
            infer=error(client.infer, "nope", [tensor]),
            metadata=error(client.get_model_metadata, "nope"),
            version=error(client.infer, "det", [tensor], model_version="9"),
        )
    """)
    for status, message in (result["infer"], result["metadata"]):
        assert status == "StatusCode.NOT_FOUND"
        assert message == "model 'nope' is not loaded (loaded: det)"
    assert result["version"] == (
        "StatusCode.NOT_FOUND",
        "model 'det' has no loaded version '9' (loaded: 1, 2)",
    )


@needs_tritonclient
def test_bad_tensors_are_invalid_argument(server: Server, triton: Callable[[str], Any]) -> None:
    result = triton("""
        _, uint8 = image((1, 1, 64, 64), "UINT8", np.uint8)
        _, rgb = image((1, 3, 64, 64))
        _, odd = image((1, 1, 60, 64))
        _, good = image((1, 1, 64, 64))
        result = dict(
            datatype=error(client.infer, "det", [uint8]),
            channels=error(client.infer, "det", [rgb]),
            size=error(client.infer, "det", [odd]),
            output=error(client.infer, "det", [good],
                         outputs=[tc.InferRequestedOutput("boxes")]),
            still_serves=client.infer("det", [good]).as_numpy("heatmap").shape,
        )
    """)
    shape_rule = "must have shape [B, 1, H, W] with B >= 1 and H, W positive multiples of 32"
    assert result["datatype"][0] == "StatusCode.INVALID_ARGUMENT"
    assert "input 'image' must be FP32 (float32" in result["datatype"][1]
    assert result["datatype"][1].endswith("got UINT8")
    assert result["channels"][0] == result["size"][0] == "StatusCode.INVALID_ARGUMENT"
    assert shape_rule in result["channels"][1] and "got [1, 3, 64, 64]" in result["channels"][1]
    assert shape_rule in result["size"][1] and "got [1, 1, 60, 64]" in result["size"][1]
    assert result["output"] == (
        "StatusCode.INVALID_ARGUMENT",
        "unknown outputs ['boxes']; the model outputs ['heatmap', 'size', 'offset']",
    )
    assert result["still_serves"] == (1, 1, 16, 16)


@needs_tritonclient
def test_expired_timeout_is_dropped_before_compute(
    server: Server, triton: Callable[[str], Any]
) -> None:
    result = triton("""
        _, tensor = image((1, 1, 32, 32))
        result = error(client.infer, "det", [tensor], timeout=1)  # 1 us, Triton's parameter
    """)
    assert result[0] == "StatusCode.DEADLINE_EXCEEDED"
    assert "deadline passed while it waited in the queue" in result[1]


def _request(shape: list[int]) -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest.InferInputTensor(name="image", datatype="FP32", shape=shape)
    return pb.ModelInferRequest(model_name=MODEL, inputs=[tensor])


def test_typed_contents_are_answered_with_typed_contents(server: Server) -> None:
    data = np.random.default_rng(1).random((1, 1, 32, 64), dtype=np.float32)
    request = _request([1, 1, 32, 64])
    request.inputs[0].contents.fp32_contents.extend(data.ravel().tolist())
    response = server.stub.ModelInfer(request)
    assert not response.raw_output_contents
    expected = expected_outputs(server, data)
    for output in response.outputs:
        assert output.datatype == "FP32"
        value = np.array(output.contents.fp32_contents, np.float32).reshape(output.shape)
        np.testing.assert_array_equal(value, expected[output.name])


@pytest.mark.parametrize(
    ("fill", "message"),
    [
        (
            lambda r: r.raw_input_contents.append(b"\0" * 100),
            "input 'image': raw_input_contents holds 100 bytes, but shape [1, 1, 32, 32] of FP32 "
            "needs 4096 (4 per value)",
        ),
        (
            lambda r: (
                r.raw_input_contents.append(b"\0" * 4096),
                r.inputs[0].contents.fp32_contents.append(0.0),
            ),
            "input 'image': set either raw_input_contents or contents, not both",
        ),
        (
            lambda r: None,
            "input 'image': contents.fp32_contents holds 0 values, but shape [1, 1, 32, 32] needs "
            "1024 (or send the bytes in raw_input_contents)",
        ),
        (lambda r: r.ClearField("model_name"), "the model name is empty; name one of ['det']"),
    ],
    ids=["byte-size", "raw-and-typed", "no-data", "no-model-name"],
)
def test_malformed_requests_are_invalid_argument(server: Server, fill: Any, message: str) -> None:
    request = _request([1, 1, 32, 32])
    fill(request)
    with pytest.raises(grpc.RpcError) as caught:
        server.stub.ModelInfer(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == message


def test_readiness_follows_the_server(server: Server) -> None:
    server.state["ready"] = False
    try:
        assert not server.stub.ServerReady(pb.ServerReadyRequest()).ready
        assert not server.stub.ModelReady(pb.ModelReadyRequest(name=MODEL)).ready
        assert server.stub.ServerLive(pb.ServerLiveRequest()).live
    finally:
        server.state["ready"] = True
    assert server.stub.ModelReady(pb.ModelReadyRequest(name=MODEL)).ready


def test_batch_larger_than_the_queue_is_resource_exhausted(server: Server) -> None:
    request = _request([17, 1, 32, 32])
    request.raw_input_contents.append(bytes(17 * 32 * 32 * 4))
    with pytest.raises(grpc.RpcError) as caught:
        server.stub.ModelInfer(request)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert caught.value.details() == (
        "a batch of 17 images exceeds the inference queue (16); send at most 16 per request"
    )
