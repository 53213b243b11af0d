"""The model card: what an exported ONNX localizer says about itself.

Stored as JSON under the ONNX metadata_props key `synthloc.model_card`. Training writes it at
export; evaluation and the inference service read it to preprocess, pad and decode exactly as
the model was trained. torch-free.

I/O contract of the ONNX graph (NCHW float32, H and W multiples of `size_divisor`):
- task "detector": input `image` [B, C, H, W] -> `heatmap` [B, K, H/s, W/s] (sigmoid scores),
  `size` [B, 2, H/s, W/s] (box width, height in input pixels), `offset` [B, 2, H/s, W/s]
  (sub-cell centre offset in output cells), s = `stride`.
- task "cam": input `image` -> `logits` [B, K] (image-level, pre-sigmoid) and `cam`
  [B, K, H/s, W/s] (class activation maps, pre-sigmoid scores per location).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from synthloc.errors import InvalidInput

METADATA_KEY = "synthloc.model_card"
FORMAT_VERSION = 1
TASKS = ("detector", "cam")


@dataclass(frozen=True)
class Preprocessing:
    """Per-image percentile normalisation (synthloc.preprocess.percentile_normalize)."""

    type: str = "percentile"
    low: float = 1.0
    high: float = 99.9


@dataclass(frozen=True)
class ModelCard:
    """Everything needed to run and trust an exported localizer."""

    task: str
    class_names: tuple[str, ...]
    input_channels: int
    stride: int  # output cell size in input pixels
    size_divisor: int  # inputs are padded to a multiple of this
    score_threshold: float
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    # recipe hash, seed, library hash, steps, code version, data source, ...
    provenance: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise InvalidInput(f"model card: task must be one of {TASKS}, got {self.task!r}")
        if not self.class_names:
            raise InvalidInput("model card: class_names is empty")
        if self.stride <= 0 or self.size_divisor <= 0 or self.size_divisor % self.stride:
            raise InvalidInput(
                f"model card: size_divisor ({self.size_divisor}) must be a positive multiple "
                f"of stride ({self.stride})"
            )

    def to_json(self) -> str:
        """Compact, key-sorted JSON."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        """Parse and validate; InvalidInput says what is missing or wrong."""
        try:
            raw = json.loads(text)
            raw["class_names"] = tuple(raw["class_names"])
            raw["preprocessing"] = Preprocessing(**raw.get("preprocessing", {}))
            if raw.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
                raise InvalidInput(
                    f"model card format {raw['format_version']} is newer than this synthloc "
                    f"understands ({FORMAT_VERSION}); upgrade synthloc"
                )
            return cls(**raw)
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InvalidInput(f"model card is not valid: {exc}") from exc
