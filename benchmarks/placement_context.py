"""How close each class sits to its nearest larger neighbour in a COCO file's annotations.

    .venv/bin/python benchmarks/placement_context.py [TRAIN.json] [--annotated-fraction F]

The figures behind the synthesis recipe's context_probability: per class, the box gap to the
nearest object of a class with a larger median area (synth_service/context.py), as
percentiles and as the fraction within 0, 5 and 10 px; then what the library learns from the
same annotations (its anchor classes and how many pairs it saw).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from synth_service.context import box_gap, boxes_by_image, learn_context, median_areas
from synthloc.coco import CocoDataset, subsample_annotations
from synthloc.datasets.fetch import default_root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "coco", type=Path, nargs="?", default=default_root() / "mnfinder/train.json"
    )
    parser.add_argument("--annotated-fraction", type=float, default=1.0)
    args = parser.parse_args()
    ds = CocoDataset.load(args.coco)
    if args.annotated_fraction < 1.0:
        ds = subsample_annotations(ds, args.annotated_fraction, 0)
    names = {c["id"]: c["name"] for c in ds.categories}
    images = boxes_by_image(ds, {i: i for i in names})  # category ids as they are
    medians = median_areas(images)
    for cls in sorted(medians):
        gaps = [
            min(
                (box_gap(box, other) for c, other in objects if medians[c] > medians[cls]),
                default=np.inf,
            )
            for objects in images
            for c0, box in objects
            if c0 == cls
        ]
        finite = np.asarray(gaps)
        if not np.isfinite(finite).any():
            print(f"{names[cls]}: no larger class to sit beside")
            continue
        p = np.percentile(finite, [10, 25, 50, 75, 90])
        within = {d: float((finite <= d).mean()) for d in (0, 5, 10)}
        print(
            f"{names[cls]} ({len(gaps)} objects): gap to the nearest larger neighbour, "
            f"percentiles 10/25/50/75/90 = {', '.join(f'{v:.1f}' for v in p)} px; "
            f"within 0/5/10 px: {within[0]:.3f} / {within[5]:.3f} / {within[10]:.3f}"
        )
    context = learn_context(images, medians)
    described = "; ".join(
        f"{names[c]} beside {names[a]} ({len(context.gaps[c])} pairs)"
        for c, a in sorted(context.anchor.items())
    )
    print(f"learned context: {described or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
