"""The compiled compose kernel (synth_service/kernel/*.c) and what it is fed.

compose() hands one call per sample to C: every placement attempt, the box-IoU test, occlusion
on hard masks, the warp and photometric jitter of each object, its local background level,
blur, noise and the hard or feathered paste, in painting order. In Python that was some forty
small numpy/OpenCV calls per object; the call overhead, not the arithmetic, set the rate.

What stays in Python: the recipe and the library, the sample's random draws taken in fixed
blocks (draws.py, a counter-based stream computed here in C: consumption never depends on what
was placed) and Poisson cloning (OpenCV's seamlessClone, called back per object).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

from synth_service import _kernel
from synth_service.blend import FEATHER_SIGMA, poisson_patch
from synth_service.library import ObjectLibrary
from synth_service.placement import ClassTable, class_table
from synth_service.recipe import BlendMode, Recipe

# Bilinear resampling at random sub-pixel offsets keeps about 44 % of white-noise variance;
# adding back sqrt(1 - 0.44) ~ 0.75 of the source noise restores the grain of a real object.
MATCHED_NOISE_FACTOR = 0.75
PLACEMENT_TRIES = 12  # attempts per object (TRIES in kernel.h)
PLACEMENT_DRAWS = 9  # uniforms one attempt consumes (PLACE_DRAWS)
RENDER_DRAWS = 6  # uniforms one rendering consumes (LOOK_DRAWS)
MAX_CHANNELS = 4  # MAX_CHANNELS
LAYER_SLACK = 4  # LAYER_SLACK: 4-wide reads of the last pixel stay inside
FEATHER_FLOOR = 1 / 1024  # feathered alpha below this is 0: a change no 8-bit image shows


class PastedObject(NamedTuple):
    """A visible object of a sample with its label and provenance (the kernel's record)."""

    box: tuple[int, int, int, int]  # x, y, width, height: tight to the visible pixels
    class_id: int
    area: int  # visible pixels
    source_object_id: int
    scale: float
    angle_deg: float
    flipped_horizontally: bool
    flipped_vertically: bool
    blend: int  # BlendMode actually used
    visible_fraction: float


@dataclass(frozen=True)
class PreparedRecipe:
    """What the kernel needs of a recipe, worked out once per recipe and library."""

    params: np.ndarray  # the P_ vector of kernel.h
    classes: ClassTable
    poisson: bool  # some objects may be Poisson-cloned (a callback into OpenCV)


_RECIPES_KEPT = 64  # prepared recipes kept per library; a stream uses one


def prepare(recipe: Recipe, library: ObjectLibrary) -> PreparedRecipe:
    """The recipe prepared for the kernel, kept on the library (a few dozen at most)."""
    kept = library.__dict__.setdefault("_kernel_recipes", {})
    prepared = kept.get(recipe)
    if prepared is None:
        if len(kept) >= _RECIPES_KEPT:
            kept.clear()
        prepared = PreparedRecipe(
            recipe_params(recipe, library),
            class_table(recipe, library),
            any(mode is BlendMode.POISSON and weight > 0 for mode, weight in recipe.blending),
        )
        kept[recipe] = prepared
    return prepared


def library_pack(library: ObjectLibrary) -> tuple[np.ndarray, ...]:
    """The library flattened for the kernel; built once per process and kept on the library.

    Each object becomes (h + 2, w + 2, C + 2) layers: its pixels, its alpha and its alpha
    feathered (Gaussian, FEATHER_SIGMA, in the object's own pixels: a blur per
    paste cost more than the paste), padded by one pixel (pixels mirrored, alphas 0) so that
    the warp of a placement reads inside them wherever an alpha can be above 0.
    """
    cached = library.__dict__.get("_kernel_pack")
    if cached is not None:
        return cached
    layers, geometry, offset = [], [], 0
    channels = library.channels
    if not 1 <= channels <= MAX_CHANNELS:
        raise ValueError(f"objects have {channels} channels; the kernel takes 1 to {MAX_CHANNELS}")
    for o in library.objects:
        h, w = o.alpha.shape
        pixels = o.pixels.reshape(h, w, -1)
        soft = cv2.GaussianBlur(o.alpha, (0, 0), FEATHER_SIGMA)
        soft[soft < FEATHER_FLOOR] = 0.0  # the kernel pastes only where this is above 0
        masks = np.dstack([o.alpha, soft])
        padded = np.dstack(
            [
                np.pad(pixels, ((1, 1), (1, 1), (0, 0)), mode="symmetric"),
                np.pad(masks, ((1, 1), (1, 1), (0, 0))),
            ]
        )
        layers.append(padded.astype(np.float32).ravel())
        geometry.append((h, w, offset, 0))
        offset += padded.size
    classes = len(library.class_names)
    anchor = np.full(classes, -1, np.int64)
    gaps: list[float] = []
    gap_start = [0]
    for c in range(classes):
        if c in library.context.anchor:
            anchor[c] = library.context.anchor[c]
            gaps.extend(library.context.gaps.get(c, ()))
        gap_start.append(len(gaps))
    pack = (
        np.concatenate([*layers, np.zeros(LAYER_SLACK, np.float32)]),
        np.array(geometry or [(0, 0, 0, 0)], np.int64),
        np.array([o.background_level for o in library.objects] or [0.0], np.float64),
        np.concatenate([*library.by_class, np.zeros(0, np.int64)]).astype(np.int64),
        np.cumsum([0, *(len(m) for m in library.by_class)]).astype(np.int64),
        anchor,
        np.array(gaps or [0.0], np.float64),
        np.array(gap_start, np.int64),
        np.array([o.object_id for o in library.objects] or [0], np.int64),
    )
    library.__dict__["_kernel_pack"] = pack
    return pack


def recipe_params(recipe: Recipe, library: ObjectLibrary) -> np.ndarray:
    """The recipe as the kernel's float64 parameter vector (the P_ enum of kernel.h)."""
    values = [
        *recipe.scale,
        *recipe.rotation_deg,
        float(recipe.flips),
        *recipe.brightness,
        *recipe.contrast,
        *recipe.gamma,
        float(recipe.noise.value),
        *recipe.noise_sigma,
        recipe.blur_probability,
        *recipe.blur_sigma,
        recipe.max_iou,
        recipe.min_visible_fraction,
        recipe.border_truncation,
        recipe.context_probability,
        MATCHED_NOISE_FACTOR * library.noise_sigma,
        float(len(recipe.blending)),
    ]
    for mode, weight in recipe.blending:
        values += [float(mode.value), float(weight)]
    return np.array(values, np.float64)


def compose_objects(
    library: ObjectLibrary,
    prepared: PreparedRecipe,
    classes: list[int],
    tries: np.ndarray,
    looks: np.ndarray,
    canvas: np.ndarray,
    instance: np.ndarray | None,
    noise_key: int,
) -> list[PastedObject]:
    """Place, settle, render and paste the objects of `classes` onto `canvas` (in place).

    tries: n * PLACEMENT_TRIES * PLACEMENT_DRAWS uniforms, looks: n * RENDER_DRAWS; canvas
    float32 (H, W, C); instance uint16 (H, W), marked k + 1 under the k-th painted object;
    noise_key (64 bits) numbers the sample's noise (normal_noise).
    """
    height, width, channels = canvas.shape

    def clone(top: int, left: int, view: memoryview, h: int, w: int, c: int) -> object:
        patch = np.frombuffer(view, np.float32).reshape(h, w, c)
        cloned = poisson_patch(canvas, top, left, patch)
        return None if cloned is None else np.ascontiguousarray(cloned, np.float32)

    records = _kernel.compose_objects(
        library_pack(library),
        prepared.params,
        np.asarray(classes, np.int64),
        np.ascontiguousarray(tries, np.float64),
        np.ascontiguousarray(looks, np.float64),
        canvas,
        height,
        width,
        channels,
        instance,
        noise_key,
        clone if prepared.poisson else None,
    )
    return list(map(PastedObject._make, records))


def normal_noise(key: int, start: int, count: int) -> np.ndarray:
    """The kernel's standard normal noise values start, start + 1, ... of a 64-bit key.

    Each is a quantile of the normal distribution at (k + 1/2) / 65536, k picked by an integer
    hash of (key, index): exact normal marginals to 4.3 sigma, any value without the ones
    before it, and the same on every machine.
    """
    return np.frombuffer(_kernel.noise(key, start, count), np.float32)
