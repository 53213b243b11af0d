"""How clean are the backgrounds built from partially annotated real images?

Builds a BackgroundBank from mnfinder with only a random fraction of each image's objects
annotated, then measures on the exhaustive ground truth how many object pixels still reach the
background tiles (goal: < 1%), whether refilled objects still show, what the cleaning costs in
real background, and how fast building and sampling are.

    SYNTHLOC_DATA=/tmp/sl-data .venv/bin/python benchmarks/background_cleanliness.py \
        [--fraction 0.25] [--seed 0] [--split train] [--json OUT.json] [--png OUT.png]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from synth_service.backgrounds import (
    BackgroundBank,
    BackgroundSettings,
    clean_images,
    surviving_object_fraction,
    tile_windows,
)
from synth_service.draws import Draws
from synth_service.intensity import normalize_intensity, to_dtype
from synthloc.coco import CocoDataset, segmentation_to_mask
from synthloc.datasets.fetch import default_root
from synthloc.imageio import read_image, write_png

RING = (5, 12)  # px from an object's outline: the band that stands for its local background


@dataclass
class GroundTruthObject:
    """One exhaustively annotated object: its class and its mask cropped to its box."""

    name: str
    y: int
    x: int
    mask: np.ndarray


@dataclass
class Split:
    """Normalized images, sparse annotated unions, exhaustive truth per class and per object."""

    names: list[str]
    images: list[np.ndarray]
    annotated: list[np.ndarray]
    truth: list[dict[str, np.ndarray]]
    objects: list[list[GroundTruthObject]]


def get_args_parser() -> argparse.ArgumentParser:
    """Command-line flags of this benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fraction", type=float, default=0.25, help="annotated share per image")
    parser.add_argument("--seed", type=int, default=0, help="annotation subset and bank seed")
    parser.add_argument("--split", default="train", choices=["train", "val", "test"])
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    parser.add_argument("--png", type=Path, help="write original | removed | cleaned views here")
    parser.add_argument("--settings", default="{}", help="BackgroundSettings overrides, JSON")
    parser.add_argument("--samples", type=int, default=2000, help="sample() calls to time")
    return parser


def load_split(split: str, fraction: float, seed: int) -> Split:
    """Read a mnfinder split; annotate a random `fraction` of each image's objects."""
    dataset = CocoDataset.load(default_root() / "mnfinder" / f"{split}.json")
    names, by_image = dataset.category_names, dataset.annotations_by_image()
    rng = np.random.default_rng(seed)
    data = Split(list(names.values()), [], [], [], [])
    for image in dataset.images:
        pixels = normalize_intensity(read_image(dataset.image_path(image)))
        h, w = pixels.shape[:2]
        anns = by_image.get(image["id"], [])
        chosen = set(rng.choice(len(anns), round(fraction * len(anns)), replace=False).tolist())
        sparse = np.zeros((h, w), bool)
        per_class = {name: np.zeros((h, w), bool) for name in data.names}
        objects = []
        for index, ann in enumerate(anns):
            mask = segmentation_to_mask(ann["segmentation"], h, w)
            per_class[names[ann["category_id"]]] |= mask
            if index in chosen:
                sparse |= mask
            rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
            if rows.size:
                crop = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].copy()
                objects.append(GroundTruthObject(names[ann["category_id"]], rows[0], cols[0], crop))
        data.images.append(pixels)
        data.annotated.append(sparse)
        data.truth.append(per_class)
        data.objects.append(objects)
    return data


def _disc(mask: np.ndarray, radius: int) -> np.ndarray:
    """Dilate a bool mask by a disc of the given radius."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel) > 0


def _window(obj: GroundTruthObject, shape: tuple[int, int]) -> tuple[tuple[slice, slice], Any]:
    """The object's box grown by the ring width (clipped to the image), and its mask there."""
    pad, (h, w), (mh, mw) = RING[1] + 2, shape, obj.mask.shape
    y0, x0 = max(obj.y - pad, 0), max(obj.x - pad, 0)
    y1, x1 = min(obj.y + mh + pad, h), min(obj.x + mw + pad, w)
    mask = np.zeros((y1 - y0, x1 - x0), bool)
    mask[obj.y - y0 : obj.y - y0 + mh, obj.x - x0 : obj.x - x0 + mw] = obj.mask
    return (slice(y0, y1), slice(x0, x1)), mask


