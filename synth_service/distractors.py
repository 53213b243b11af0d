"""Unannotated debris: thin, dim, elongated specks painted under the objects.

They teach a detector that not everything brighter than the background is an object. They
are shaped unlike the round objects synthloc is built for, so they never pose as an
unannotated nucleus or micronucleus (which would undo the exhaustive annotation).
"""

from __future__ import annotations

import cv2
import numpy as np

from synth_service.draws import Draws

LENGTH_PX = (6.0, 24.0)
ASPECT = (4.0, 10.0)  # length / width
CONTRAST = (0.02, 0.12)  # above the local background, in the working space


def paint_distractors(canvas: np.ndarray, draws: Draws, mean_count: float) -> int:
    """Paint a Poisson(mean_count) number of debris specks in place; return how many."""
    count = draws.poisson(mean_count)
    if count == 0:
        return 0
    height, width = canvas.shape[:2]
    u = draws.uniforms(count * 6).reshape(count, 6)
    for u_len, u_aspect, u_angle, u_y, u_x, u_contrast in u.tolist():
        length = LENGTH_PX[0] + (LENGTH_PX[1] - LENGTH_PX[0]) * u_len
        thickness = max(length / (ASPECT[0] + (ASPECT[1] - ASPECT[0]) * u_aspect), 1.0)
        size = int(length) + 6
        patch = np.zeros((size, size), np.float32)
        axes = (int(length / 2), max(int(thickness / 2), 1))
        cv2.ellipse(patch, (size // 2, size // 2), axes, 180 * u_angle, 0, 360, 1.0, -1)
        patch = cv2.GaussianBlur(patch, (0, 0), 0.8)
        top, left = int(u_y * (height - size)), int(u_x * (width - size))
        if top < 0 or left < 0:
            continue
        region = canvas[top : top + size, left : left + size]
        contrast = CONTRAST[0] + (CONTRAST[1] - CONTRAST[0]) * u_contrast
        region += (patch * np.float32(contrast))[..., None]
    return count
