"""Domain samples -> synthloc.v1 messages (the only place that knows both).

encode_batch writes a Batch's wire bytes by joining pieces: protobuf serializes everything but
the pixels, and each image's pixels are copied once, from their array into the result. Building
the message would copy them four times (array to bytes, into the Image, into the Batch, out
again when serialized), which cost a worker more than composing. Protobuf writes fields in
field-number order, so joining the pieces of disjoint fields in that order gives exactly the
bytes SerializeToString would (tested against it).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from synth_service.compose import Sample
from synth_service.recipe import LabelMode
from synthloc.v1 import synthesis_pb2
from synthloc.wire import image_data, image_header, image_to_proto

# Field numbers of the length-delimited fields spliced by hand (protos/synthloc/v1/*.proto).
_BATCH_SAMPLES = 1
_SAMPLE_IMAGE = 2
_SAMPLE_INSTANCE_LABELS = 5
_IMAGE_DATA = 6

Piece = bytes | memoryview


def encode_sample(
    sample: Sample, encoding: int, include_masks: bool, label_mode: LabelMode
) -> synthesis_pb2.Sample:
    """A Sample message; weak label modes carry image-level labels only (no boxes)."""
    msg = synthesis_pb2.Sample(index=sample.index, image=image_to_proto(sample.image, encoding))
    msg.MergeFrom(_labels(sample, label_mode))
    if include_masks and label_mode is LabelMode.STRONG and sample.instance_labels is not None:
        msg.instance_labels.CopyFrom(image_to_proto(sample.instance_labels, encoding))
    return msg


def encode_batch(
    samples: Iterable[Sample],
    header: synthesis_pb2.Batch,
    encoding: int,
    include_masks: bool,
    label_mode: LabelMode,
) -> bytes:
    """The serialized Batch of `header`'s fields (hashes, class names) with `samples`: the bytes
    of a Batch of encode_sample messages, with each image copied once."""
    return b"".join(batch_pieces(samples, header, encoding, include_masks, label_mode))


def batch_pieces(
    samples: Iterable[Sample],
    header: synthesis_pb2.Batch,
    encoding: int,
    include_masks: bool,
    label_mode: LabelMode,
) -> list[Piece]:
    """encode_batch's bytes as pieces to write one after another (RAW pixels are views of the
    samples' arrays), so they can be written straight into a shared slot."""
    pieces: list[Piece] = []
    for sample in samples:
        parts = [synthesis_pb2.Sample(index=sample.index).SerializeToString()]
        parts += _field(_SAMPLE_IMAGE, _image(sample.image, encoding))
        parts.append(_labels(sample, label_mode).SerializeToString())
        if include_masks and label_mode is LabelMode.STRONG and sample.instance_labels is not None:
            parts += _field(_SAMPLE_INSTANCE_LABELS, _image(sample.instance_labels, encoding))
        pieces += _field(_BATCH_SAMPLES, parts)
    pieces.append(header.SerializeToString())
    return pieces


def _labels(sample: Sample, label_mode: LabelMode) -> synthesis_pb2.Sample:
    """The sample's labels alone: image-level, and in STRONG mode its objects."""
    msg = synthesis_pb2.Sample(image_labels=sample.image_labels.tolist())
    if label_mode is LabelMode.STRONG:
        add = msg.objects.add
        for o in sample.objects:
            box = add(
                class_id=o.class_id,
                area=o.area,
                source_object_id=o.source_object_id,
                scale=o.scale,
                angle_deg=o.angle_deg,
                flipped_horizontally=o.flipped_horizontally,
                flipped_vertically=o.flipped_vertically,
                blend=o.blend,
                visible_fraction=o.visible_fraction,
            ).box
            box.x, box.y, box.width, box.height = o.box
    return msg


def _image(pixels: np.ndarray, encoding: int) -> list[Piece]:
    """An Image message's wire bytes in pieces: its header, then its data (last field)."""
    data = image_data(pixels, encoding)
    parts: list[Piece] = [image_header(pixels, encoding).SerializeToString()]
    if len(data):  # proto3 leaves empty bytes out
        parts += _field(_IMAGE_DATA, [data])
    return parts


def _field(number: int, parts: list[Piece]) -> list[Piece]:
    """A length-delimited field around the pieces of its value."""
    return [_varint(number << 3 | 2), _varint(sum(len(p) for p in parts)), *parts]


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


__all__ = ["batch_pieces", "encode_batch", "encode_sample"]
