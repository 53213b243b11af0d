"""Poisson cloning for the compiled kernel (kernel.py), which does hard and feathered pastes.

The kernel calls poisson_patch back per Poisson object (OpenCV's seamlessClone) and feathers
the clone in, so that only the object and a thin seam change.
"""

from __future__ import annotations

import cv2
import numpy as np

FEATHER_SIGMA = 1.0
_CLONE_PAD = 2  # seamlessClone needs the mask strictly inside its destination


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
