"""Streamed synthesis samples as numpy arrays: the torch-free decoding of synthloc.v1.Batch that
the synthesis client and the trainers share."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from synthloc.errors import InvalidInput
from synthloc.v1 import synthesis_pb2
from synthloc.wire import image_from_proto


@dataclass(frozen=True)
class ObjectProvenance:
    """Where a pasted object came from and what was done to it."""

    source_object_id: int  # annotation id in the library's COCO file
    area: int  # visible pixels
    scale: float
    angle_deg: float
    flipped_horizontally: bool
    flipped_vertically: bool
    blend: str  # HARD, FEATHER or POISSON
    visible_fraction: float


@dataclass(frozen=True, eq=False)
class Sample:
    """One synthetic image with its exhaustive annotation."""

    index: int  # global index: the sample is a pure function of (library, recipe, seed, index)
    image: np.ndarray  # (H, W, C), uint8 or uint16
    boxes: np.ndarray  # (N, 4) float32: x, y, width, height in pixels, tight to the visible part
    class_ids: np.ndarray  # (N,) int64, indices into the library's classes
    class_names: tuple[str, ...]  # (N,) the class of each object by name
    image_labels: np.ndarray  # (K,) float32 multi-hot over the library's classes
    # With include_masks: (H, W) uint16, 0 = background, object k has value k + 1.
    instance_labels: np.ndarray | None
    provenance: tuple[ObjectProvenance, ...]  # (N,)
    recipe_hash: str
    library_hash: str

    @property
    def masks(self) -> np.ndarray | None:
        """(N, H, W) boolean masks of the visible objects, if the stream included masks."""
        if self.instance_labels is None:
            return None
        ids = np.arange(1, len(self.boxes) + 1, dtype=np.uint16)
        return self.instance_labels[None, :, :] == ids[:, None, None]

    def boxes_xyxy(self) -> np.ndarray:
        """(N, 4) float64 boxes as x0, y0, x1, y1 (x1 = x + width)."""
        b = self.boxes.astype(np.float64)
        return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def decode_batch(batch: synthesis_pb2.Batch) -> Iterator[Sample]:
    """The samples of a Batch, decoded one at a time as they are taken; InvalidInput for a
    sample that does not fit its own description."""
    class_names = tuple(batch.class_names)
    for msg in batch.samples:
        yield decode_sample(msg, class_names, batch.recipe_hash, batch.library_hash)


def decode_sample(
    msg: synthesis_pb2.Sample,
    class_names: tuple[str, ...],
    recipe_hash: str = "",
    library_hash: str = "",
) -> Sample:
    """One Sample message (RAW or PNG image) as numpy arrays."""
    objects = msg.objects
    class_ids = np.array([o.class_id for o in objects], np.int64)
    if len(class_ids) and class_ids.max() >= len(class_names):
        raise InvalidInput(
            f"sample {msg.index}: class id {class_ids.max()} is not one of the batch's "
            f"{len(class_names)} classes"
        )
    boxes = np.array(
        [(o.box.x, o.box.y, o.box.width, o.box.height) for o in objects], np.float32
    ).reshape(-1, 4)
    labels = None
    if msg.HasField("instance_labels"):
        labels = image_from_proto(msg.instance_labels)[..., 0]
    return Sample(
        index=msg.index,
        image=image_from_proto(msg.image),
        boxes=boxes,
        class_ids=class_ids,
        class_names=tuple(class_names[i] for i in class_ids),
        image_labels=np.array(list(msg.image_labels), np.float32),
        instance_labels=labels,
        provenance=tuple(
            ObjectProvenance(
                source_object_id=o.source_object_id,
                area=o.area,
                scale=o.scale,
                angle_deg=o.angle_deg,
                flipped_horizontally=o.flipped_horizontally,
                flipped_vertically=o.flipped_vertically,
                blend=synthesis_pb2.BlendMode.Name(o.blend).removeprefix("BLEND_MODE_"),
                visible_fraction=o.visible_fraction,
            )
            for o in objects
        ),
        recipe_hash=recipe_hash,
        library_hash=library_hash,
    )
