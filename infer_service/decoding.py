"""What a client sends, turned into pixels safely: PNG, JPEG, TIFF, DICOM Part-10, raw tensors.

Formats are recognised by their magic bytes, never by names. Sizes are read from the header and
checked against the pixel limit before anything is decompressed, so a small file claiming a huge
image (a decompression bomb) costs nothing; decoded arrays are checked again. Every failure is
InvalidInput, or ResourceExhausted above the pixel limit, with a message that says what to send.
Nothing here logs pixels or DICOM patient data (`dicom_summary` is the loggable view).
DICOM decoding lives in infer_service.dicom.
"""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from infer_service.dicom import decode_dicom, dicom_summary, open_dicom
from infer_service.limits import check_pixel_limit
from synthloc.errors import InvalidInput
from synthloc.v1 import common_pb2

log = logging.getLogger(__name__)

ACCEPTED = "PNG, JPEG, TIFF or DICOM Part-10 file bytes"
_MAGIC = {b"\x89PNG\r\n\x1a\n": "png", b"\xff\xd8\xff": "jpeg", b"II*\0": "tiff", b"MM\0*": "tiff"}
_NOT_ACCEPTED = {b"GIF8": "GIF", b"BM": "BMP", b"RIFF": "WebP", b"\0\0\0\x0cjP": "JPEG 2000"}
_TENSOR_DTYPES = {
    common_pb2.DTYPE_UINT8: np.dtype("<u1"),
    common_pb2.DTYPE_UINT16: np.dtype("<u2"),
    common_pb2.DTYPE_FLOAT32: np.dtype("<f4"),
}
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


@dataclass(frozen=True)
class DecodedImage:
    """Pixels (HW or HWC RGB; uint8, uint16 or float32; treat as read-only) and their format."""

    pixels: np.ndarray
    source: str


def decode_image_bytes(data: bytes, max_pixels: int) -> DecodedImage:
    """Decode PNG/JPEG/TIFF/DICOM bytes, refusing anything above `max_pixels` before decoding."""
    if not data:
        raise InvalidInput("the image is empty (0 bytes)")
    source = _sniff(data)
    if source == "dicom":
        return _finish(decode_dicom(data, max_pixels), max_pixels, source)
    height, width = {"png": _png_size, "jpeg": _jpeg_size, "tiff": _tiff_size}[source](data)
    check_pixel_limit(height, width, max_pixels)
    return _finish(_decode_raster(data, source), max_pixels, source)


def decode_tensor(dtype: int, shape: Sequence[int], data: bytes, max_pixels: int) -> DecodedImage:
    """Raw little-endian HW or HWC (C = 1 or 3) uint8/uint16/float32 pixels -> DecodedImage."""
    if dtype not in _TENSOR_DTYPES:
        raise InvalidInput(
            f"tensor dtype {_dtype_name(dtype)} is not supported: send DTYPE_UINT8, "
            "DTYPE_UINT16 or DTYPE_FLOAT32"
        )
    dims = [int(s) for s in shape]
    if len(dims) not in (2, 3) or min(dims) <= 0 or (len(dims) == 3 and dims[2] not in (1, 3)):
        raise InvalidInput(
            f"tensor shape {dims} is not an image: send [height, width] or "
            "[height, width, channels] with 1 or 3 channels"
        )
    check_pixel_limit(dims[0], dims[1], max_pixels)
    expected = math.prod(dims) * _TENSOR_DTYPES[dtype].itemsize
    if len(data) != expected:
        raise InvalidInput(
            f"tensor data has the wrong size: shape {dims} of {_dtype_name(dtype)} needs "
            f"{expected} bytes, got {len(data)}"
        )
    return _finish(np.frombuffer(data, _TENSOR_DTYPES[dtype]).reshape(dims), max_pixels, "tensor")


def _sniff(data: bytes) -> str:
    if data[128:132] == b"DICM":
        return "dicom"
    for magic, source in _MAGIC.items():
        if data.startswith(magic):
            return source
    known = next((name for m, name in _NOT_ACCEPTED.items() if data.startswith(m)), None)
    what = f"{known} images are not accepted" if known else "unrecognised image format"
    raise InvalidInput(f"{what}: send {ACCEPTED} (or a raw tensor)")


