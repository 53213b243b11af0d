"""The two localizers, in plain torch: a CenterNet-style detector and a CAM classifier.

Both are fully convolutional over any input whose sides are multiples of `size_divisor`; their
outputs follow the ONNX I/O contract of synthloc.modelcard.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from synthloc.errors import InvalidInput
from training.config import BackboneConfig, CamConfig, DetectorConfig

# CenterNet's heatmap bias: sigmoid(-2.19) ~= 0.1, so the focal loss starts near the background
# prior instead of being swamped by millions of easy negatives.
HEATMAP_BIAS = -2.19


def conv_bn_relu(
    cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    """Conv (no bias) -> BatchNorm -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise (strided), linear 1x1 project."""

    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = cin * expand_ratio
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_bn_relu(cin, hidden))
        layers += [
            conv_bn_relu(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Block output, with the identity shortcut where shapes allow."""
        return x + self.body(x) if self.residual else self.body(x)


class Backbone(nn.Module):
    """Stride-2 stem then one inverted-residual stage per further entry of `channels`."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        widths = [cfg.scaled(c) for c in cfg.channels]
        self.stem = conv_bn_relu(cfg.in_channels, widths[0], 3, 2)
        stages = []
        for cin, cout, depth in zip(widths[:-1], widths[1:], cfg.depths, strict=True):
            blocks = [InvertedResidual(cin, cout, 2, cfg.expand_ratio)]
            blocks += [InvertedResidual(cout, cout, 1, cfg.expand_ratio) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.widths = widths

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps at strides 2, 4, ..., 2 ** len(channels)."""
        features = [self.stem(x)]
        for stage in self.stages:
            features.append(stage(features[-1]))
        return features


class TopDownNeck(nn.Module):
    """FPN-style top-down path from the deepest stage back to the output stride."""

    def __init__(self, widths: list[int], first_level: int, channels: int) -> None:
        super().__init__()
        self.first_level = first_level
        self.lateral = nn.ModuleList(conv_bn_relu(w, channels) for w in widths[first_level:])
        # Nearest upsampling leaves checkerboard seams; a depthwise-separable 3x3 smooths them.
        self.smooth = nn.Sequential(
            conv_bn_relu(channels, channels, 3, groups=channels), conv_bn_relu(channels, channels)
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """The merged feature map at the output stride."""
        levels = features[self.first_level :]
        merged = self.lateral[-1](levels[-1])
        for lateral, feature in zip(self.lateral[-2::-1], levels[-2::-1], strict=True):
            merged = F.interpolate(merged, scale_factor=2.0, mode="nearest") + lateral(feature)
        return self.smooth(merged)


def head(cin: int, hidden: int, cout: int) -> nn.Sequential:
    """Light prediction head: depthwise 3x3, pointwise 1x1 + ReLU, 1x1 to the outputs."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, padding=1, groups=cin),
        nn.Conv2d(cin, hidden, 1),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden, cout, 1),
    )


class _Localizer(nn.Module):
    """Backbone + neck shared by both tasks."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = Backbone(cfg)
        self.neck = TopDownNeck(
            self.backbone.widths, int(math.log2(cfg.stride)) - 1, cfg.scaled(cfg.neck_channels)
        )
        self.features = cfg.scaled(cfg.neck_channels)
        self.hidden = cfg.scaled(cfg.head_channels)

    def trunk(self, image: torch.Tensor) -> torch.Tensor:
        """Features at the output stride."""
        return self.neck(self.backbone(image))


class Detector(_Localizer):
    """Anchor-free CenterNet-style detector: (heatmap scores, size in pixels, cell offset)."""

    def __init__(self, cfg: DetectorConfig) -> None:
        super().__init__(cfg)
        self.heatmap = head(self.features, self.hidden, cfg.num_classes)
        self.size = head(self.features, self.hidden, 2)
        self.offset = head(self.features, self.hidden, 2)
        nn.init.constant_(self.heatmap[-1].bias, HEATMAP_BIAS)
        # Start every box at one output cell (log size = log stride) rather than at e^0 = 1 px.
        nn.init.constant_(self.size[-1].bias, 0.0)
        self.log_stride = math.log(cfg.stride)
        self.log_size_range = (cfg.log_size_min, cfg.log_size_max)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Image [B,C,H,W] -> heatmap [B,K,h,w] (sigmoid), size [B,2,h,w] (px), offset [B,2,h,w]."""
        x = self.trunk(image)
        log_size = (self.size(x) + self.log_stride).clamp(*self.log_size_range)
        return torch.sigmoid(self.heatmap(x)), torch.exp(log_size), self.offset(x)


class CamClassifier(_Localizer):
    """Multi-label classifier: class maps at `stride`, image logits by log-sum-exp pooling."""

    def __init__(self, cfg: CamConfig) -> None:
        super().__init__(cfg)
        self.classifier = head(self.features, self.hidden, cfg.num_classes)
        self.lse_r = float(cfg.lse_r)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image [B,C,H,W] -> (logits [B,K], cam [B,K,h,w]), both pre-sigmoid."""
        cam = self.classifier(self.trunk(image))
        flat = cam.flatten(2)
        # Normalised LSE: a mean (not a sum) inside the log keeps the logit on the map's scale.
        # Written with ReduceMean rather than "- log(h * w)" so the traced ONNX graph does not
        # bake in the export size.
        peak = flat.amax(dim=2, keepdim=True)
        spread = torch.log(torch.exp(self.lse_r * (flat - peak)).mean(dim=2)) / self.lse_r
        return peak.squeeze(2) + spread, cam


def build_model(task: str, cfg: BackboneConfig) -> Detector | CamClassifier:
    """The model of `task` ("detector" or "cam") for its config."""
    if task == "detector" and isinstance(cfg, DetectorConfig):
        return Detector(cfg)
    if task == "cam" and isinstance(cfg, CamConfig):
        return CamClassifier(cfg)
    raise InvalidInput(f"task {task!r} does not match the config {type(cfg).__name__}")
