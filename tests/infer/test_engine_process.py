"""`synthloc infer serve --processes N --engine-process`: one process batches for every replica."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request
from multiprocessing.connection import Listener
from pathlib import Path
from types import SimpleNamespace

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from infer_service.engine_process import EngineLink, EngineProcess, RemoteBatcher
from infer_service.engine_wire import Wire
from infer_service.localizer import OnnxLocalizer
from infer_service.server import load_repository
from infer_service.settings import InferSettings
from synthloc.errors import DeadlineExceeded, NotFound, Unavailable
from synthloc.v1 import localization_pb2, localization_pb2_grpc
from tests.infer.test_cli import SYNTHLOC
from tests.infer.test_processes import _serve
from tests.infer.test_service import EXPECTED_BOX, _request, _write_model

CLIENTS = 16


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    _write_model(tmp_path / "models", "nuclei", "1")
    return tmp_path / "models"


def _samples(metrics_port: int) -> dict[tuple, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _localize_together(port: int) -> list[localization_pb2.LocalizeResponse]:
    """CLIENTS calls, each on a connection of its own (spread over the replicas by the
    kernel), all sent at one instant."""
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.insecure_channel(f"127.0.0.1:{port}", options=options) for _ in range(CLIENTS)]
    for channel in channels:
        grpc.channel_ready_future(channel).result(timeout=30)
    start = threading.Barrier(CLIENTS)
    answers: list = [None] * CLIENTS

    def call(i: int) -> None:
        stub = localization_pb2_grpc.LocalizationServiceStub(channels[i])
        start.wait()
        answers[i] = stub.Localize(_request(), timeout=60)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for channel in channels:
        channel.close()
    return answers


# Every request waits up to 2 s for company, so all 16 meet in the queue if they can.
GATHER = ["--processes", "2", "--max-batch-size", "16", "--max-queue-delay-ms", "2000"]
GATHER += ["--no-tune-batch-size"]


@pytest.mark.parametrize(("engine", "batches"), [(True, [16]), (False, None)])
def test_one_engine_batches_the_requests_of_every_replica_together(
    repo: Path, engine: bool, batches: list[int] | None
) -> None:
    flags = [*GATHER, "--engine-process"] if engine else GATHER
    proc, port, metrics_port, _ = _serve(repo, *flags)
    try:
        answers = _localize_together(port)
        for answer in answers:
            found = [(d.box.x, d.box.y, d.box.width, d.box.height) for d in answer.detections]
            assert found == [EXPECTED_BOX] and answer.provider == "CPUExecutionProvider"
        samples = _samples(metrics_port)
        model = (("model", "nuclei"),)
        ok = (("code", "OK"), ("model", "nuclei"), ("version", "1"))
        assert samples["synthloc_infer_requests_total", ok] == CLIENTS
        count = samples["synthloc_infer_batch_size_count", model]
        assert samples["synthloc_infer_batch_size_sum", model] == CLIENTS
        if batches is not None:  # the 16, from both replicas' connections, in one batch
            assert count == len(batches), count
        else:  # each replica batches its own share: 16 connections over two of them
            assert count == 2, count
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        said = proc.stderr.read()
        assert ("engine stopped" in said) == engine and said.rstrip().endswith("stopped"), said
    finally:
        proc.kill()
        proc.wait()


def _engine_folders() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("synthloc-engine-*"))


def test_an_engine_that_dies_takes_the_supervisor_down_with_exit_1(repo: Path) -> None:
    before = _engine_folders()
    proc, _, _, lines = _serve(repo, "--processes", "2", "--engine-process")
    try:
        pid = int(re.search(r"engine process \(pid (\d+)\) started", "".join(lines)).group(1))
        os.kill(pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == 1
        said = proc.stderr.read()
        assert f"the engine process (pid {pid}) exited unexpectedly (exit code -9)" in said
    finally:
        proc.kill()
        proc.wait()
    assert _engine_folders() <= before  # its socket and folder are gone with it


def test_an_engine_that_cannot_start_exits_2_with_its_reason(repo: Path) -> None:
    # The replicas load models on the CPU for their cards only; --require-gpu is the engine's.
    command = [SYNTHLOC, "infer", "serve", "--models", str(repo), "--port", "0", "--processes"]
    command += ["2", "--engine-process", "--device", "cpu", "--require-gpu"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "synthloc: error: engine process: " in done.stderr
    assert "runs on CPUExecutionProvider, and --require-gpu is set" in done.stderr
    assert "replica 0" not in done.stderr  # none was started


@pytest.fixture()
def engine(repo: Path):
    settings = InferSettings(models=repo, metrics_port=-1, poll_seconds=0, warm_sizes="64")
    handle = EngineProcess.spawn(settings, 30)
    try:
        yield handle.ready()
    finally:
        assert handle.stop(30)


def _model(version: str = "1") -> SimpleNamespace:
    return SimpleNamespace(name="nuclei", version=version)


def test_the_engine_answers_with_outputs_and_passes_errors_back_by_class(
    engine, repo: Path
) -> None:
    remote = RemoteBatcher(engine, 64)
    try:
        image = np.zeros((1, 64, 96), np.float32)
        image[0, 20:24, 40:44] = 1.0
        result = remote.call(_model(), image, time.monotonic() + 30)
        assert result.batch_size == 1 and result.compute_seconds >= 0
        here = OnnxLocalizer(repo / "nuclei" / "1" / "model.onnx").run(image[None])
        assert sorted(result.outputs) == sorted(here) and here
        for name, value in here.items():  # the very outputs a run here gives
            assert np.array_equal(result.outputs[name], value[0])
        with pytest.raises(DeadlineExceeded, match="deadline passed while it waited"):
            remote.call(_model(), image, time.monotonic() - 1)
        with pytest.raises(NotFound, match="nuclei"):
            remote.call(_model("9"), image, None)
        assert remote.call(_model(), image, None).batch_size == 1  # and it still serves
    finally:
        remote.stop()
    with pytest.raises(Unavailable, match="shutting down"):
        remote.submit(_model(), image, None)


def test_requests_waiting_on_an_engine_that_goes_away_fail_with_unavailable(
    tmp_path: Path,
) -> None:
    address, key = str(tmp_path / "engine.sock"), b"k" * 32
    listener = Listener(address, family="AF_UNIX", authkey=key)

    def take_one_then_quit() -> None:
        wire = Wire(listener.accept())
        while (header := wire.recv())[0] == "slots":  # the replica's shared slots first
            os.close(wire.recv_fd())
        if header[-1] is None:  # the image came through the socket
            wire.recv_into(np.empty(header[3], header[4]))
        wire.close()  # one request read, never answered

    thread = threading.Thread(target=take_one_then_quit)
    thread.start()
    remote = RemoteBatcher(EngineLink(address, key, "CPUExecutionProvider"), 64)
    image = np.zeros((1, 8, 8), np.float32)
    waiting = remote.submit(_model(), image, None)
    thread.join()
    with pytest.raises(Unavailable, match="engine process closed its connection"):
        waiting.result(timeout=30)
    with pytest.raises(Unavailable, match="engine process closed its connection"):
        remote.submit(_model(), image, None)
    remote.stop()
    listener.close()


def test_a_replica_offers_only_the_versions_its_engine_has_loaded(engine, repo: Path) -> None:
    # Version 2 lands after the engine's scan (it polls every poll_seconds, here never):
    # a replica scanning now must not offer it, or its requests would reach an engine
    # without it.
    _write_model(repo, "nuclei", "2")
    remote = RemoteBatcher(engine, 64)
    try:
        assert remote.served_versions() == {"nuclei": ["1"]}
        settings = InferSettings(models=repo, metrics_port=-1, poll_seconds=0)
        offered = load_repository(settings, engine, remote.served_versions())
        assert [(m.name, m.version, m.provider) for m in offered.list()] == [
            ("nuclei", "1", "CPUExecutionProvider")
        ]
        assert [m.version for m in load_repository(settings).list()] == ["2", "1"]  # on its own
    finally:
        remote.stop()


# Two slots for 16 threads: slots are reused at once, and the rest go through the socket.
@pytest.mark.parametrize("slots", [0, 2], ids=["socket", "shared-slots"])
def test_many_threads_sending_large_images_each_get_their_own_answer(
    engine, repo: Path, slots: int
) -> None:
    # Through the socket, both of its directions fill up: a replica whose threads held its
    # lock while waiting to send kept its reader from reading, while the engine waited to
    # send to it. Through shared slots, a slot reused before the engine has read it would
    # answer for another thread's image.
    remote = RemoteBatcher(engine, 64, slots=slots)
    local = OnnxLocalizer(repo / "nuclei" / "1" / "model.onnx")
    images = []
    for i in range(CLIENTS):  # 1 MiB each, a square of its own
        image = np.zeros((1, 512, 512), np.float32)
        image[0, 20 + 24 * i : 24 + 24 * i, 40:44] = 1.0
        images.append((image, local.run(image[None])))
    wrong: list[int] = []
    done: list[int] = []

    def client(i: int) -> None:
        image, expected = images[i]
        for _ in range(8):
            outputs = remote.call(_model(), image, time.monotonic() + 60).outputs
            if any(not np.array_equal(outputs[k], v[0]) for k, v in expected.items()):
                wrong.append(i)
            done.append(i)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    # Stuck, the replica cannot even say goodbye: stopping the engine (the fixture) ends it.
    assert not any(thread.is_alive() for thread in threads), "answers stopped coming"
    remote.stop()
    assert len(done) == 8 * CLIENTS and not wrong, sorted(set(wrong))
    if slots:  # every slot is free again
        assert remote.slots is not None and remote.slots.free == slots
