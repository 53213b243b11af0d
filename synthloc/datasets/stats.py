"""What a COCO dataset holds: images, objects per class, object sizes."""

from __future__ import annotations

from typing import Any

import numpy as np

from synthloc.coco import CocoDataset

PERCENTILES = (5, 25, 50, 75, 95)


def class_counts(ds: CocoDataset) -> dict[str, int]:
    """{"images": n, <class name>: objects, ...} with every category present."""
    names = ds.category_names
    counts = {"images": len(ds.images), **{name: 0 for name in names.values()}}
    for ann in ds.annotations:
        counts[names[ann["category_id"]]] += 1
    return counts


def summarize(ds: CocoDataset) -> dict[str, Any]:
    """Counts and size percentiles per class, in a JSON-ready dict."""
    per_image = [len(a) for a in ds.annotations_by_image().values()]
    heights = [img["height"] for img in ds.images]
    widths = [img["width"] for img in ds.images]
    classes: dict[str, Any] = {}
    for cat_id, name in ds.category_names.items():
        boxes = np.array(
            [a["bbox"] for a in ds.annotations if a["category_id"] == cat_id], float
        ).reshape(-1, 4)
        entry: dict[str, Any] = {"objects": len(boxes)}
        if len(boxes):
            side = np.sqrt(boxes[:, 2] * boxes[:, 3])
            entry["box_side_px"] = _percentiles(side)
            entry["box_width_px"] = _percentiles(boxes[:, 2])
            entry["box_height_px"] = _percentiles(boxes[:, 3])
        classes[name] = entry
    return {
        "images": len(ds.images),
        "objects": len(ds.annotations),
        "objects_per_image": _percentiles(np.array(per_image, float)) if per_image else {},
        "image_height_px": [min(heights, default=0), max(heights, default=0)],
        "image_width_px": [min(widths, default=0), max(widths, default=0)],
        "classes": classes,
    }


def _percentiles(values: np.ndarray) -> dict[str, float]:
    return {f"p{p}": round(float(np.percentile(values, p)), 1) for p in PERCENTILES}


def format_summary(summary: dict[str, Any], title: str) -> str:
    """A plain-text table of a summary, for people."""
    lines = [
        title,
        f"  images: {summary['images']}  (height {summary['image_height_px'][0]}-"
        f"{summary['image_height_px'][1]} px, width {summary['image_width_px'][0]}-"
        f"{summary['image_width_px'][1]} px)",
        f"  objects: {summary['objects']}  (per image, median "
        f"{summary['objects_per_image'].get('p50', 0):g})",
        "  "
        + f"{'class':<16}{'objects':>8}   box side px: "
        + "  ".join(f"{'p' + str(p):>6}" for p in PERCENTILES),
    ]
    for name, entry in summary["classes"].items():
        sides = entry.get("box_side_px", {})
        cells = "  ".join(f"{sides.get(f'p{p}', float('nan')):>6.1f}" for p in PERCENTILES)
        lines.append(f"  {name:<16}{entry['objects']:>8}                 {cells}")
    return "\n".join(lines)
