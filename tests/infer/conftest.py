"""Fixtures of the inference tests: model files built without torch."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from tests.infer.graphs import analytic_detector, detector_card


@pytest.fixture()
def detector_path(tmp_path: Path) -> Path:
    """An analytic detector with its model card, saved to a file."""
    path = tmp_path / "analytic.onnx"
    onnx.save(analytic_detector(detector_card()), str(path))
    return path
