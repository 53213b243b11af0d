"""OnnxLocalizer on hand-built ONNX graphs: coordinates, padding, channels, batches, bad files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from infer_service.localizer import OnnxLocalizer
from synthloc.errors import InvalidInput, NotFound
from synthloc.modelcard import METADATA_KEY
from tests.infer.graphs import BOX_SIDE, analytic_detector, detector_card

REPO = Path(__file__).resolve().parents[2]


def spot_image(height: int, width: int, spots: list[tuple[int, int]]) -> np.ndarray:
    """A dark uint16 image with a bright 4x4 square at each (row, col) top-left corner."""
    image = np.full((height, width), 100, np.uint16)
    for row, col in spots:
        image[row : row + 4, col : col + 4] = 5000
    return image


def test_predict_returns_original_pixel_coordinates_on_a_non_multiple_size(
    detector_path: Path,
) -> None:
    localizer = OnnxLocalizer(detector_path)
    # 48 x 68 pads to 64 x 96; the box of the bottom-right spot reaches into the padding.
    image = spot_image(48, 68, [(20, 40), (44, 64)])
    detections = localizer.predict(image)
    assert [d.point for d in detections] == [(42.0, 22.0), (66.0, 46.0)]
    assert detections[0].box == (42.0 - BOX_SIDE / 2, 22.0 - BOX_SIDE / 2, BOX_SIDE, BOX_SIDE)
    for d in detections:
        x, y, w, h = d.box
        assert x >= 0 and y >= 0 and x + w <= 68 and y + h <= 48
        assert d.class_id == 0 and d.score > 0.99
    # The corner box is clipped to the image: unclipped it would end at x = 70, y = 50.
    assert detections[1].box == (62.0, 42.0, 6.0, 6.0)


def test_predict_accepts_rgb_rgba_and_float_images(detector_path: Path) -> None:
    localizer = OnnxLocalizer(detector_path)
    gray = spot_image(64, 64, [(8, 12)])
    expected = localizer.predict(gray)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    rgba = np.concatenate([rgb, np.full((64, 64, 1), 65535, np.uint16)], axis=2)
    assert localizer.predict(rgb) == expected
    assert localizer.predict(rgba) == expected
    scaled = localizer.predict(gray.astype(np.float64) / 7)
    assert [(d.point, d.box, d.class_id) for d in scaled] == [
        (d.point, d.box, d.class_id) for d in expected
    ]
    assert [d.score for d in scaled] == pytest.approx([d.score for d in expected], abs=1e-6)


def test_predict_batch_matches_predict_and_refuses_mixed_sizes(detector_path: Path) -> None:
    localizer = OnnxLocalizer(detector_path)
    images = [spot_image(40, 40, [(4, 4)]), spot_image(40, 40, [(20, 28), (32, 8)])]
    assert localizer.predict_batch(images) == [localizer.predict(i) for i in images]
    assert localizer.predict_batch([]) == []
    with pytest.raises(InvalidInput, match="one size"):
        localizer.predict_batch([images[0], spot_image(40, 48, [])])


def test_score_threshold_defaults_to_the_card_and_can_be_overridden(detector_path: Path) -> None:
    localizer = OnnxLocalizer(detector_path)
    image = spot_image(32, 32, [(8, 8)])
    image[20:22, 20:22] = 5000  # a quarter-filled cell: logit 10 * 0.25 - 5 -> score 0.076
    assert len(localizer.predict(image)) == 1  # card threshold 0.5
    assert len(localizer.predict(image, score_threshold=0.05)) == 2


def test_card_provider_and_raw_run(detector_path: Path) -> None:
    localizer = OnnxLocalizer(detector_path)
    assert localizer.card == detector_card()
    assert localizer.provider == "CPUExecutionProvider"
    out = localizer.run(np.zeros((3, 1, 32, 64), np.float32))
    assert {k: v.shape for k, v in out.items()} == {
        "heatmap": (3, 1, 8, 16),
        "size": (3, 2, 8, 16),
        "offset": (3, 2, 8, 16),
    }
    with pytest.raises(InvalidInput, match="multiples of 32"):
        localizer.run(np.zeros((1, 1, 30, 32), np.float32))


def test_missing_file_is_not_found(tmp_path: Path) -> None:
    path = tmp_path / "absent.onnx"
    with pytest.raises(NotFound, match=str(path)):
        OnnxLocalizer(path)


def test_corrupt_file_is_invalid_input(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(b"\x08\x07this is not a protobuf" * 10)
    with pytest.raises(InvalidInput, match=f"{path}: not a loadable ONNX model"):
        OnnxLocalizer(path)


def test_model_without_card_is_invalid_input(tmp_path: Path) -> None:
    path = tmp_path / "bare.onnx"
    onnx.save(analytic_detector(None), str(path))
    with pytest.raises(InvalidInput, match=f"{path}: .*no synthloc model card"):
        OnnxLocalizer(path)


def test_corrupt_card_is_invalid_input(tmp_path: Path) -> None:
    path = tmp_path / "badcard.onnx"
    model = analytic_detector(None)
    onnx.helper.set_model_props(model, {METADATA_KEY: '{"task": "detector"'})
    onnx.save(model, str(path))
    with pytest.raises(InvalidInput, match=f"{path}: model card is not valid"):
        OnnxLocalizer(path)


def test_card_that_contradicts_the_graph_is_invalid_input(tmp_path: Path) -> None:
    path = tmp_path / "mismatch.onnx"
    onnx.save(analytic_detector(detector_card(class_names=("a", "b"))), str(path))
    with pytest.raises(InvalidInput, match="outputs 1 classes but the model card names 2"):
        OnnxLocalizer(path)
    onnx.save(analytic_detector(detector_card(task="cam")), str(path))
    with pytest.raises(InvalidInput, match="a cam model must output"):
        OnnxLocalizer(path)


def test_infer_service_imports_without_torch() -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import infer_service.postprocess, infer_service.localizer\n"
        "assert 'training' not in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_session_options_threads_and_no_spinning() -> None:
    from infer_service.repository import session_options

    assert session_options().intra_op_num_threads == 0  # ONNX Runtime's own choice
    assert session_options(3).intra_op_num_threads == 3
    assert session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_prepare_is_the_shared_normalisation_padded_with_zeros(detector_path: Path) -> None:
    from synthloc.preprocess import match_channels, percentile_normalize

    localizer = OnnxLocalizer(detector_path)
    pre = localizer.card.preprocessing
    rng = np.random.default_rng(0)
    # Gray (written in place) and colour (averaged to the model's one channel).
    for image in (
        rng.integers(0, 4096, (48, 68), dtype=np.uint16),
        rng.integers(0, 256, (48, 68, 3), dtype=np.uint8),
    ):
        prepared = localizer.prepare(image)
        assert prepared.shape == (1, 256, 256) and prepared.dtype == np.float32  # size bucket
        norm = match_channels(percentile_normalize(image, pre.low, pre.high), 1)
        expected = np.zeros_like(prepared)
        expected[:, :48, :68] = norm.transpose(2, 0, 1)
        assert prepared.tobytes() == expected.tobytes()
