"""SynthesisService over a real channel: determinism, shards, resume, bad input, lifecycle."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from synth_service.engine import StreamControl
from synth_service.server import SynthServer, create_server
from synth_service.settings import SynthSettings
from synth_service.transfer import SlotRef
from synthloc.errors import Unavailable
from synthloc.v1 import common_pb2, synthesis_pb2, synthesis_pb2_grpc
from synthloc.wire import image_from_proto

SMALL = synthesis_pb2.Recipe(height=96, width=96)


def _start(library: Path, **overrides) -> SynthServer:
    overrides.setdefault("workers", 2)
    settings = SynthSettings(library=library, port=0, metrics_port=0, **overrides)
    server, port = create_server(settings)
    assert port > 0
    server.start()
    return server


@pytest.fixture(scope="module")
def library_file(data_root: Path) -> Path:
    return data_root / "mnfinder" / "val.json"


@pytest.fixture(scope="module")
def server(library_file: Path):
    srv = _start(library_file, max_message_bytes=4 * 1024 * 1024, rpc_threads=16)
    yield srv
    srv.stop(grace=1)


@pytest.fixture()
def stub(server: SynthServer):
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield synthesis_pb2_grpc.SynthesisServiceStub(channel)


def _request(**fields) -> synthesis_pb2.StreamBatchesRequest:
    fields.setdefault("recipe", SMALL)
    fields.setdefault("batch_size", 3)
    return synthesis_pb2.StreamBatchesRequest(**fields)


def _samples(stub, **fields) -> list[synthesis_pb2.Sample]:
    return [s for batch in stub.StreamBatches(_request(**fields)) for s in batch.samples]


def test_describe_library(stub, server: SynthServer) -> None:
    info = stub.DescribeLibrary(synthesis_pb2.DescribeLibraryRequest())
    assert [c.name for c in info.classes] == ["nucleus", "micronucleus"]
    library = server.engine.state.library
    assert [c.object_count for c in info.classes] == [len(ix) for ix in library.by_class]
    assert info.source_images == 3 and info.backgrounds > 0
    assert info.library_hash == server.engine.state.library_hash
    assert info.default_recipe.HasField("height") and info.default_recipe.height == 512
    assert 10 < info.classes[0].size.p50 < 60  # nuclei are tens of pixels across


def test_batches_carry_global_indices_and_exact_sizes(stub) -> None:
    batches = list(stub.StreamBatches(_request(count=7, start_index=10)))
    assert [len(b.samples) for b in batches] == [3, 3, 1]
    samples = [s for b in batches for s in b.samples]
    assert [s.index for s in samples] == list(range(10, 17))
    image = samples[0].image
    assert (image.height, image.width, image.channels) == (96, 96, 1)
    assert image.encoding == common_pb2.IMAGE_ENCODING_RAW and len(image.data) == 96 * 96
    assert batches[0].class_names == ["nucleus", "micronucleus"]


def test_two_servers_give_identical_bytes(stub, server: SynthServer, library_file: Path) -> None:
    # The other server's workers hand batches over through the pipe, ours in shared memory.
    other = _start(library_file, shared_memory_slots=0)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{other.port}") as channel:
            theirs = _samples(synthesis_pb2_grpc.SynthesisServiceStub(channel), count=6, seed=5)
        before = dict(server.engine.transfers)
        ours = _samples(stub, count=6, seed=5)
        assert [s.SerializeToString() for s in ours] == [s.SerializeToString() for s in theirs]
        assert server.engine.transfers["shared_memory"] == before["shared_memory"] + 2
        assert server.engine.transfers["pipe"] == before["pipe"]
        assert other.engine.transfers == {"shared_memory": 0, "pipe": 2}
    finally:
        other.stop(grace=1)


def test_shards_partition_the_stream(stub) -> None:
    whole = {s.index: s.SerializeToString() for s in _samples(stub, count=12, seed=1)}
    parts: dict[int, bytes] = {}
    for shard in range(3):
        for s in _samples(stub, count=4, seed=1, shard_index=shard, num_shards=3):
            assert s.index % 3 == shard and s.index not in parts
            parts[s.index] = s.SerializeToString()
    assert parts == whole


def test_resume_continues_exactly_where_a_stream_broke(stub) -> None:
    unbroken = [s.SerializeToString() for s in _samples(stub, count=9, seed=2, batch_size=2)]
    stream = stub.StreamBatches(_request(count=9, seed=2, batch_size=2))
    seen = [s for _, batch in zip(range(2), stream, strict=False) for s in batch.samples]
    stream.cancel()
    rest = _samples(stub, count=9 - len(seen), seed=2, batch_size=2, start_index=seen[-1].index + 1)
    assert [s.SerializeToString() for s in seen + rest] == unbroken


def test_png_encoding_and_masks(stub) -> None:
    raw = _samples(stub, count=2, seed=3, include_masks=True)
    png = _samples(
        stub, count=2, seed=3, include_masks=True, encoding=common_pb2.IMAGE_ENCODING_PNG
    )
    for a, b in zip(raw, png, strict=True):
        assert (image_from_proto(a.image) == image_from_proto(b.image)).all()
        labels = image_from_proto(a.instance_labels)[..., 0]
        assert labels.max() == len(a.objects)
        for k, obj in enumerate(a.objects):
            ys, xs = (labels == k + 1).nonzero()
            assert (obj.box.x, obj.box.y) == (xs.min(), ys.min())
            assert (obj.box.width, obj.box.height) == (
                xs.max() - xs.min() + 1,
                ys.max() - ys.min() + 1,
            )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"recipe": synthesis_pb2.Recipe(height=0), "count": 1}, "recipe.height: must be > 0"),
        (
            {
                "recipe": synthesis_pb2.Recipe(class_weights=synthesis_pb2.ClassWeights()),
                "count": 1,
            },
            "recipe.class_weights: is set but empty",
        ),
        (
            {
                "recipe": synthesis_pb2.Recipe(
                    class_weights=synthesis_pb2.ClassWeights(weights={"cell": 1.0})
                ),
                "count": 1,
            },
            "recipe.class_weights: unknown class 'cell'",
        ),
        (
            {"recipe": synthesis_pb2.Recipe(height=8192, width=8192), "count": 1},
            "recipe.height: canvas 8192x8192",
        ),
        (
            {"recipe": synthesis_pb2.Recipe(height=1024, width=1024), "count": 1, "batch_size": 16},
            "batch_size: 16 samples of 1024x1024x1 uint8",
        ),
        (
            {"recipe": synthesis_pb2.Recipe(context_probability=1.5), "count": 1},
            "recipe.context_probability: must be in [0, 1], got 1.5",
        ),
        ({"count": 1, "batch_size": 0}, "batch_size: must be > 0"),
        ({"count": 1, "shard_index": 2, "num_shards": 2}, "shard_index: 2 must be < num_shards"),
        ({}, "count: set count (> 0) or endless = true"),
    ],
)
def test_bad_requests_are_invalid_argument_naming_the_field(stub, fields, message) -> None:
    with pytest.raises(grpc.RpcError) as err:
        list(stub.StreamBatches(_request(**fields)))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in err.value.details()
    assert len(_samples(stub, count=1)) == 1  # and the server keeps serving


def test_health_metrics_and_cancelled_streams(server: SynthServer, stub) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="synthloc.v1.SynthesisService")
        )
    assert status.status == health_pb2.HealthCheckResponse.SERVING

    def cancelled_wave(seed: int) -> None:
        streams = [stub.StreamBatches(_request(endless=True, seed=seed)) for _ in range(10)]
        for stream in streams:
            next(stream)
        for stream in streams:
            stream.cancel()

    cancelled_wave(99)  # grow the RPC thread pool to its working size once
    time.sleep(0.5)
    threads_before = threading.active_count()
    children_before = len(multiprocessing.active_children())
    for wave in range(10):  # 100 streams cancelled mid-way
        cancelled_wave(wave)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (
        server.engine.inflight_batches or server.metrics.active_streams._value.get()
    ):
        time.sleep(0.05)
    assert server.engine.inflight_batches == 0
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics").read()
    text = text.decode()
    assert "synthloc_synth_active_streams 0.0" in text
    values = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }
    streamed = values["synthloc_synth_images_streamed_total"]
    assert streamed >= 110
    transfers = {
        sample.labels["path"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "synthloc_synth_batch_transfers_total"
    }
    # Every batch sent came out of a shared slot: 8 per worker are never all taken here.
    assert transfers["shared_memory"] >= 110 / 3 and transfers["pipe"] == 0
    # Idle RPC threads may stay in the bounded pool (16), but no thread per stream remains.
    assert threading.active_count() <= threads_before + 16
    assert len(multiprocessing.active_children()) == children_before


def test_reflection_lists_the_services(server: SynthServer) -> None:
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert {"synthloc.v1.SynthesisService", "grpc.health.v1.Health"} <= services


def test_metric_names_pass_promtool() -> None:
    from prometheus_client import generate_latest

    from synth_service.metrics import SynthMetrics

    metrics = SynthMetrics()
    metrics.images.inc(3)
    metrics.compose_seconds.observe(0.002)
    metrics.record_error("/synthloc.v1.SynthesisService/StreamBatches", grpc.StatusCode.CANCELLED)
    metrics.watch_transfers(lambda: {"shared_memory": 5, "pipe": 1})
    text = generate_latest(metrics.registry)
    assert b'synthloc_synth_batch_transfers_total{path="shared_memory"} 5.0' in text
    promtool = Path(sys.executable).parent / "promtool"
    assert promtool.exists(), "run `make test` (it installs promtool) or put promtool in .venv/bin"
    done = subprocess.run(
        [str(promtool), "check", "metrics"], input=text, capture_output=True, timeout=30
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout + done.stderr == b""


def test_slots_the_server_cannot_map_turn_into_the_pipe(library_file: Path) -> None:
    server = _start(library_file, workers=1)
    try:
        engine = server.engine
        assert engine.transfers == {"shared_memory": 0, "pipe": 0}
        # As on a host whose /proc hides the workers' files: the check fails, slots go off.
        engine._check_slots(
            SlotRef(os.getpid(), fd=987654, inode=1, size=8192, slot=0, offset=0, length=1)
        )
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            samples = _samples(synthesis_pb2_grpc.SynthesisServiceStub(channel), count=6, seed=5)
        assert [s.index for s in samples] == list(range(6))
        assert engine.transfers == {"shared_memory": 0, "pipe": 2}
    finally:
        server.stop(grace=1)


def test_a_worker_error_reaches_its_stream_and_the_engine_goes_on(server: SynthServer) -> None:
    plan = server.engine.plan(_request(count=2))
    # plan() refuses such a recipe; past it, the worker's own error must reach the stream.
    recipe = dataclasses.replace(plan.recipe, class_weights={"no such class": 1.0})
    with pytest.raises(ValueError, match="not a library class"):
        list(server.engine.run(dataclasses.replace(plan, recipe=recipe), StreamControl()))
    assert sum(samples for _, samples, _ in server.engine.run(plan, StreamControl())) == 2


def test_a_second_replica_on_a_taken_port_fails_and_the_first_keeps_serving(
    library_file: Path, server: SynthServer, stub
) -> None:
    settings = SynthSettings(library=library_file, port=server.port, metrics_port=-1, workers=1)
    with pytest.raises(Unavailable, match=f"cannot listen on 127.0.0.1:{server.port}: another"):
        create_server(settings)
    assert [len(batch.samples) for batch in stub.StreamBatches(_request(count=5))] == [3, 2]
