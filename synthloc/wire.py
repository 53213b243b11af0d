"""Arrays <-> synthloc.v1 Image messages, shared by every room that speaks the wire."""

from __future__ import annotations

import numpy as np

from synthloc.errors import InvalidInput
from synthloc.imageio import decode_image as decode_bytes
from synthloc.imageio import encode_png
from synthloc.v1 import common_pb2

_DTYPES = {np.dtype(np.uint8): common_pb2.DTYPE_UINT8, np.dtype(np.uint16): common_pb2.DTYPE_UINT16}
_NUMPY = {common_pb2.DTYPE_UINT8: np.dtype("u1"), common_pb2.DTYPE_UINT16: np.dtype("<u2")}


def image_to_proto(pixels: np.ndarray, encoding: int) -> common_pb2.Image:
    """An HW or HWC uint8/uint16 array as an Image message, RAW (little-endian) or PNG."""
    msg = image_header(pixels, encoding)
    msg.data = bytes(image_data(pixels, encoding))
    return msg


def image_header(pixels: np.ndarray, encoding: int) -> common_pb2.Image:
    """The Image message of an HW or HWC uint8/uint16 array without its data."""
    height, width = pixels.shape[:2]
    return common_pb2.Image(
        encoding=encoding or common_pb2.IMAGE_ENCODING_RAW,
        dtype=_DTYPES[pixels.dtype],
        height=height,
        width=width,
        channels=pixels.shape[2] if pixels.ndim == 3 else 1,
    )


def image_data(pixels: np.ndarray, encoding: int) -> bytes | memoryview:
    """What Image.data holds for the array: PNG bytes, or for RAW its little-endian pixels as
    a view of the array (no copy where it is already contiguous and little-endian)."""
    if encoding == common_pb2.IMAGE_ENCODING_PNG:
        return encode_png(pixels)
    raw = np.ascontiguousarray(pixels.astype(pixels.dtype.newbyteorder("<"), copy=False))
    return memoryview(raw.reshape(-1).view(np.uint8))


def image_from_proto(msg: common_pb2.Image) -> np.ndarray:
    """An Image message as an (H, W, C) array; InvalidInput if its bytes do not fit."""
    if msg.encoding == common_pb2.IMAGE_ENCODING_PNG:
        pixels = decode_bytes(msg.data, "PNG image")
    else:
        dtype = _NUMPY.get(msg.dtype)
        if dtype is None:
            raise InvalidInput(f"image dtype {common_pb2.DType.Name(msg.dtype)} is not supported")
        data = msg.data  # each read of a bytes field copies it
        expected = msg.height * msg.width * msg.channels * dtype.itemsize
        if len(data) != expected:
            raise InvalidInput(
                f"image of {msg.height}x{msg.width}x{msg.channels} {dtype.name} needs "
                f"{expected} bytes, got {len(data)}"
            )
        pixels = np.frombuffer(data, dtype).astype(dtype.newbyteorder("="))
    return pixels.reshape(msg.height, msg.width, msg.channels)
