"""Model configurations: frozen dataclasses saved in every checkpoint so export rebuilds the model.

Both localizers share one backbone family (a MobileNetV2-like stack of inverted residual stages
with a light top-down pyramid back to the output stride); the defaults train on a CPU in
minutes, and `width`, `channels` and `depths` scale them up for a GPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from synthloc.errors import InvalidInput


def _round_channels(value: float, divisor: int = 8) -> int:
    """Round a scaled channel count to a multiple of `divisor` (hardware-friendly, as MobileNet)."""
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


@dataclass(frozen=True)
class BackboneConfig:
    """Fields shared by both localizers: input, backbone, pyramid and output stride."""

    task: ClassVar[str] = ""

    num_classes: int = 1
    in_channels: int = 1
    # channels[0] is the stride-2 stem; each further entry is a stage that halves the resolution,
    # so the deepest feature map has stride 2 ** len(channels).
    channels: tuple[int, ...] = (16, 24, 32, 64, 96)
    depths: tuple[int, ...] = (1, 2, 2, 2)  # inverted residual blocks per stage after the stem
    expand_ratio: int = 4
    width: float = 1.0  # multiplies every channel count (backbone, neck and head)
    neck_channels: int = 48  # the top-down pyramid's width
    head_channels: int = 48
    stride: int = 4  # output cell size in input pixels
    size_divisor: int = 32  # inputs must be a multiple of this (the deepest stride or more)

    def __post_init__(self) -> None:
        name = type(self).__name__
        if self.num_classes < 1 or self.in_channels < 1:
            raise InvalidInput(f"{name}: num_classes and in_channels must be >= 1")
        if len(self.depths) != len(self.channels) - 1 or min(self.depths, default=0) < 1:
            raise InvalidInput(
                f"{name}: depths needs one entry >= 1 per stage after the stem "
                f"({len(self.channels) - 1}), got {self.depths}"
            )
        strides = [2 ** (i + 1) for i in range(len(self.channels))]
        if self.stride not in strides:
            raise InvalidInput(f"{name}: stride must be one of {strides}, got {self.stride}")
        if self.size_divisor % self.deepest_stride:
            raise InvalidInput(
                f"{name}: size_divisor ({self.size_divisor}) must be a multiple of the deepest "
                f"stride ({self.deepest_stride})"
            )
        if self.width <= 0 or self.expand_ratio < 1:
            raise InvalidInput(f"{name}: width must be > 0 and expand_ratio >= 1")

    @property
    def deepest_stride(self) -> int:
        """Stride of the last backbone stage."""
        return 2 ** len(self.channels)

    def scaled(self, channels: int) -> int:
        """A channel count scaled by `width`."""
        return _round_channels(channels * self.width)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field."""
        raw = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in raw.items()}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> BackboneConfig:
        """Rebuild from `to_dict()` output; InvalidInput names unknown keys."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise InvalidInput(f"{cls.__name__}: unknown fields {unknown} (known: {sorted(known)})")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
        return cls(**values)


@dataclass(frozen=True)
class DetectorConfig(BackboneConfig):
    """CenterNet-style detector: heatmap, size and offset heads at `stride`."""

    task: ClassVar[str] = "detector"

    # Sizes are regressed in log space (scale-free from 2 px micronuclei to 60 px nuclei); the
    # raw output is clamped before exp so a wild prediction cannot overflow under AMP.
    log_size_min: float = -4.0
    log_size_max: float = 8.0


@dataclass(frozen=True)
class CamConfig(BackboneConfig):
    """Multi-label classifier whose class activation maps at `stride` localize the objects."""

    task: ClassVar[str] = "cam"

    # Image logit = normalised log-sum-exp of the class map: r -> 0 is average pooling (blobby
    # maps), r -> inf is max pooling (one peak gets all the gradient); in between keeps every
    # instance's peak while background locations still get pushed down.
    lse_r: float = 5.0


CONFIGS: dict[str, type[BackboneConfig]] = {"detector": DetectorConfig, "cam": CamConfig}


def config_from_dict(task: str, raw: dict[str, Any]) -> BackboneConfig:
    """The config of `task` ("detector" or "cam") rebuilt from its dict."""
    if task not in CONFIGS:
        raise InvalidInput(f"unknown task {task!r}; expected one of {sorted(CONFIGS)}")
    return CONFIGS[task].from_dict(raw)
