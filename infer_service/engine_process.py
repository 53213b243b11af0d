"""`infer serve --processes N --engine-process`: one process runs the models for N replicas.

With `--processes` alone every replica owns its sessions and its batcher. On a GPU host that
costs twice: the replicas' CUDA contexts take turns on the GPU, and each batcher sees only
its own share of the load, so batches stay small (at concurrency 16 over 4 replicas, about 4).
On an H200 the benchmark detector runs 2.7 times the images per second at batch 8 as at
batch 1, so small batches leave most of that on the table.

Here the supervisor first starts an engine process: the model repository (sessions, warm-up,
polling), one DynamicBatcher and one CUDA context. The replicas still do everything that
holds Python's GIL per request (gRPC, decoding, scaling, postprocessing, metrics) and load
each model version on the CPU for its model card, but hand each prepared image to the
engine over a local socket (`RemoteBatcher`, the DynamicBatcher's interface) and get its
outputs back. The engine batches across all replicas, so batches grow with the whole load.

Wire (`infer_service.engine_wire`): per replica one AF_UNIX connection, authenticated with a
random key, and shared slots (an anonymous memfd whose descriptor the replica sends first).
A request is a pickled header `(id, model, version, shape, dtype, deadline, slot)`: the
image lies in that slot, or with slot None its raw bytes follow on the socket. An answer is
`(id, "ok", outputs, queue_s, compute_s, batch_size)` or `(id, "error", class, message)`,
sent in lists of those ready together. The replica's `None` says goodbye, and its
`("versions", id)` asks which versions the engine has loaded (answered `(id, "versions",
{model: [versions]})`): a replica offers only those, so it never sends a version the engine
has not loaded yet.
Deadlines are CLOCK_MONOTONIC seconds, which every process of a host shares, so the engine
drops expired requests before compute as a single server does.

Lifecycle: the engine ignores SIGTERM and SIGINT (a signal to the whole process group must
not stop it under replicas still draining); the supervisor stops it after the replicas, by
closing its pipe, and it also stops when the supervisor is gone. A replica whose engine
connection breaks fails the waiting requests with UNAVAILABLE; the supervisor sees the
engine's death and takes the pod down (exit 1), as for a replica.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing as mp
import os
import queue
import secrets
import signal
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass
from multiprocessing.connection import Client, Connection, Listener
from typing import Any

import numpy as np

from infer_service.batcher import BatchResult, DynamicBatcher
from infer_service.engine_wire import Slots, Wire
from infer_service.repository import LoadedModel
from infer_service.settings import InferSettings
from synthloc import errors
from synthloc.errors import SynthlocError, Unavailable

log = logging.getLogger(__name__)

SHUTTING_DOWN = "the inference service is shutting down; retry (another replica)"
SOCKET = "engine.sock"  # in a folder of its own under the temporary folder
STOP_SECONDS = 5.0
# Shared slots per replica: images up to SLOT_BYTES (a 2048x2048 float32 image) skip the
# socket. Sparse: a slot's pages exist once an image was written to it.
SLOTS, SLOT_BYTES = 16, 16 << 20  # for a replica's last answers from the engine, at its stop

# Errors that cross the socket by name, so the replica answers with the engine's gRPC code.
PASSED_ERRORS = {
    cls.__name__: cls
    for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, SynthlocError)
}


@dataclass(frozen=True)
class EngineLink:
    """How a replica reaches the engine, and what the engine runs its models on."""

    address: str
    authkey: bytes
    provider: str


class RemoteBatcher:
    """The DynamicBatcher's interface (submit, call, depth, stop) with the batching done by
    the engine process at the end of one connection, shared by this replica's threads."""

    def __init__(
        self,
        link: EngineLink,
        max_queue_size: int,
        slots: int = SLOTS,
        slot_bytes: int = SLOT_BYTES,
    ) -> None:
        self.max_queue_size = max_queue_size
        self._wire = Wire(Client(link.address, family="AF_UNIX", authkey=link.authkey))
        self.slots: Slots | None = None  # images that fit go through shared memory
        if slots > 0 and Slots.available():
            self.slots = Slots(slots, slot_bytes)
            self._wire.send(("slots", slots, slot_bytes))
            self._wire.send_fd(self.slots.fd)
            self.slots.close_fd()
        self._lock = threading.Lock()  # guards _pending and _closed only, never a send
        self._pending: dict[int, Future] = {}
        self._ids = itertools.count()
        self._closed: str | None = None  # why no request can be sent any more
        self._reader = threading.Thread(target=self._read, name="engine-answers", daemon=True)
        self._reader.start()

    @property
    def depth(self) -> int:
        """0: requests wait in the engine, whose metrics show its queue."""
        return 0

    def submit(self, model: LoadedModel, image: np.ndarray, deadline: float | None) -> Future:
        """Send a prepared image to the engine; the future gives a BatchResult or raises."""
        shape, dtype = image.shape, image.dtype.str
        slots = self.slots
        slot = slots.take(image.nbytes) if slots is not None else None
        if slots is None or slot is None:  # through the socket
            image = np.ascontiguousarray(image)
            return self._ask(
                lambda rid: (rid, model.name, model.version, shape, dtype, deadline, None),
                memoryview(image).cast("B"),
            )
        np.copyto(slots.view(slot, shape, dtype), image)
        try:
            future = self._ask(
                lambda rid: (rid, model.name, model.version, shape, dtype, deadline, slot)
            )
        except BaseException:
            slots.give_back(slot)
            raise
        # Answered, the engine is done with the slot (its run has read it).
        future.add_done_callback(lambda _: slots.give_back(slot))
        return future

    def served_versions(self, timeout: float = 60.0) -> dict[str, list[str]]:
        """The versions the engine has loaded, by model."""
        return self._ask(lambda rid: ("versions", rid)).result(timeout)

    def _ask(self, message: Callable[[int], tuple], payload: memoryview | None = None) -> Future:
        """Send message(id) and its payload; the future is settled when the answer comes.
        The lock guards only the table of pending answers: a send that waits for room in
        the socket must never keep the reader thread from settling answers (the engine
        may be waiting for this process to read before it reads again)."""
        future: Future = Future()
        with self._lock:
            if self._closed is not None:
                raise Unavailable(self._closed)
            rid = next(self._ids)
            self._pending[rid] = future
        try:
            self._wire.send(message(rid), payload)
        except OSError as exc:
            with self._lock:
                self._pending.pop(rid, None)
            raise Unavailable(f"the engine process is gone ({exc}); retry (another pod)") from None
        return future

    def call(self, model: LoadedModel, image: np.ndarray, deadline: float | None) -> BatchResult:
        """submit(...).result()."""
        return self.submit(model, image, deadline).result()

    def _read(self) -> None:
        why = SHUTTING_DOWN
        try:
            while True:
                for rid, kind, *rest in self._wire.recv():
                    with self._lock:
                        future = self._pending.pop(rid, None)
                    if future is None:  # its send failed and its caller was told
                        continue
                    if kind == "ok":
                        future.set_result(BatchResult(*rest))
                    elif kind == "versions":
                        future.set_result(rest[0])
                    else:
                        name, message = rest
                        future.set_exception(PASSED_ERRORS.get(name, RuntimeError)(message))
        except Exception as exc:  # EOF or a reset; anything else too: no answer can follow
            if self._closed is None:
                why = "the engine process closed its connection; retry (another pod)"
                unexpected = not isinstance(exc, (EOFError, OSError))
                log.error("the engine process closed its connection", exc_info=unexpected)
        with self._lock:
            self._closed = self._closed or why
            pending, self._pending = self._pending, {}
        for future in pending.values():
            future.set_exception(Unavailable(why))

    def stop(self, timeout: float | None = None) -> bool:
        """Say goodbye; the engine sends what is still due, then closes its end, which ends
        the reader (the server has drained: normally nothing is due). `timeout`: as
        DynamicBatcher's, the engine's own STOP_SECONDS bound this one."""
        with self._lock:
            first, self._closed = self._closed is None, self._closed or SHUTTING_DOWN
        if first:
            with contextlib.suppress(OSError):
                self._wire.send(None)
        self._reader.join(STOP_SECONDS)
        self._wire.close()
        return not self._reader.is_alive()


