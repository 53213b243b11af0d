"""Clean backgrounds: every object removed, refill like background, bank deterministic."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from synth_service.backgrounds import (
    BackgroundBank,
    BackgroundSettings,
    TileSource,
    clean_background,
    surviving_object_fraction,
    tile_windows,
)
from synth_service.draws import Draws
from synth_service.intensity import normalize_intensity
from synthloc.coco import CocoDataset, segmentation_to_mask
from synthloc.errors import FailedPrecondition, InvalidInput
from synthloc.imageio import read_image

LEVEL, NOISE = 0.1, 0.01
# (y, x, radius, amplitude, annotated): bright nuclei, a dim one (4 sigma per pixel), and
# micronuclei of 2-3 px; only some are annotated, as in a partially annotated image.
DISCS = [
    (40, 40, 12, 0.8, True),
    (60, 170, 10, 0.6, False),
    (180, 60, 14, 0.04, False),
    (200, 200, 9, 0.3, True),
    (120, 120, 1.5, 0.2, False),
    (30, 220, 1.0, 0.3, False),
    (150, 230, 1.5, 0.08, False),
]


def noisy_scene(seed: int = 0, size: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A flat noisy background with discs: (pixels HxWx1, annotated mask, all-disc mask)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    pixels = LEVEL + NOISE * rng.standard_normal((size, size))
    annotated = np.zeros((size, size), bool)
    truth = np.zeros((size, size), bool)
    for y, x, radius, amplitude, is_annotated in DISCS:
        disc = (yy - y) ** 2 + (xx - x) ** 2 <= radius**2
        pixels[disc] += amplitude
        truth |= disc
        annotated |= disc & is_annotated
    return pixels[..., None].astype(np.float32), annotated, truth


def test_every_disc_is_removed_and_refilled_like_the_background() -> None:
    pixels, annotated, truth = noisy_scene()
    cleaned, removed = clean_background(
        pixels, annotated, BackgroundSettings(), np.random.default_rng(0)
    )
    assert cleaned.shape == pixels.shape and cleaned.dtype == np.float32
    assert not (truth & ~removed).any()  # no disc pixel survives, annotated or not
    assert removed.mean() < 0.2  # the discs cover 4%: the margin stays a margin
    filled = cleaned[removed, 0]
    assert abs(filled.mean() - LEVEL) < 0.1 * NOISE
    assert abs(filled.std() - NOISE) < 0.1 * NOISE
    np.testing.assert_array_equal(cleaned[~removed], pixels[~removed])


def test_quantized_8bit_background_is_not_mistaken_for_objects() -> None:
    # mnfinder's 8-bit images: mostly one value with sparse +1 steps (Poisson-like counts).
    rng = np.random.default_rng(3)
    counts = 1 + rng.poisson(0.2, (256, 256))
    counts[100:130, 100:130] += 120  # one bright nucleus keeps the normalization realistic
    pixels = normalize_intensity(counts.astype(np.uint8))
    cleaned, removed = clean_background(
        pixels, np.zeros((256, 256), bool), BackgroundSettings(), rng
    )
    assert removed[100:130, 100:130].all()
    # Only the nucleus and its margin: not one false detection in 64k noise pixels.
    assert cv2.connectedComponents(removed.astype(np.uint8))[0] == 2
    assert removed.mean() < 0.05
    background = pixels[~removed]
    assert abs(cleaned[removed].mean() - background.mean()) < 0.1 * background.std()


def test_cleaning_is_deterministic_given_the_rng() -> None:
    pixels, annotated, _ = noisy_scene()
    settings = BackgroundSettings()
    first = clean_background(pixels, annotated, settings, np.random.default_rng(7))
    again = clean_background(pixels, annotated, settings, np.random.default_rng(7))
    other = clean_background(pixels, annotated, settings, np.random.default_rng(8))
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], other[1])  # detection does not depend on the rng
    assert not np.array_equal(first[0], other[0])  # only the refill noise does


def test_shape_mismatch_and_bad_settings_are_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        clean_background(
            np.zeros((8, 8, 1), np.float32),
            np.zeros((8, 9), bool),
            BackgroundSettings(),
            np.random.default_rng(0),
        )
    with pytest.raises(InvalidInput):
        BackgroundSettings(grow_sigmas=6.0, seed_sigmas=5.0)


def small_bank(seed: int = 0, channels: int = 1) -> BackgroundBank:
    """A bank of 64-px tiles from two noisy scenes."""
    scenes = [noisy_scene(s) for s in (1, 2)]
    images = [np.repeat(p, channels, axis=2) for p, _, _ in scenes]
    settings = BackgroundSettings(tile_size=64)
    return BackgroundBank.build(images, [a for _, a, _ in scenes], settings, seed=seed)


def test_bank_build_is_deterministic_and_records_provenance() -> None:
    bank = small_bank()
    assert len(bank) == 32 and len(bank.sources) == 32  # 2 images x 4 x 4 tiles of 64
    assert bank.content_hash() == small_bank().content_hash()
    assert bank.content_hash() != small_bank(seed=1).content_hash()
    assert {s.image_index for s in bank.sources} == {0, 1}
    assert all(0.0 <= s.removed_fraction <= 0.75 for s in bank.sources)
    assert max(s.removed_fraction for s in bank.sources) > 0.1  # tiles with a nucleus


def test_sample_shape_dtype_determinism_and_fresh_memory() -> None:
    bank = small_bank(channels=3)
    canvas = bank.sample(Draws(5, 0), 48, 40)
    assert canvas.shape == (48, 40, 3) and canvas.dtype == np.float32
    np.testing.assert_array_equal(canvas, bank.sample(Draws(5, 0), 48, 40))
    assert not np.array_equal(canvas, bank.sample(Draws(6, 0), 48, 40))
    assert not any(np.shares_memory(canvas, tile) for tile in bank.tiles)
    with pytest.raises(InvalidInput):
        bank.sample(Draws(0, 0), 0, 10)


def test_canvas_larger_than_a_tile_is_mirror_tiled_without_seams() -> None:
    ramp = np.add.outer(np.arange(16.0), 100 * np.arange(24.0))[..., None].astype(np.float32)
    bank = BackgroundBank([ramp], [TileSource(0, 0, 0, 16, 24, 0.0)])
    draws = Draws(0, 0)
    for height, width in [(50, 37), (20, 10), (10, 20), (16, 24), (24, 16), (7, 70)] * 8:
        canvas = bank.sample(draws, height, width)[..., 0]
        assert canvas.shape == (height, width)
        assert set(np.unique(canvas)) <= set(np.unique(ramp))
        # Reflection repeats the edge pixel: neighbours never differ by more than one step.
        steps = np.abs(np.diff(canvas, axis=0)).max(), np.abs(np.diff(canvas, axis=1)).max()
        assert max(steps) <= 100 and min(steps) <= 1


def test_empty_bank_is_a_failed_precondition() -> None:
    pixels, annotated, _ = noisy_scene()
    settings = BackgroundSettings(tile_size=256, max_removed_fraction=0.0)
    with pytest.raises(FailedPrecondition):
        BackgroundBank.build([pixels], [annotated], settings)


def test_surviving_object_fraction_counts_truth_in_kept_unremoved_pixels() -> None:
    truth = np.zeros((4, 4), bool)
    truth[:2] = True  # 8 object pixels
    removed = np.zeros((4, 4), bool)
    removed[0] = True  # 4 of them removed
    kept = np.ones((4, 4), bool)
    kept[1, :1] = False  # 1 more never reaches a tile
    assert surviving_object_fraction([removed], [kept], [truth]) == 3 / 8
    assert surviving_object_fraction([removed], [kept], [np.zeros((4, 4), bool)]) == 0.0


def test_tile_windows_cover_the_image() -> None:
    windows = tile_windows(300, 513, 256)
    covered = np.zeros((300, 513), bool)
    for y, x, h, w in windows:
        assert (h, w) == (256, 256)
        covered[y : y + h, x : x + w] = True
    assert covered.all() and len(windows) == 6
    assert tile_windows(100, 80, 256) == [(0, 0, 100, 80)]


def test_stardist_nuclei_do_not_survive_with_a_quarter_annotated(data_root: Path) -> None:
    dataset = CocoDataset.load(data_root / "stardist" / "stardist.json")
    image = dataset.images[0]
    pixels = normalize_intensity(read_image(dataset.image_path(image)))
    h, w = pixels.shape[:2]
    masks = [segmentation_to_mask(a["segmentation"], h, w) for a in dataset.annotations]
    assert len(masks) == 125
    chosen = np.random.default_rng(0).choice(len(masks), 31, replace=False)
    annotated = np.logical_or.reduce([masks[i] for i in chosen])
    # Every tile kept, so only the cleaning itself can keep nuclei out of the bank.
    settings = BackgroundSettings(max_removed_fraction=1.0)
    cleaned, removed = clean_background(pixels, annotated, settings, np.random.default_rng(0))
    bank = BackgroundBank.from_cleaned([cleaned], [removed], settings)
    assert len(bank) == 4
    truth = np.logical_or.reduce(masks)
    assert surviving_object_fraction([removed], bank.kept_regions([(h, w)]), [truth]) < 0.01


def test_mnfinder_objects_do_not_survive_from_a_quarter_of_the_annotations(
    data_root: Path,
) -> None:
    from synth_service.backgrounds import clean_images
    from synth_service.library import LibrarySettings, ObjectLibrary

    full = CocoDataset.load(data_root / "mnfinder" / "val.json")
    _, sources = ObjectLibrary.from_coco(full, LibrarySettings(annotated_fraction=0.25))
    settings = BackgroundSettings()
    cleaned, removed = clean_images(sources.pixels, sources.annotated, settings, seed=0)
    bank = BackgroundBank.from_cleaned(cleaned, removed, settings)
    shapes = [p.shape[:2] for p in sources.pixels]
    truth = [np.zeros(shape, bool) for shape in shapes]
    for ann in full.annotations:
        index = ann["image_id"] - 1
        truth[index] |= segmentation_to_mask(ann["segmentation"], *shapes[index])
    assert all(a.sum() < t.sum() / 2 for a, t in zip(sources.annotated, truth, strict=True))
    assert surviving_object_fraction(removed, bank.kept_regions(shapes), truth) < 0.01
