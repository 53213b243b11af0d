"""Two checkouts of the inference service side by side: overhead, latency and throughput.

    .venv/bin/python benchmarks/infer_compare.py --model model.onnx \\
        --arm old=/work/main --arm new=. [--rounds 5] [--seconds 3] \\
        [--arm-args old='--pad-batches off']

Each arm's servers run as their own processes (`synthloc infer serve` with PYTHONPATH set to
the arm's checkout), so the load generator never shares a GIL with a server and both arms run
under the same machine load: rounds alternate between the arms, medians are reported. Per arm:
(a) p50 of Localize with a 512x512 raw uint8 tensor on the unbatched server, minus a direct
    ONNX Runtime call on the same prepared tensor in this process with the service's session
    options, also as a ratio; PNG decoding of the same image on its own;
    with the server's own timings of those calls (decode, postprocess, and everything
    outside the model run), which a CPU's millisecond swings in the model run do not blur;
(b) requests/s and p99 at concurrency 16 with batching (max batch 8, or an arm's
    --max-batch-size) and without (max 1),
    from closed-loop clients spread over --client-processes processes (benchmarks/loadgen.py),
    with the server's CPU over each run (every process of it: ms per request, and cores).
Arms may be one checkout with different flags (--arm-args), e.g. a setting on and off, or
`--processes 4` (server processes sharing the port, which the load's separate connections
are spread over).
Beside them, `echo_p50_ms`: the same call to benchmarks/echo_server.py, which answers at once,
the transport floor any Python gRPC service pays on this machine, and `echo_c16_requests_per_s`,
the most such a service answers under the same load (also the load generator's ceiling).
With --device cuda the servers run with `--device cuda --require-gpu` and the direct call
uses the CUDA provider as the service configures it (the device machine's run,
benchmarks/gpu/device.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import grpc
import numpy as np
from cputime import cpu_ms_per_item, tree_cpu
from infer_latency import latencies, percentile
from loadgen import (
    LOCALIZE,
    Call,
    LoadGenerator,
    default_processes,
    server_log,
    stop_servers,
)

from infer_service.localizer import OnnxLocalizer
from infer_service.repository import providers_for, session_options
from synthloc.v1 import common_pb2, localization_pb2, localization_pb2_grpc

SYNTHLOC = [sys.executable, "-c", "import sys; from synthloc.cli import main; sys.exit(main())"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    checkout: Path, repo: Path, max_batch: int, extra: list[str], name: str = "server"
) -> tuple:
    """(process, stub, address) of one server from `checkout`, once it says it is serving
    (with `--processes N`, once all N are)."""
    port = free_port()
    # The checkout first; what PYTHONPATH already holds (packages installed to a folder of
    # their own, as on the device machine) stays behind it.
    path = [str(checkout.resolve()), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    command = [*SYNTHLOC, "infer", "serve", "--models", str(repo), "--port", str(port)]
    command += ["--metrics-port", "-1"]
    # An arm's flags may raise the batched server's batch size, never the unbatched one's.
    batch = ["--max-batch-size", str(max_batch)]
    command += [*extra, *batch] if max_batch == 1 else [*batch, *extra]
    log = server_log(name)
    # `python -c` puts its working folder first on sys.path, ahead of PYTHONPATH: run it in
    # the checkout, or every arm would import the code of the folder this was started from.
    # Its output goes to the log, never to ours: a pipe reading ours (| tee) would otherwise
    # wait for every process that inherited it, replicas included.
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=log, cwd=checkout.resolve())
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        log.seek(0)
        said = log.read().decode(errors="replace")
        if "inference service on" in said:  # models loaded, warm and served
            channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            stub = localization_pb2_grpc.LocalizationServiceStub(channel)
            return proc, stub, f"127.0.0.1:{port}"
        if proc.poll() is not None:  # it died: show why instead of waiting on
            raise SystemExit(f"`{' '.join(command)}` exited {proc.returncode}:\n{said[-2000:]}")
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"`{' '.join(command)}` was not serving within 120 s")


def start_echo() -> tuple:
    """(process, stub, address) of benchmarks/echo_server.py, ready to answer."""
    port = free_port()
    script = Path(__file__).with_name("echo_server.py")
    quiet = subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, str(script), str(port)], stdout=quiet, stderr=quiet)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    grpc.channel_ready_future(channel).result(timeout=60)
    return proc, localization_pb2_grpc.LocalizationServiceStub(channel), f"127.0.0.1:{port}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--arm", action="append", required=True, help="NAME=CHECKOUT")
    parser.add_argument("--serve-args", default="", help="extra `infer serve` flags, all arms")
    parser.add_argument(
        "--arm-args",
        action="append",
        default=[],
        help="NAME=FLAGS: extra `infer serve` flags for one arm (e.g. off='--pad-batches off')",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--client-processes",
        type=int,
        default=default_processes(),
        help="processes the load's client threads are spread over (default: a quarter of the "
        "cores, 1 to 4)",
    )
    parser.add_argument("--warmup-seconds", type=float, default=1.0, help="untimed load first")
    parser.add_argument(
        "--score-threshold", type=float, help="ask for it (low: many detections to answer)"
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    serve_args = ["--device", args.device, *args.serve_args.split()]
    if args.device == "cuda":
        serve_args.append("--require-gpu")
    arms = dict(arm.split("=", 1) for arm in args.arm)
    arm_args = dict(flags.split("=", 1) for flags in args.arm_args)
    if unknown := set(arm_args) - set(arms):
        parser.error(f"--arm-args names arms not given with --arm: {sorted(unknown)}")
    image = np.random.default_rng(0).integers(0, 256, (512, 512), dtype=np.uint8)
    png = cv2.imencode(".png", image)[1].tobytes()
    tensor = common_pb2.Tensor(dtype=common_pb2.DTYPE_UINT8, shape=[512, 512], data=image.tobytes())
    request = localization_pb2.LocalizeRequest(tensor=tensor, score_threshold=args.score_threshold)
    local = OnnxLocalizer(args.model, providers_for(args.device), session_options())
    print(f"direct calls run on {local.provider}", flush=True)
    prepared = local.prepare(image)[None]
    figures: dict[str, list[float]] = {}

    def note(key: str, value: float) -> None:
        figures.setdefault(key, []).append(value)

    procs = []
    load = LoadGenerator(args.client_processes)
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "models"
        (repo / "det" / "1").mkdir(parents=True)
        (repo / "det" / "1" / "model.onnx").write_bytes(args.model.read_bytes())
        stubs, calls_at, servers = {}, {}, {}
        try:
            for name, checkout in arms.items():
                for mode, batch in (("batched", 8), ("unbatched", 1)):
                    extra = [*serve_args, *arm_args.get(name, "").split()]
                    proc, stubs[name, mode], address = start_server(
                        Path(checkout), repo, batch, extra, f"{name}-{mode}"
                    )
                    calls_at[name, mode] = Call(address, LOCALIZE, request.SerializeToString())
                    servers[name, mode] = proc
                    procs.append(proc)
            proc, echo, address = start_echo()
            calls_at["echo"] = Call(address, LOCALIZE, request.SerializeToString())
            procs.append(proc)
            for call in calls_at.values():  # each server meets the load's shapes once, untimed
                load.run(call, args.concurrency, args.warmup_seconds)
            for _ in range(args.rounds):
                # Direct calls and every arm's calls alternate one by one, so all of them see
                # the same machine load.
                times: dict[str, list[float]] = {}
                calls = {"direct": lambda: local.run(prepared)}
                calls["echo"] = lambda: echo.Localize(request)
                for name in arms:
                    calls[name] = lambda n=name: stubs[n, "unbatched"].Localize(request)
                for call in calls.values():
                    call()
                server: dict[str, list] = {name: [] for name in arms}  # their own timings
                for _ in range(args.repeats):
                    for key, call in calls.items():
                        start = time.perf_counter()
                        answer = call()
                        times.setdefault(key, []).append(time.perf_counter() - start)
                        if key in server:
                            server[key].append(answer.timings)
                for name, timings in server.items():
                    # Inside the server, steadier than latencies around a model run that
                    # varies by milliseconds on a CPU: decode, postprocess, and the rest
                    # outside the model run (prepare, batching, the response).
                    note(
                        f"{name}.server_decode_p50_ms",
                        percentile([t.decode_ms for t in timings], 50),
                    )
                    note(
                        f"{name}.server_postprocess_p50_ms",
                        percentile([t.postprocess_ms for t in timings], 50),
                    )
                    note(
                        f"{name}.server_outside_model_p50_ms",
                        percentile([t.total_ms - t.compute_ms for t in timings], 50),
                    )
                note("echo_p50_ms", 1000 * percentile(times["echo"], 50))
                for ref in ("direct",):
                    direct = percentile(times[ref], 50)
                    note(f"{ref}_p50_ms", 1000 * direct)
                    for name in arms:
                        served = percentile(times[name], 50)
                        note(f"{name}.overhead_vs_{ref}_p50_ms", 1000 * (served - direct))
                        note(f"{name}.service_over_{ref}", served / direct)
                for name in arms:
                    note(f"{name}.service_p50_ms", 1000 * percentile(times[name], 50))
                    # Back-to-back calls see the same load: the median of their differences
                    # is steadier than a difference of medians on a busy machine.
                    pairs = zip(times[name], times["direct"], strict=True)
                    note(
                        f"{name}.overhead_paired_p50_ms",
                        1000 * percentile([a - b for a, b in pairs], 50),
                    )
                    pairs = zip(times[name], times[next(iter(arms))], strict=True)
                    note(
                        f"{name}.minus_first_paired_p50_ms",
                        1000 * percentile([a - b for a, b in pairs], 50),
                    )
                # The same load on the echo server: the most a Python gRPC server answers
                # with this request on this host, and whether the load generator keeps up.
                rate, p99 = load.run(calls_at["echo"], args.concurrency, args.seconds)
                note(f"echo_c{args.concurrency}_requests_per_s", rate)
                note(f"echo_c{args.concurrency}_p99_ms", p99)
                for name in arms:
                    rates = {}
                    for mode in ("batched", "unbatched"):
                        before, began = tree_cpu(servers[name, mode].pid), time.perf_counter()
                        rate, p99 = load.run(calls_at[name, mode], args.concurrency, args.seconds)
                        after, wall = tree_cpu(servers[name, mode].pid), time.perf_counter() - began
                        # The server's CPU (every replica's, with --processes) over the run,
                        # connecting and arming included: what a pod's CPU limit must give.
                        key = f"{name}.{mode}_c{args.concurrency}"
                        note(
                            f"{key}_server_cpu_ms_per_request",
                            cpu_ms_per_item(before, after, rate * args.seconds),
                        )
                        note(f"{key}_server_cores", cpu_ms_per_item(before, after, 1000 * wall))
                        rates[mode] = rate
                        note(f"{name}.{mode}_c{args.concurrency}_requests_per_s", rate)
                        note(f"{name}.{mode}_c{args.concurrency}_p99_ms", p99)
                    note(f"{name}.batching_speedup", rates["batched"] / rates["unbatched"])
            decode = latencies(
                lambda: cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED),
                args.repeats,
            )
            note("png_decode_p50_ms", 1000 * percentile(decode, 50))
        finally:
            load.close()
            stop_servers(procs)
    first, *others = arms
    for name in others:  # per-round ratios against the first arm, then their medians
        for key in ("batched_c16_requests_per_s", "unbatched_c16_requests_per_s"):
            key = key.replace("c16", f"c{args.concurrency}")
            pairs = zip(figures[f"{name}.{key}"], figures[f"{first}.{key}"], strict=True)
            figures[f"{name}_over_{first}.{key}"] = [a / b for a, b in pairs]
    result = {k: round(statistics.median(v), 2) for k, v in figures.items()}
    rounds = {k: [round(x, 2) for x in v] for k, v in figures.items()}
    for key in sorted(result):
        print(f"{key:42s} {result[key]:>9}   rounds {rounds[key]}")
    if args.json:
        config = {"client_processes": args.client_processes, "concurrency": args.concurrency}
        answer = {"medians": result, "rounds": rounds, "config": config}
        args.json.write_text(json.dumps(answer, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
