"""The loss of one training batch, from the datasets' per-image targets."""

from __future__ import annotations

from typing import Any

import torch

from training.config import BackboneConfig
from training.losses import cam_loss, detector_loss, stack_targets
from training.targets import detector_targets


def compute_loss(
    task: str, outputs: Any, targets: list[dict[str, torch.Tensor]], cfg: BackboneConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """(loss to backpropagate, its parts as floats) for a detector or CAM batch."""
    if task == "cam":
        logits, _ = outputs
        labels = torch.stack([t["image_labels"] for t in targets]).to(logits.device)
        loss = cam_loss(logits, labels)
        return loss, {"bce": float(loss.detach())}
    heatmap = outputs[0]
    height, width = heatmap.shape[2] * cfg.stride, heatmap.shape[3] * cfg.stride
    dense = [
        detector_targets(
            t["boxes"].numpy(), t["labels"].numpy(), cfg.num_classes, (height, width), cfg.stride
        )
        for t in targets
    ]
    parts = detector_loss(outputs, stack_targets(dense, heatmap.device))
    return parts["loss"], {k: float(v.detach()) for k, v in parts.items() if k != "loss"}
