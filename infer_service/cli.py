"""`synthloc infer serve` and `synthloc localize` (a small client for people and scripts)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from infer_service.settings import ENV_PREFIX, InferSettings
from synthloc.settings import load_settings


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `infer serve` and `localize`."""
    infer = subparsers.add_parser("infer", help="the inference service")
    commands = infer.add_subparsers(dest="infer_command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="serve ONNX localizers from a model repository",
        description=f"Flags override environment variables {ENV_PREFIX}<NAME>.",
    )
    serve.add_argument("--models", type=Path, help="ROOT/<model>/<version>/model.onnx")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int, help="gRPC port (default 8001; 0 = any free)")
    serve.add_argument("--metrics-port", type=int, help="Prometheus port (default 8002; -1 off)")
    serve.add_argument("--device", choices=["auto", "cuda", "cpu"])
    serve.add_argument(
        "--require-gpu",
        action="store_true",
        default=None,
        help="fail at startup unless models run on CUDA",
    )
    serve.add_argument("--max-batch-size", type=int)
    serve.add_argument("--max-queue-delay-ms", type=float)
    serve.add_argument("--tls-cert", type=Path)
    serve.add_argument("--tls-key", type=Path)
    serve.add_argument("--tls-client-ca", type=Path, help="require client certificates (mTLS)")
    serve.add_argument("--auth-token", help="require 'authorization: Bearer <token>'")
    serve.add_argument("--grace-seconds", type=float)
    serve.set_defaults(run=run_serve)

    loc = subparsers.add_parser("localize", help="send images to an inference service")
    loc.add_argument("files", nargs="+", type=Path, help="PNG, JPEG, TIFF or DICOM files")
    loc.add_argument("--server", default="127.0.0.1:8001", help="HOST:PORT")
    loc.add_argument("--model", default="", help="model name (default: the server's)")
    loc.add_argument("--version", default="", help="model version (default: newest)")
    loc.add_argument("--score-threshold", type=float)
    loc.add_argument(
        "--out",
        type=Path,
        help="overlay PNG (one file: this name; several: <stem>_<file stem>.png)",
    )
    loc.add_argument("--token", help="bearer token")
    loc.add_argument("--tls-ca", type=Path, help="CA of the server certificate (enables TLS)")
    loc.add_argument("--json", action="store_true", help="print JSON instead of a table")
    loc.set_defaults(run=run_localize)


def run_serve(args: argparse.Namespace) -> int:
    from infer_service.server import serve

    names = {f.name for f in dataclasses.fields(InferSettings)}
    overrides = {k: v for k, v in vars(args).items() if k in names}
    return serve(load_settings(InferSettings, ENV_PREFIX, overrides))


def run_localize(args: argparse.Namespace) -> int:
    from infer_service.client import LocalizationClient
    from infer_service.decoding import decode_image_bytes
    from infer_service.overlay import draw_overlay
    from synthloc.imageio import write_png

    with LocalizationClient(args.server, token=args.token, tls_ca=args.tls_ca) as client:
        for path in args.files:
            result = client.localize_file(path, args.model, args.version, args.score_threshold)
            if args.json:
                print(json.dumps(result.to_dict()))
            else:
                print(result.table(str(path)))
            if args.out:
                out = (
                    args.out
                    if len(args.files) == 1
                    else args.out.with_name(f"{args.out.stem}_{path.stem}.png")
                )
                pixels = decode_image_bytes(path.read_bytes(), 1 << 31).pixels
                write_png(out, draw_overlay(pixels, result.detections))
                print(f"overlay: {out}")
    return 0
