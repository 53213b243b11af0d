"""SynthesisEngine: plans streams over the global index space and runs them on a process pool.

Transport-free: the servicer hands it decoded requests and forwards what it yields.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing
import os
import tempfile
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import CancelledError, Future, InvalidStateError, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synth_service.library import LibrarySettings
from synth_service.recipe import Recipe, validate_recipe
from synth_service.recipe_proto import recipe_from_proto, recipe_to_proto
from synth_service.settings import SynthSettings
from synth_service.state import SynthState
from synth_service.transfer import SlotReader, SlotRef
from synth_service.worker import BatchJob, SlotSettings, compose_batch, init_worker, run_job
from synthloc.errors import InvalidInput, Unavailable
from synthloc.v1 import common_pb2, synthesis_pb2

log = logging.getLogger(__name__)

_PER_SAMPLE_OVERHEAD = 16 * 1024  # labels and provenance of a dense sample, generously


class StreamControl:
    """The queued batches of one stream; cancel() may come from any thread (an RPC callback)."""

    def __init__(self) -> None:
        self.pending: deque[tuple[Future, int]] = deque()
        self.cancelled = False
        self._lock = threading.Lock()

    def add(self, future: Future, samples: int) -> None:
        """Queue a submitted batch (cancelled at once if the stream already ended)."""
        with self._lock:
            self.pending.append((future, samples))
            if self.cancelled:
                future.cancel()

    def cancel(self) -> None:
        """Stop the stream: queued batches are cancelled, running ones finish unread."""
        with self._lock:
            self.cancelled = True
            for future, _ in self.pending:
                future.cancel()


@dataclass(frozen=True)
class StreamPlan:
    """A validated StreamBatches request: which indices, in which batches, encoded how."""

    recipe: Recipe
    recipe_hash: str
    seed: int
    first: int  # first global index of the stream
    step: int  # distance between consecutive indices (the number of shards)
    count: int | None  # samples in the stream; None = endless
    batch_size: int
    encoding: int
    include_masks: bool

    def indices(self) -> Iterator[int]:
        """The stream's global indices in order."""
        numbers = itertools.count() if self.count is None else range(self.count)
        return (self.first + j * self.step for j in numbers)

    def jobs(self) -> Iterator[BatchJob]:
        """The stream cut into batches."""
        indices = self.indices()
        while chunk := tuple(itertools.islice(indices, self.batch_size)):
            yield BatchJob(
                self.recipe, self.recipe_hash, self.seed, chunk, self.encoding, self.include_masks
            )


def first_index(start_index: int, shard_index: int, num_shards: int) -> int:
    """The smallest index >= start_index owned by the shard (i % num_shards == shard_index)."""
    return start_index + (shard_index - start_index) % num_shards


