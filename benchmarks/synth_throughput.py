"""Synthesis throughput: compose speed per core, memory-copy bound, and stream efficiency.

    .venv/bin/python benchmarks/synth_throughput.py [--library TRAIN.json] [--rounds 5]
        [--compose-only] [--cost-model] [--versus RECIPE.json] [--client-core] [--versus-pipe]

Measured side by side in one run, each figure the median over --rounds rounds:
1. compose: images/s on one core (OpenCV pinned to one thread, as in the service's
   workers), 512x512, default recipe (12-28 objects, about 20);
2. copy bound: images/s of np.copyto of the float32 canvas and of the uint8 output image;
   and ms per sample to serialize a RAW batch of 16, as workers do (encode_batch: pixels
   copied once) and by building the Batch message (what they did before);
3. stream: images/s a Python client receives over loopback gRPC from a replica with W
   workers, divided by images/s of the same batches taken from the replica's engine in this
   process without gRPC (the same workers and hand-over, in order, as many ahead of the
   reader as a stream composes); the client runs in a process of its own, as a trainer does
   (sharing the server's interpreter, it would also share its GIL, which no deployment
   does). By default the client shares the
   replica's cores, so its own receiving counts against the stream; with --client-core the
   replica (its workers and serving process) and the in-process baseline keep the other
   cores and the client gets that one, as a trainer on its own machine would;
4. CPU per image of all the processes (server, workers, client; Linux /proc) in-process and
   streamed, the client's share, and their ratio (with and without the client): on a
   saturated machine it is what the rates' ratio is, but it moves less with the machine's
   speed;
5. bytes per sample on the wire, RAW and PNG.

With --versus-pipe, a second replica whose workers hand batches over through the process
pool's pipe instead of shared slots (shared_memory_slots=0) is measured in the same rounds.

With --versus, each compose round also composes with that recipe (synthloc.v1.Recipe JSON
over the default), alternating, and reports its rate and its ratio to the default's.

With --cost-model, instead: compose time at a fixed number of objects (0, 10, 20, 40; the
slope is the cost of one object, the intercept the cost of a sample's canvas), the patch
pixels an object brings, and the per-pixel rate of a warp and a blur on a large image, by
OpenCV and by the compose kernel's own primitives, so the gap to a goal can be split into
arithmetic and overhead.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import grpc
import numpy as np
from cputime import cpu_ms_per_item, tree_cpu
from google.protobuf import json_format

from synth_service import _kernel
from synth_service.compose import Sample, compose
from synth_service.encode import encode_batch, encode_sample
from synth_service.engine import StreamControl, StreamPlan, SynthesisEngine
from synth_service.kernel import library_pack
from synth_service.recipe import LabelMode, Recipe
from synth_service.recipe_proto import recipe_from_proto
from synth_service.server import create_server
from synth_service.settings import SynthSettings
from synth_service.state import SynthState
from synthloc.datasets.fetch import default_root
from synthloc.v1 import common_pb2, synthesis_pb2, synthesis_pb2_grpc


def compose_rate(state: SynthState, recipe: Recipe, images: int, offset: int) -> float:
    start = time.perf_counter()
    for i in range(images):
        compose(recipe, state.library, state.backgrounds, 0, offset + i)
    return images / (time.perf_counter() - start)


def copy_rate(shape: tuple[int, ...], dtype: type, repeats: int = 2000) -> float:
    src, dst = np.ones(shape, dtype), np.empty(shape, dtype)
    start = time.perf_counter()
    for _ in range(repeats):
        np.copyto(dst, src)
    return repeats / (time.perf_counter() - start)


def in_process_rate(engine: SynthesisEngine, plan: StreamPlan) -> float:
    """Images/s of the plan's batches from the replica's own engine, without gRPC: the same
    workers and hand-over, taken in order as many batches ahead as a stream composes."""
    start = time.perf_counter()
    count = sum(samples for _, samples, _ in engine.run(plan, StreamControl()))
    return count / (time.perf_counter() - start)


def stream_rate(port: int, request: synthesis_pb2.StreamBatchesRequest) -> tuple[float, int]:
    with grpc.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 256 << 20)]
    ) as channel:
        stub = synthesis_pb2_grpc.SynthesisServiceStub(channel)
        start = time.perf_counter()
        count = size = 0
        for batch in stub.StreamBatches(request):
            count += len(batch.samples)
            size += batch.ByteSize()
        return count / (time.perf_counter() - start), size // max(count, 1)


def cost_model(state: SynthState, recipe: Recipe, images: int, rounds: int) -> dict:
    """Fixed and per-object compose cost (median ms over rounds) and OpenCV's per-pixel rates."""
    counts = (0, 10, 20, 40)
    times: dict[int, list[float]] = {n: [] for n in counts}
    for r in range(rounds):
        for n in counts:
            fixed = dataclasses.replace(recipe, count_range=(n, n))
            times[n].append(1000 / compose_rate(state, fixed, images, r * 1000))
    ms = {n: statistics.median(v) for n, v in times.items()}
    slope, intercept = np.polyfit(counts, [ms[n] for n in counts], 1)
    objects = state.library.objects
    # Large enough to hide the call overhead, small enough to stay in cache as objects do.
    big = np.random.default_rng(0).random((256, 256), np.float32)
    matrix = cv2.getRotationMatrix2D((128, 128), 33, 1.1)

    def per_pixel(call) -> float:
        call()
        start = time.perf_counter()
        for _ in range(200):
            call()
        return (time.perf_counter() - start) / 200 / big.size * 1e9

    return {
        "compose_ms_at_objects": {n: round(v, 3) for n, v in ms.items()},
        "fixed_ms_per_sample": round(float(intercept), 3),
        "ms_per_object": round(float(slope), 4),
        "library_object_pixels_mean": round(sum(o.alpha.size for o in objects) / len(objects), 1),
        "opencv_warp_ns_per_pixel": round(
            per_pixel(lambda: cv2.warpAffine(big, matrix, (256, 256))), 2
        ),
        "opencv_blur_ns_per_pixel": round(per_pixel(lambda: cv2.GaussianBlur(big, (0, 0), 1.0)), 2),
        # The compose kernel's own primitives (synth_service/kernel/filters.c), same sizes.
        "kernel_warp_ns_per_pixel": round(
            per_pixel(lambda: _kernel.warp(big, 256, 256, 1, tuple(matrix.ravel()), 256, 256, 0)),
            2,
        ),
        "kernel_blur_ns_per_pixel": round(
            per_pixel(lambda: _kernel.blur(big, 256, 256, 1, 1.0)), 2
        ),
    }


