"""DynamicBatcher: requests for the same model version and input shape run as one batch.

One batch computes at a time. A request that finds nothing computing and nothing queued runs
at once on its caller's thread (`call`), with no hand-off between threads; otherwise it queues
for the worker thread, which, when free, takes what is queued at once: the requests that
arrived while a batch computed run together as the next one, so batches grow only with load.
`max_queue_delay` (default 0) makes the first request of a batch wait that long for company
instead (it then always queues), which can pay on a GPU.
Batches are at most `max_batch_size`, and with `tune_batch_size` no larger than the size that
measured cheapest per image (infer_service.batch_tuning), so batching never costs throughput
where the hardware gains nothing from it. The queue is bounded (RESOURCE_EXHAUSTED beyond it)
and a request whose deadline has passed is dropped before compute (DEADLINE_EXCEEDED), so a
backlog never burns compute on answers nobody waits for.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from infer_service.batch_tuning import BatchSizeTuner
from infer_service.localizer import OnnxLocalizer
from infer_service.repository import LoadedModel
from synthloc.errors import DeadlineExceeded, ResourceExhausted, Unavailable

log = logging.getLogger(__name__)

Outputs = dict[str, np.ndarray]


@dataclass
class _Item:
    model: LoadedModel
    image: np.ndarray  # prepared CHW
    deadline: float | None  # time.monotonic() seconds
    enqueued: float = field(default_factory=time.monotonic)
    future: Future = field(default_factory=Future)


def _batch_of(images: list[np.ndarray], localizer: OnnxLocalizer) -> np.ndarray:
    """The images as one batch, padded with zero images to the size the localizer runs."""
    size = localizer.padded_batch_size(len(images))
    if size == len(images) == 1:
        return images[0][None]  # a view: stacking copied it (0.5 ms at 512x512)
    batch = np.empty((size, *images[0].shape), images[0].dtype)
    for i, image in enumerate(images):  # np.stack's own checks held the GIL longer
        batch[i] = image
    batch[len(images) :] = 0
    return batch


@dataclass(frozen=True)
class BatchResult:
    """One request's share of a batch run."""

    outputs: Outputs
    queue_seconds: float
    compute_seconds: float
    batch_size: int


