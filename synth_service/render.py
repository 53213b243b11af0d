"""Rendering a sample's placed objects: warp, photometric jitter, blur and noise.

The steps that do not depend on the canvas (warp, gamma, contrast, matched noise) run once
over one flat buffer holding every object of the sample, so their cost is a few passes over
the pixels instead of a dozen small calls per object. What depends on the canvas painted so
far (the local background level) is added per object, just before it is pasted.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from synth_service.library import ObjectLibrary
from synth_service.placement import MATCHED_NOISE_FACTOR, Placement
from synth_service.recipe import NoiseModel, Recipe


def _lerp(interval: tuple[float, float], u: np.ndarray | float) -> np.ndarray | float:
    return interval[0] + (interval[1] - interval[0]) * u


class RenderedObjects:
    """Every object of a sample warped and jittered; finish(k) adds what needs the canvas."""

    def __init__(
        self,
        recipe: Recipe,
        library: ObjectLibrary,
        placements: list[Placement],
        looks: np.ndarray,
        noise: np.ndarray,
        channels: int,
    ) -> None:
        """looks: (n, RENDER_DRAWS) uniforms; noise: standard normal, one per patch value."""
        self.recipe, self.library, self.placements, self.noise = recipe, library, placements, noise
        sizes = [p.hard.size * channels for p in placements]
        self.offsets = np.cumsum([0, *sizes]).tolist()
        self.pixels = np.empty(self.offsets[-1], np.float32)
        self.patches = [self._warp(p, k, channels) for k, p in enumerate(placements)]
        u_gamma, u_contrast, self.u_bright, u_blur, u_sigma, self.u_noise = looks.T
        blurred = u_blur < recipe.blur_probability
        self.blur_sigma = np.where(blurred, _lerp(recipe.blur_sigma, u_sigma), 0.0).tolist()
        self.levels = [library.objects[p.object_index].background_level for p in placements]
        self.late_noise: dict[int, np.ndarray] = {}
        self._jitter(sizes, u_gamma, u_contrast)

    def _warp(self, p: Placement, k: int, channels: int) -> np.ndarray:
        """Warp object k into its slice of the buffer; returns the (h, w, C) view."""
        pixels = self.library.objects[p.object_index].pixels
        h, w = p.hard.shape
        out = self.pixels[self.offsets[k] : self.offsets[k + 1]]
        # The reflection is made first (what BORDER_REFLECT reads anyway), so that the warp
        # reads only inside its source: OpenCV's in-bounds path is much faster. Farthest a
        # read can fall outside the object: half its longer side (a 45 degree turn), one
        # destination pixel of rounding (1.5 / scale source pixels), one interpolation tap.
        pad = math.ceil((max(pixels.shape[:2]) - 1) / 2 + 1.5 / p.scale + 1)
        padded = cv2.copyMakeBorder(pixels, pad, pad, pad, pad, cv2.BORDER_REFLECT)
        (a, b, c), (d, e, f) = p.matrix.tolist()  # plain floats: cheaper than array ops
        matrix = np.array([[a, b, c - pad * (a + b)], [d, e, f - pad * (d + e)]])
        dst = out.reshape(h, w) if channels == 1 else out.reshape(h, w, channels)
        warped = cv2.warpAffine(
            padded,
            matrix,
            (w, h),
            dst=dst,
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT,
        )
        if warped is not dst:  # OpenCV writes into a matching dst; copy if it ever does not
            dst[...] = warped.reshape(dst.shape)
        return out.reshape(h, w, channels)

    def _jitter(self, sizes: list[int], u_gamma: np.ndarray, u_contrast: np.ndarray) -> None:
        """Signal above the object's own background, gamma-bent where positive, scaled."""
        recipe, pixels = self.recipe, self.pixels
        pixels -= np.repeat(np.asarray(self.levels, np.float32), sizes)
        gamma = _lerp(recipe.gamma, u_gamma).astype(np.float32)
        if (gamma != 1.0).any():
            # max(s, 0) ** gamma + min(s, 0): the curve bends the part above the background.
            # x ** gamma is exp(gamma * log x) with OpenCV's SIMD log and exp over the whole
            # sample (numpy's masked ufuncs are ~20x slower); the floor keeps log finite
            # and turns into ~1e-30, below float32 resolution next to any other value.
            bent = cv2.log(np.maximum(pixels, np.float32(1e-30))).reshape(pixels.shape)
            bent *= np.repeat(gamma, sizes)
            bent = cv2.exp(bent, dst=bent).reshape(pixels.shape)
            np.minimum(pixels, 0, out=pixels)
            pixels += bent
        pixels *= np.repeat(_lerp(recipe.contrast, u_contrast).astype(np.float32), sizes)
        if recipe.noise is NoiseModel.MATCHED:
            # Blurred objects get their noise after the blur, in finish().
            self.noise *= np.float32(MATCHED_NOISE_FACTOR * self.library.noise_sigma)
            for k in [k for k, sigma in enumerate(self.blur_sigma) if sigma > 0]:
                part = self.noise[self.offsets[k] : self.offsets[k + 1]]
                self.late_noise[k] = part.copy()
                part[:] = 0
            pixels += self.noise

    def finish(self, k: int, canvas: np.ndarray) -> np.ndarray:
        """Object k matched to the canvas below it, blurred and noised: the patch to paste.

        The patch is a view of the shared buffer; paste() may overwrite it.
        """
        p, recipe = self.placements[k], self.recipe
        patch = self.patches[k]
        local = _local_level(p, canvas, self.levels[k])
        patch += np.float32(local + _lerp(recipe.brightness, float(self.u_bright[k])))
        sigma = self.blur_sigma[k]
        if sigma > 0:
            patch = cv2.GaussianBlur(patch, (0, 0), sigma).reshape(patch.shape)
        noise = self.noise[self.offsets[k] : self.offsets[k + 1]].reshape(patch.shape)
        if k in self.late_noise:
            patch += self.late_noise[k].reshape(patch.shape)
        elif recipe.noise is NoiseModel.GAUSSIAN:
            noise *= np.float32(_lerp(recipe.noise_sigma, float(self.u_noise[k])))
            patch += noise
        elif recipe.noise is NoiseModel.POISSON:
            scale = np.float32(_lerp(recipe.noise_sigma, float(self.u_noise[k])))
            noise *= np.sqrt(np.maximum(patch, 0)) * scale
            patch += noise
        return patch


