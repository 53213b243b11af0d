"""Domain samples -> synthloc.v1 messages (the only place that knows both)."""

from __future__ import annotations

import numpy as np

from synth_service.compose import Sample
from synth_service.recipe import LabelMode
from synthloc.imageio import encode_png
from synthloc.v1 import common_pb2, synthesis_pb2

_DTYPES = {np.dtype(np.uint8): common_pb2.DTYPE_UINT8, np.dtype(np.uint16): common_pb2.DTYPE_UINT16}


def encode_image(pixels: np.ndarray, encoding: int) -> common_pb2.Image:
    """An HW or HWC uint8/uint16 array as an Image message, RAW (little-endian) or PNG."""
    height, width = pixels.shape[:2]
    channels = pixels.shape[2] if pixels.ndim == 3 else 1
    msg = common_pb2.Image(
        encoding=encoding or common_pb2.IMAGE_ENCODING_RAW,
        dtype=_DTYPES[pixels.dtype],
        height=height,
        width=width,
        channels=channels,
    )
    if encoding == common_pb2.IMAGE_ENCODING_PNG:
        msg.data = encode_png(pixels)
    else:
        msg.data = pixels.astype(pixels.dtype.newbyteorder("<"), copy=False).tobytes()
    return msg


def encode_sample(
    sample: Sample, encoding: int, include_masks: bool, label_mode: LabelMode
) -> synthesis_pb2.Sample:
    """A Sample message; weak label modes carry image-level labels only (no boxes)."""
    msg = synthesis_pb2.Sample(
        index=sample.index,
        image=encode_image(sample.image, encoding),
        image_labels=sample.image_labels.tolist(),
    )
    if label_mode is LabelMode.STRONG:
        for obj in sample.objects:
            x, y, w, h = obj.box
            msg.objects.add(
                box=common_pb2.Box(x=x, y=y, width=w, height=h),
                class_id=obj.class_id,
                area=obj.area,
                source_object_id=obj.source_object_id,
                scale=obj.scale,
                angle_deg=obj.angle_deg,
                flipped_horizontally=obj.flipped_horizontally,
                flipped_vertically=obj.flipped_vertically,
                blend=obj.blend,
                visible_fraction=obj.visible_fraction,
            )
        if include_masks and sample.instance_labels is not None:
            msg.instance_labels.CopyFrom(encode_image(sample.instance_labels, encoding))
    return msg


def decode_image(msg: common_pb2.Image) -> np.ndarray:
    """An Image message back to an (H, W, C) array (for clients and tests)."""
    from synthloc.imageio import decode_image as decode_bytes

    if msg.encoding == common_pb2.IMAGE_ENCODING_PNG:
        pixels = decode_bytes(msg.data, "PNG image")
    else:
        dtype = np.dtype("<u2") if msg.dtype == common_pb2.DTYPE_UINT16 else np.dtype(np.uint8)
        pixels = np.frombuffer(msg.data, dtype).astype(dtype.newbyteorder("="))
    return pixels.reshape(msg.height, msg.width, msg.channels)
