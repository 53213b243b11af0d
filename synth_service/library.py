"""ObjectLibrary: every annotated object of a COCO dataset, cut out with its alpha mask.

Pixels live in the float32 working space of synth_service.intensity (each source image
normalised by its own percentiles), so objects from differently exposed images mix.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import cv2
import numpy as np
from tqdm import tqdm

from synth_service.context import PlacementContext, learn_from_coco
from synth_service.intensity import normalize_intensity
from synthloc.coco import CocoDataset, segmentation_to_mask, subsample_annotations
from synthloc.errors import FailedPrecondition
from synthloc.imageio import read_image

MARGIN = 3  # pixels of context kept around each object, for feathering and blending


@dataclass(frozen=True)
class CutObject:
    """One annotated object: its pixels, alpha mask and where it came from."""

    object_id: int  # the annotation id in the source COCO file
    class_id: int  # index into ObjectLibrary.class_names
    image_id: int
    pixels: np.ndarray  # float32 (h, w, C), the object plus MARGIN px of its surroundings
    alpha: np.ndarray  # float32 (h, w) in [0, 1]; 0 in the margin
    background_level: float  # median intensity just around the object in its source image
    area: int


@dataclass(frozen=True)
class LibrarySettings:
    """How objects are cut from the source annotations."""

    include_truncated: bool = False  # keep objects cut by the image border
    annotated_fraction: float = 1.0  # keep this random fraction of annotations per image
    fraction_seed: int = 0


@dataclass
class SourceImages:
    """The normalised source images with the union of their (kept) annotated masks."""

    pixels: list[np.ndarray] = field(default_factory=list)
    annotated: list[np.ndarray] = field(default_factory=list)


@dataclass
class ObjectLibrary:
    """Cut objects grouped by class, plus what DescribeLibrary reports about them."""

    class_names: list[str]
    objects: list[CutObject]
    source_images: int
    dtype: str
    channels: int
    noise_sigma: float  # background noise in the working space (robust estimate)
    context: PlacementContext = field(default_factory=PlacementContext)  # who sits beside whom

    def __getstate__(self) -> dict:
        # The compose kernel's copies (kernel.library_pack, kernel.prepare) are rebuilt where used.
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_kernel")}

    def __post_init__(self) -> None:
        self.by_class = [
            np.array([i for i, o in enumerate(self.objects) if o.class_id == c], np.int64)
            for c in range(len(self.class_names))
        ]

    @classmethod
    def from_coco(
        cls, ds: CocoDataset, settings: LibrarySettings | None = None
    ) -> tuple[ObjectLibrary, SourceImages]:
        """Cut every kept annotation of ds; also return the images for backgrounds."""
        settings = settings or LibrarySettings()
        if settings.annotated_fraction < 1.0:
            ds = subsample_annotations(ds, settings.annotated_fraction, settings.fraction_seed)
        categories = sorted(ds.categories, key=lambda c: c["id"])
        class_of = {c["id"]: i for i, c in enumerate(categories)}
        objects: list[CutObject] = []
        sources = SourceImages()
        dtypes, channels, sigmas = set(), set(), []
        by_image = ds.annotations_by_image()
        for image in tqdm(ds.images, desc="library", unit="image", leave=False):
            raw = read_image(ds.image_path(image))
            dtypes.add(str(raw.dtype))
            pixels = normalize_intensity(raw)
            channels.add(pixels.shape[2])
            annotated = np.zeros(pixels.shape[:2], bool)
            for ann in by_image[image["id"]]:
                mask = _object_mask(ann, pixels)
                annotated |= mask
                cut = _cut(ann, mask, pixels, class_of[ann["category_id"]], settings)
                if cut is not None:
                    objects.append(cut)
            sources.pixels.append(pixels)
            sources.annotated.append(annotated)
            sigmas.append(_noise_sigma(pixels, annotated))
        if not objects:
            raise FailedPrecondition(
                f"{ds.path}: no usable objects (every annotation is empty or cut by the image "
                "border); annotate whole objects or allow truncated ones"
            )
        library = cls(
            class_names=[c["name"] for c in categories],
            objects=objects,
            source_images=len(ds.images),
            dtype="uint16" if "uint16" in dtypes else "uint8",
            channels=max(channels),
            noise_sigma=float(np.median(sigmas)),
            context=learn_from_coco(ds, class_of),
        )
        return library, sources

    def content_hash(self) -> str:
        """sha256 over every object's pixels, mask and metadata, and the placement context."""
        digest = hashlib.sha256("|".join(self.class_names).encode())
        digest.update(repr(sorted(self.context.anchor.items())).encode())
        digest.update(repr(sorted(self.context.gaps.items())).encode())
        for o in self.objects:
            digest.update(np.array([o.object_id, o.class_id, o.image_id, o.area], np.int64))
            digest.update(o.pixels.tobytes())
            digest.update(o.alpha.tobytes())
        return digest.hexdigest()

    def size_stats(self, class_id: int) -> dict[str, float]:
        """Percentiles of sqrt(box area) and the mean mask area of one class, in pixels."""
        members = [self.objects[i] for i in self.by_class[class_id]]
        if not members:
            return {"p5": 0.0, "p50": 0.0, "p95": 0.0, "mean_area": 0.0}
        sides = [
            np.sqrt((o.alpha.shape[0] - 2 * MARGIN) * (o.alpha.shape[1] - 2 * MARGIN))
            for o in members
        ]
        p5, p50, p95 = np.percentile(sides, [5, 50, 95])
        return {
            "p5": float(p5),
            "p50": float(p50),
            "p95": float(p95),
            "mean_area": float(np.mean([o.area for o in members])),
        }