class SynthesisEngine:
    """Owns the replica's state and its composition processes."""

    def __init__(self, settings: SynthSettings, state: SynthState) -> None:
        self.settings = settings
        self.state = state
        library = state.library
        self.default_recipe = Recipe(channels=library.channels)
        validate_recipe(self.default_recipe, library.class_names, settings.max_canvas_pixels)
        self._tmp = tempfile.TemporaryDirectory(prefix="synthloc-synth-")
        self._pool: ProcessPoolExecutor | None = None
        self._inflight = 0  # batches submitted to the pool and not finished or cancelled
        self._inflight_lock = threading.Lock()
        self.transfers = {"shared_memory": 0, "pipe": 0}  # batches by how they reached us
        self._reader: SlotReader | None = None
        if settings.workers > 0:
            path = Path(self._tmp.name) / "state.pickle"
            state.save(path)
            context = multiprocessing.get_context("spawn")
            self._slots = SlotSettings(
                lock=context.Lock(),
                enabled=context.RawValue("b", 1),
                slots=settings.shared_memory_slots,
                slot_bytes=settings.max_message_bytes,
            )
            self._reader = SlotReader(self._slots.lock)
            self._pool = ProcessPoolExecutor(
                max_workers=settings.workers,
                mp_context=context,
                initializer=init_worker,
                initargs=(str(path), os.getpid(), self._slots),
            )

    @classmethod
    def from_settings(cls, settings: SynthSettings) -> SynthesisEngine:
        """Build the state from the settings' COCO file (FailedPrecondition if it is empty)."""
        state = SynthState.build(
            settings.library,
            LibrarySettings(
                include_truncated=settings.include_truncated,
                annotated_fraction=settings.annotated_fraction,
                fraction_seed=settings.fraction_seed,
            ),
            background_seed=settings.background_seed,
        )
        return cls(settings, state)

    def warm_up(self) -> None:
        """Start every worker and compose one small sample in each, so the first stream is fast."""
        job = BatchJob(
            Recipe(height=64, width=64, channels=self.default_recipe.channels, count_range=(1, 1)),
            "warm-up",
            0,
            (0,),
            common_pb2.IMAGE_ENCODING_RAW,
            False,
        )
        if self._pool is None:
            run_job(job, self.state)
            return
        for future in [self._pool.submit(compose_batch, job) for _ in range(self.settings.workers)]:
            data, _ = future.result()
            if isinstance(data, SlotRef):
                self._check_slots(data)

    def _check_slots(self, ref: SlotRef) -> None:
        """Read a warm-up batch from its slot; where this process may not map the workers'
        files (a hardened /proc), turn the slots off so batches take the pipe."""
        assert self._reader is not None
        try:
            self._reader.take(ref)
        except OSError as exc:
            log.warning("batches go through the pipe: cannot map a worker's slots (%s)", exc)
            self._slots.enabled.value = 0

    def plan(self, request: synthesis_pb2.StreamBatchesRequest) -> StreamPlan:
        """Validate a request against the recipe rules and this server's limits."""
        recipe = self.default_recipe
        if request.HasField("recipe"):
            recipe = recipe_from_proto(request.recipe, self.default_recipe)
        validate_recipe(recipe, self.state.library.class_names, self.settings.max_canvas_pixels)
        num_shards = request.num_shards or 1
        if request.shard_index >= num_shards:
            raise InvalidInput(
                f"shard_index: {request.shard_index} must be < num_shards ({num_shards})"
            )
        if request.batch_size == 0:
            raise InvalidInput("batch_size: must be > 0")
        length = request.WhichOneof("length")
        if length is None:
            raise InvalidInput("count: set count (> 0) or endless = true")
        if length == "count" and request.count == 0:
            raise InvalidInput("count: must be > 0 (or set endless = true)")
        if length == "endless" and not request.endless:
            raise InvalidInput("endless: set it to true, or set count instead")
        if request.encoding not in (
            common_pb2.IMAGE_ENCODING_UNSPECIFIED,
            common_pb2.IMAGE_ENCODING_RAW,
            common_pb2.IMAGE_ENCODING_PNG,
        ):
            raise InvalidInput(f"encoding: unknown value {request.encoding}")
        self._check_message_size(recipe, request.batch_size, request.include_masks)
        return StreamPlan(
            recipe=recipe,
            recipe_hash=recipe.content_hash(),
            seed=request.seed,
            first=first_index(request.start_index, request.shard_index, num_shards),
            step=num_shards,
            count=request.count if length == "count" else None,
            batch_size=request.batch_size,
            encoding=request.encoding or common_pb2.IMAGE_ENCODING_RAW,
            include_masks=request.include_masks,
        )

    def _check_message_size(self, recipe: Recipe, batch_size: int, include_masks: bool) -> None:
        pixels = recipe.height * recipe.width
        per_sample = pixels * recipe.channels * np.dtype(recipe.dtype).itemsize
        per_sample += pixels * 2 * include_masks + _PER_SAMPLE_OVERHEAD
        limit = self.settings.max_message_bytes
        if batch_size * per_sample > limit:
            raise InvalidInput(
                f"batch_size: {batch_size} samples of {recipe.height}x{recipe.width}x"
                f"{recipe.channels} {recipe.dtype} are up to {batch_size * per_sample} bytes, "
                f"above this server's message limit of {limit} bytes; use at most "
                f"{max(limit // per_sample, 0)} samples per batch or a smaller canvas"
            )

    def run(self, plan: StreamPlan, stream: StreamControl) -> Iterator[tuple[bytes, int, float]]:
        """Yield (serialized Batch, samples, compose seconds) in order, composing ahead by at
        most max_inflight_batches; once the stream is cancelled, queued work is dropped."""
        jobs = plan.jobs()
        if self._pool is None:
            for job in jobs:
                if stream.cancelled:
                    return
                data, seconds = run_job(job, self.state)
                yield data, len(job.indices), seconds
            return
        try:
            while not stream.cancelled:
                while len(stream.pending) < self.settings.max_inflight_batches:
                    job = next(jobs, None)
                    if job is None:
                        break
                    stream.add(self._submit(job), len(job.indices))
                if not stream.pending:
                    return
                future, samples = stream.pending[0]
                try:
                    data, seconds = future.result()
                except CancelledError:
                    return
                stream.pending.popleft()
                yield data, samples, seconds
        finally:
            stream.cancel()

    def _submit(self, job: BatchJob) -> Future:
        """The job's (bytes, seconds), out of its shared slot as soon as the worker is done."""
        assert self._pool is not None
        with self._inflight_lock:
            self._inflight += 1
        composing = self._pool.submit(compose_batch, job)
        composing.add_done_callback(self._done)
        batch: Future = Future()
        composing.add_done_callback(lambda done: self._deliver(done, batch))
        # Cancelling the stream's future cancels the job too, unless a worker has it already.
        batch.add_done_callback(lambda f: f.cancelled() and composing.cancel())
        return batch

    def _deliver(self, composing: Future, batch: Future) -> None:
        """Pass a finished job on, copied out of its slot, which is then free for the next."""
        if composing.cancelled():
            batch.cancel()
            return
        error = composing.exception()  # a worker's error or a broken pool: the stream's to raise
        if error is None:
            data, seconds = composing.result()
            path = "pipe"
            if isinstance(data, SlotRef):
                assert self._reader is not None
                try:
                    data, path = self._reader.take(data), "shared_memory"
                except OSError as exc:
                    error = Unavailable(f"a batch could not be read from its worker: {exc}")
        with contextlib.suppress(InvalidStateError):  # the stream was cancelled meanwhile
            if error is not None:
                batch.set_exception(error)
                return
            with self._inflight_lock:
                self.transfers[path] += 1
            batch.set_result((data, seconds))

    def _done(self, _: Future) -> None:
        with self._inflight_lock:
            self._inflight -= 1

    @property
    def inflight_batches(self) -> int:
        """Batches queued or being composed for all streams right now."""
        return self._inflight

    def describe(self) -> synthesis_pb2.LibraryDescription:
        """What DescribeLibrary answers."""
        library = self.state.library
        msg = synthesis_pb2.LibraryDescription(
            source_images=library.source_images,
            backgrounds=len(self.state.backgrounds),
            dtype=common_pb2.DTYPE_UINT16 if library.dtype == "uint16" else common_pb2.DTYPE_UINT8,
            channels=library.channels,
            library_hash=self.state.library_hash,
            default_recipe=recipe_to_proto(self.default_recipe),
            default_recipe_hash=self.default_recipe.content_hash(),
            max_canvas_pixels=self.settings.max_canvas_pixels,
            max_message_bytes=self.settings.max_message_bytes,
        )
        for class_id, name in enumerate(library.class_names):
            stats = library.size_stats(class_id)
            msg.classes.add(
                id=class_id,
                name=name,
                object_count=len(library.by_class[class_id]),
                size=synthesis_pb2.SizeStats(**stats),
            )
        return msg

    def close(self) -> None:
        """Stop the worker processes and remove the state file."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._reader is not None:
            self._reader.close()
        self._tmp.cleanup()
