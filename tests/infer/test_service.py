"""LocalizationService over real channels: answers, batching, reload, limits, auth, TLS, drain."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import onnx
import pytest

from infer_service.server import InferServer, create_server
from infer_service.settings import InferSettings
from synthloc.imageio import encode_png
from synthloc.v1 import common_pb2, localization_pb2, localization_pb2_grpc
from tests.certs import make_pki
from tests.infer.graphs import analytic_detector, detector_card


def _image() -> np.ndarray:
    """A dark 64x96 image with one bright 4x4 square at rows 20-23, columns 40-43."""
    image = np.zeros((64, 96), np.uint8)
    image[20:24, 40:44] = 255
    return image


EXPECTED_BOX = (38.0, 18.0, 8.0, 8.0)  # the analytic detector's 8x8 box around (42, 22)


def _write_model(root: Path, name: str, version: str, **card: object) -> Path:
    path = root / name / version / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(analytic_detector(detector_card(**card)), str(path))
    return path


def _start(root: Path, **overrides: object) -> InferServer:
    fields = {"port": 0, "metrics_port": -1, "poll_seconds": 0, **overrides}
    server, _ = create_server(InferSettings(models=root, **fields))
    server.start()
    return server


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    _write_model(tmp_path / "models", "nuclei", "1")
    return tmp_path / "models"


@pytest.fixture()
def served(
    repo: Path,
) -> Iterator[tuple[InferServer, localization_pb2_grpc.LocalizationServiceStub]]:
    server = _start(repo, max_pixels=100_000)
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield server, localization_pb2_grpc.LocalizationServiceStub(channel)
    server.stop(grace=1)


def _request(**fields: object) -> localization_pb2.LocalizeRequest:
    if "tensor" not in fields:
        fields.setdefault("encoded_image", encode_png(_image()))
    return localization_pb2.LocalizeRequest(**fields)


def test_localize_png_and_tensor_give_the_expected_box(served) -> None:
    _, stub = served
    reply = stub.Localize(_request(request_id="r1"))
    assert reply.request_id == "r1" and (reply.image_height, reply.image_width) == (64, 96)
    assert [
        (d.class_name, d.box.x, d.box.y, d.box.width, d.box.height) for d in reply.detections
    ] == [("nucleus", *EXPECTED_BOX)]
    assert reply.model_name == "nuclei" and reply.model_version == "1"
    assert reply.provider == "CPUExecutionProvider" and reply.timings.total_ms > 0
    tensor = common_pb2.Tensor(
        dtype=common_pb2.DTYPE_UINT8, shape=[64, 96], data=_image().tobytes()
    )
    by_tensor = stub.Localize(localization_pb2.LocalizeRequest(tensor=tensor))
    assert [d.box.x for d in by_tensor.detections] == [EXPECTED_BOX[0]]


def test_stream_answers_every_item_and_survives_a_bad_one(served) -> None:
    _, stub = served
    requests = [_request(request_id=f"tile-{i}") for i in range(5)]
    requests.insert(2, localization_pb2.LocalizeRequest(request_id="bad", encoded_image=b""))
    replies = list(stub.LocalizeStream(iter(requests)))
    assert [r.request_id for r in replies] == [r.request_id for r in requests]
    bad = replies[2]
    assert bad.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "empty" in bad.error.message
    assert all(len(r.detections) == 1 for i, r in enumerate(replies) if i != 2)


def test_a_stream_its_client_abandons_leaves_nothing_behind(
    served, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, stub = served
    died: list[str] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: died.append(args.thread.name))
    before = {t.name for t in threading.enumerate()}
    still_sending = threading.Event()

    def requests() -> Iterator[localization_pb2.LocalizeRequest]:
        yield from (_request(request_id=f"tile-{i}") for i in range(3))
        still_sending.wait(10)  # the client has more to send, then gives up

    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        replies = localization_pb2_grpc.LocalizationServiceStub(channel).LocalizeStream(requests())
        # Every answer so far read: the server waits for the next request and for its answer.
        assert [next(replies).request_id for _ in range(3)] == ["tile-0", "tile-1", "tile-2"]
    still_sending.set()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = {t.name for t in threading.enumerate()} - before
        if not any(name.startswith("stream") for name in left):
            break
        time.sleep(0.1)
    assert not any(name.startswith("stream") for name in left), left
    assert died == []  # the reader met the cancelled stream without an unhandled error
    assert len(stub.Localize(_request()).detections) == 1


@pytest.mark.parametrize(
    ("request_fields", "code", "message"),
    [
        ({"encoded_image": b""}, "INVALID_ARGUMENT", "empty"),
        ({"encoded_image": encode_png(_image())[:60]}, "INVALID_ARGUMENT", "PNG"),
        ({"encoded_image": b"GIF89a" + bytes(64)}, "INVALID_ARGUMENT", "PNG"),
        (
            {"encoded_image": encode_png(np.zeros((400, 400), np.uint8))},
            "RESOURCE_EXHAUSTED",
            "100000",
        ),
        (
            {
                "tensor": common_pb2.Tensor(
                    dtype=common_pb2.DTYPE_UINT8, shape=[64, 96], data=bytes(10)
                )
            },
            "INVALID_ARGUMENT",
            "bytes",
        ),
        ({"model_name": "cells"}, "NOT_FOUND", "model 'cells' is not loaded (loaded: nuclei)"),
        ({"model_version": "7"}, "NOT_FOUND", "has no loaded version '7' (loaded: 1)"),
        ({"encoded_image": None}, "INVALID_ARGUMENT", "set encoded_image"),
        ({"intensity_low": 0.0}, "INVALID_ARGUMENT", "set both intensity_low and intensity_high"),
        (
            {"intensity_low": 9.0, "intensity_high": 9.0},
            "INVALID_ARGUMENT",
            "intensity_high must be above intensity_low, both finite; got (9.0, 9.0)",
        ),
        (
            {"intensity_low": 0.0, "intensity_high": float("nan")},
            "INVALID_ARGUMENT",
            "intensity_high must be above intensity_low",
        ),
    ],
)
def test_bad_requests_get_the_right_code_and_the_server_keeps_serving(
    served, request_fields: dict, code: str, message: str
) -> None:
    _, stub = served
    if request_fields.get("encoded_image", "") is None:
        request = localization_pb2.LocalizeRequest()
    else:
        request = _request(**request_fields)
    with pytest.raises(grpc.RpcError) as err:
        stub.Localize(request)
    assert err.value.code().name == code
    assert message in err.value.details()
    assert len(stub.Localize(_request()).detections) == 1


def test_an_intensity_window_replaces_the_images_own_percentiles(served) -> None:
    _, stub = served
    noise = np.random.default_rng(3).integers(0, 41, (64, 96), dtype=np.uint8)  # no object
    alone = stub.Localize(_request(encoded_image=encode_png(noise)))
    assert len(alone.detections) > 10  # stretched over 0..1 by its own percentiles
    tile = stub.Localize(
        _request(encoded_image=encode_png(noise), intensity_low=0.0, intensity_high=255.0)
    )
    assert list(tile.detections) == []  # as dark as it is in a bright image
    image = _image()  # the known square, 255 on 0: the window of its own percentiles
    same = stub.Localize(
        _request(encoded_image=encode_png(image), intensity_low=0.0, intensity_high=255.0)
    )
    assert [(d.box.x, d.box.y, d.box.width, d.box.height) for d in same.detections] == [
        EXPECTED_BOX
    ]


def test_list_models_and_hot_reload(served, repo: Path) -> None:
    server, stub = served
    assert [
        (m.name, m.version) for m in stub.ListModels(localization_pb2.ListModelsRequest()).models
    ] == [("nuclei", "1")]
    _write_model(repo, "nuclei", "2", score_threshold=0.9)
    (repo / "nuclei" / "3").mkdir()
    (repo / "nuclei" / "3" / "model.onnx").write_bytes(b"not an onnx file")  # rejected
    server.repository.scan()
    listed = stub.ListModels(localization_pb2.ListModelsRequest()).models
    assert [(m.name, m.version, m.score_threshold) for m in listed] == [
        ("nuclei", "2", pytest.approx(0.9)),
        ("nuclei", "1", pytest.approx(0.5)),
    ]
    assert stub.Localize(_request()).model_version == "2"  # newest serves by default
    _write_model(repo, "nuclei", "4")
    server.repository.scan()  # keep_versions=2: version 1 leaves
    assert {m.version for m in stub.ListModels(localization_pb2.ListModelsRequest()).models} == {
        "4",
        "2",
    }


@pytest.mark.parametrize("pad_batches", ["auto", "on"])
def test_dynamic_batching_forms_batches_under_load(repo: Path, pad_batches: str) -> None:
    # This model computes in microseconds: without a queue delay, requests would share a batch
    # only when they happen to arrive during one (test_batcher shows that with a gated model).
    # The tuner is off: it would first try batches of one (test_batcher covers it too).
    # "on" pads each batch to a power of two, a session per shape (auto: only on CUDA).
    server = _start(repo, tune_batch_size=False, max_queue_delay_ms=20.0, pad_batches=pad_batches)
    results = []
    start = threading.Barrier(24)

    def call(stub: localization_pb2_grpc.LocalizationServiceStub) -> None:
        start.wait()
        results.append(stub.Localize(_request()))

    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = localization_pb2_grpc.LocalizationServiceStub(channel)
        threads = [threading.Thread(target=call, args=(stub,)) for _ in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    server.stop(grace=1)
    assert len(results) == 24 and all(len(r.detections) == 1 for r in results)
    boxes = {(d.box.x, d.box.y, d.box.width, d.box.height) for r in results for d in r.detections}
    assert boxes == {EXPECTED_BOX}
    shapes = server.repository.get("nuclei").localizer.session_shapes
    assert {shape[0] for shape in shapes} == ({1, 2, 4, 8} if pad_batches == "on" else set())
    histogram = server.metrics.batch_size.labels("nuclei")
    total = sum(s.value for s in histogram.collect()[0].samples if s.name.endswith("_sum"))
    count = sum(s.value for s in histogram.collect()[0].samples if s.name.endswith("_count"))
    assert total >= 24 and count < 24  # some requests shared a batch


def test_expired_deadline_and_full_queue(repo: Path) -> None:
    server = _start(repo, max_queue_size=0)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = localization_pb2_grpc.LocalizationServiceStub(channel)
            with pytest.raises(grpc.RpcError) as err:
                stub.Localize(_request())
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "queue is full" in err.value.details()
    finally:
        server.stop(grace=1)
    slow = _start(repo, max_queue_delay_ms=300.0, max_batch_size=64, tune_batch_size=False)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{slow.port}") as channel:
            stub = localization_pb2_grpc.LocalizationServiceStub(channel)
            with pytest.raises(grpc.RpcError) as err:
                stub.Localize(_request(), timeout=0.1)
            assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        slow.stop(grace=1)


def test_bearer_token_is_required_when_configured(repo: Path) -> None:
    server = _start(repo, auth_token="s3cret")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = localization_pb2_grpc.LocalizationServiceStub(channel)
            with pytest.raises(grpc.RpcError) as err:
                stub.Localize(_request())
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "authorization: Bearer <token>" in err.value.details()
            with pytest.raises(grpc.RpcError) as err:
                stub.Localize(_request(), metadata=[("authorization", "Bearer wrong")])
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            ok = stub.Localize(_request(), metadata=[("authorization", "Bearer s3cret")])
            assert len(ok.detections) == 1
    finally:
        server.stop(grace=1)


def test_mutual_tls_refuses_a_wrong_client_certificate(repo: Path, tmp_path: Path) -> None:
    make_pki(tmp_path)
    server = _start(
        repo,
        tls_cert=tmp_path / "server.pem",
        tls_key=tmp_path / "server.key",
        tls_client_ca=tmp_path / "ca.pem",
    )
    read = lambda name: (tmp_path / name).read_bytes()  # noqa: E731
    try:
        good = grpc.ssl_channel_credentials(read("ca.pem"), read("client.key"), read("client.pem"))
        with grpc.secure_channel(f"127.0.0.1:{server.port}", good) as channel:
            stub = localization_pb2_grpc.LocalizationServiceStub(channel)
            assert len(stub.Localize(_request(), timeout=10).detections) == 1
        bad = grpc.ssl_channel_credentials(
            read("ca.pem"), read("intruder.key"), read("intruder.pem")
        )
        with grpc.secure_channel(f"127.0.0.1:{server.port}", bad) as channel:
            stub = localization_pb2_grpc.LocalizationServiceStub(channel)
            with pytest.raises(grpc.RpcError) as err:
                stub.Localize(_request(), timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(grace=1)


def test_drain_finishes_in_flight_requests(repo: Path) -> None:
    server = _start(repo, max_queue_delay_ms=500.0, max_batch_size=64, tune_batch_size=False)
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = localization_pb2_grpc.LocalizationServiceStub(channel)
        future = stub.Localize.future(_request())
        time.sleep(0.1)  # the request now waits in the batcher
        started = time.monotonic()
        server.stop(grace=5)
        assert len(future.result().detections) == 1
        assert time.monotonic() - started < 5


def test_require_gpu_fails_loudly_on_a_cpu_machine(repo: Path) -> None:
    from infer_service.repository import cuda_usable
    from synthloc.errors import FailedPrecondition

    if cuda_usable():  # on a GPU host the model really runs on CUDA and startup succeeds
        server = _start(repo, require_gpu=True)
        assert server.repository.list()[0].provider == "CUDAExecutionProvider"
        server.stop(grace=1)
        return
    with pytest.raises(FailedPrecondition, match="runs on CPUExecutionProvider, and --require-gpu"):
        create_server(InferSettings(models=repo, port=0, metrics_port=-1, require_gpu=True))


def test_cuda_preload_keeps_stdout_clean_and_logs_what_it_missed(
    capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    """onnxruntime.preload_dlls prints each library it cannot load; the service must not."""
    import onnxruntime as ort

    from infer_service.repository import cuda_usable, preload_cuda_libraries

    with caplog.at_level(logging.DEBUG, logger="infer_service.repository"):
        preload_cuda_libraries.__wrapped__()  # past the cache: run it again here
    assert capsys.readouterr().out == ""
    gpu_package = hasattr(ort, "preload_dlls") and "CUDAExecutionProvider" in (
        ort.get_available_providers()
    )
    if gpu_package and not cuda_usable():  # onnxruntime-gpu without CUDA: the log names it
        assert any("preload_dlls" in r.message and ".so" in r.message for r in caplog.records)


def test_health_goes_serving_on_start_and_reflection_lists_services(repo: Path) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    server, _ = create_server(InferSettings(models=repo, port=0, metrics_port=-1, poll_seconds=0))
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        check = health_pb2.HealthCheckRequest(service="synthloc.v1.LocalizationService")
        # Created (models loaded) but not started: the health servicer already says no.
        assert server.health.Check(check, None).status == (
            health_pb2.HealthCheckResponse.NOT_SERVING
        )
        server.start()
        assert health.Check(check).status == health_pb2.HealthCheckResponse.SERVING
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
        assert {"synthloc.v1.LocalizationService", "inference.GRPCInferenceService"} <= services
    server.stop(grace=1)