def standard_normal(rng: np.random.Generator, count: int) -> np.ndarray:
    """count float32 standard normal values: Box-Muller on the generator's float32 uniforms.

    Over twice as fast as Generator.standard_normal (ziggurat), which was the largest single
    cost of a sample: OpenCV's SIMD log, sqrt and polarToCart turn each pair of uniforms
    into two independent normals. 24-bit uniforms cut the tails at 5.8 sigma.
    """
    if count <= 0:
        return np.zeros(0, np.float32)
    half = (count + 1) // 2
    u = rng.random(2 * half, dtype=np.float32)
    radius, angle = u[:half], u[half:]
    np.subtract(np.float32(1), radius, out=radius)  # (0, 1]: log stays finite
    radius = cv2.log(radius, dst=radius)
    radius *= np.float32(-2)
    radius = cv2.sqrt(radius, dst=radius)
    angle *= np.float32(2 * math.pi)
    x, y = cv2.polarToCart(radius, angle)
    return np.concatenate([x.ravel(), y.ravel()])[:count]


def _local_level(p: Placement, canvas: np.ndarray, fallback: float) -> float:
    """Mean canvas value in the window around the object (not under it)."""
    y0, x0, y1, x1 = p.window
    window = canvas[y0:y1, x0:x1]
    under = cv2.countNonZero(p.inside.view(np.uint8))
    around = p.inside.size - under
    if around == 0:
        return fallback
    # All of the window minus the part under the object: two SIMD means, no inverted mask.
    channels = canvas.shape[2]
    total = sum(cv2.mean(window)[:channels]) * p.inside.size
    if under:
        total -= sum(cv2.mean(window, mask=p.inside.view(np.uint8))[:channels]) * under
    return total / around / channels
