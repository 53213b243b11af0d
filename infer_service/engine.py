"""LocalizationEngine: decoded pixels in, detections in original coordinates out. No gRPC."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from infer_service.batcher import DynamicBatcher
from infer_service.postprocess import Detection
from infer_service.repository import LoadedModel, ModelRepository
from synthloc.errors import InvalidInput
from synthloc.preprocess import Window


@dataclass(frozen=True)
class Localization:
    """The answer for one image."""

    model: LoadedModel
    detections: list[Detection]
    height: int
    width: int
    timings: dict[str, float]  # seconds: queue, compute, postprocess
    heatmap: np.ndarray | None  # [K, h, w] CAM scores over the original image, if asked
    window: Window  # the intensities the image was scaled from to 0 and 1


class LocalizationEngine:
    """Prepares images, batches them dynamically and decodes the outputs."""

    def __init__(
        self, repository: ModelRepository, batcher: DynamicBatcher, default_model: str = ""
    ) -> None:
        self.repository, self.batcher, self.default_model = repository, batcher, default_model

    def localize(
        self,
        pixels: np.ndarray,
        model_name: str = "",
        model_version: str = "",
        score_threshold: float | None = None,
        return_heatmap: bool = False,
        deadline: float | None = None,
        window: Window | None = None,
    ) -> Localization:
        """Localize objects in one HW/HWC image (any dtype); `window`: the intensities to
        scale to 0 and 1 instead of the image's percentiles (a tile of a larger image)."""
        model = self.repository.get(model_name, model_version, self.default_model)
        card = model.localizer.card
        if return_heatmap and card.task != "cam":
            raise InvalidInput(f"return_heatmap needs a CAM model; {model.name} is a {card.task}")
        if score_threshold is not None and not 0.0 <= score_threshold <= 1.0:
            raise InvalidInput(f"score_threshold must be in [0, 1], got {score_threshold}")
        if window is not None and not (
            math.isfinite(window[0]) and math.isfinite(window[1]) and window[1] > window[0]
        ):
            raise InvalidInput(
                f"intensity_high must be above intensity_low, both finite; got {window}"
            )
        height, width = pixels.shape[:2]
        prepared, window = model.localizer.prepare_scaled(pixels, window)
        result = self.batcher.call(model, prepared, deadline)
        started = time.monotonic()
        detections = model.localizer.detections(result.outputs, height, width, score_threshold)
        heatmap = None
        if return_heatmap:
            rows, cols = -(-height // card.stride), -(-width // card.stride)
            heatmap = 1 / (1 + np.exp(-result.outputs["cam"][:, :rows, :cols]))
        return Localization(
            model,
            detections,
            height,
            width,
            {
                "queue": result.queue_seconds,
                "compute": result.compute_seconds,
                "postprocess": time.monotonic() - started,
            },
            heatmap.astype(np.float32) if heatmap is not None else None,
            window,
        )