class DynamicBatcher:
    """Groups compatible requests; one worker thread runs the batches."""

    def __init__(
        self,
        max_batch_size: int = 8,
        max_queue_delay: float = 0.0,
        max_queue_size: int = 64,
        on_batch: Callable[[str, str, int], None] | None = None,
        tune_batch_size: bool = True,
    ) -> None:
        self.max_batch_size, self.max_delay = max(max_batch_size, 1), max_queue_delay
        self.max_queue_size = max_queue_size
        self.tuner = BatchSizeTuner(self.max_batch_size) if tune_batch_size else None
        self._on_batch = on_batch
        self._groups: OrderedDict[tuple, list[_Item]] = OrderedDict()
        self._queued = 0
        self._cond = threading.Condition()
        self._stopped = False
        self._busy = False  # a batch is computing (on the worker or a caller's thread)
        self._thread = threading.Thread(target=self._loop, name="dynamic-batcher", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Requests waiting to run."""
        return self._queued

    def submit(self, model: LoadedModel, image: np.ndarray, deadline: float | None) -> Future:
        """Queue a prepared CHW image; the future gives a BatchResult or raises."""
        item = _Item(model, image, deadline)
        key = (model.name, model.version, id(model.localizer), image.shape)
        with self._cond:
            if self._stopped:  # the worker drains what is queued, then ends: none would run this
                raise Unavailable("the inference service is shutting down; retry (another replica)")
            if self._queued >= self.max_queue_size:
                raise ResourceExhausted(
                    f"the inference queue is full ({self.max_queue_size} requests waiting); "
                    "retry with backoff or add replicas"
                )
            self._groups.setdefault(key, []).append(item)
            self._queued += 1
            self._cond.notify()
        return item.future

    def call(self, model: LoadedModel, image: np.ndarray, deadline: float | None) -> BatchResult:
        """submit(...).result(), run on this thread when nothing computes and nothing waits."""
        result = self.run_if_idle(model, image, deadline)
        return result if result is not None else self.submit(model, image, deadline).result()

    def run_if_idle(
        self, model: LoadedModel, image: np.ndarray, deadline: float | None
    ) -> BatchResult | None:
        """Run on this thread, as a batch of one, if nothing computes and nothing waits (no
        hand-off to the worker); None if not (then submit). Raises what the run raised."""
        with self._cond:
            alone = not (self._busy or self._groups or self._stopped)
            # A zero-size queue refuses everything; a delay asks every request to wait for company.
            alone = alone and self.max_queue_size > 0 and self.max_delay <= 0
            self._busy = self._busy or alone
        if not alone:
            return None
        item = _Item(model, image, deadline)
        try:
            self._dispatch([item])
        finally:
            self._idle()
        return item.future.result()

    def _idle(self) -> None:
        with self._cond:
            self._busy = False
            if self._groups:
                self._cond.notify_all()

    def _take(self) -> list[_Item] | None:
        """Block until a batch is due and nothing computes; return it, marked computing
        (None when stopped and drained)."""
        with self._cond:
            while True:
                if not self._groups:
                    if self._stopped:
                        return None
                    self._cond.wait()
                    continue
                if self._busy:
                    self._cond.wait()
                    continue
                key, items = next(iter(self._groups.items()))
                limit = self._limit(items[0])
                wait = items[0].enqueued + self.max_delay - time.monotonic()
                if len(items) >= limit or wait <= 0 or self._stopped:
                    batch, rest = items[:limit], items[limit:]
                    if rest:
                        self._groups[key] = rest
                        self._groups.move_to_end(key)
                    else:
                        del self._groups[key]
                    self._queued -= len(batch)
                    self._busy = True
                    return batch
                self._cond.wait(timeout=wait)

    def _limit(self, item: _Item) -> int:
        if self.tuner is None:
            return self.max_batch_size
        return self.tuner.limit(item.model.localizer, item.image.shape)

    def _loop(self) -> None:
        while (batch := self._take()) is not None:
            try:
                self._dispatch(batch)
            finally:
                self._idle()

    def _dispatch(self, batch: list[_Item]) -> None:
        """Drop the expired and cancelled requests of a batch, run the rest."""
        now = time.monotonic()
        live = []
        for item in batch:
            if item.deadline is not None and now > item.deadline:
                item.future.set_exception(
                    DeadlineExceeded(
                        "the request's deadline passed while it waited in the queue "
                        f"({now - item.enqueued:.3f} s); allow more time or add replicas"
                    )
                )
            elif item.future.set_running_or_notify_cancel():
                live.append(item)
        if live:
            self._run(live, now)

    def _run(self, items: list[_Item], started: float) -> None:
        model = items[0].model
        try:
            batch = _batch_of([item.image for item in items], model.localizer)
            run_started = time.monotonic()
            outputs = model.localizer.run(batch)
        except Exception as exc:  # delivered to every waiting request, which maps it
            for item in items:
                item.future.set_exception(exc)
            return
        done = time.monotonic()
        compute = done - started
        if self.tuner is not None:
            self.tuner.observe(
                model.localizer, items[0].image.shape, len(items), done - run_started
            )
        if self._on_batch is not None:
            self._on_batch(model.name, model.version, len(items))
        for i, item in enumerate(items):
            item.future.set_result(
                BatchResult(
                    {name: value[i] for name, value in outputs.items()},
                    started - item.enqueued,
                    compute,
                    len(items),
                )
            )

    def stop(self, timeout: float | None = None) -> bool:
        """Run what is queued, then end the worker thread; later requests get Unavailable.
        False if the worker is still running after `timeout` seconds (a model run that does
        not return): it is left behind, a daemon, so that the process can still exit."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error(
                "the batcher's worker is still running a batch %.1f s after the stop; "
                "leaving it (a model run that does not return)",
                timeout,
            )
            return False
        return True
