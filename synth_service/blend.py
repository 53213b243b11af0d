"""Pasting one transformed object into a region of the canvas (float32 working space).

All functions work in place on `region`, a view of the canvas, and touch only that region:
the cost of a paste is proportional to the object, not to the image.
"""

from __future__ import annotations

import cv2
import numpy as np

from synth_service.recipe import BlendMode

FEATHER_SIGMA = 1.0
_CLONE_PAD = 2  # seamlessClone needs the mask strictly inside its destination


def paste_hard(region: np.ndarray, patch: np.ndarray, hard: np.ndarray) -> None:
    """Replace the pixels inside the mask."""
    np.copyto(region, patch, where=hard[..., None])


def poisson_patch(canvas: np.ndarray, top: int, left: int, patch: np.ndarray) -> np.ndarray | None:
    """The patch Poisson-cloned (OpenCV seamlessClone) onto canvas[top:, left:], not pasted.

    The patch's gradients are kept and its border takes the canvas values, so the object comes
    out matched to the local background. seamlessClone works on 8-bit colour images, so the
    neighbourhood is mapped to 8 bits over its own intensity range and back. None when the
    patch is too close to the canvas border to clone.
    """
    h, w = patch.shape[:2]
    pad = _CLONE_PAD
    y0, x0, y1, x1 = top - pad, left - pad, top + h + pad, left + w + pad
    if y0 < 0 or x0 < 0 or y1 > canvas.shape[0] or x1 > canvas.shape[1]:
        return None
    dst = canvas[y0:y1, x0:x1]
    src = np.pad(patch, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    lo = float(min(dst.min(), src.min()))
    span = float(max(dst.max(), src.max())) - lo or 1.0

    def to8(a: np.ndarray) -> np.ndarray:
        gray = np.clip((a.mean(axis=2) - lo) / span * 255 + 0.5, 0, 255).astype(np.uint8)
        return cv2.merge([gray, gray, gray])

    # A full-rectangle mask with the centre at the rectangle's integer centre makes OpenCV
    # place the source exactly where it is in `src` (checked pixel by pixel in the tests).
    mask = np.full(src.shape[:2], 255, np.uint8)
    centre = (src.shape[1] // 2, src.shape[0] // 2)
    cloned = cv2.seamlessClone(to8(src), to8(dst), mask, centre, cv2.NORMAL_CLONE)
    values = cloned[pad:-pad, pad:-pad, :1].astype(np.float32) * np.float32(span / 255) + lo
    return np.repeat(values, patch.shape[2], axis=2) if patch.shape[2] > 1 else values


def paste(
    canvas: np.ndarray,
    top: int,
    left: int,
    patch: np.ndarray,
    alpha: np.ndarray,
    hard: np.ndarray,
    mode: BlendMode,
) -> BlendMode:
    """Paste a (h, w, C) patch whose top-left corner lands at (top, left), clipped to the canvas.

    The patch is used as scratch space and comes back overwritten.

    Poisson cloning replaces the patch by its cloned version, which is then feathered in, so
    that only the object and a thin seam change (never a neighbour under the patch's margin).
    Returns the mode actually used (Poisson falls back to plain feathering at the border).
    """
    if mode is BlendMode.POISSON:
        cloned = poisson_patch(canvas, top, left, patch)
        if cloned is not None:
            patch = cloned
        else:
            mode = BlendMode.FEATHER
    h, w = hard.shape
    cy0, cx0 = max(top, 0), max(left, 0)
    cy1, cx1 = min(top + h, canvas.shape[0]), min(left + w, canvas.shape[1])
    region = canvas[cy0:cy1, cx0:cx1]
    crop = (slice(cy0 - top, cy1 - top), slice(cx0 - left, cx1 - left))
    if mode is BlendMode.HARD:
        paste_hard(region, patch[crop], hard[crop])
        return mode
    # Feathering blurs the whole alpha first, so clip after the blur, not before.
    soft = cv2.GaussianBlur(alpha, (0, 0), FEATHER_SIGMA)[crop][..., None]
    # region + soft * (patch - region), computed in the patch (ours to overwrite): no temporaries.
    mixed = patch[crop]
    mixed -= region
    mixed *= soft
    region += mixed
    return mode
