"""CenterNet targets and losses, and the round trip targets -> decoder -> the same boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from infer_service.postprocess import decode_detector
from synthloc.errors import InvalidInput
from training.losses import cam_loss, detector_loss, focal_loss, stack_targets
from training.targets import detector_targets, gaussian_radius, image_labels


def test_a_box_gives_a_unit_peak_with_size_and_offset_at_its_centre_cell() -> None:
    boxes = np.array([[12.0, 16.0, 52.0, 48.0]], np.float32)  # centre (32, 32), 40 x 32 px
    targets = detector_targets(boxes, np.array([1]), 2, (64, 96), stride=4)
    assert targets.heatmap.shape == (2, 16, 24)
    assert np.argwhere(targets.heatmap == 1.0).tolist() == [[1, 8, 8]]  # centre / 4 = (8, 8)
    assert targets.heatmap[0].max() == 0.0
    assert 0 < targets.heatmap[1, 8, 9] < 1  # the Gaussian's shoulder
    assert targets.size[:, 8, 8].tolist() == [40.0, 32.0]
    assert targets.offset[:, 8, 8].tolist() == [0.0, 0.0]
    assert targets.mask.sum() == 1 and targets.mask[8, 8] == 1


def test_offset_is_the_sub_cell_position_of_the_centre() -> None:
    boxes = np.array([[3.0, 5.0, 6.0, 8.0]], np.float32)  # centre (4.5, 6.5) -> (1.125, 1.625)
    targets = detector_targets(boxes, np.array([0]), 1, (16, 16), stride=4)
    assert targets.heatmap[0, 1, 1] == 1.0
    assert targets.offset[:, 1, 1].tolist() == pytest.approx([0.125, 0.625])


def test_no_boxes_give_empty_targets() -> None:
    targets = detector_targets(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), 2, (32, 32), 4)
    assert targets.heatmap.max() == 0 and targets.mask.max() == 0
    assert image_labels(np.zeros(0, np.int64), 2).tolist() == [0.0, 0.0]


def test_bad_labels_are_refused() -> None:
    with pytest.raises(InvalidInput, match=r"labels must lie in \[0, 2\), got \[2\]"):
        detector_targets(np.zeros((1, 4), np.float32), np.array([2]), 2, (32, 32), 4)
    with pytest.raises(InvalidInput, match="2 boxes but 1 labels"):
        detector_targets(np.zeros((2, 4), np.float32), np.array([0]), 2, (32, 32), 4)


def test_gaussian_radius_grows_with_the_box() -> None:
    radii = [gaussian_radius(s, s) for s in (1, 4, 16)]
    assert radii == sorted(radii) and radii[0] < 1


def test_targets_decode_back_to_the_same_boxes() -> None:
    rng = np.random.default_rng(7)
    # Centres on a coarse grid so no two share a cell or a 3x3 window.
    centres = np.stack(np.meshgrid(np.arange(20, 240, 40), np.arange(20, 240, 40)), -1)
    centres = centres.reshape(-1, 2) + rng.uniform(-6, 6, (36, 2))
    sizes = rng.uniform(2, 30, (36, 2))
    boxes = np.hstack([centres - sizes / 2, centres + sizes / 2]).astype(np.float32)
    labels = rng.integers(0, 2, 36)
    t = detector_targets(boxes, labels, 2, (256, 256), stride=4)
    found = decode_detector(t.heatmap, t.size, t.offset, stride=4, score_threshold=0.99)
    assert len(found) == 36
    expected = sorted(
        (int(k), *np.round(b, 3))
        for k, b in zip(labels, np.hstack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]]), strict=True)
    )
    decoded = sorted((d.class_id, *np.round(d.box, 3)) for d in found)
    for want, got in zip(expected, decoded, strict=True):
        assert want[0] == got[0]
        assert np.abs(np.array(want[1:]) - np.array(got[1:])).max() < 1.0


def test_focal_loss_rewards_the_right_heatmap() -> None:
    t = detector_targets(
        np.array([[8.0, 8.0, 24.0, 24.0]], np.float32), np.array([0]), 1, (64, 64), 4
    )
    target = torch.from_numpy(t.heatmap)[None]
    perfect = focal_loss(target.clamp(1e-4, 1 - 1e-4), target)
    uniform = focal_loss(torch.full_like(target, 0.1), target)
    # Not zero: near the centre the Gaussian-weighted negatives still cost a little.
    assert perfect.item() < 0.01 * uniform.item()


def test_detector_loss_is_zero_for_exact_regression() -> None:
    boxes = np.array([[8.0, 8.0, 24.0, 20.0]], np.float32)
    t = detector_targets(boxes, np.array([0]), 1, (64, 64), 4)
    batch = stack_targets([t, t])
    outputs = (batch["heatmap"].clamp(1e-4, 1 - 1e-4), batch["size"] + 1.0, batch["offset"])
    parts = detector_loss(outputs, batch)
    assert parts["offset"].item() == 0.0
    # L1 of log sizes at the centres only, averaged over width and height (16 x 12 px).
    expected = (np.log(17 / 16) + np.log(13 / 12)) / 2
    assert parts["size"].item() == pytest.approx(expected, rel=1e-4)
    assert parts["loss"].item() == pytest.approx(
        sum(parts[k].item() for k in ("heatmap", "size", "offset"))
    )


def test_losses_handle_images_without_objects() -> None:
    empty = detector_targets(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), 2, (32, 32), 4)
    scores = torch.full((1, 2, 8, 8), 0.1, requires_grad=True)
    parts = detector_loss(
        (scores, torch.ones(1, 2, 8, 8), torch.zeros(1, 2, 8, 8)), stack_targets([empty])
    )
    parts["loss"].backward()
    assert parts["size"].item() == parts["offset"].item() == 0.0
    assert parts["heatmap"].item() > 0 and scores.grad is not None and scores.grad.abs().sum() > 0
    labels = torch.from_numpy(
        np.stack([image_labels(np.array([1, 1]), 2), image_labels(np.zeros(0), 2)])
    )
    assert labels.tolist() == [[0.0, 1.0], [0.0, 0.0]]
    logits = torch.tensor([[-9.0, 9.0], [-9.0, -9.0]])
    assert cam_loss(logits, labels).item() < 1e-3 < cam_loss(-logits, labels).item()
