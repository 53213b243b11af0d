"""Model configs and the two localizers: shapes, value ranges, rebuilding from a checkpoint dict."""

from __future__ import annotations

import json

import pytest
import torch

from synthloc.errors import InvalidInput
from training.config import CamConfig, DetectorConfig, config_from_dict
from training.models import CamClassifier, Detector, build_model


@pytest.mark.parametrize("size", [(32, 32), (64, 96), (160, 128)])
def test_detector_outputs_follow_the_contract(size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    model = Detector(DetectorConfig(num_classes=3)).eval()
    with torch.no_grad():
        heatmap, box_size, offset = model(torch.randn(2, 1, *size))
    cells = (size[0] // 4, size[1] // 4)
    assert heatmap.shape == (2, 3, *cells)
    assert box_size.shape == offset.shape == (2, 2, *cells)
    assert heatmap.min() > 0 and heatmap.max() < 1
    assert box_size.min() > 0


def test_detector_starts_at_the_centernet_prior() -> None:
    model = Detector(DetectorConfig()).eval()
    with torch.no_grad():
        heatmap, box_size, _ = model(torch.zeros(1, 1, 64, 64))
    # Zero input: the heads see (almost) only their biases: score sigmoid(-2.19), box = 1 cell.
    assert heatmap.mean().item() == pytest.approx(0.1, abs=0.05)
    assert box_size.median().item() == pytest.approx(4.0, rel=0.5)


@pytest.mark.parametrize("size", [(32, 64), (96, 96)])
def test_cam_classifier_outputs_follow_the_contract(size: tuple[int, int]) -> None:
    cfg = CamConfig(num_classes=2, in_channels=3)
    model = CamClassifier(cfg).eval()
    with torch.no_grad():
        logits, cam = model(torch.randn(4, 3, *size))
    assert logits.shape == (4, 2)
    assert cam.shape == (4, 2, size[0] // 4, size[1] // 4)
    # Normalised log-sum-exp lies between the mean and the max of each map.
    flat = cam.flatten(2)
    assert torch.all(logits <= flat.amax(2) + 1e-5)
    assert torch.all(logits >= flat.mean(2) - 1e-5)


def test_cam_pooling_does_not_depend_on_image_size_for_a_uniform_map() -> None:
    model = CamClassifier(CamConfig()).eval()
    with torch.no_grad():
        small, _ = model(torch.zeros(1, 1, 32, 32))
        large, _ = model(torch.zeros(1, 1, 128, 128))
    # A zero image gives an (almost) uniform map; the pooled logit must not grow with area.
    assert small.item() == pytest.approx(large.item(), abs=0.05)


def test_stride_8_and_width_scale_the_model() -> None:
    cfg = DetectorConfig(stride=8, width=2.0)
    model = build_model("detector", cfg).eval()
    with torch.no_grad():
        heatmap, _, _ = model(torch.zeros(1, 1, 64, 64))
    assert heatmap.shape == (1, 1, 8, 8)
    params = sum(p.numel() for p in model.parameters())
    base = sum(p.numel() for p in Detector(DetectorConfig(stride=8)).parameters())
    assert params > 2.5 * base


@pytest.mark.parametrize("cfg", [DetectorConfig(num_classes=2, width=1.5), CamConfig(lse_r=2.0)])
def test_config_round_trips_through_json(cfg: DetectorConfig | CamConfig) -> None:
    raw = json.loads(json.dumps(cfg.to_dict()))
    assert config_from_dict(cfg.task, raw) == cfg
    rebuilt = build_model(cfg.task, config_from_dict(cfg.task, raw))
    original = build_model(cfg.task, cfg)
    result = rebuilt.load_state_dict(original.state_dict())
    assert not result.missing_keys and not result.unexpected_keys


def test_bad_configs_say_what_is_wrong() -> None:
    with pytest.raises(InvalidInput, match="stride must be one of"):
        DetectorConfig(stride=3)
    with pytest.raises(InvalidInput, match=r"size_divisor .* multiple of the deepest stride"):
        DetectorConfig(size_divisor=16)
    with pytest.raises(InvalidInput, match="depths needs one entry"):
        CamConfig(depths=(1, 1))
    with pytest.raises(InvalidInput, match=r"unknown fields \['colour'\]"):
        DetectorConfig.from_dict({"colour": "red"})
    with pytest.raises(InvalidInput, match="unknown task"):
        config_from_dict("segmenter", {})
    with pytest.raises(InvalidInput, match="does not match"):
        build_model("cam", DetectorConfig())


def test_a_shallower_backbone_allows_a_smaller_divisor() -> None:
    cfg = DetectorConfig(channels=(16, 24, 32, 64), depths=(1, 1, 1), size_divisor=16)
    model = build_model("detector", cfg).eval()
    with torch.no_grad():
        heatmap, _, _ = model(torch.zeros(1, 1, 48, 80))
    assert heatmap.shape == (1, 1, 12, 20)