@dataclass
class EngineProcess:
    """The supervisor's handle on the engine process."""

    proc: Any
    pipe: Connection
    folder: str  # holds its socket
    link: EngineLink | None = None
    metrics_port: int | None = None

    @classmethod
    def spawn(cls, settings: InferSettings, log_level: int) -> EngineProcess:
        spawn = mp.get_context("spawn")  # CUDA does not survive a fork
        folder = tempfile.mkdtemp(prefix="synthloc-engine-")
        address, authkey = os.path.join(folder, SOCKET), secrets.token_bytes(32)
        ours, theirs = spawn.Pipe()
        proc = spawn.Process(
            target=_engine, args=(settings, log_level, theirs, address, authkey), name="engine"
        )
        proc.start()
        theirs.close()
        log.info("engine process (pid %d) started", proc.pid)
        return cls(proc, ours, folder)

    def ready(self) -> EngineLink:
        """Its link once its models are loaded and warm; its failure to start raised."""
        from infer_service.processes import ReplicaFailed

        try:
            kind, *value = self.pipe.recv()
        except EOFError:
            self.proc.join()
            code = self.proc.exitcode
            message = f"the engine process exited while starting (exit {code})"
            raise ReplicaFailed(message, 1) from None
        if kind == "error":
            raise ReplicaFailed(*value)
        address, authkey, provider, self.metrics_port = value
        self.link = EngineLink(address, authkey, provider)
        return self.link

    def stop(self, timeout: float) -> bool:
        """Close its pipe (it finishes what is queued and exits); True if it exited 0."""
        self.pipe.close()
        self.proc.join(timeout)
        if self.proc.is_alive():
            log.error("the engine process did not stop within %.1f s; killing it", timeout)
            self.proc.kill()
            self.proc.join(5.0)
        # The engine's listener removes its socket as it closes; a killed engine leaves it.
        with contextlib.suppress(OSError):
            os.remove(os.path.join(self.folder, SOCKET))
        with contextlib.suppress(OSError):
            os.rmdir(self.folder)
        return self.proc.exitcode == 0


