"""BatchSizeTuner: learns, per model and input shape, the batch size that costs least per image.

A bigger batch is nearly free on a GPU, but not on a CPU: ONNX Runtime already spreads one
image over every core, and a batch of 8 512x512 images streams 8 times the activations
through the caches, so it can cost more per image than 8 single runs (measured on a 2-core
machine: 7.6 ms per image at batch 1, 8.6 ms at batch 8). The dynamic batcher therefore
measures instead of assuming: it tries the candidate sizes (powers of two up to the maximum)
as load allows, keeps the last few compute times per image for each, forms batches no larger
than the cheapest, and now and then re-measures a neighbouring size, because the best size
moves with the machine's load. On a shared machine one run can take 3x another of the same
size, so each size is judged by the median of its recent runs, and a bigger batch must beat a
smaller one by a clear margin (15%) before the batcher waits to fill it.
"""

from __future__ import annotations

import statistics
import weakref
from collections import deque
from dataclasses import dataclass, field

from infer_service.localizer import batch_buckets


@dataclass
class _Costs:
    """What is known about one input shape of one model."""

    per_image: dict[int, deque[float]] = field(default_factory=dict)  # candidate -> seconds
    warmed: set[int] = field(default_factory=set)  # exact batch sizes seen at least once
    batches: int = 0
    best: int | None = None  # _best's answer until the next measurement


class BatchSizeTuner:
    """Chooses batch size limits from measured compute time; used by the batcher's one worker
    thread only, so it takes no locks."""

    def __init__(
        self, max_batch_size: int, explore_every: int = 32, window: int = 5, margin: float = 0.15
    ) -> None:
        self.sizes = batch_buckets(max_batch_size)
        self.explore_every, self.window, self.margin = max(explore_every, 2), window, margin
        # Keyed by the localizer, so an unloaded model's measurements go with it.
        self._costs: weakref.WeakKeyDictionary[object, dict[tuple, _Costs]] = (
            weakref.WeakKeyDictionary()
        )

    def _of(self, model: object, shape: tuple) -> _Costs:
        return self._costs.setdefault(model, {}).setdefault(shape, _Costs())

    def limit(self, model: object, shape: tuple) -> int:
        """The largest batch to form now for images of `shape` on `model`."""
        costs = self._of(model, shape)
        for size in self.sizes:
            if size not in costs.per_image:
                return size  # not measured yet: try it when that many requests wait
        if costs.best is None:
            # Once per measurement, not per call: the batcher asks on every pass of its loop.
            costs.best = self._best(costs)
        best = costs.best
        if costs.batches % self.explore_every or len(self.sizes) == 1:
            return best
        i = self.sizes.index(best)
        neighbours = [self.sizes[j] for j in (i - 1, i + 1) if 0 <= j < len(self.sizes)]
        return neighbours[(costs.batches // self.explore_every) % len(neighbours)]

    def _best(self, costs: _Costs) -> int:
        """The smallest size that no bigger size beats by the margin."""
        median = {size: statistics.median(runs) for size, runs in costs.per_image.items()}
        best = self.sizes[0]
        for size in self.sizes[1:]:
            if median[size] < (1 - self.margin) * median[best]:
                best = size
        return best

    def observe(self, model: object, shape: tuple, size: int, seconds: float) -> None:
        """Record that a batch of `size` images of `shape` took `seconds` to compute."""
        costs = self._of(model, shape)
        if size not in costs.warmed:
            # ONNX Runtime plans and allocates memory on the first run of a new input shape:
            # that run says nothing about the next ones.
            costs.warmed.add(size)
            return
        candidate = max(s for s in self.sizes if s <= size)
        runs = costs.per_image.setdefault(candidate, deque(maxlen=self.window))
        runs.append(seconds / size)
        costs.batches += 1
        costs.best = None

    def per_image_seconds(self, model: object, shape: tuple) -> dict[int, float]:
        """The median recent compute seconds per image, by batch size (for logs and tests)."""
        runs = self._of(model, shape).per_image
        return {size: statistics.median(times) for size, times in runs.items()}
