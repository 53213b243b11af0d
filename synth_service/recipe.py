"""Recipe: everything that decides how a synthetic sample is composed, as a frozen dataclass.

The proto message synthloc.v1.Recipe mirrors it field by field (recipe_proto.py converts); an
unset proto field takes the default below. Defaults are tuned for fluorescence microscopy:
nuclei keep their size within ±25 %, any rotation, mostly feathered pastes, micronuclei
beside nuclei.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from synthloc.errors import InvalidInput

Interval = tuple[float, float]


class BlendMode(enum.IntEnum):
    """How an object's pixels meet the background (values match the proto enum)."""

    HARD = 1
    FEATHER = 2
    POISSON = 3


class NoiseModel(enum.IntEnum):
    """Noise added to pasted objects, whose own grain resampling smooths away."""

    NONE = 1
    GAUSSIAN = 2
    POISSON = 3
    MATCHED = 4


class LabelMode(enum.IntEnum):
    """What a sample is labelled with."""

    STRONG = 1
    WEAK_SINGLE_CLASS = 2
    WEAK_PRESENCE = 3


@dataclass(frozen=True)
class Recipe:
    """How to compose one synthetic image; see protos/synthloc/v1/synthesis.proto."""

    height: int = 512
    width: int = 512
    channels: int = 1
    dtype: str = "uint8"
    count_range: tuple[int, int] = (12, 28)
    poisson_mean: float | None = None  # when set, replaces count_range
    class_weights: Mapping[str, float] | None = field(default=None, hash=False)  # None: library's
    scale: Interval = (0.8, 1.25)
    rotation_deg: Interval = (0.0, 360.0)
    flips: bool = True
    brightness: Interval = (-0.03, 0.03)
    contrast: Interval = (0.85, 1.15)
    gamma: Interval = (0.9, 1.1)
    noise: NoiseModel = NoiseModel.MATCHED
    noise_sigma: Interval = (0.0, 0.02)
    blur_probability: float = 0.2
    blur_sigma: Interval = (0.4, 1.2)
    # Poisson cloning costs about 1 ms an object; ask for it in the recipe when wanted.
    blending: tuple[tuple[BlendMode, float], ...] = (
        (BlendMode.FEATHER, 0.75),
        (BlendMode.HARD, 0.25),
    )
    max_iou: float = 0.2
    min_visible_fraction: float = 0.6
    border_truncation: float = 0.15
    distractor_mean: float = 0.0
    label_mode: LabelMode = LabelMode.STRONG
    # Beside an object of the class it sits next to in the real images (context.py): 90 % of
    # mnfinder's micronuclei lie within 5 px of a nucleus. No effect on classes without one.
    context_probability: float = 0.9
    _frozen_weights: tuple[tuple[str, float], ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if self.class_weights is not None:
            # Mappings are not hashable; keep a canonical tuple for hashing and equality.
            items = tuple(sorted((str(k), float(v)) for k, v in self.class_weights.items()))
            object.__setattr__(self, "_frozen_weights", items)

    def to_dict(self) -> dict:
        """A JSON-ready dict of every field (enums by name)."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name.startswith("_"):
                continue
            value = getattr(self, f.name)
            if isinstance(value, enum.Enum):
                value = value.name
            elif f.name == "blending":
                value = [[mode.name, weight] for mode, weight in value]
            elif f.name == "class_weights" and value is not None:
                value = dict(self._frozen_weights)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    def content_hash(self) -> str:
        """A short stable hash: equal recipes give equal hashes on any machine."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def validate_recipe(recipe: Recipe, class_names: list[str], max_canvas_pixels: int) -> None:
    """Raise InvalidInput naming the first field (as in the proto) that cannot be composed."""

    def bad(field_path: str, why: str) -> InvalidInput:
        return InvalidInput(f"recipe.{field_path}: {why}")

    for name in ("height", "width"):
        if getattr(recipe, name) <= 0:
            raise bad(name, f"must be > 0, got {getattr(recipe, name)}")
    if recipe.height * recipe.width > max_canvas_pixels:
        raise bad(
            "height",
            f"canvas {recipe.height}x{recipe.width} = {recipe.height * recipe.width} pixels is "
            f"above this server's limit of {max_canvas_pixels}",
        )
    if recipe.channels not in (1, 3):
        raise bad("channels", f"must be 1 or 3, got {recipe.channels}")
    if recipe.dtype not in ("uint8", "uint16"):
        raise bad("dtype", f"must be DTYPE_UINT8 or DTYPE_UINT16, got {recipe.dtype}")
    low, high = recipe.count_range
    if not 0 <= low <= high:
        raise bad("objects_per_image.uniform", f"needs 0 <= min <= max, got [{low}, {high}]")
    if recipe.poisson_mean is not None and not recipe.poisson_mean > 0:
        raise bad("objects_per_image.poisson_mean", f"must be > 0, got {recipe.poisson_mean}")
    if recipe.class_weights is not None:
        weights = dict(recipe._frozen_weights)
        if not weights:
            raise bad("class_weights", "is set but empty; leave it unset to use the library's")
        unknown = sorted(set(weights) - set(class_names))
        if unknown:
            raise bad(
                "class_weights",
                f"unknown class {unknown[0]!r}; this library has {', '.join(class_names)}",
            )
        if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise bad("class_weights", "weights must be >= 0 with a positive sum")
    _check_interval(recipe.scale, "scale", positive=True)
    _check_interval(recipe.rotation_deg, "rotation_deg")
    _check_interval(recipe.contrast, "photometric.contrast", positive=True)
    _check_interval(recipe.gamma, "photometric.gamma", positive=True)
    _check_interval(recipe.brightness, "photometric.brightness")
    _check_interval(recipe.noise_sigma, "noise.sigma", non_negative=True)
    _check_interval(recipe.blur_sigma, "blur.sigma", non_negative=True)
    for name, value in (
        ("blur.probability", recipe.blur_probability),
        ("border_truncation", recipe.border_truncation),
        ("overlap.max_iou", recipe.max_iou),
        ("overlap.min_visible_fraction", recipe.min_visible_fraction),
        ("context_probability", recipe.context_probability),
    ):
        if not 0.0 <= value <= 1.0:
            raise bad(name, f"must be in [0, 1], got {value}")
    if recipe.distractor_mean < 0:
        raise bad("distractors.mean_count", f"must be >= 0, got {recipe.distractor_mean}")
    weights = [w for _, w in recipe.blending]
    if not weights or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise bad("blending", "needs at least one mode with a positive weight, none negative")


def _check_interval(
    interval: Interval, name: str, positive: bool = False, non_negative: bool = False
) -> None:
    low, high = interval
    if low > high:
        raise InvalidInput(f"recipe.{name}: min {low} is above max {high}")
    if positive and low <= 0:
        raise InvalidInput(f"recipe.{name}: must be > 0, got min {low}")
    if non_negative and low < 0:
        raise InvalidInput(f"recipe.{name}: must be >= 0, got min {low}")
