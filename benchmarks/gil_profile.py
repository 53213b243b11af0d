"""Where one server process spends its GIL under load: py-spy's samples of the thread holding it.

    .venv/bin/python benchmarks/gil_profile.py --model model.onnx --py-spy PATH \\
        [--device cuda] [--seconds 8] [--out gil_profile.txt]

Starts one `synthloc infer serve` process from this checkout (max batch 8, as infer_compare's
batched arm), warms it, then samples it with `py-spy record --gil --nonblocking` while the load
generator sends the 512x512 uint8 tensor at concurrency 16. A server process whose rate stops
rising with cores while it holds the GIL nearly all the time is limited by the GIL; then the
functions ranked here are where to cut, and spreading requests over processes (`--processes`)
is the cure that needs no code. Reports requests/s, the server's cores over the window, the
share of samples in which one of its threads held the GIL (py-spy's samples against its rate
times the window; it may lag a little, so this reads low rather than high) and the functions
by share of those samples, inclusive and own. Needs the right to ptrace the server (root, or
a ptrace_scope of 0).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
from cputime import cpu_ms_per_item, tree_cpu
from infer_compare import start_server
from loadgen import LOCALIZE, Call, LoadGenerator, default_processes, stop_servers

from synthloc.v1 import common_pb2, localization_pb2


def summarize(raw: str, rate: int, seconds: float, top: int = 30) -> tuple[float, list[str]]:
    """(GIL-held share, report lines) of py-spy's raw output (`stack count` per line)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        # "function (file.py:line)" -> "function (file.py)": lines of one function add up.
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        total += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            inclusive[frame] += int(count)
    share = total / (rate * seconds)
    lines = [f"samples with the GIL held: {total} of {rate * seconds:.0f} ({100 * share:.0f} %)"]
    for title, counts in (("inclusive", inclusive), ("own", own)):
        lines.append(f"--- {title}, share of the GIL-held samples")
        lines += [f"{100 * n / max(total, 1):5.1f} %  {f}" for f, n in counts.most_common(top)]
    return share, lines


def by_process(raw: str) -> dict[str, str]:
    """py-spy's raw output with --subprocesses, split by the process each stack is from and
    named by its part: the supervisor, a replica (gRPC handlers) or the engine process."""
    stacks: dict[str, list[str]] = {}
    for line in raw.splitlines():
        frames = line.split(";")
        processes = [f for f in frames if f.startswith("process ")]
        pid = processes[-1].split(":", 1)[0].removeprefix("process ") if processes else "?"
        stacks.setdefault(pid, []).append(";".join(frames[len(processes) :]))
    named = {}
    for pid, lines in stacks.items():
        text = "\n".join(lines)
        role = "process"
        if "_serve_replica" in text or "_send_answers" in text:
            role = "engine process"
        elif "_unary_response_in_pool" in text or "_replica (" in text:
            role = "replica"
        elif "serve_processes" in text:
            role = "supervisor"
        named[f"{role} {pid}"] = text
    return named


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--py-spy", default="py-spy", help="the py-spy executable")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--serve-args", default="--warm-sizes 512", help="extra serve flags")
    parser.add_argument("--seconds", type=int, default=8, help="py-spy's window")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--client-processes", type=int, default=default_processes())
    parser.add_argument(
        "--all-processes",
        action="store_true",
        help="with --processes or --engine-process in --serve-args: each process on its own",
    )
    parser.add_argument("--out", type=Path, help="also write the report here")
    args = parser.parse_args()
    flags = ["--device", args.device, *args.serve_args.split()]
    if args.device == "cuda":
        flags.append("--require-gpu")
    pixels = np.random.default_rng(0).integers(0, 256, (512, 512), dtype=np.uint8).tobytes()
    tensor = common_pb2.Tensor(dtype=common_pb2.DTYPE_UINT8, shape=[512, 512], data=pixels)
    request = localization_pb2.LocalizeRequest(tensor=tensor).SerializeToString()
    checkout = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp, LoadGenerator(args.client_processes) as load:
        (Path(tmp) / "det" / "1").mkdir(parents=True)
        (Path(tmp) / "det" / "1" / "model.onnx").write_bytes(args.model.read_bytes())
        proc, _, address = start_server(checkout, Path(tmp), 8, flags, "gil-profile")
        try:
            call = Call(address, LOCALIZE, request)
            load.run(call, args.concurrency, 2.0)  # warm: every shape and batch size met once
            raw = Path(tmp) / "raw.txt"
            # The load runs a second longer on each side than py-spy's window, which so lies
            # wholly inside it (py-spy takes a moment to attach).
            outcome: dict[str, tuple[float, float]] = {}
            window = args.seconds + 2
            loader = threading.Thread(
                target=lambda: outcome.update(run=load.run(call, args.concurrency, window))
            )
            loader.start()
            time.sleep(1.0)
            before, began = tree_cpu(proc.pid), time.perf_counter()
            spy = subprocess.run(
                [args.py_spy, "record", "--pid", str(proc.pid), "--gil", "--nonblocking",
                 "--rate", str(args.rate), "--duration", str(args.seconds),
                 "--format", "raw", "--output", str(raw),
                 *(["--subprocesses"] if args.all_processes else [])],
                capture_output=True, timeout=args.seconds + 60,
            )  # fmt: skip
            wall_ms = 1000 * (time.perf_counter() - began)
            cores = cpu_ms_per_item(before, tree_cpu(proc.pid), wall_ms)
            loader.join()
            said = (spy.stdout + spy.stderr).decode(errors="replace")
            if spy.returncode != 0 or not raw.exists():
                print(f"py-spy failed (exit {spy.returncode}):\n{said[-2000:]}", file=sys.stderr)
                return 3
            served, p99 = outcome["run"]
            if args.all_processes:
                lines = []
                for name, text in sorted(by_process(raw.read_text()).items()):
                    lines += [f"=== {name}", *summarize(text, args.rate, args.seconds, 20)[1]]
            else:
                _, lines = summarize(raw.read_text(), args.rate, args.seconds)
        finally:
            stop_servers([proc])
    head = [
        f"{args.serve_args}, c{args.concurrency}, max batch 8, {args.device}: "
        f"{served:.0f} requests/s, p99 {p99:.1f} ms, server cores {cores:.2f}",
        *[line for line in said.splitlines() if "Samples:" in line],  # py-spy's own count
    ]
    report = "\n".join([*head, *lines])
    print(report)
    if args.out:
        args.out.write_text(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
