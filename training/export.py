"""ONNX export with the model card inside, and the parity check that proves the export right.

Parity is checked on the raw outputs (ONNX Runtime CPU vs torch eager) and on what a user sees:
the detections decoded by infer_service.postprocess, the code the inference service runs.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from infer_service.localizer import OUTPUT_NAMES, OnnxLocalizer
from infer_service.postprocess import Detection, decode_outputs
from synthloc.errors import IntegrityError, InvalidInput
from synthloc.files import atomic_write
from synthloc.modelcard import METADATA_KEY, ModelCard
from training.config import BackboneConfig


def _check_card(card: ModelCard, cfg: BackboneConfig) -> None:
    """Raise InvalidInput where the card contradicts the model config."""
    problems = []
    if card.task != cfg.task:
        problems.append(f"task {card.task!r} != {cfg.task!r}")
    if len(card.class_names) != cfg.num_classes:
        problems.append(f"{len(card.class_names)} class names != {cfg.num_classes} classes")
    if card.input_channels != cfg.in_channels:
        problems.append(f"input_channels {card.input_channels} != {cfg.in_channels}")
    if card.stride != cfg.stride:
        problems.append(f"stride {card.stride} != {cfg.stride}")
    if card.size_divisor % cfg.size_divisor:
        problems.append(f"size_divisor {card.size_divisor} is no multiple of {cfg.size_divisor}")
    if problems:
        raise InvalidInput("model card does not match the model config: " + "; ".join(problems))


def export_onnx(
    model: torch.nn.Module,
    cfg: BackboneConfig,
    card: ModelCard,
    path: str | Path,
    opset: int = 17,
) -> Path:
    """Write `model` as ONNX (dynamic batch, height, width) with `card` in its metadata."""
    _check_card(card, cfg)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    outputs = OUTPUT_NAMES[card.task]
    axes = {"image": {0: "batch", 2: "height", 3: "width"}}
    for name in outputs:
        axes[name] = {0: "batch"} if name == "logits" else {0: "batch", 2: "rows", 3: "cols"}
    # A non-square batch of 2 keeps the tracer from folding batch, height or width into constants.
    step = card.size_divisor
    device = next(model.parameters()).device
    example = torch.zeros(2, cfg.in_channels, 2 * step, 3 * step, device=device)
    was_training = model.training
    model.eval()
    try:
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            raw = Path(tmp) / "raw.onnx"
            with warnings.catch_warnings():
                # The legacy exporter is chosen on purpose: the dynamo one needs onnxscript.
                warnings.filterwarnings("ignore", "You are using the legacy TorchScript")
                warnings.filterwarnings("ignore", "The feature will be removed")
                torch.onnx.export(
                    model,
                    (example,),
                    str(raw),
                    input_names=["image"],
                    output_names=list(outputs),
                    dynamic_axes=axes,
                    opset_version=opset,
                    dynamo=False,
                )
            proto = onnx.load(str(raw))
    finally:
        model.train(was_training)
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, {METADATA_KEY: card.to_json()})
    proto.producer_name = "synthloc"
    proto.doc_string = f"synthloc {card.task}: {', '.join(card.class_names)}"
    onnx.checker.check_model(proto, full_check=True)
    # Write-then-rename: a crash never leaves a half-written model where a server may load it.
    atomic_write(path, lambda tmp: onnx.save(proto, tmp))
    return path


def _match(
    expected: list[Detection], actual: list[Detection], box_atol: float, score_atol: float
) -> str | None:
    """None if both lists hold the same detections (one to one, within tolerances), else why."""
    if len(expected) != len(actual):
        return f"{len(expected)} detections from torch but {len(actual)} from ONNX Runtime"
    unused = list(actual)
    for det in expected:
        for other in unused:
            box_diff = max(abs(a - b) for a, b in zip(det.box, other.box, strict=True))
            if (
                other.class_id == det.class_id
                and box_diff <= box_atol
                and abs(other.score - det.score) <= score_atol
            ):
                unused.remove(other)
                break
        else:
            return f"torch detection {det} has no ONNX Runtime counterpart"
    return None


CAM_MIN_CONTRAST = 0.05  # logits between a CAM peak and its map's median for a defined region


def _fragile(
    task: str, outputs: dict[str, np.ndarray], det: Detection, card: ModelCard, atol: float
) -> bool:
    """True where rounding at the `atol` level may flip a detection: its score sits on the
    threshold, or (CAM) its map is so flat that the region around the peak is undefined, as
    in a barely trained model. Those are left out of the decoded comparison; the raw outputs
    were compared in full."""
    if abs(det.score - card.score_threshold) <= 10 * atol:
        return True
    if task != "cam":
        return False
    cam = outputs["cam"][0, det.class_id]
    row = min(int(det.point[1] // card.stride), cam.shape[0] - 1)
    col = min(int(det.point[0] // card.stride), cam.shape[1] - 1)
    return float(cam[row, col] - np.median(cam)) < CAM_MIN_CONTRAST


def check_parity(
    model: torch.nn.Module,
    onnx_path: str | Path,
    images: Sequence[np.ndarray],
    atol: float = 1e-4,
) -> dict[str, Any]:
    """Compare ONNX Runtime CPU with torch eager on float32 CHW images; IntegrityError if apart.

    Raw outputs must agree within `atol`, and the decoded detections must be the same objects:
    same class, score within `atol`, box within (stride + 1) * `atol` pixels (the offset is in
    cells of `stride` pixels, the size in pixels). Torch runs where the model is; keep it on the
    CPU for a 1e-4 tolerance (cuDNN's default TF32 convolutions differ by more).
    """
    localizer = OnnxLocalizer(onnx_path, providers=["CPUExecutionProvider"])
    card = localizer.card
    box_atol = (card.stride + 1) * atol
    worst = dict.fromkeys(localizer.output_names, 0.0)
    detections = 0
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        for index, image in enumerate(images):
            batch = np.ascontiguousarray(image[None], np.float32)
            onnx_out = localizer.run(batch)
            with torch.no_grad():
                torch_values = model(torch.from_numpy(batch).to(device))
            torch_out = {
                name: value.cpu().numpy()
                for name, value in zip(localizer.output_names, torch_values, strict=True)
            }
            for name in localizer.output_names:
                diff = float(np.max(np.abs(onnx_out[name] - torch_out[name])))
                worst[name] = max(worst[name], diff)
                if diff > atol:
                    raise IntegrityError(
                        f"{onnx_path}: output {name!r} of image {index} differs from torch by "
                        f"{diff:.3g} > {atol:g}; the export is not faithful"
                    )
            decoded = [
                decode_outputs(
                    card.task,
                    {k: v[0] for k, v in out.items()},
                    card.stride,
                    card.score_threshold,
                )
                for out in (torch_out, onnx_out)
            ]
            stable = [
                [d for d in dets if not _fragile(card.task, out, d, card, atol)]
                for dets, out in zip(decoded, (torch_out, onnx_out), strict=True)
            ]
            problem = _match(stable[0], stable[1], box_atol, atol)
            if problem:
                raise IntegrityError(f"{onnx_path}: image {index}: {problem}")
            detections += len(decoded[0])
    finally:
        model.train(was_training)
    return {
        "images": len(images),
        "atol": atol,
        "max_abs_diff": worst,
        "detections": detections,
        "provider": localizer.provider,
    }


DEFAULT_THRESHOLDS = {"detector": 0.3, "cam": 0.5}


def export_checkpoint(
    checkpoint: Path,
    out: Path,
    score_threshold: float | None = None,
    parity_coco: Path | None = None,
    parity_images: int = 2,
) -> dict[str, Any]:
    """Checkpoint -> ONNX at `out` with its model card, parity-checked on real images.

    The parity images are the first `parity_images` of `parity_coco` (default: the fetched
    stardist image). Returns what was written: the path, the card and the parity figures.
    """
    from synthloc.coco import CocoDataset
    from synthloc.datasets.fetch import default_root
    from synthloc.imageio import read_image
    from training.checkpoint import load_checkpoint
    from training.config import config_from_dict
    from training.models import build_model

    state = load_checkpoint(checkpoint)
    cfg = config_from_dict(state["task"], state["config"])
    model = build_model(state["task"], cfg)
    model.load_state_dict(state["model"])
    model.eval()
    threshold = DEFAULT_THRESHOLDS[state["task"]] if score_threshold is None else score_threshold
    card = ModelCard(
        task=state["task"],
        class_names=tuple(state["class_names"]),
        input_channels=cfg.in_channels,
        stride=cfg.stride,
        size_divisor=cfg.size_divisor,
        score_threshold=threshold,
        provenance={**state.get("provenance", {}), "checkpoint": str(checkpoint)},
    )
    parity_coco = parity_coco or default_root() / "stardist" / "stardist.json"
    if not parity_coco.is_file():
        raise InvalidInput(
            f"{parity_coco}: no real images for the parity check; pass "
            "--parity-coco or run `synthloc data fetch stardist`"
        )
    export_onnx(model, cfg, card, out)
    ds = CocoDataset.load(parity_coco)
    localizer = OnnxLocalizer(out)
    images = [
        localizer.prepare(read_image(ds.image_path(image))) for image in ds.images[:parity_images]
    ]
    parity = check_parity(model, out, images)
    return {"model": str(out), "card": json.loads(card.to_json()), "parity": parity}
