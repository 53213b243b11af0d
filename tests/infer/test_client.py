"""LocalizationClient against a real server: inputs, streams, models, heatmaps, errors, auth."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from infer_service.client import LocalizationClient
from infer_service.server import InferServer
from synthloc.errors import InvalidInput, NotFound, Unauthenticated, Unavailable
from synthloc.imageio import encode_png
from synthloc.modelcard import METADATA_KEY
from tests.certs import make_pki
from tests.infer.graphs import detector_card
from tests.infer.test_service import EXPECTED_BOX, _image, _start, _write_model


def analytic_cam() -> onnx.ModelProto:
    """A CAM localizer whose map is 10 x (4x4 mean brightness) - 5 and logit the map's max."""
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, "h", "w"])
    outputs = [
        helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1]),
        helper.make_tensor_value_info("cam", TensorProto.FLOAT, ["batch", 1, "rows", "cols"]),
    ]
    weights = [
        numpy_helper.from_array(np.full((1, 1, 1, 1), 10.0, np.float32), "w"),
        numpy_helper.from_array(np.full(1, -5.0, np.float32), "b"),
    ]
    nodes = [
        helper.make_node("AveragePool", ["image"], ["mean"], kernel_shape=[4, 4], strides=[4, 4]),
        helper.make_node("Conv", ["mean", "w", "b"], ["cam"]),
        helper.make_node("ReduceMax", ["cam"], ["logits"], axes=[2, 3], keepdims=0),
    ]
    graph = helper.make_graph(nodes, "analytic_cam", [image], outputs, weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {METADATA_KEY: detector_card(task="cam").to_json()})
    return model


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InferServer]:
    root = tmp_path_factory.mktemp("models")
    _write_model(root, "nuclei", "1")
    (root / "weak" / "1").mkdir(parents=True)
    onnx.save(analytic_cam(), str(root / "weak" / "1" / "model.onnx"))
    srv = _start(root, default_model="nuclei")
    yield srv
    srv.stop(grace=1)


@pytest.fixture()
def client(server: InferServer) -> Iterator[LocalizationClient]:
    with LocalizationClient(f"127.0.0.1:{server.port}") as c:
        yield c


def _boxes(result) -> list[tuple]:
    return [(d.class_name, *d.box) for d in result.detections]


def test_every_kind_of_input_gives_the_expected_box(client, tmp_path: Path) -> None:
    png = tmp_path / "slide.png"
    png.write_bytes(encode_png(_image()))
    big_endian = (_image().astype(np.uint16) * 257).astype(">u2")
    colour = np.repeat(_image()[..., None], 3, axis=2).astype(np.float32)
    for image in (png.read_bytes(), png, str(png), _image(), big_endian, colour):
        result = client.localize(image, request_id="r7")
        assert _boxes(result) == [("nucleus", *EXPECTED_BOX)]
        assert result.request_id == "r7" and (result.height, result.width) == (64, 96)
    assert (result.model, result.version, result.provider) == (
        "nuclei",
        "1",
        "CPUExecutionProvider",
    )
    assert set(result.timings_ms) == {"decode", "queue", "compute", "postprocess"}
    assert json.loads(json.dumps(result.to_dict()))["detections"][0]["box"] == list(EXPECTED_BOX)
    assert client.localize(png, threshold=0.999).detections == []  # the square scores 0.993
    assert _boxes(client.localize_file(png, "nuclei", "1", 0.5)) == _boxes(result)


def test_cam_heatmap_comes_back_as_an_array(client) -> None:
    result = client.localize(_image(), model="weak", return_heatmap=True)
    assert result.heatmap is not None and result.heatmap.shape == (1, 16, 24)
    assert result.heatmap_stride == 4.0 and result.heatmap.dtype == np.float32
    assert np.unravel_index(result.heatmap[0].argmax(), (16, 24)) == (5, 10)  # the square's cell
    assert [d.point for d in result.detections] == [(42.0, 22.0)]
    assert "heatmap" not in result.to_dict()
    with pytest.raises(InvalidInput, match="return_heatmap needs a CAM model; nuclei is a"):
        client.localize(_image(), return_heatmap=True)


