"""Closed-loop load from several client processes: the benchmarks' load generator.

    with LoadGenerator(processes=4) as load:
        rate, p99_ms = load.run(Call("127.0.0.1:8001", LOCALIZE, request_bytes), 16, seconds=3)
        rate, p99_ms = load.run(TritonCall("127.0.0.1:8001", "det", (1, 1, 512, 512)), 16, 3)

A Python gRPC client spends about 0.3 ms of CPU per 256 KB request and answer, under one GIL,
so 16 client threads in one process cap what they can measure near what a fast server
answers. Here the `concurrency` closed-loop clients (each its own channel and connection, as
separate PACS gateways would be) are spread over `processes` spawned processes, which stay
up between runs with their connections open. A run has every process make its clients and
one untimed call each, then all start at the same instant and stop `seconds` later; calls
that finish inside that window count. Returns requests/s and the p99 latency in ms.

`Call` sends already serialised bytes to one gRPC method and keeps the answer's bytes, so the
client pays no protobuf work; `TritonCall` is an unmodified `tritonclient.grpc` client
(ModelInfer with a seeded FP32 tensor), for the KServe comparison. Each process imports only
what its calls need (tritonclient needs protobuf < 7, synthloc protobuf >= 7).

`stop_servers` stops the server processes a benchmark started, killing any that hang.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import IO

import numpy as np

LOCALIZE = "/synthloc.v1.LocalizationService/Localize"
MAX_MESSAGE = 64 << 20


@dataclass(frozen=True)
class Call:
    """A unary gRPC method called with fixed, already serialised request bytes."""

    address: str
    method: str
    request: bytes


@dataclass(frozen=True)
class TritonCall:
    """tritonclient's `infer` of one FP32 input called `image` of `shape` on `model`."""

    address: str
    model: str
    shape: tuple[int, ...]


def default_processes() -> int:
    """A quarter of the cores (at most 4, at least 1): the rest are the server's."""
    return max(1, min(4, (os.cpu_count() or 1) // 4))


class LoadGenerator:
    """`processes` client processes; `run` puts closed-loop load on one target at a time."""

    def __init__(self, processes: int | None = None) -> None:
        self.processes = processes or default_processes()
        spawn = mp.get_context("spawn")  # never fork a process that holds gRPC channels
        self._pipes: list[Connection] = []
        self._procs = []
        for _ in range(self.processes):
            ours, theirs = spawn.Pipe()
            proc = spawn.Process(target=_client_process, args=(theirs,), daemon=True)
            proc.start()
            self._pipes.append(ours)
            self._procs.append(proc)
        for pipe in self._pipes:
            pipe.recv()  # each has imported what it needs

    def run(self, call: Call | TritonCall, concurrency: int, seconds: float) -> tuple[float, float]:
        """(requests/s, p99 latency ms) of `concurrency` clients calling `call` for `seconds`."""
        shares = [len(part) for part in np.array_split(range(concurrency), self.processes)]
        busy = [(pipe, n) for pipe, n in zip(self._pipes, shares, strict=True) if n]
        pipes = [pipe for pipe, _ in busy]
        for pipe, n in busy:
            pipe.send(("arm", call, n))
        armed = [pipe.recv() for pipe in pipes]  # connected, one call made by each client
        start = time.monotonic() + 0.05
        window = (start, start + seconds)
        if any(kind == "error" for kind, _ in armed):
            window = (0.0, 0.0)  # the armed ones stop at once, so every process is ready again
        for pipe, (kind, _) in zip(pipes, armed, strict=True):
            if kind != "error":
                pipe.send(("go", *window))
        ran = [
            pipe.recv() if kind != "error" else (kind, v)
            for pipe, (kind, v) in zip(pipes, armed, strict=True)
        ]
        if errors := [value for kind, value in ran if kind == "error"]:
            raise RuntimeError(f"a load generator process failed: {errors[0]}")
        done = [latency for _, latencies in ran for latency in latencies]
        if not done:
            raise RuntimeError(f"no call to {call.address} finished within {seconds} s")
        return len(done) / seconds, 1000 * float(np.percentile(done, 99))

    def close(self) -> None:
        for pipe in self._pipes:
            pipe.send(("exit",))
        for proc in self._procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()

    def __enter__(self) -> LoadGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _client(call: Call | TritonCall) -> Callable[[], object]:
    """One client of its own connection: a callable making one request."""
    if isinstance(call, TritonCall):
        import tritonclient.grpc as triton

        client = triton.InferenceServerClient(call.address)
        image = np.random.default_rng(0).random(call.shape, dtype=np.float32)
        tensor = triton.InferInput("image", list(call.shape), "FP32")
        tensor.set_data_from_numpy(image)
        return lambda: client.infer(call.model, [tensor])
    import grpc

    channel = grpc.insecure_channel(
        call.address,
        options=[
            ("grpc.use_local_subchannel_pool", 1),  # a connection of its own
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
        ],
    )
    method = channel.unary_unary(call.method)  # bytes in, bytes out
    return lambda: method(call.request, timeout=60)


def _client_process(pipe: Connection) -> None:
    clients: dict[Call | TritonCall, list[Callable[[], object]]] = {}
    pipe.send(("ready", None))
    while True:
        message = pipe.recv()
        if message[0] == "exit":
            return
        try:
            _, call, n = message
            made = clients.setdefault(call, [])
            while len(made) < n:
                made.append(_client(call))
            for client in made[:n]:
                client()  # connected, and the server has met this request once
            pipe.send(("armed", None))
            _, start, stop = pipe.recv()
            pipe.send(("done", _closed_loop(made[:n], start, stop)))
        except Exception as error:  # shown by the parent, which stops the benchmark
            pipe.send(("error", f"{type(error).__name__}: {error}"))


def _closed_loop(clients: list[Callable[[], object]], start: float, stop: float) -> list[float]:
    """Latencies (s) of the calls that finished by `stop`, each client calling back to back."""
    done: list[float] = []
    errors: list[BaseException] = []

    def loop(client: Callable[[], object]) -> None:
        try:
            time.sleep(max(0.0, start - time.monotonic()))
            while (began := time.monotonic()) < stop:
                client()
                if (ended := time.monotonic()) <= stop:
                    done.append(ended - began)  # list.append is atomic
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=loop, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return done


def server_log(name: str) -> IO[bytes]:
    """Where a benchmark's server writes its output: a temporary file, or with
    SYNTHLOC_BENCH_LOGS=DIR set, DIR/NAME.log, kept for a look afterwards (the device kit
    brings them back, replicas' drain lines included)."""
    folder = os.environ.get("SYNTHLOC_BENCH_LOGS")
    if not folder:
        return tempfile.TemporaryFile()
    os.makedirs(folder, exist_ok=True)
    stem, n = os.path.join(folder, name), 1
    while os.path.exists(path := f"{stem}{'' if n == 1 else f'-{n}'}.log"):
        n += 1
    return open(path, "w+b")


def stop_servers(procs: list[subprocess.Popen], seconds: float = 30.0) -> None:
    """SIGTERM every server, wait up to `seconds` for each drain, SIGKILL any still there (a
    supervisor of --processes bounds its own drain at its grace + 10 s)."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            print(f"server pid {proc.pid} did not stop in {seconds:.0f} s; killed", flush=True)
            proc.kill()
            proc.wait()
