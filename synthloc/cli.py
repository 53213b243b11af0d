"""The `synthloc` command line: one entry point, a subcommand group per room.

Each group lives in its room's own module with an `add_parser(subparsers)` function, so that
heavy imports (torch, ONNX Runtime) happen only when that command runs. Errors of the
SynthlocError hierarchy end the program with their exit code and a one-line message; anything
else is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from synthloc import __version__
from synthloc.errors import SynthlocError

# Modules that contribute subcommands, in the order `synthloc --help` lists them.
COMMAND_MODULES = (
    "synthloc.datasets.cli",
    "synth_service.cli",
    "training.cli",
    "infer_service.cli",
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every room's subcommands."""
    parser = argparse.ArgumentParser(
        prog="synthloc",
        description="Synthetic, exhaustively annotated microscopy: data, synthesis, training, "
        "inference.",
    )
    parser.add_argument("--version", action="version", version=f"synthloc {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code (0 ok, 1 internal, 2 bad input, 3 unavailable,
    4 integrity)."""
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")  # libtiff warns about private TIFF tags
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.run(args) or 0)
    except SynthlocError as exc:
        print(f"synthloc: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("synthloc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
