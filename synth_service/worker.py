"""Composition in worker processes: each loads the replica's state once, then composes batches.

Workers return serialized Batch messages, so the serving process only forwards bytes and the
GIL of the serving process never limits composition.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2

from synth_service.compose import compose
from synth_service.encode import encode_batch
from synth_service.kernel import library_pack
from synth_service.recipe import Recipe
from synth_service.state import SynthState
from synthloc.memory import keep_freed_memory
from synthloc.v1 import synthesis_pb2

# Per-process state set by the pool initializer: the standard pattern for process pools,
# and the only module-level mutable value in the service.
_STATE: SynthState | None = None


@dataclass(frozen=True)
class BatchJob:
    """One batch to compose: global indices and how to encode them."""

    recipe: Recipe
    recipe_hash: str
    seed: int
    indices: tuple[int, ...]
    encoding: int
    include_masks: bool


def init_worker(state_path: str, parent: int | None = None) -> None:
    """Pool initializer: load the library and backgrounds of this replica; with `parent` (the
    serving process id), exit once that process is gone."""
    global _STATE
    if parent is not None:
        threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    # One worker per core: OpenCV's own threads would only compete with the other workers.
    cv2.setNumThreads(1)
    keep_freed_memory()  # a batch of a few MiB is built and dropped every few milliseconds
    _STATE = SynthState.load(Path(state_path))
    library_pack(_STATE.library)  # the compose kernel's copy, made now rather than mid-stream


def _exit_with_parent(parent: int) -> None:
    """End this worker when its serving process dies without closing the pool (SIGKILL, OOM),
    instead of lingering as an orphan."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def compose_batch(job: BatchJob) -> tuple[bytes, float]:
    """Compose and serialize one batch; return (Batch bytes, seconds spent composing)."""
    state = _STATE
    if state is None:
        raise RuntimeError("worker used before init_worker ran")
    return run_job(job, state)


def run_job(job: BatchJob, state: SynthState) -> tuple[bytes, float]:
    """compose_batch without the process-global state (also used in-process)."""
    start = time.perf_counter()
    samples = (
        compose(job.recipe, state.library, state.backgrounds, job.seed, index, job.include_masks)
        for index in job.indices
    )
    header = synthesis_pb2.Batch(
        recipe_hash=job.recipe_hash,
        library_hash=state.library_hash,
        class_names=state.library.class_names,
    )
    data = encode_batch(samples, header, job.encoding, job.include_masks, job.recipe.label_mode)
    return data, time.perf_counter() - start