def _footprint_z(image: np.ndarray, core: np.ndarray, ring: np.ndarray) -> float | None:
    """How many standard errors the core's mean lies above the ring's (None: ring too small)."""
    if np.count_nonzero(ring) < 30:
        return None
    spread = float(image[ring].std()) or 1e-9
    return (float(image[core].mean()) - float(image[ring].mean())) / spread * np.sqrt(core.sum())


def footprint_contrast(
    cleaned: np.ndarray,
    objects: list[GroundTruthObject],
    truth: np.ndarray,
    kept: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, list[float]]:
    """Footprint z of each object inside kept tiles, and of the same footprint at a random spot.

    A refilled object that still shows (a ghost, a patch) scores high; the random empty spots
    say how often plain cleaned background scores that high, so the two compare directly.
    """
    image, (h, w) = cleaned[..., 0], truth.shape
    blocked = _disc(truth, 2)
    scores: dict[str, list[float]] = {}
    for obj in objects:
        window, mask = _window(obj, (h, w))
        if not kept[window].all():
            continue
        core, ring = _disc(mask, 1), _disc(mask, RING[1]) & ~_disc(mask, RING[0])
        z = _footprint_z(image[window], core, ring & ~_disc(truth[window] & ~mask, 2))
        if z is not None:
            scores.setdefault(obj.name, []).append(z)
        wh, ww = mask.shape
        for _ in range(20):  # the same footprint where no object is, within kept tiles
            y, x = int(rng.integers(0, h - wh + 1)), int(rng.integers(0, w - ww + 1))
            spot = (slice(y, y + wh), slice(x, x + ww))
            if kept[spot].all() and not blocked[spot][core | ring].any():
                z = _footprint_z(image[spot], core, ring)
                if z is not None:
                    scores.setdefault(f"{obj.name} (random empty spots)", []).append(z)
                break
    return scores


def object_counts(
    objects: list[list[GroundTruthObject]], survived: list[np.ndarray], name: str
) -> dict[str, int]:
    """Objects of a class with any / at least half of their pixels surviving into a tile."""
    total = any_left = half_left = 0
    for image_objects, alive in zip(objects, survived, strict=True):
        for obj in (o for o in image_objects if o.name == name):
            mh, mw = obj.mask.shape
            left = float(alive[obj.y : obj.y + mh, obj.x : obj.x + mw][obj.mask].mean())
            total, any_left, half_left = total + 1, any_left + (left > 0), half_left + (left >= 0.5)
    return {"objects": total, "any_pixel_survives": any_left, "half_survives": half_left}


def time_sample(bank: BackgroundBank, calls: int, size: int = 512) -> float:
    """Median seconds of one bank.sample(size x size)."""
    draws = Draws(1, 0)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        bank.sample(draws, size, size)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def write_views(path: Path, data: Split, cleaned: list, removed: list) -> None:
    """Four images as rows of original | removed (red: annotated) | cleaned, gamma-stretched."""
    rows = []
    for index in np.linspace(0, len(cleaned) - 1, min(4, len(cleaned))).round().astype(int):
        original, clean = data.images[index][..., 0], cleaned[index][..., 0]
        # One gamma-stretched scale for both shows dim leftovers that a linear view hides.
        high = float(np.percentile(original, 99.0)) or 1.0
        gray = [np.dstack([np.sqrt(np.clip(p / high, 0, 1))] * 3) for p in (original, clean)]
        mask = np.dstack([removed[index] * 0.5] * 3)
        mask[data.annotated[index]] = (1.0, 0.0, 0.0)
        row = np.hstack([gray[0], mask, gray[1]])
        scale = 512 / row.shape[0]
        rows.append(cv2.resize(row, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0))) for r in rows]
    write_png(path, to_dtype(np.vstack(rows), np.uint8))


def _share(parts: list[np.ndarray], wholes: list[np.ndarray]) -> float:
    """sum of parts' pixels / sum of wholes' pixels."""
    total = sum(np.count_nonzero(w) for w in wholes)
    return sum(np.count_nonzero(p) for p in parts) / total if total else 0.0


