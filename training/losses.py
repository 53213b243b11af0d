"""Losses of the two localizers: CenterNet focal + L1 for the detector, BCE for the CAM model."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from training.targets import DetectorTargets

# The heatmap comes out of the model as sigmoid scores (the ONNX contract); clamping keeps
# log() finite, as in CenterNet.
_EPS = 1e-4


def stack_targets(
    targets: Sequence[DetectorTargets], device: torch.device | str | None = None
) -> dict[str, torch.Tensor]:
    """Batch per-image targets into tensors heatmap [B,K,h,w], size, offset [B,2,h,w], mask."""
    return {
        name: torch.from_numpy(np.stack([getattr(t, name) for t in targets])).to(device)
        for name in ("heatmap", "size", "offset", "mask")
    }


def focal_loss(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss (alpha 2, beta 4), summed over positives."""
    scores = scores.float().clamp(_EPS, 1 - _EPS)
    target = target.float()
    positive = target.eq(1).float()
    # Near a centre the Gaussian lowers the penalty for firing: a one-cell miss is not background.
    negative_weight = (1 - target).pow(4) * (1 - positive)
    pos_loss = torch.log(scores) * (1 - scores).pow(2) * positive
    neg_loss = torch.log(1 - scores) * scores.pow(2) * negative_weight
    return -(pos_loss.sum() + neg_loss.sum()) / positive.sum().clamp(min=1)


def detector_loss(
    outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    targets: dict[str, torch.Tensor],
    size_weight: float = 1.0,
    offset_weight: float = 1.0,
) -> dict[str, torch.Tensor]:
    """Total and per-head losses ("loss", "heatmap", "size", "offset") of one batch."""
    heatmap, size, offset = outputs
    mask = targets["mask"].float().unsqueeze(1)
    # Averaged over centres and over both components (x, y), as CenterNet does.
    count = 2 * mask.sum().clamp(min=1)
    heat_loss = focal_loss(heatmap, targets["heatmap"])
    # L1 on log sizes: a 1 px error on a 3 px micronucleus weighs what 10 px does on a 30 px
    # nucleus; the model's size output is exp(.) so log() only undoes it.
    log_target = torch.log(targets["size"].float().clamp(min=_EPS))
    size_loss = ((torch.log(size.float()) - log_target).abs() * mask).sum() / count
    offset_loss = ((offset.float() - targets["offset"].float()).abs() * mask).sum() / count
    total = heat_loss + size_weight * size_loss + offset_weight * offset_loss
    return {"loss": total, "heatmap": heat_loss, "size": size_loss, "offset": offset_loss}


def cam_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Multi-label BCE of image logits [B,K] against multi-hot labels [B,K]."""
    return F.binary_cross_entropy_with_logits(logits.float(), labels.float())
