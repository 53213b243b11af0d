"""What LocalizationClient returns: plain frozen dataclasses, no protobuf."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synthloc.errors import SynthlocError
from synthloc.v1 import localization_pb2

# Encoded file bytes, a file path, or an HW / HWC array.
ImageInput = bytes | bytearray | memoryview | str | Path | np.ndarray

_TASKS = {localization_pb2.MODEL_TASK_DETECTOR: "detector", localization_pb2.MODEL_TASK_CAM: "cam"}


@dataclass(frozen=True)
class Found:
    """One localized object, in the original image's pixels."""

    class_name: str
    score: float
    box: tuple[float, float, float, float]  # x, y, width, height (COCO)
    point: tuple[float, float]  # object centre (detector) or CAM peak (weak localizer)
    class_id: int = 0


@dataclass(frozen=True)
class LocalizeResult:
    """The service's answer for one image."""

    detections: list[Found]
    model: str
    version: str
    provider: str
    height: int
    width: int
    total_ms: float
    request_id: str = ""
    timings_ms: dict[str, float] = field(default_factory=dict)  # decode, queue, compute, ...
    # CAM models with return_heatmap: [classes, h, w] float32 at 1/heatmap_stride resolution.
    heatmap: np.ndarray | None = field(default=None, compare=False, repr=False)
    heatmap_stride: float = 0.0
    # The intensities the server scaled the image from to 0 and 1 (None: a server that
    # predates the field, which also ignores a requested window).
    intensity_window: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field but the heatmap."""
        out = dataclasses.asdict(dataclasses.replace(self, heatmap=None))
        del out["heatmap"]
        return out

    def table(self, title: str) -> str:
        """Human-readable summary."""
        lines = [
            f"{title}: {len(self.detections)} objects ({self.model}/{self.version} on "
            f"{self.provider}, {self.total_ms:.1f} ms)"
        ]
        lines += [
            f"  {d.class_name:<14} {d.score:5.2f}  x={d.box[0]:7.1f} y={d.box[1]:7.1f} "
            f"w={d.box[2]:6.1f} h={d.box[3]:6.1f}"
            for d in self.detections
        ]
        return "\n".join(lines)


@dataclass(frozen=True)
class StreamItem:
    """One answer of localize_stream: a result, or the error that image met."""

    index: int  # the image's position in the input
    result: LocalizeResult | None
    error: SynthlocError | None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class ModelInfo:
    """One loaded model version."""

    name: str
    version: str
    task: str  # "detector" or "cam"
    class_names: tuple[str, ...]
    input_channels: int
    stride: int
    score_threshold: float
    provider: str
    state: str  # READY, LOADING or FAILED
    card: dict[str, Any] = field(compare=False, repr=False)  # the full model card


@dataclass(frozen=True)
class ModelList:
    """ListModels' answer: newest version first within a model."""

    default_model: str
    models: tuple[ModelInfo, ...]

    def names(self) -> list[str]:
        """Model names, each once, in the order listed."""
        return list(dict.fromkeys(m.name for m in self.models))

    @classmethod
    def from_proto(cls, reply: localization_pb2.ListModelsResponse) -> ModelList:
        return cls(
            reply.default_model,
            tuple(
                ModelInfo(
                    name=m.name,
                    version=m.version,
                    task=_TASKS.get(m.task, "unspecified"),
                    class_names=tuple(m.class_names),
                    input_channels=m.input_channels,
                    stride=m.stride,
                    score_threshold=m.score_threshold,
                    provider=m.provider,
                    state=localization_pb2.ModelState.Name(m.state).removeprefix("MODEL_STATE_"),
                    card=json.loads(m.model_card_json) if m.model_card_json else {},
                )
                for m in reply.models
            ),
        )