def _object_mask(ann: dict, pixels: np.ndarray) -> np.ndarray:
    height, width = pixels.shape[:2]
    if ann.get("segmentation"):
        return segmentation_to_mask(ann["segmentation"], height, width)
    return box_only_mask(pixels, ann["bbox"])


def box_only_mask(pixels: np.ndarray, bbox: list[float]) -> np.ndarray:
    """A mask for an annotation that has only a box: Otsu inside the box, largest blob, filled.

    The polarity (bright or dark object) is taken from whether the box centre is brighter
    than the box edge.
    """
    height, width = pixels.shape[:2]
    x0, y0 = max(int(np.floor(bbox[0])), 0), max(int(np.floor(bbox[1])), 0)
    x1 = min(int(np.ceil(bbox[0] + bbox[2])), width)
    y1 = min(int(np.ceil(bbox[1] + bbox[3])), height)
    mask = np.zeros((height, width), bool)
    if x1 <= x0 or y1 <= y0:
        return mask
    crop = pixels[y0:y1, x0:x1].mean(axis=2)
    lo, hi = float(crop.min()), float(crop.max())
    scaled = np.zeros(crop.shape, np.uint8) if hi <= lo else ((crop - lo) / (hi - lo) * 255)
    scaled = scaled.astype(np.uint8)
    _, fg = cv2.threshold(scaled, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    edge = np.concatenate([crop[0], crop[-1], crop[:, 0], crop[:, -1]]).mean()
    h, w = crop.shape
    centre = crop[h // 4 : h - h // 4 or None, w // 4 : w - w // 4 or None].mean()
    if centre < edge:
        fg = 1 - fg
    count, labels, stats, _ = cv2.connectedComponentsWithStats(fg.astype(np.uint8), connectivity=8)
    if count > 1:
        biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        blob = (labels == biggest).astype(np.uint8)
        # Fill holes: whatever the flood from the border cannot reach is inside the blob.
        flood = np.pad(1 - blob, 1, constant_values=1)
        cv2.floodFill(flood, None, (0, 0), 2)
        blob = (flood[1:-1, 1:-1] != 2).astype(bool)
        mask[y0:y1, x0:x1] = blob
    return mask


def _cut(
    ann: dict, mask: np.ndarray, pixels: np.ndarray, class_id: int, settings: LibrarySettings
) -> CutObject | None:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    height, width = mask.shape
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    touches = y0 == 0 or x0 == 0 or y1 == height or x1 == width
    if touches and not settings.include_truncated:
        return None
    # Pad with reflected pixels where the margin runs off the image.
    ys = np.clip(np.arange(y0 - MARGIN, y1 + MARGIN), 0, height - 1)
    xs = np.clip(np.arange(x0 - MARGIN, x1 + MARGIN), 0, width - 1)
    crop = pixels[np.ix_(ys, xs)]
    alpha = np.zeros((len(ys), len(xs)), np.float32)
    alpha[MARGIN:-MARGIN, MARGIN:-MARGIN] = mask[y0:y1, x0:x1]
    ring = cv2.dilate(alpha, np.ones((5, 5), np.uint8)) > alpha
    around = crop[ring] if ring.any() else crop.reshape(-1, crop.shape[2])
    return CutObject(
        object_id=int(ann["id"]),
        class_id=class_id,
        image_id=int(ann["image_id"]),
        pixels=np.ascontiguousarray(crop, np.float32),
        alpha=alpha,
        background_level=float(np.median(around)),
        area=int(mask.sum()),
    )


def _noise_sigma(pixels: np.ndarray, annotated: np.ndarray) -> float:
    """Robust (MAD) standard deviation of the fine-scale residual outside annotated objects."""
    gray = pixels.mean(axis=2)
    residual = gray - cv2.GaussianBlur(gray, (0, 0), 2.0)
    values = residual[~annotated]
    if values.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(values - np.median(values))))