def test_errors_are_synthloc_errors_naming_the_server(client, server: InferServer) -> None:
    with pytest.raises(NotFound) as err:
        client.localize(_image(), model="cells")
    assert str(err.value) == (
        f"inference service at 127.0.0.1:{server.port} answered NOT_FOUND: model 'cells' is "
        "not loaded (loaded: nuclei, weak)"
    )
    assert err.value.grpc_code == grpc.StatusCode.NOT_FOUND and err.value.exit_code == 2
    with pytest.raises(InvalidInput, match=r"answered INVALID_ARGUMENT: .*empty"):
        client.localize(b"")
    with pytest.raises(InvalidInput, match="arrays of int64 are not supported; convert"):
        client.localize(np.zeros((8, 8), np.int64))
    with pytest.raises(InvalidInput, match=r"expected an HW or HWC array, got shape \(8,\)"):
        client.localize(np.zeros(8, np.uint8))
    with pytest.raises(NotFound, match=r"nowhere\.png: no such file"):
        client.localize(Path("nowhere.png"))
    with pytest.raises(InvalidInput, match=r"threshold: must be in \[0, 1\], got 2"):
        client.localize(_image(), threshold=2)
    with pytest.raises(InvalidInput, match="expected encoded image bytes, a file path or a numpy"):
        client.localize(42)  # type: ignore[arg-type]


def test_stream_answers_in_order_with_errors_in_place(client, tmp_path: Path) -> None:
    png = tmp_path / "tile.png"
    png.write_bytes(encode_png(_image()))
    images = (x for x in [png, tmp_path / "missing.png", b"", _image(), png.read_bytes()])
    items = list(client.localize_stream(images))
    assert [i.index for i in items] == [0, 1, 2, 3, 4]
    assert [i.ok for i in items] == [True, False, False, True, True]
    assert isinstance(items[1].error, NotFound) and "missing.png" in str(items[1].error)
    assert isinstance(items[2].error, InvalidInput) and "empty" in str(items[2].error)
    assert all(_boxes(i.result) == [("nucleus", *EXPECTED_BOX)] for i in items if i.ok)
    with pytest.raises(InvalidInput, match="threshold"):
        client.localize_stream([png], threshold=-1)


def test_list_models_and_health(client) -> None:
    models = client.list_models()
    assert models.default_model == "nuclei" and models.names() == ["nuclei", "weak"]
    nuclei, weak = models.models
    assert (nuclei.task, nuclei.class_names, nuclei.stride, nuclei.state) == (
        "detector",
        ("nucleus",),
        4,
        "READY",
    )
    assert weak.task == "cam" and nuclei.card["score_threshold"] == pytest.approx(0.5)
    assert client.health() == "SERVING"
    client.wait_until_serving(timeout=5)


def test_unreachable_server_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with LocalizationClient(f"127.0.0.1:{port}", timeout=5) as c:
        with pytest.raises(Unavailable, match=f"127.0.0.1:{port} is unreachable") as err:
            c.list_models()
        assert err.value.exit_code == 3
        with pytest.raises(Unavailable, match=r"is not SERVING after 0\.3 s"):
            c.wait_until_serving(timeout=0.3)


def test_token_and_mutual_tls(tmp_path: Path) -> None:
    make_pki(tmp_path)
    _write_model(tmp_path / "models", "nuclei", "1")
    server = _start(
        tmp_path / "models",
        auth_token="s3cret",
        tls_cert=tmp_path / "server.pem",
        tls_key=tmp_path / "server.key",
        tls_client_ca=tmp_path / "ca.pem",
    )
    target = f"127.0.0.1:{server.port}"
    tls = {"tls_ca": tmp_path / "ca.pem"}
    mtls = {**tls, "tls_cert": tmp_path / "client.pem", "tls_key": tmp_path / "client.key"}
    try:
        with LocalizationClient(target, token="s3cret", **mtls) as c:
            assert _boxes(c.localize(_image())) == [("nucleus", *EXPECTED_BOX)]
        with LocalizationClient(target, **mtls) as c:
            assert c.health() == "SERVING"  # probes need no token
            with pytest.raises(Unauthenticated, match="missing or wrong bearer token"):
                c.localize(_image())
        with (
            LocalizationClient(target, token="s3cret", timeout=10, **tls) as c,
            pytest.raises(Unavailable),  # no client certificate: the handshake fails
        ):
            c.localize(_image())
    finally:
        server.stop(grace=1)
    with pytest.raises(InvalidInput, match="mutual TLS needs both tls_cert and tls_key"):
        LocalizationClient(target, tls_cert=tmp_path / "client.pem")
    with pytest.raises(NotFound, match=r"tls_ca: .*nope\.pem: no such file"):
        LocalizationClient(target, tls_ca=tmp_path / "nope.pem")