def _engine(
    settings: InferSettings, log_level: int, pipe: Connection, address: str, authkey: bytes
) -> None:
    """The engine's life: load, warm, listen, batch, until the supervisor closes the pipe."""
    from prometheus_client import start_http_server

    from infer_service.metrics import InferMetrics
    from infer_service.server import load_repository, new_batcher, poll_repository
    from synthloc.memory import keep_freed_memory

    logging.basicConfig(
        level=log_level, format="%(asctime)s %(levelname)s engine %(name)s: %(message)s"
    )
    for sig in (signal.SIGTERM, signal.SIGINT):  # stopped by its supervisor, after the replicas
        signal.signal(sig, signal.SIG_IGN)
    keep_freed_memory()  # every request lands in a fresh buffer of a MiB or more
    metrics = InferMetrics()
    try:
        repository = load_repository(settings)
        listener = Listener(address, family="AF_UNIX", authkey=authkey)
    except SynthlocError as error:
        pipe.send(("error", f"engine process: {error}", error.exit_code))
        raise SystemExit(error.exit_code) from None
    metrics.show_models(repository.list())
    batcher = new_batcher(settings, metrics)
    httpd = None
    if settings.metrics_port >= 0:
        httpd, _ = start_http_server(0, addr="127.0.0.1", registry=metrics.registry)
    stop = threading.Event()
    accept = (listener, repository, batcher, stop)
    threading.Thread(target=_accept, args=accept, name="engine-accept", daemon=True).start()
    poll = (repository, metrics, settings.poll_seconds, stop)
    threading.Thread(target=poll_repository, args=poll, name="engine-poll", daemon=True).start()
    provider = repository.list()[0].provider
    pipe.send(("ready", address, authkey, provider, httpd.server_port if httpd else None))
    log.info("engine serving %s", ", ".join(f"{m.name}/{m.version}" for m in repository.list()))
    with contextlib.suppress(EOFError, OSError):
        pipe.recv()  # nothing is sent: it returns when the supervisor closes the pipe or dies
    stop.set()
    batcher.stop(settings.grace_seconds)  # runs what is queued
    listener.close()
    if httpd is not None:
        httpd.shutdown()
    log.info("engine stopped")


