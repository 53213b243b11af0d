"""`synthloc synth serve` and `synthloc synth sample`."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from synth_service.settings import ENV_PREFIX, SynthSettings
from synthloc.settings import load_settings


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the `synth` command group."""
    synth = subparsers.add_parser("synth", help="the synthesis service")
    commands = synth.add_subparsers(dest="synth_command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="serve StreamBatches from a COCO library",
        description=f"Flags override environment variables {ENV_PREFIX}<NAME>.",
    )
    _library_flags(serve)
    serve.add_argument("--host", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="gRPC port (default 50051; 0 = any free)")
    serve.add_argument("--metrics-port", type=int, help="Prometheus port (default 9101; -1 off)")
    serve.add_argument("--workers", type=int, help="composition processes (default: cores)")
    serve.add_argument("--grace-seconds", type=float, help="drain time on SIGTERM")
    serve.add_argument("--tls-cert", type=Path, help="server certificate (PEM)")
    serve.add_argument("--tls-key", type=Path, help="server private key (PEM)")
    serve.add_argument("--tls-client-ca", type=Path, help="require client certificates (mTLS)")
    serve.add_argument(
        "--auth-token",
        help="require 'authorization: Bearer <token>' (better: env SYNTHLOC_SYNTH_AUTH_TOKEN)",
    )
    serve.set_defaults(run=run_serve)

    sample = commands.add_parser("sample", help="compose a few samples into a PNG contact sheet")
    _library_flags(sample)
    sample.add_argument("--out", type=Path, required=True, help="PNG file to write")
    sample.add_argument("--count", type=int, default=8)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--size", type=int, default=256, help="canvas side in pixels")
    sample.add_argument("--recipe", type=Path, help="recipe as synthloc.v1.Recipe JSON")
    sample.set_defaults(run=run_sample)


def _library_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--library", type=Path, help="COCO JSON with the annotated objects")
    parser.add_argument(
        "--annotated-fraction",
        type=float,
        help="keep this fraction of each image's annotations (default 1.0)",
    )
    parser.add_argument("--fraction-seed", type=int, help="which annotations the fraction keeps")


def settings_from_args(args: argparse.Namespace) -> SynthSettings:
    """SynthSettings from env, overridden by the flags given."""
    names = {f.name for f in dataclasses.fields(SynthSettings)}
    overrides = {k: v for k, v in vars(args).items() if k in names}
    return load_settings(SynthSettings, ENV_PREFIX, overrides)


def run_serve(args: argparse.Namespace) -> int:
    from synth_service.server import serve

    return serve(settings_from_args(args))


def run_sample(args: argparse.Namespace) -> int:
    from google.protobuf import json_format

    from synth_service.compose import compose
    from synth_service.gallery import contact_sheet
    from synth_service.library import LibrarySettings
    from synth_service.recipe import Recipe, validate_recipe
    from synth_service.recipe_proto import recipe_from_proto
    from synth_service.state import SynthState
    from synthloc.errors import InvalidInput
    from synthloc.imageio import write_png
    from synthloc.v1 import synthesis_pb2

    settings = settings_from_args(args)
    state = SynthState.build(
        settings.library,
        LibrarySettings(
            annotated_fraction=settings.annotated_fraction, fraction_seed=settings.fraction_seed
        ),
    )
    recipe = Recipe(height=args.size, width=args.size, channels=state.library.channels)
    if args.recipe:
        try:
            msg = json_format.Parse(args.recipe.read_text(), synthesis_pb2.Recipe())
        except (OSError, json_format.ParseError) as exc:
            raise InvalidInput(f"{args.recipe}: not a readable Recipe JSON ({exc})") from exc
        recipe = recipe_from_proto(msg, recipe)
    validate_recipe(recipe, state.library.class_names, 4096 * 4096)
    samples = [
        compose(recipe, state.library, state.backgrounds, args.seed, i) for i in range(args.count)
    ]
    write_png(args.out, contact_sheet(samples, state.library.class_names))
    total = sum(len(s.objects) for s in samples)
    print(
        f"wrote {args.out}: {len(samples)} samples, {total} objects, recipe "
        f"{recipe.content_hash()}, library {state.library_hash}"
    )
    return 0
