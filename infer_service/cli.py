"""`synthloc infer serve`, and the clients `synthloc localize` and `synthloc pacs`."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from infer_service.settings import ENV_PREFIX, InferSettings
from synthloc.settings import load_settings

if TYPE_CHECKING:  # imported when a command runs, so that `synthloc --help` stays fast
    from infer_service.client import LocalizationClient


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `infer serve`, `localize` and `pacs`."""
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
    serve.add_argument(
        "--processes",
        type=int,
        help="server processes sharing the port, one metrics endpoint (default 1)",
    )
    serve.add_argument(
        "--engine-process",
        action="store_true",
        default=None,
        help="one process runs the models for all --processes, batching across them (GPU)",
    )
    serve.add_argument(
        "--reuse-port",
        action="store_true",
        default=None,
        help="let several server processes share --port (SO_REUSEPORT; each its own metrics port)",
    )
    serve.add_argument("--device", choices=["auto", "cuda", "cpu"])
    serve.add_argument(
        "--require-gpu",
        action="store_true",
        default=None,
        help="fail at startup unless models run on CUDA",
    )
    serve.add_argument("--max-batch-size", type=int)
    serve.add_argument("--max-queue-delay-ms", type=float)
    serve.add_argument(
        "--pad-batches",
        choices=["auto", "on", "off"],
        help="pad batches to powers of two, a session per input shape (default auto: on CUDA)",
    )
    serve.add_argument("--max-sessions", type=int, help="sessions per model with --pad-batches")
    serve.add_argument(
        "--warm-sizes", help="image sides warmed at load, e.g. 256,512 (default 256)"
    )
    serve.add_argument(
        "--tune-batch-size",
        action=argparse.BooleanOptionalAction,
        help="cap batches at the size measured cheapest per image (default on)",
    )
    serve.add_argument("--tls-cert", type=Path)
    serve.add_argument("--tls-key", type=Path)
    serve.add_argument("--tls-client-ca", type=Path, help="require client certificates (mTLS)")
    serve.add_argument("--auth-token", help="require 'authorization: Bearer <token>'")
    serve.add_argument("--grace-seconds", type=float)
    serve.set_defaults(run=run_serve)

    loc = subparsers.add_parser(
        "localize",
        help="send images to an inference service",
        description="Prints the objects the service finds in each file. A multi-frame DICOM "
        "file is sent a frame at a time over one stream and reported per frame (1-based).",
    )
    loc.add_argument("files", nargs="+", type=Path, help="PNG, JPEG, TIFF or DICOM files")
    loc.add_argument("--server", default="127.0.0.1:8001", help="HOST:PORT")
    loc.add_argument("--model", default="", help="model name (default: the server's)")
    loc.add_argument("--version", default="", help="model version (default: newest)")
    loc.add_argument("--score-threshold", type=float)
    loc.add_argument(
        "--out",
        type=Path,
        help="overlay PNG (one file: this name; several: <stem>_<file stem>.png; each frame "
        "of a multi-frame DICOM: _frame<n> added)",
    )
    loc.add_argument(
        "--tile",
        type=int,
        default=0,
        help="send images larger than TILE x TILE pixels as overlapping tiles of that size, "
        "scaled alike, each object counted once (for images above the server's pixel limit; "
        "the frames of a multi-frame DICOM file go whole)",
    )
    loc.add_argument("--overlap", type=int, default=128, help="tile overlap in pixels (128)")
    _client_flags(loc)
    loc.add_argument("--json", action="store_true", help="print JSON instead of a table")
    loc.set_defaults(run=run_localize)

    pacs = subparsers.add_parser(
        "pacs",
        help="localize every DICOM file of a folder, results as JSON next to each file",
        description="Sends every DICOM Part-10 file of FOLDER (recognised by its 'DICM' "
        "preamble, whatever its name) to the inference service and writes the result next to "
        "it as <file>.synthloc.json: model, boxes in pixels, class names, scores and the "
        "file's SOP Instance, Series and Study UIDs; never patient name or ID. A multi-frame "
        "file is sent a frame at a time; its result lists each frame's detections.",
        epilog="Exit codes: 0 every file has a result (new or kept); 2 some file was refused "
        "(bad or unsupported DICOM, unknown model, bad flag); 3 the server was unreachable or "
        "too slow; 1 the server failed internally. When files fail for different reasons, the "
        "largest code wins. Failed files get no result file, so a rerun retries them.",
    )
    pacs.add_argument("folder", type=Path, help="folder with DICOM files")
    pacs.add_argument("--server", default="127.0.0.1:8001", help="HOST:PORT")
    pacs.add_argument("--model", default="", help="model name (default: the server's)")
    pacs.add_argument("--version", default="", help="model version (default: newest)")
    pacs.add_argument("--threshold", type=float, help="score threshold (default: the model's)")
    pacs.add_argument("--recursive", action="store_true", help="include subfolders")
    pacs.add_argument("--overwrite", action="store_true", help="redo files that have results")
    _client_flags(pacs)
    pacs.set_defaults(run=run_pacs)


def _client_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--token", help="bearer token")
    parser.add_argument("--tls-ca", type=Path, help="CA of the server certificate (enables TLS)")
    parser.add_argument("--tls-cert", type=Path, help="client certificate (mutual TLS)")
    parser.add_argument("--tls-key", type=Path, help="client private key (mutual TLS)")


def run_serve(args: argparse.Namespace) -> int:
    from infer_service.server import serve

    names = {f.name for f in dataclasses.fields(InferSettings)}
    overrides = {k: v for k, v in vars(args).items() if k in names}
    return serve(load_settings(InferSettings, ENV_PREFIX, overrides))


def _client(args: argparse.Namespace) -> LocalizationClient:
    from infer_service.client import LocalizationClient

    return LocalizationClient(
        args.server,
        token=args.token,
        tls_ca=args.tls_ca,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
    )


def run_localize(args: argparse.Namespace) -> int:
    from infer_service.localize_files import LocalizeOptions, localize_files

    options = LocalizeOptions(
        args.model,
        args.version,
        args.score_threshold,
        args.out,
        as_json=args.json,
        tile=args.tile,
        overlap=args.overlap,
    )
    if args.tile:
        from infer_service.tiling import check_tiling

        check_tiling(args.tile, args.overlap)
    with _client(args) as client:
        localize_files(client, args.files, options)
    return 0


def run_pacs(args: argparse.Namespace) -> int:
    import sys

    from tqdm import tqdm

    from infer_service.client import check_threshold
    from infer_service.pacs_folder import localize_folder
    from synthloc.errors import NotFound

    check_threshold(args.threshold)
    if not args.folder.is_dir():
        raise NotFound(f"{args.folder}: no such folder")
    with _client(args) as client:
        served = client.list_models()  # fails fast (exit 3) when the server is unreachable
        if args.model and args.model not in served.names():
            raise NotFound(
                f"--model: {args.model!r} is not served by {args.server} "
                f"(served: {', '.join(served.names()) or 'none'})"
            )
        report = localize_folder(
            client,
            args.folder,
            model=args.model,
            version=args.version,
            threshold=args.threshold,
            recursive=args.recursive,
            overwrite=args.overwrite,
            on_error=lambda path, error: tqdm.write(f"{path}: {error}", file=sys.stderr),
        )
    print(report.summary(args.folder))
    return report.exit_code
