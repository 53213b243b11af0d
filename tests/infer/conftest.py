"""Fixtures of the inference tests: model files built without torch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import onnx
import pytest

from infer_service.server import InferServer
from tests.infer.graphs import analytic_detector, detector_card


@pytest.fixture()
def detector_path(tmp_path: Path) -> Path:
    """An analytic detector with its model card, saved to a file."""
    path = tmp_path / "analytic.onnx"
    onnx.save(analytic_detector(detector_card()), str(path))
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InferServer]:
    """A started server of the analytic detector as nuclei/1 (modules may define their own)."""
    from tests.infer.test_service import _start, _write_model

    root = tmp_path_factory.mktemp("models")
    _write_model(root, "nuclei", "1")
    srv = _start(root)
    yield srv
    srv.stop(grace=1)
