"""encode_batch: Batch bytes spliced by hand are exactly protobuf's, and decode to the arrays."""

from __future__ import annotations

import numpy as np
import pytest

from synth_service.compose import Sample, compose
from synth_service.encode import encode_batch, encode_sample
from synth_service.library import ObjectLibrary
from synth_service.recipe import LabelMode, Recipe
from synthloc.v1 import common_pb2, synthesis_pb2
from synthloc.wire import image_from_proto
from tests.synth.conftest import FlatBackground

RAW, PNG = common_pb2.IMAGE_ENCODING_RAW, common_pb2.IMAGE_ENCODING_PNG
HEADER = synthesis_pb2.Batch(recipe_hash="r" * 64, library_hash="l" * 64, class_names=["a", "b"])


def reference(
    samples: list[Sample],
    encoding: int,
    masks: bool,
    mode: LabelMode,
    header: synthesis_pb2.Batch = HEADER,
) -> bytes:
    """The Batch built as messages and serialized by protobuf."""
    batch = synthesis_pb2.Batch()
    batch.CopyFrom(header)
    for sample in samples:
        batch.samples.append(encode_sample(sample, encoding, masks, mode))
    return batch.SerializeToString()


@pytest.fixture(scope="module")
def composed(disc_library: ObjectLibrary) -> list[Sample]:
    recipe = Recipe(height=96, width=80, channels=1, dtype="uint16", count_range=(3, 6))
    # Index 0 (a field protobuf leaves out) and indices whose varints take 1, 2 and 6 bytes.
    return [
        compose(recipe, disc_library, FlatBackground(), 3, index, with_masks=True)
        for index in (0, 5, 300, 2**40)
    ]


@pytest.mark.parametrize("encoding", [RAW, PNG])
@pytest.mark.parametrize("masks", [False, True])
@pytest.mark.parametrize("mode", list(LabelMode))
def test_bytes_equal_protobufs(
    composed: list[Sample], encoding: int, masks: bool, mode: LabelMode
) -> None:
    assert sum(len(s.objects) for s in composed) >= 12
    data = encode_batch(composed, HEADER, encoding, masks, mode)
    assert data == reference(composed, encoding, masks, mode)


def test_decodes_to_the_arrays(composed: list[Sample]) -> None:
    batch = synthesis_pb2.Batch.FromString(
        encode_batch(composed, HEADER, RAW, True, LabelMode.STRONG)
    )
    assert [s.index for s in batch.samples] == [0, 5, 300, 2**40]
    assert list(batch.class_names) == ["a", "b"] and batch.recipe_hash == "r" * 64
    for msg, sample in zip(batch.samples, composed, strict=True):
        np.testing.assert_array_equal(image_from_proto(msg.image), sample.image)
        assert image_from_proto(msg.image).dtype == np.uint16
        np.testing.assert_array_equal(
            image_from_proto(msg.instance_labels)[..., 0], sample.instance_labels
        )
        assert [(o.box.x, o.box.y, o.box.width, o.box.height) for o in msg.objects] == [
            o.box for o in sample.objects
        ]
        assert [o.source_object_id for o in msg.objects] == [
            o.source_object_id for o in sample.objects
        ]


def test_colour_and_odd_layouts() -> None:
    """3-channel 8-bit, a non-contiguous view and an empty sample splice like protobuf."""
    rng = np.random.default_rng(1)
    colour = rng.integers(0, 255, (7, 9, 3), dtype=np.uint8)
    wide = rng.integers(0, 65535, (6, 20, 1), dtype=np.uint16)
    samples = [
        Sample(1, colour, [], np.array([1.0, 0.0], np.float32), None),
        Sample(2, wide[:, ::2], [], np.zeros(2, np.float32), None),  # strided
        Sample(3, np.zeros((1, 1, 1), np.uint8), [], np.zeros(0, np.float32), None),
    ]
    for encoding in (RAW, PNG):
        data = encode_batch(samples, HEADER, encoding, True, LabelMode.STRONG)
        assert data == reference(samples, encoding, True, LabelMode.STRONG)
    decoded = synthesis_pb2.Batch.FromString(
        encode_batch(samples, HEADER, RAW, False, LabelMode.STRONG)
    )
    np.testing.assert_array_equal(image_from_proto(decoded.samples[1].image), wide[:, ::2])


def test_empty_batch_is_the_header() -> None:
    assert encode_batch([], HEADER, RAW, False, LabelMode.STRONG) == HEADER.SerializeToString()
    bare = synthesis_pb2.Batch()
    empty = Sample(0, np.zeros((0, 0, 1), np.uint8), [], np.zeros(0, np.float32), None)
    assert encode_batch([empty], bare, RAW, False, LabelMode.STRONG) == (
        reference([empty], RAW, False, LabelMode.STRONG, bare)
    )
