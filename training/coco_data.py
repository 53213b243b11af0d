"""Real COCO images as an endless, sharded, resumable stream of random crops.

Sample i is a pure function of (dataset, annotated fraction, seed, i): a random image, crop
position and flips drawn from a generator seeded with (seed, i). Sharding and resume work as
for the synthesis stream (training.data.DataPosition).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import IterableDataset

from synthloc.coco import CocoDataset, subsample_annotations
from synthloc.errors import InvalidInput
from synthloc.imageio import read_image
from synthloc.preprocess import match_channels, percentile_normalize
from training.data import DataPosition, shard_of_this_worker

MIN_KEPT_AREA = 0.4  # a box cut by the crop is kept if this much of it stays inside


class CocoCrops(IterableDataset):
    """Random crops of a COCO dataset with their (possibly sparse) box annotations."""

    def __init__(
        self,
        coco_path: Path,
        position: DataPosition,
        crop: int = 256,
        annotated_fraction: float = 1.0,
        fraction_seed: int = 0,
        seed: int = 0,
        channels: int = 1,
        class_names: list[str] | None = None,
        world: int = 1,
        rank: int = 0,
    ) -> None:
        super().__init__()
        ds = CocoDataset.load(coco_path)
        names = [c["name"] for c in sorted(ds.categories, key=lambda c: c["id"])]
        if class_names is not None and names != list(class_names):
            raise InvalidInput(
                f"{coco_path}: categories {names} differ from the model's classes "
                f"{list(class_names)}"
            )
        self.class_names = names
        labels_ds = subsample_annotations(ds, annotated_fraction, fraction_seed)
        class_of = {c["id"]: i for i, c in enumerate(sorted(ds.categories, key=lambda c: c["id"]))}
        self.images: list[np.ndarray] = []
        self.boxes: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        present = ds.annotations_by_image()  # image-level labels come from every annotation
        self.present: list[np.ndarray] = []
        for image, anns in zip(ds.images, labels_ds.annotations_by_image().values(), strict=True):
            pixels = percentile_normalize(read_image(ds.image_path(image)))
            pixels = match_channels(pixels, channels)
            self.images.append(pixels)
            xywh = np.array([a["bbox"] for a in anns], np.float32).reshape(-1, 4)
            self.boxes.append(np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1))
            self.labels.append(np.array([class_of[a["category_id"]] for a in anns], np.int64))
            every = present[image["id"]]
            centres = np.array(
                [
                    [
                        a["bbox"][0] + a["bbox"][2] / 2,
                        a["bbox"][1] + a["bbox"][3] / 2,
                        class_of[a["category_id"]],
                    ]
                    for a in every
                ],
                np.float32,
            )
            self.present.append(centres.reshape(-1, 3))
        if not self.images:
            raise InvalidInput(f"{coco_path}: no images")
        small = min(min(p.shape[:2]) for p in self.images)
        if crop > small:
            raise InvalidInput(f"crop {crop} is larger than the smallest image side ({small})")
        self.crop, self.seed, self.position = crop, seed, position
        self.world, self.rank = world, rank

    def sample(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Crop number `index` of the stream with its targets."""
        rng = np.random.default_rng([self.seed, index])
        k = int(rng.integers(len(self.images)))
        pixels, boxes, labels = self.images[k], self.boxes[k], self.labels[k]
        h, w = pixels.shape[:2]
        y0, x0 = int(rng.integers(h - self.crop + 1)), int(rng.integers(w - self.crop + 1))
        flip_h, flip_v = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
        image = pixels[y0 : y0 + self.crop, x0 : x0 + self.crop]
        shifted = boxes - np.array([x0, y0, x0, y0], np.float32)
        clipped = np.clip(shifted, 0, self.crop)
        area = (shifted[:, 2] - shifted[:, 0]) * (shifted[:, 3] - shifted[:, 1])
        kept_area = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
        keep = kept_area >= MIN_KEPT_AREA * np.maximum(area, 1e-6)
        clipped, labels = clipped[keep], labels[keep]
        if flip_h:
            image = image[:, ::-1]
            clipped[:, [0, 2]] = self.crop - clipped[:, [2, 0]]
        if flip_v:
            image = image[::-1]
            clipped[:, [1, 3]] = self.crop - clipped[:, [3, 1]]
        centres = self.present[k]
        inside = (
            (centres[:, 0] >= x0)
            & (centres[:, 0] < x0 + self.crop)
            & (centres[:, 1] >= y0)
            & (centres[:, 1] < y0 + self.crop)
        )
        image_labels = np.zeros(len(self.class_names), np.float32)
        image_labels[centres[inside, 2].astype(int)] = 1.0
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))), {
            "boxes": torch.from_numpy(np.ascontiguousarray(clipped)),
            "labels": torch.from_numpy(labels),
            "image_labels": torch.from_numpy(image_labels),
            "index": torch.tensor(index, dtype=torch.int64),
        }

    def __iter__(self) -> Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
        _, index = shard_of_this_worker(self.position, self.world, self.rank)
        while True:
            yield self.sample(index)
            index += self.position.num_shards