def main(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark, print a table, return the figures."""
    overrides = json.loads(args.settings)
    settings = BackgroundSettings(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    )
    data = load_split(args.split, args.fraction, args.seed)
    start = time.perf_counter()
    cleaned, removed = clean_images(data.images, data.annotated, settings, args.seed)
    bank = BackgroundBank.from_cleaned(cleaned, removed, settings)  # = BackgroundBank.build
    build_s = time.perf_counter() - start
    kept = bank.kept_regions([m.shape for m in removed])
    survived = [k & ~r for k, r in zip(kept, removed, strict=True)]
    everything = [np.logical_or.reduce(list(t.values())) for t in data.truth]
    background = [~t for t in everything]
    figures: dict[str, Any] = {
        "split": args.split,
        "fraction_annotated": args.fraction,
        "seed": args.seed,
        "settings": asdict(settings),
        "surviving_object_fraction": surviving_object_fraction(removed, kept, everything),
        "per_class": {},
    }
    for name in data.names:
        truth = [t[name] for t in data.truth]
        figures["per_class"][name] = {
            "surviving_pixel_fraction": surviving_object_fraction(removed, kept, truth),
            **object_counts(data.objects, survived, name),
        }
    rng, scores = np.random.default_rng(args.seed), {}
    for clean, objs, truth, region in zip(cleaned, data.objects, everything, kept, strict=True):
        for key, values in footprint_contrast(clean, objs, truth, region, rng).items():
            scores.setdefault(key, []).extend(values)
    figures["footprint_contrast"] = {  # sorted: each class next to its random empty spots
        key: {
            "footprints": len(values),
            "above_3_fraction": float(np.mean(np.asarray(values) > 3)),
            "median_z": float(np.median(values)),
        }
        for key, values in sorted(scores.items())
    }
    figures["background_removed_fraction"] = _share(
        [b & k & r for b, k, r in zip(background, kept, removed, strict=True)],
        [b & k for b, k in zip(background, kept, strict=True)],
    )
    figures["background_removed_fraction_all"] = _share(
        [b & r for b, r in zip(background, removed, strict=True)], background
    )
    figures["area_in_tiles_fraction"] = _share(kept, [np.ones_like(k) for k in kept])
    figures["images"] = len(cleaned)
    figures["tiles"] = len(bank)
    figures["tiles_possible"] = sum(
        len(tile_windows(*m.shape, settings.tile_size)) for m in removed
    )
    figures["build_seconds"] = build_s
    figures["sample_512_median_ms"] = time_sample(bank, args.samples) * 1e3
    figures["content_hash"] = bank.content_hash()
    print_table(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    if args.png:
        write_views(args.png, data, cleaned, removed)
    return figures


def print_table(figures: dict[str, Any]) -> None:
    """The figures as a readable two-column table."""
    f = figures
    rows = [("ground-truth object pixels surviving", f"{f['surviving_object_fraction']:.3%}")]
    for name, c in f["per_class"].items():
        rows.append((f"  {name} pixels surviving", f"{c['surviving_pixel_fraction']:.3%}"))
        counts = f"{c['any_pixel_survives']} / {c['half_survives']} of {c['objects']}"
        rows.append((f"  {name} objects: any pixel / >=50% surviving", counts))
    rows.append(("footprint z in cleaned tiles (> 3 / median)", ""))
    for key, c in f["footprint_contrast"].items():
        value = f"{c['above_3_fraction']:.2%} / {c['median_z']:+.2f} (n={c['footprints']})"
        rows.append((f"  {key}", value))
    tiles = f"{f['tiles']} of {f['tiles_possible']} from {f['images']} images"
    rows += [
        ("background pixels removed, in kept tiles", f"{f['background_removed_fraction']:.2%}"),
        ("background pixels removed, whole images", f"{f['background_removed_fraction_all']:.2%}"),
        ("image area that reached a tile", f"{f['area_in_tiles_fraction']:.2%}"),
        ("tiles kept", tiles),
        ("build (clean + tile)", f"{f['build_seconds']:.1f} s"),
        ("sample 512x512x1, median", f"{f['sample_512_median_ms']:.3f} ms"),
    ]
    width = max(len(label) for label, _ in rows)
    title = f"background cleanliness: mnfinder {f['split']}, {f['fraction_annotated']:.0%}"
    print(f"{title} annotated, seed {f['seed']}")
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
