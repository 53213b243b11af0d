"""Composition in worker processes: each loads the replica's state once, then composes batches.

Workers return serialized Batch messages, so the serving process only forwards bytes and the
GIL of the serving process never limits composition. A batch travels in a shared slot where one
is free (synth_service/transfer.py), else through the pool's pipe.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2

from synth_service.compose import compose
from synth_service.encode import Piece, batch_pieces
from synth_service.kernel import library_pack
from synth_service.recipe import Recipe
from synth_service.state import SynthState
from synth_service.transfer import Flag, Lock, SlotRef, SlotWriter
from synthloc.memory import keep_freed_memory
from synthloc.v1 import synthesis_pb2

# Per-process state set by the pool initializer: the standard pattern for process pools,
# and the only module-level mutable values in the service.
_STATE: SynthState | None = None
_SLOTS: SlotWriter | None = None


@dataclass(frozen=True)
class SlotSettings:
    """Shared slots of each worker (synth_service/transfer.py); `enabled` (a shared byte) is
    cleared by the serving process when it cannot read them."""

    lock: Lock
    enabled: Flag
    slots: int
    slot_bytes: int


@dataclass(frozen=True)
class BatchJob:
    """One batch to compose: global indices and how to encode them."""

    recipe: Recipe
    recipe_hash: str
    seed: int
    indices: tuple[int, ...]
    encoding: int
    include_masks: bool


def init_worker(
    state_path: str, parent: int | None = None, slots: SlotSettings | None = None
) -> None:
    """Pool initializer: load the library and backgrounds of this replica; with `parent` (the
    serving process id), exit once that process is gone; with `slots`, hand batches over in
    shared slots."""
    global _STATE, _SLOTS
    if parent is not None:
        threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    # One worker per core: OpenCV's own threads would only compete with the other workers.
    cv2.setNumThreads(1)
    keep_freed_memory()  # a batch of a few MiB is built and dropped every few milliseconds
    _STATE = SynthState.load(Path(state_path))
    library_pack(_STATE.library)  # the compose kernel's copy, made now rather than mid-stream
    if slots is not None:
        _SLOTS = SlotWriter(slots.lock, slots.slots, slots.slot_bytes, slots.enabled)


def _exit_with_parent(parent: int) -> None:
    """End this worker when its serving process dies without closing the pool (SIGKILL, OOM),
    instead of lingering as an orphan."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def compose_batch(job: BatchJob) -> tuple[bytes | SlotRef, float]:
    """Compose and serialize one batch; return (Batch bytes, or where they wait in a shared
    slot, and the seconds spent composing and encoding)."""
    state = _STATE
    if state is None:
        raise RuntimeError("worker used before init_worker ran")
    pieces, seconds = _job_pieces(job, state)
    if _SLOTS is not None and (ref := _SLOTS.put(pieces)) is not None:
        return ref, seconds
    return b"".join(pieces), seconds


def run_job(job: BatchJob, state: SynthState) -> tuple[bytes, float]:
    """compose_batch without the process-global state (also used in-process)."""
    pieces, seconds = _job_pieces(job, state)
    return b"".join(pieces), seconds


def _job_pieces(job: BatchJob, state: SynthState) -> tuple[list[Piece], float]:
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
    pieces = batch_pieces(samples, header, job.encoding, job.include_masks, job.recipe.label_mode)
    return pieces, time.perf_counter() - start