def _png_size(data: bytes) -> tuple[int, int]:
    """IHDR's size, once every chunk is known to fit in the data.

    OpenCV 5 allocates whatever a chunk's length field claims (3.5 GB for a 417-byte file the
    fuzz test made), so the lengths are checked before it sees them.
    """
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise InvalidInput("the PNG is truncated or corrupt: no complete IHDR chunk")
    pos = 8
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        if pos + 12 + length > len(data):
            raise InvalidInput(
                f"the PNG is truncated: a chunk at byte {pos} claims {length} bytes, "
                f"{len(data) - pos - 12} remain"
            )
        if data[pos + 4 : pos + 8] == b"IEND":
            width, height = struct.unpack_from(">II", data, 16)
            return height, width
        pos += 12 + length
    raise InvalidInput(f"the PNG is truncated: {len(data)} bytes and no IEND chunk")


def _jpeg_size(data: bytes) -> tuple[int, int]:
    pos, size = 2, None
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF or 0xD0 <= marker <= 0xD8 or marker == 0x01:
            pos += 1 if marker == 0xFF else 2  # fill byte or a marker without a segment
            continue
        if marker == 0xDA:  # start of scan: the header is over
            if size is None:
                break
            if data.rfind(b"\xff\xd9") < pos:  # libjpeg would pad the missing rows with gray
                raise InvalidInput("the JPEG is truncated: it has no end-of-image marker")
            return size
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker in _SOF_MARKERS and length >= 7 and pos + 9 <= len(data):
            size = struct.unpack(">HH", data[pos + 5 : pos + 9])
        pos += 2 + max(length, 2)
    raise InvalidInput("the JPEG is truncated or corrupt: no frame header before the image data")


def _tiff_size(data: bytes) -> tuple[int, int]:
    order = "<" if data[:2] == b"II" else ">"
    dims: dict[int, int] = {}
    try:
        (ifd,) = struct.unpack_from(order + "I", data, 4)
        (count,) = struct.unpack_from(order + "H", data, ifd)
        for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
            tag, kind = struct.unpack_from(order + "HH", data, entry)
            if tag in (256, 257):  # ImageWidth, ImageLength: SHORT or LONG
                value = struct.unpack_from(order + ("H" if kind == 3 else "I"), data, entry + 8)
                dims[tag] = value[0]
    except struct.error:
        raise InvalidInput("the TIFF is truncated: its first image directory is cut off") from None
    if 256 not in dims or 257 not in dims:
        raise InvalidInput("corrupt TIFF: its first image has no width or height")
    return dims[257], dims[256]


def dicom_frames(data: bytes, max_pixels: int) -> tuple[int, Iterator[np.ndarray]]:
    """For a client: the number of frames of a DICOM Part-10 file and the frames themselves,
    decoded one at a time when the iterator reaches them, by the service's rules and in the
    dtypes a tensor carries. Each is what the service would decode from a single-frame file of
    that frame, so frames sent as tensors localize alike."""
    frames = open_dicom(data, max_pixels, max_frames=None)

    def each() -> Iterator[np.ndarray]:
        for index in range(frames.count):
            yield _finish(frames.frame(index), max_pixels, "dicom").pixels

    return frames.count, each()


def _decode_raster(data: bytes, source: str) -> np.ndarray:
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        image = None
    if image is None:
        raise InvalidInput(f"the {source.upper()} is corrupt or truncated: it could not be decoded")
    if image.ndim == 3 and image.shape[2] in (3, 4):  # OpenCV gives gray + alpha as BGRA
        code = cv2.COLOR_BGR2RGB if image.shape[2] == 3 else cv2.COLOR_BGRA2RGB
        return cv2.cvtColor(image, code)
    return image


def _finish(pixels: np.ndarray, max_pixels: int, source: str) -> DecodedImage:
    """One shape and dtype contract for every source, with the pixel limit checked again."""
    pixels = pixels.astype(pixels.dtype.newbyteorder("="), copy=False)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] != 3):
        raise InvalidInput(f"the {source} image has shape {pixels.shape}: send gray or RGB")
    check_pixel_limit(pixels.shape[0], pixels.shape[1], max_pixels)
    if pixels.dtype.kind not in "biuf":
        raise InvalidInput(f"the {source} image has pixel type {pixels.dtype}: send numbers")
    if pixels.dtype == bool:
        pixels = pixels.astype(np.uint8)
    elif pixels.dtype not in (np.uint8, np.uint16, np.float32):
        pixels = pixels.astype(np.float32)  # signed or wider: float keeps sign and scale
    if pixels.dtype == np.float32 and not np.isfinite(pixels).all():
        raise InvalidInput(f"the {source} image holds NaN or infinite values")
    return DecodedImage(pixels, source)


def _dtype_name(dtype: int) -> str:
    try:
        return common_pb2.DType.Name(dtype)
    except ValueError:
        return f"{dtype} (unknown)"


__all__ = [
    "DecodedImage",
    "check_pixel_limit",
    "decode_image_bytes",
    "decode_tensor",
    "dicom_frames",
    "dicom_summary",
]
