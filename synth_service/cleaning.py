"""Cleaning a real image into object-free background: detect everything that stands out (not
only the annotated objects) against a local background and noise mesh, dilate, and refill from
the smooth background level plus noise resampled from the image's own background.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import cv2
import numpy as np

from synthloc.errors import InvalidInput

CLIP_SIGMAS = 3.0
CLIP_ROUNDS = 3
CLIPPED_STD_CORRECTION = 1.0135  # a 3-sigma clipped Gaussian has std 0.9866 sigma


@dataclass(frozen=True)
class BackgroundSettings:
    """How backgrounds are cleaned and tiled; defaults suit fluorescence microscopy."""

    tile_size: int = 256  # a 512 canvas mirrors one tile once per axis
    block_size: int = 32  # background mesh cell: about one nucleus, many micronuclei
    min_valid_fraction: float = 0.25  # of a cell's pixels, for its statistics to count
    detection_scales: tuple[float, ...] = (1.0, 2.0, 4.0)  # Gaussian sigmas, px; 0 = raw
    seed_sigmas: float = 5.0  # an object must peak this far above the noise at some scale
    grow_sigmas: float = 2.0  # and extends as far as it stays this far above (finest smoothed)
    dilation_px: int = 4  # margin around every removed object: blur halos, loose outlines
    iterations: int = 3  # one global pass, then local passes refining each other
    max_removed_fraction: float = 0.75  # tiles mostly refill are dropped (dense images: ~0.6)

    def __post_init__(self) -> None:
        if self.tile_size < 8 or self.block_size < 4 or not self.detection_scales:
            raise InvalidInput("need tile_size >= 8, block_size >= 4 and detection_scales")
        if not 0.0 <= self.max_removed_fraction <= 1.0 or self.grow_sigmas > self.seed_sigmas:
            raise InvalidInput("need max_removed_fraction in [0, 1], grow_sigmas <= seed_sigmas")


def _nan_median(values: np.ndarray) -> np.ndarray:
    """Median over the last axis ignoring NaN, keeping that axis (sort-based: nanmedian loops)."""
    ordered = np.sort(values, axis=-1)  # NaN sorts last
    count = np.count_nonzero(np.isfinite(values), axis=-1)[..., None]
    low = np.take_along_axis(ordered, np.maximum(count - 1, 0) // 2, axis=-1)
    high = np.take_along_axis(ordered, np.minimum(count // 2, values.shape[-1] - 1), axis=-1)
    return np.where(count > 0, (low + high) / 2, np.nan)


def _clipped_stats(values: np.ndarray, min_spread: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Sigma-clipped mean and std over the last axis, NaN = missing.

    MAD reads 0 on 8-bit backgrounds that are mostly one value; clipping keeps their noise,
    and min_spread stops a few-valued cell from clipping away a whole quantization level.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells are expected
        for _ in range(CLIP_ROUNDS):
            center = _nan_median(values)
            spread = np.maximum(np.nanstd(values, axis=-1, keepdims=True), min_spread)
            values = np.where(np.abs(values - center) > CLIP_SIGMAS * spread, np.nan, values)
        mean = np.nanmean(values, axis=-1)
        std = np.nanstd(values, axis=-1) * CLIPPED_STD_CORRECTION
    return mean, std


def _fill_mesh(mesh: np.ndarray) -> np.ndarray:
    """Fill NaN cells from their known neighbours, growing inwards, then median-smooth."""
    known = np.isfinite(mesh)
    if not known.any():
        return np.zeros_like(mesh)
    filled = np.where(known, mesh, 0).astype(np.float32)
    while not known.all():
        weight = cv2.blur(known.astype(np.float32), (3, 3))
        total = cv2.blur(filled * known, (3, 3))
        grow = ~known & (weight > 0)
        filled[grow] = total[grow] / weight[grow]
        known |= grow
    # One outlier cell (a big object only partly masked) must not bend the surface.
    return cv2.medianBlur(filled, 3) if min(filled.shape) >= 3 else filled


def _smooth_surfaces(
    channel: np.ndarray, valid: np.ndarray, block: int, min_valid_fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """Background level and noise sigma of one channel, as smooth full-size surfaces."""
    h, w = channel.shape
    ny, nx = -(-h // block), -(-w // block)
    grid = np.full((ny * block, nx * block), np.nan, np.float32)
    grid[:h, :w] = np.where(valid, channel, np.nan)
    cells = grid.reshape(ny, block, nx, block).transpose(0, 2, 1, 3).reshape(ny, nx, -1)
    _, overall = _clipped_stats(channel[valid].ravel()[::3])
    mean, std = _clipped_stats(cells, min_spread=float(overall))
    # Cells on the right and bottom edges hang over the image; count only what is inside.
    rows, cols = (np.minimum(n - np.arange(k) * block, block) for n, k in ((h, ny), (w, nx)))
    inside = np.outer(rows, cols)
    too_few = np.count_nonzero(np.isfinite(cells), axis=2) < min_valid_fraction * inside
    mean[too_few] = np.nan
    std[too_few] = np.nan
    level, sigma = _fill_mesh(mean), _fill_mesh(std)
    # Heavily quantized cells (8-bit, mostly one value) can read sigma 0 though the image is
    # noisy; the image-wide noise bounds it from below. A background that is one value with
    # sparse +1 steps is flat, not a field of 6-sigma events: sigma is at least half a step.
    steps = np.diff(np.unique(channel[valid][:: max(1, channel.size // 200_000)]))
    floor = 0.5 * max(float(overall), float(steps.min()) if steps.size else 0.0)
    sigma = np.maximum(sigma, floor + 1e-6)
    # Linear interpolation cannot overshoot (cubic can, to a sigma of 0); the blur irons out
    # its creases at cell borders.
    surfaces = [cv2.resize(m, (nx * block, ny * block)) for m in (level, sigma)]
    if nx * ny > 1:  # one cell is flat already
        surfaces = [cv2.GaussianBlur(m, (0, 0), block / 4) for m in surfaces]
    return surfaces[0][:h, :w], surfaces[1][:h, :w]


def _disc(mask: np.ndarray, radius: int) -> np.ndarray:
    """Dilate a bool mask by a disc of the given radius."""
    if radius <= 0:
        return mask.copy()
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel) > 0


def _skew_corrected(threshold: float, residuals: np.ndarray, scale: float) -> float:
    """A Gaussian threshold moved (Cornish-Fisher) to keep its false-alarm rate on skewed noise.

    Low-count (Poisson, 8-bit) noise has a long bright tail: 5-sigma events are far more common
    than for Gaussian noise. Winsorizing at 10 sigma keeps objects from counting much; a
    Gaussian blur of sigma s shrinks the skewness of white noise by 2 / (3 sqrt(pi) s).
    """
    values = np.clip(residuals.ravel()[::3], -10.0, 10.0).astype(np.float64)
    values -= values.mean()
    skew = float(np.mean(values**3) / max(np.mean(values**2), 1e-12) ** 1.5)
    skew *= 2.0 / (3.0 * np.sqrt(np.pi) * scale) if scale > 0 else 1.0
    return threshold + max(skew, 0.0) * (threshold**2 - 1.0) / 6.0


def _detect(
    standardized: np.ndarray, valid: np.ndarray, settings: BackgroundSettings
) -> np.ndarray:
    """Bright structures at any scale: seeds above seed_sigmas grown while above grow_sigmas."""
    h, w, c = standardized.shape
    seeds = np.zeros((h, w), bool)
    region = np.zeros((h, w), bool)
    finer = None
    for scale in sorted(settings.detection_scales):
        z = standardized.max(axis=2)
        if scale > 0:
            z = cv2.GaussianBlur(standardized, (0, 0), scale).reshape(h, w, c)
            # Noise after smoothing is measured (correlated noise, faint texture raise it;
            # white noise is its floor), and so is its offset: skewed Poisson/8-bit noise
            # biases the clipped level a little low, which smoothing turns into whole sigmas.
            white = 1.0 / (2.0 * np.sqrt(np.pi) * scale)
            offset, noise = _clipped_stats(z[valid].ravel()[::7], min_spread=white)
            z = (z.max(axis=2) - float(offset)) / max(float(noise), white)
        seed = z > _skew_corrected(settings.seed_sigmas, standardized[valid], scale)
        seeds |= seed
        if finer is None:  # the finest scale draws outlines: it bridges noise, no more
            region |= z > settings.grow_sigmas
        else:
            # A coarse blur of a bright object stays above threshold far outside it; only
            # what also stands out one scale finer belongs to a (dim, extended) object.
            region |= seed & (finer > settings.grow_sigmas)
        finer = z
    _, labels = cv2.connectedComponents(region.astype(np.uint8), connectivity=8)
    hit = np.zeros(labels.max() + 1, bool)
    hit[labels[seeds]] = True
    hit[0] = False
    return hit[labels]


def clean_background(
    pixels: np.ndarray,
    annotated: np.ndarray,
    settings: BackgroundSettings,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Remove every object from a float32 HxWxC image; returns (cleaned, removed HxW mask)."""
    if pixels.ndim != 3 or annotated.shape != pixels.shape[:2]:
        raise InvalidInput(
            f"need HxWxC pixels and an HxW mask, got {pixels.shape} and {annotated.shape}"
        )
    pixels = pixels.astype(np.float32, copy=False)
    h, w, c = pixels.shape
    annotated = annotated.astype(bool)
    foreground, level, sigma = annotated, np.empty_like(pixels), np.empty_like(pixels)
    for iteration in range(settings.iterations):
        # Halos just outside an object still lift the statistics, so they stay out too.
        valid = ~_disc(foreground, settings.dilation_px)
        if not valid.any():
            valid = ~annotated if annotated.any() and not annotated.all() else np.ones_like(valid)
        # Where nuclei crowd, local cells are mostly object; a first global pass finds the
        # bright objects so that the local passes see only background.
        block = settings.block_size if iteration else max(h, w)
        for ch in range(c):
            level[..., ch], sigma[..., ch] = _smooth_surfaces(
                pixels[..., ch], valid, block, settings.min_valid_fraction
            )
        standardized = (pixels - level) / sigma
        foreground = annotated | _detect(standardized, valid, settings)
    removed = _disc(foreground, settings.dilation_px)
    residuals, count = standardized[~removed], int(np.count_nonzero(removed))
    # Resampling the image's own standardized residuals keeps its noise distribution
    # (quantization, Poisson skew); a whole pixel is drawn so channels stay correlated.
    if len(residuals):
        noise = residuals[rng.integers(0, len(residuals), size=count)]
    else:
        noise = rng.standard_normal((count, c)).astype(np.float32)
    cleaned = pixels.copy()
    cleaned[removed] = level[removed] + sigma[removed] * noise
    return cleaned, removed


def clean_images(
    images: list[np.ndarray], annotated: list[np.ndarray], settings: BackgroundSettings, seed: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """clean_background over many images, each with its own seed-derived stream."""
    if len(images) != len(annotated):
        raise InvalidInput(f"{len(images)} images but {len(annotated)} annotation masks")
    results = [
        clean_background(image, mask, settings, np.random.default_rng((seed, index)))
        for index, (image, mask) in enumerate(zip(images, annotated, strict=True))
    ]
    return [r[0] for r in results], [r[1] for r in results]