def encode_ms(samples: list[Sample], label_mode: LabelMode, repeats: int = 20) -> dict:
    """ms per sample to serialize a batch of RAW samples: as workers do (encode_batch), and
    by building the Batch message and serializing it (what workers did before)."""
    header = synthesis_pb2.Batch(recipe_hash="r" * 64, library_hash="l" * 64)
    raw = common_pb2.IMAGE_ENCODING_RAW

    def spliced() -> bytes:
        return encode_batch(samples, header, raw, False, label_mode)

    def message() -> bytes:
        batch = synthesis_pb2.Batch()
        batch.CopyFrom(header)
        for sample in samples:
            batch.samples.append(encode_sample(sample, raw, False, label_mode))
        return batch.SerializeToString()

    figures = {}
    for name, call in (("encode_batch", spliced), ("encode_message", message)):
        call()
        start = time.perf_counter()
        for _ in range(repeats):
            call()
        figures[name] = (time.perf_counter() - start) / repeats / len(samples) * 1000
    return figures


def compose_round(state: SynthState, recipe: Recipe, images: int, offset: int) -> dict:
    """One round of figures 1 and 2, back to back, and the cost of encoding a batch."""
    samples = [compose(recipe, state.library, state.backgrounds, 0, i) for i in range(16)]
    return {
        "compose": compose_rate(state, recipe, images, offset),
        "copy_f32": copy_rate((512, 512, 1), np.float32),
        "copy_u8": copy_rate((512, 512, 1), np.uint8),
        **encode_ms(samples, recipe.label_mode),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", type=Path, default=default_root() / "mnfinder/train.json")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--images", type=int, default=200, help="per round and measurement")
    parser.add_argument("--workers", type=int, help="composing processes (default: one a core)")
    parser.add_argument(
        "--client-core",
        action="store_true",
        help="pin the stream's client to the last core and everything else to the others",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--compose-only", action="store_true", help="only figures 1 and 2 (no server)"
    )
    parser.add_argument(
        "--cost-model", action="store_true", help="fixed and per-object cost (see above)"
    )
    parser.add_argument("--versus", type=Path, help="a recipe to compose beside the default")
    parser.add_argument(
        "--versus-pipe",
        action="store_true",
        help="also measure a replica whose workers hand batches over in the pool's pipe",
    )
    args = parser.parse_args()
    client_cores = None  # the client's affinity: unchanged unless --client-core
    if args.client_core:
        if not hasattr(os, "sched_setaffinity"):
            parser.error("--client-core pins processes to cores, which needs Linux")
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) < 2:
            parser.error("--client-core needs at least 2 cores")
        client_cores = {cores[-1]}
        os.sched_setaffinity(0, cores[:-1])  # inherited by the server's and baseline's workers
        args.workers = args.workers or len(cores) - 1
    args.workers = args.workers or os.cpu_count() or 1

    cv2.setNumThreads(1)  # per core: OpenCV must not spread one compose over several threads
    state = SynthState.build(args.library)
    recipe = Recipe(channels=state.library.channels)
    library_pack(state.library)  # the kernel's copy of the library, as a worker makes at start
    versus = None
    if args.versus:
        msg = json_format.Parse(args.versus.read_text(), synthesis_pb2.Recipe())
        versus = recipe_from_proto(msg, recipe)
    rates: dict[str, list[float]] = {}
    sizes: dict[str, int] = {}

    def record(figures: dict) -> None:
        for key, value in figures.items():
            rates.setdefault(key, []).append(value)

    if args.cost_model:
        figures = cost_model(state, recipe, args.images // 2, args.rounds)
        for key, value in figures.items():
            print(f"{key:36s} {value}")
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2))
        return 0
    if args.compose_only:
        for r in range(args.rounds):
            record(compose_round(state, recipe, args.images // 2, r * 1000))
            if versus is not None:
                record({"versus": compose_rate(state, versus, args.images // 2, r * 1000)})
        return report(rates, sizes, args)
    batch, count = 16, args.images
    request = synthesis_pb2.StreamBatchesRequest(seed=1, count=count, batch_size=batch)
    settings = SynthSettings(library=args.library, port=0, metrics_port=-1, workers=args.workers)
    server, port = create_server(settings)
    server.start()
    plan = server.engine.plan(request)
    pipe = None  # with --versus-pipe, a replica whose workers hand batches over in the pipe
    if args.versus_pipe:
        pipe, _ = create_server(dataclasses.replace(settings, shared_memory_slots=0))
        pipe.start()
    with ProcessPoolExecutor(
        1,
        multiprocessing.get_context("spawn"),
        initializer=None if client_cores is None else os.sched_setaffinity,
        initargs=() if client_cores is None else (0, client_cores),
    ) as client:
        in_process_rate(server.engine, plan)  # start the workers
        client_pid = client.submit(os.getpid).result()
        for r in range(args.rounds):
            record(compose_round(state, recipe, args.images // 2, r * 1000))
            before = tree_cpu(os.getpid())
            record({"in_process": in_process_rate(server.engine, plan)})
            middle = tree_cpu(os.getpid())
            rate, sizes["raw"] = client.submit(stream_rate, port, request).result()
            after = tree_cpu(os.getpid())
            record({"stream": rate})
            if pipe is not None:
                record({"pipe_in_process": in_process_rate(pipe.engine, plan)})
                record({"pipe_stream": client.submit(stream_rate, pipe.port, request).result()[0]})
            if before:  # CPU times come from Linux's /proc
                record(
                    {
                        "cpu_in_process": cpu_ms_per_item(before, middle, count),
                        "cpu_stream": cpu_ms_per_item(middle, after, count),
                        "cpu_client": cpu_ms_per_item(
                            {client_pid: middle[client_pid]}, after, count
                        ),
                    }
                )
        png = synthesis_pb2.StreamBatchesRequest(
            seed=1, count=64, batch_size=batch, encoding=common_pb2.IMAGE_ENCODING_PNG
        )
        _, sizes["png"] = client.submit(stream_rate, port, png).result()
    server.stop(grace=1)
    if pipe is not None:
        pipe.stop(grace=1)
    return report(rates, sizes, args)


def report(rates: dict[str, list[float]], sizes: dict[str, int], args: argparse.Namespace) -> int:
    """Print (and with --json write) the medians; stream figures only when measured."""
    med = {k: statistics.median(v) for k, v in rates.items()}

    def ratio(over: str, under: str) -> float:
        """Median of the rounds' ratios: each round against the same round (this VM drifts)."""
        pairs = zip(rates[over], rates[under], strict=True)
        return round(statistics.median(a / b for a, b in pairs), 3)

    result = {
        "machine_cores": os.cpu_count(),
        "workers": args.workers,
        "client_core": args.client_core,
        "rounds": args.rounds,
        "compose_images_per_s_per_core": round(med["compose"], 1),
        "compose_rounds_images_per_s": [round(v, 1) for v in rates["compose"]],
        "compose_ms_per_image": round(1000 / med["compose"], 2),
        "copy_bound_float32_canvas_per_s": round(med["copy_f32"]),
        "copy_bound_uint8_image_per_s": round(med["copy_u8"]),
        "compose_vs_copy_bound": round(med["compose"] / med["copy_f32"], 4),
        "encode_batch_ms_per_image": round(med["encode_batch"], 3),
        "encode_as_message_ms_per_image": round(med["encode_message"], 3),
    }
    if "versus" in med:
        result["versus_images_per_s_per_core"] = round(med["versus"], 1)
        result["versus_over_default"] = ratio("versus", "compose")
    if "stream" in med:
        efficiency = [a / b for a, b in zip(rates["stream"], rates["in_process"], strict=True)]
        result |= {
            "stream_images_per_s": round(med["stream"], 1),
            "in_process_images_per_s": round(med["in_process"], 1),
            "stream_efficiency": ratio("stream", "in_process"),
            "stream_efficiency_rounds": [round(e, 3) for e in efficiency],
            "bytes_per_sample_raw": sizes["raw"],
            "bytes_per_sample_png": sizes["png"],
        }
    if "pipe_stream" in med:
        result |= {
            "pipe_stream_images_per_s": round(med["pipe_stream"], 1),
            "pipe_in_process_images_per_s": round(med["pipe_in_process"], 1),
            "slots_over_pipe_stream": ratio("stream", "pipe_stream"),
            "slots_over_pipe_in_process": ratio("in_process", "pipe_in_process"),
        }
    if "cpu_in_process" in med:
        # What serving costs the replica alone: the stream's CPU without the client's.
        rates["cpu_replica"] = [
            b - c for b, c in zip(rates["cpu_stream"], rates["cpu_client"], strict=True)
        ]
        result |= {
            # All processes' CPU per image (server, workers, client): the same ratio as the
            # rates on a saturated machine, but steadier where the machine's speed drifts.
            "cpu_ms_per_image_in_process": round(med["cpu_in_process"], 3),
            "cpu_ms_per_image_stream": round(med["cpu_stream"], 3),
            "cpu_ms_per_image_client": round(med["cpu_client"], 3),
            "stream_efficiency_by_cpu": ratio("cpu_in_process", "cpu_stream"),
            "stream_efficiency_by_cpu_replica": ratio("cpu_in_process", "cpu_replica"),
        }
    for key, value in result.items():
        print(f"{key:36s} {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
