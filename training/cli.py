"""`synthloc train`, `synthloc export`, `synthloc eval`. torch is imported only when they run."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
from pathlib import Path

from synthloc.errors import FailedPrecondition, InvalidInput


def _need_torch() -> None:
    if importlib.util.find_spec("torch") is None:
        raise FailedPrecondition(
            "training needs PyTorch: install a build for your machine, then "
            "`pip install 'synthloc[train]'` (see the README)"
        )


SECURITY_FLAGS = ("synth-token", "synth-tls-ca", "synth-tls-cert", "synth-tls-key")


def env_name(flag: str) -> str:
    """The environment variable a `synthloc train` security flag falls back to."""
    return "SYNTHLOC_TRAIN_" + flag.upper().replace("-", "_")


def _env(flag: str) -> str | None:
    return os.environ.get(env_name(flag))


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register train, export and eval."""
    p = subparsers.add_parser("train", help="train a detector or CAM localizer")
    p.add_argument("task", choices=["detector", "cam"])
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--synth",
        metavar="HOST:PORT",
        help="synthesis service address(es): host:port[,host:port] or dns:///",
    )
    source.add_argument("--coco", type=Path, metavar="TRAIN.json", help="real COCO training data")
    p.add_argument("--recipe", type=Path, help="synthloc.v1.Recipe JSON (with --synth)")
    p.add_argument(
        "--annotated-fraction",
        type=float,
        default=1.0,
        help="keep this fraction of each image's annotations (with --coco)",
    )
    p.add_argument("--fraction-seed", type=int, default=0)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--out", type=Path, required=True, help="run folder (checkpoint, plots)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, default=256, help="training image side in pixels")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=200)
    p.add_argument(
        "--until",
        type=int,
        metavar="STEP",
        help="stop at this step with a checkpoint (resume later); the learning-rate "
        "schedule still spans --steps",
    )
    p.add_argument("--width", type=float, help="model width multiplier")
    p.add_argument("--retries", type=int, default=5, help="reconnect attempts to --synth")
    # The synthesis service's credentials; each flag falls back to its variable (env_name),
    # which keeps the token off the command line and lets the Kubernetes component mount them.
    p.add_argument("--synth-token", default=_env("synth-token"), help="bearer token")
    for flag, what in (
        ("synth-tls-ca", "CA (PEM) that signed the service's certificate"),
        ("synth-tls-cert", "client certificate (PEM), for mutual TLS"),
        ("synth-tls-key", "client private key (PEM), for mutual TLS"),
    ):
        p.add_argument(
            f"--{flag}", type=Path, default=_env(flag), help=f"{what} [{env_name(flag)}]"
        )
    p.add_argument("--synth-tls", action="store_true", help="TLS with the system's CA roots")
    p.set_defaults(run=run_train)

    p = subparsers.add_parser(
        "export", help="checkpoint -> ONNX with its model card, parity-checked"
    )
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--out", type=Path, required=True, help="model.onnx to write")
    p.add_argument("--score-threshold", type=float, help="default 0.3 (detector), 0.5 (cam)")
    p.add_argument(
        "--parity-coco",
        type=Path,
        help="real images for the parity check (default: the fetched stardist image)",
    )
    p.add_argument("--parity-images", type=int, default=2, help="how many of them")
    p.set_defaults(run=run_export)

    p = subparsers.add_parser("eval", help="COCO mAP (and CAM hit rate) of an ONNX model")
    p.add_argument("--model", type=Path, required=True, help="model.onnx")
    p.add_argument("--coco", type=Path, required=True, help="COCO test file (exhaustive labels)")
    p.add_argument("--json", type=Path, help="write the results here as JSON")
    p.set_defaults(run=run_eval)

    from training.experiment import add_parser as add_experiment

    add_experiment(subparsers)

    from training.demo import add_parser as add_demo

    add_demo(subparsers)


def run_train(args: argparse.Namespace) -> int:
    _need_torch()
    from synthloc.rpc_client import ChannelSecurity
    from training.engine import TrainSettings, train
    from training.sources import CocoSource, SynthSource, load_recipe

    if args.steps <= 0 or args.batch_size <= 0:
        raise InvalidInput("--steps and --batch-size must be > 0")
    if args.synth:
        source = SynthSource(
            args.synth,
            args.task,
            args.crop,
            load_recipe(args.recipe),
            args.seed,
            retries=args.retries,
            security=ChannelSecurity(
                args.synth_token or None,
                args.synth_tls,
                args.synth_tls_ca,
                args.synth_tls_cert,
                args.synth_tls_key,
            ),
        )
    else:
        if args.recipe:
            raise InvalidInput("--recipe goes with --synth, not --coco")
        source = CocoSource(
            args.coco, args.crop, args.annotated_fraction, args.fraction_seed, args.seed
        )
    overrides = {"width": args.width} if args.width else {}
    checkpoint = train(
        TrainSettings(
            task=args.task,
            out=args.out,
            steps=args.steps,
            source=source,
            batch_size=args.batch_size,
            lr=args.lr,
            loader_workers=args.workers,
            device=args.device,
            resume=args.resume,
            checkpoint_every=args.checkpoint_every,
            seed=args.seed,
            config_overrides=overrides,
            until=args.until,
        )
    )
    print(json.dumps({"checkpoint": str(checkpoint), "loss_curve": str(args.out / "loss.png")}))
    return 0


def run_export(args: argparse.Namespace) -> int:
    _need_torch()
    from training.export import export_checkpoint

    report = export_checkpoint(
        args.checkpoint, args.out, args.score_threshold, args.parity_coco, args.parity_images
    )
    print(json.dumps(report, indent=2))
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from training.evaluate import evaluate, format_result

    result = evaluate(args.model, args.coco)
    print(format_result(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0
