"""Label images to object masks, and grouping of disconnected pieces."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from synthloc.datasets.labels import (
    check_label_image,
    connected_pieces,
    group_nearby_pieces,
    label_masks,
)
from synthloc.errors import InvalidInput


def _disc(shape: tuple[int, int], centre: tuple[int, int], radius: int) -> np.ndarray:
    img = np.zeros(shape, np.uint8)
    cv2.circle(img, centre, radius, 1, -1)
    return img.astype(bool)


def test_label_masks_with_gaps_in_ids() -> None:
    labels = np.zeros((10, 10), np.uint16)
    labels[1:3, 1:3] = 3
    labels[5:9, 5:6] = 700
    labels[0, 9] = labels[9, 0] = 12  # one id, two disconnected pixels: one object
    found = dict(label_masks(labels))
    assert sorted(found) == [3, 12, 700]
    assert found[3].sum() == 4 and found[700].sum() == 4 and found[12].sum() == 2


def test_check_label_image_rejects_float_and_colour() -> None:
    with pytest.raises(InvalidInput, match="integer ids"):
        check_label_image(np.zeros((4, 4), np.float32), "m.tif")
    with pytest.raises(InvalidInput, match="one channel"):
        check_label_image(np.zeros((4, 4, 3), np.uint8), "m.png")
    assert check_label_image(np.zeros((4, 4, 1), np.uint8), "m.png").shape == (4, 4)


def test_far_pieces_stay_apart_and_fragments_join() -> None:
    shape = (200, 200)
    nucleus = _disc(shape, (50, 50), 12)
    fragment = _disc(shape, (66, 50), 2)  # gap of 2 px to the nucleus
    other = _disc(shape, (150, 150), 12)  # a second nucleus far away
    pieces = connected_pieces(nucleus | fragment | other, connectivity=8)
    assert len(pieces) == 3 and pieces[-1].sum() == fragment.sum()  # largest first
    groups = group_nearby_pieces(pieces, reach=1.0)
    assert len(groups) == 2
    sizes = sorted(int(g.sum()) for g in groups)
    assert sizes == sorted([int((nucleus | fragment).sum()), int(other.sum())])


def test_connectivity_decides_diagonal_neighbours() -> None:
    mask = np.array([[1, 0], [0, 1]], bool)
    assert len(connected_pieces(mask, connectivity=4)) == 2
    assert len(connected_pieces(mask, connectivity=8)) == 1
