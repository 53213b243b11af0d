"""ShapeSessions: one ONNX Runtime session per input shape, because the CUDA provider re-plans.

On cuDNN 9 the CUDA provider of ONNX Runtime (1.31 here) plans every convolution again
whenever its input shape differs from the shape it ran last, cached results or not. On an
H100 a batch of 8 512x512 images took 3.1 ms when every run had that shape, and 545 ms per run
when the batch size changed from run to run, as a dynamic batcher's batches do
(benchmarks/infer_gpu.py). Image sizes that alternate do the same. A session that only ever
sees one shape plans once, so this pool keeps a session per shape: batches are padded to a few
sizes (powers of two) and images already are (localizer.bucket), which keeps the shapes few.
Sessions are made on first use and the least recently used one is dropped beyond
`max_sessions`, which bounds the GPU memory their arenas hold.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

import onnxruntime as ort

log = logging.getLogger(__name__)

Shape = tuple[int, ...]


class ShapeSessions:
    """Sessions of one model by input shape (thread-safe)."""

    def __init__(
        self,
        create: Callable[[], ort.InferenceSession],
        batch_sizes: Sequence[int],
        max_sessions: int = 16,
        first: ort.InferenceSession | None = None,
        name: str = "",
    ) -> None:
        sizes = sorted({int(size) for size in batch_sizes})
        if not sizes or sizes[0] < 1:
            raise ValueError(f"batch sizes must be positive, got {list(batch_sizes)}")
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be at least 1, got {max_sessions}")
        self.batch_sizes: tuple[int, ...] = tuple(sizes)
        self.max_sessions, self.name = max_sessions, name
        self._create, self._spare = create, first
        self._sessions: OrderedDict[Shape, ort.InferenceSession] = OrderedDict()
        self._lock = threading.Lock()

    def batch_size(self, count: int) -> int:
        """The size a batch of `count` images runs as: the smallest fixed size that holds it
        (`count` itself beyond the largest, which callers split)."""
        return next((size for size in self.batch_sizes if size >= count), count)

    @property
    def shapes(self) -> list[Shape]:
        """The shapes with a session, least recently used first."""
        with self._lock:
            return list(self._sessions)

    def session(self, shape: Shape) -> ort.InferenceSession:
        """The session for inputs of `shape`, made now if it has none."""
        with self._lock:
            found = self._sessions.get(shape)
            if found is not None:
                self._sessions.move_to_end(shape)
                return found
            began = time.monotonic()
            made, self._spare = self._spare or self._create(), None
            self._sessions[shape] = made
            if len(self._sessions) > self.max_sessions:
                dropped, _ = self._sessions.popitem(last=False)
                log.info("%s: dropped the session for input %s", self.name, list(dropped))
            log.info(
                "%s: a session for input %s (%d of at most %d), made in %.2f s",
                self.name,
                list(shape),
                len(self._sessions),
                self.max_sessions,
                time.monotonic() - began,
            )
            return made
