"""ONNX export: checker, model card, dynamic shapes and parity with torch on the real image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from infer_service.localizer import OnnxLocalizer
from synthloc.coco import CocoDataset
from synthloc.errors import IntegrityError, InvalidInput
from synthloc.imageio import read_image
from synthloc.modelcard import METADATA_KEY, ModelCard
from synthloc.preprocess import percentile_normalize
from training.config import BackboneConfig, CamConfig, DetectorConfig
from training.export import check_parity, export_onnx
from training.losses import cam_loss, detector_loss, stack_targets
from training.models import build_model
from training.targets import detector_targets

CROP = 96


def card_for(cfg: BackboneConfig, **changes: object) -> ModelCard:
    """A model card that matches `cfg`."""
    fields = {
        "task": cfg.task,
        "class_names": tuple(f"class{i}" for i in range(cfg.num_classes)),
        "input_channels": cfg.in_channels,
        "stride": cfg.stride,
        "size_divisor": cfg.size_divisor,
        "score_threshold": 0.3,
        "provenance": {"seed": 0, "steps": 40},
    }
    return ModelCard(**{**fields, **changes})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def stardist(data_root: Path) -> tuple[np.ndarray, np.ndarray]:
    """The real stardist image (normalised CHW float32, 512 x 512) and its xyxy nucleus boxes."""
    dataset = CocoDataset.load(data_root / "stardist" / "stardist.json")
    image = read_image(dataset.image_path(dataset.images[0]))
    boxes = np.array([a["bbox"] for a in dataset.annotations], np.float32)
    boxes[:, 2:] += boxes[:, :2]
    return np.ascontiguousarray(percentile_normalize(image).transpose(2, 0, 1)), boxes


def briefly_trained(task: str, stardist: tuple[np.ndarray, np.ndarray]) -> torch.nn.Module:
    """A model trained for 40 small steps on crops of the real image, so its maps have real peaks.

    Random weights give flat maps full of near-ties, where a 1e-7 difference can move a peak;
    that says nothing about the export, so parity is checked on a model that has learnt a little.
    """
    image, boxes = stardist
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    cfg = DetectorConfig() if task == "detector" else CamConfig()
    model = build_model(task, cfg).train()
    optimizer = torch.optim.Adam(model.parameters(), 5e-3)
    blank = np.full((1, CROP, CROP), image.min(), np.float32)  # a negative for the CAM
    no_boxes = np.zeros((0, 4), np.float32)
    for _ in range(40):
        crops, crop_boxes = [blank], [no_boxes]
        for y0, x0 in rng.integers(0, image.shape[1] - CROP, (3, 2)):
            shifted = np.clip(boxes - [x0, y0, x0, y0], 0, CROP).astype(np.float32)
            keep = np.minimum(shifted[:, 2] - shifted[:, 0], shifted[:, 3] - shifted[:, 1]) > 2
            crops.append(image[:, y0 : y0 + CROP, x0 : x0 + CROP])
            crop_boxes.append(shifted[keep])
        outputs = model(torch.from_numpy(np.stack(crops)))
        if task == "detector":
            dense = [detector_targets(b, np.zeros(len(b)), 1, (CROP, CROP), 4) for b in crop_boxes]
            loss = detector_loss(outputs, stack_targets(dense))["loss"]
        else:
            labels = torch.tensor([[float(len(b) > 0)] for b in crop_boxes])
            loss = cam_loss(outputs[0], labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    # Exact BatchNorm statistics over the whole image, so eval mode sees what training saw.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    with torch.no_grad():
        model(torch.from_numpy(image[None]))
    return model.eval()


@pytest.mark.parametrize("cfg", [DetectorConfig(num_classes=2), CamConfig(num_classes=3)])
def test_export_is_checker_clean_and_carries_its_card(cfg: BackboneConfig, tmp_path: Path) -> None:
    model = build_model(cfg.task, cfg)
    card = card_for(cfg)
    path = export_onnx(model, cfg, card, tmp_path / "model.onnx")
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    metadata = {p.key: p.value for p in proto.metadata_props}
    assert ModelCard.from_json(metadata[METADATA_KEY]) == card
    assert [i.name for i in proto.graph.input] == ["image"]
    expected = ["heatmap", "size", "offset"] if cfg.task == "detector" else ["logits", "cam"]
    assert [o.name for o in proto.graph.output] == expected
    assert model.training  # export leaves the model's mode alone
    assert OnnxLocalizer(path).card == card
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no temporary left


@pytest.mark.parametrize("cfg", [DetectorConfig(), CamConfig(num_classes=2)])
def test_dynamic_batch_and_sizes_match_torch(cfg: BackboneConfig, tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = build_model(cfg.task, cfg).eval()
    localizer = OnnxLocalizer(export_onnx(model, cfg, card_for(cfg), tmp_path / "m.onnx"))
    rng = np.random.default_rng(1)
    for shape in [(1, 1, 64, 96), (3, 1, 128, 64)]:
        batch = rng.random(shape, dtype=np.float32)
        onnx_out = localizer.run(batch)
        with torch.no_grad():
            torch_out = model(torch.from_numpy(batch))
        for name, value in zip(localizer.output_names, torch_out, strict=True):
            assert onnx_out[name].shape == tuple(value.shape)
            np.testing.assert_allclose(onnx_out[name], value.numpy(), atol=1e-4, rtol=0)


@pytest.mark.parametrize("task", ["detector", "cam"])
def test_parity_on_the_real_image(
    task: str, stardist: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    model = briefly_trained(task, stardist)
    cfg = model.cfg
    path = export_onnx(model, cfg, card_for(cfg), tmp_path / f"{task}.onnx")
    image = stardist[0]
    report = check_parity(model, path, [image, np.ascontiguousarray(image[:, 64:320, :384])])
    assert report["images"] == 2 and report["provider"] == "CPUExecutionProvider"
    assert max(report["max_abs_diff"].values()) <= 1e-4
    assert report["detections"] > 10  # the decoded comparison compared something real


def test_parity_failure_names_the_file_and_output(tmp_path: Path) -> None:
    cfg = DetectorConfig()
    torch.manual_seed(2)
    model = build_model("detector", cfg).eval()
    path = export_onnx(model, cfg, card_for(cfg), tmp_path / "stale.onnx")
    with torch.no_grad():
        model.offset[-1].bias += 0.01  # the checkpoint moved on after the export
    images = [np.zeros((1, 64, 64), np.float32)]
    with pytest.raises(IntegrityError, match=rf"{path}: output 'offset' of image 0 differs"):
        check_parity(model, path, images)


def test_card_that_contradicts_the_config_is_refused(tmp_path: Path) -> None:
    cfg = DetectorConfig(num_classes=2)
    card = card_for(cfg, class_names=("nucleus",), stride=8)
    with pytest.raises(InvalidInput, match="1 class names != 2 classes; stride 8 != 4"):
        export_onnx(build_model("detector", cfg), cfg, card, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