def _accept(
    listener: Listener, repository: Any, batcher: DynamicBatcher, stop: threading.Event
) -> None:
    while not stop.is_set():
        try:
            conn = listener.accept()
        except (OSError, EOFError) as exc:  # closed at stop; a client that failed its key
            if not stop.is_set():
                log.warning("a connection to the engine was refused: %s", exc)
            continue
        threading.Thread(
            target=_serve_replica, args=(conn, repository, batcher), daemon=True
        ).start()


def _serve_replica(conn: Connection, repository: Any, batcher: DynamicBatcher) -> None:
    """Read one replica's requests into the batcher; a second thread sends the answers in
    the order they finish."""
    wire = Wire(conn)
    answers: queue.SimpleQueue = queue.SimpleQueue()
    sender = threading.Thread(target=_send_answers, args=(wire, answers), daemon=True)
    sender.start()
    outstanding: set[Future] = set()

    def done(future: Future, rid: int) -> None:
        outstanding.discard(future)
        answers.put((rid, future))

    slots: Slots | None = None
    try:
        while (header := wire.recv()) is not None:  # None: the replica is stopping
            if header[0] == "versions":  # a replica's scan asks what it may offer
                answers.put([header[1], "versions", served_versions(repository)])
                continue
            if header[0] == "slots":  # its shared slots, once, first
                fd = wire.recv_fd()
                slots = Slots(header[1], header[2], fd)
                slots.close_fd()
                continue
            rid, name, version, shape, dtype, deadline, slot = header
            if slot is None:
                image = wire.recv_into(np.empty(shape, dtype))
            result = None
            try:
                if slot is not None:
                    if slots is None:
                        raise ValueError("a slot was named before the slots were sent")
                    image = slots.view(slot, shape, dtype)
                model = repository.get(name, version)
                # An idle engine runs it here and answers at once: no hand-off to the
                # batcher's worker, nor to the sender.
                result = batcher.run_if_idle(model, image, deadline)
                if result is None:
                    future = batcher.submit(model, image, deadline)
            except Exception as exc:  # unknown version, full queue, stopping: that one fails
                future = Future()
                future.set_exception(exc)
            if result is not None:
                wire.send([_answer(rid, result)])
                continue
            outstanding.add(future)
            future.add_done_callback(lambda future, rid=rid: done(future, rid))
        wait(list(outstanding), STOP_SECONDS)  # a goodbye: what it still waits for goes first
    except (EOFError, OSError):  # the replica closed its end: no one reads its answers
        pass
    answers.put(None)
    sender.join()
    wire.close()


def _send_answers(wire: Wire, answers: queue.SimpleQueue) -> None:
    """Send the answers as their requests finish: all those finished by the time the last
    was sent go together in one message (a batch's answers mostly do)."""
    while True:
        due = [answers.get()]
        while not answers.empty():
            due.append(answers.get())
        message = [
            tuple(item) if isinstance(item, list) else _answer(*item)  # a list: ready as it is
            for item in due
            if item is not None
        ]
        try:
            if message:
                wire.send(message)
        except OSError:  # the replica is gone; the rest of its answers have no reader
            return
        if None in due:
            return


def served_versions(repository: Any) -> dict[str, list[str]]:
    """Every loaded version, by model."""
    served: dict[str, list[str]] = {}
    for model in repository.list():
        served.setdefault(model.name, []).append(model.version)
    return served


def _answer(rid: int, done: Future | BatchResult) -> tuple:
    if isinstance(done, Future):
        error = done.exception()
        if error is not None:
            return (rid, "error", type(error).__name__, str(error))
        done = done.result()
    return (rid, "ok", done.outputs, done.queue_seconds, done.compute_seconds, done.batch_size)
