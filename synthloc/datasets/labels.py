"""Instance label images (0 = background, one integer id per object) to binary object masks."""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

from synthloc.errors import InvalidInput


def check_label_image(labels: np.ndarray, source: str) -> np.ndarray:
    """Return labels as a 2-D integer array, or raise InvalidInput saying what is wrong."""
    if labels.ndim == 3 and labels.shape[2] == 1:
        labels = labels[..., 0]
    if labels.ndim != 2:
        raise InvalidInput(
            f"{source}: a label image must have one channel, got shape {labels.shape} "
            "(save instance masks as single-channel 8/16-bit images, 0 = background)"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise InvalidInput(
            f"{source}: a label image must hold integer ids (8/16-bit), got {labels.dtype} "
            "pixels (0 = background, 1..N = objects)"
        )
    return labels


def label_masks(labels: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (id, bool mask) for every nonzero id present, in increasing id order.

    Ids need not be contiguous; an id is one object even if its pixels are disconnected.
    """
    for label_id in np.unique(labels):
        if label_id != 0:
            yield int(label_id), labels == label_id


def connected_pieces(mask: np.ndarray, connectivity: int) -> list[np.ndarray]:
    """Split a bool mask into its connected pieces (4- or 8-connectivity), largest first."""
    count, pieces, stats, _ = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=connectivity
    )
    order = sorted(range(1, count), key=lambda k: -stats[k, cv2.CC_STAT_AREA])
    return [pieces == k for k in order]


def group_nearby_pieces(pieces: list[np.ndarray], reach: float) -> list[np.ndarray]:
    """Merge pieces that lie close together relative to their size; far ones stay apart.

    Two pieces belong to one object when the gap between them (centroid distance minus both
    equivalent-circle radii) is at most `reach` times the larger radius (single linkage). A
    fragment beside its nucleus joins it; a second nucleus given the same id does not.
    """
    if len(pieces) <= 1:
        return pieces
    centres, radii = [], []
    for piece in pieces:
        ys, xs = np.nonzero(piece)
        centres.append((xs.mean(), ys.mean()))
        radii.append(np.sqrt(xs.size / np.pi))
    parent = list(range(len(pieces)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(len(pieces)):
        for j in range(i + 1, len(pieces)):
            gap = np.hypot(centres[i][0] - centres[j][0], centres[i][1] - centres[j][1])
            if gap - radii[i] - radii[j] <= reach * max(radii[i], radii[j]):
                parent[root(j)] = root(i)
    groups: dict[int, np.ndarray] = {}
    for i, piece in enumerate(pieces):
        r = root(i)
        groups[r] = groups[r] | piece if r in groups else piece.copy()
    return list(groups.values())
