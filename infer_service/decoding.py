"""What a client sends, turned into pixels safely: PNG, JPEG, TIFF, DICOM Part-10, raw tensors.

Formats are recognised by their magic bytes, never by names. Sizes are read from the header and
checked against the pixel limit before anything is decompressed, so a small file claiming a huge
image (a decompression bomb) costs nothing; decoded arrays are checked again. Every failure is
InvalidInput, or ResourceExhausted above the pixel limit, with a message that says what to send.
Nothing here logs pixels or DICOM patient data (`dicom_summary` is the loggable view).

DICOM decisions (pixels are what the localizer's percentile normalisation sees, so they follow
the standard's display semantics; a positive affine change of the values would not matter):
- Only syntaxes pydicom decodes with numpy alone: native, Deflated and RLE Lossless (its own
  "pydicom" plugin), whatever other plugins (Pillow, ...) are installed, so every host behaves
  alike. Others are refused by name and UID.
- Multi-frame objects are refused: taking the first frame would silently localize part of a
  study. Send the frames one per request (LocalizeStream).
- MONOCHROME1 is inverted over the stored range, so brighter always means higher.
- The Modality LUT's linear part (RescaleSlope/Intercept) is applied, giving float32 (HU for CT):
  stored values are not the physical quantity, a negative slope flips contrast, and signed values
  need a signed-capable dtype anyway. A Modality LUT Sequence is not applied.
- YBR is converted to RGB; PALETTE COLOR is expanded to RGB unless its tables are segmented
  (refused: a few bytes of segments expand to gigabytes).
"""

from __future__ import annotations

import logging
import math
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from io import BytesIO
from typing import Any

import cv2
import numpy as np
from pydicom import Dataset, dcmread, uid
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.filereader import read_dataset, read_preamble
from pydicom.pixels import apply_color_lut, pixel_array
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, RLELossless

from synthloc.errors import InvalidInput, ResourceExhausted
from synthloc.v1 import common_pb2

log = logging.getLogger(__name__)

ACCEPTED = "PNG, JPEG, TIFF or DICOM Part-10 file bytes"
_MAGIC = {b"\x89PNG\r\n\x1a\n": "png", b"\xff\xd8\xff": "jpeg", b"II*\0": "tiff", b"MM\0*": "tiff"}
_NOT_ACCEPTED = {b"GIF8": "GIF", b"BM": "BMP", b"RIFF": "WebP", b"\0\0\0\x0cjP": "JPEG 2000"}
_SYNTAXES = {uid.ImplicitVRLittleEndian, uid.ExplicitVRLittleEndian, uid.ExplicitVRBigEndian}
_SYNTAXES |= {DeflatedExplicitVRLittleEndian, RLELossless}
_PHOTOMETRIC = ("MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "PALETTE COLOR")
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# What pydicom raises on malformed input (the fuzz test found most of these). Our own errors pass
# through; the price is that a bug of ours in DICOM handling reads as a corrupt file.
_DICOM_ERRORS = (InvalidDicomError, BytesLengthException, ValueError, TypeError, KeyError)
_DICOM_ERRORS += (IndexError, AttributeError, EOFError, OverflowError, NotImplementedError)
_DICOM_ERRORS += (OSError, RuntimeError, struct.error, zlib.error)  # OSError: "no tag to read"
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
        return _finish(_decode_dicom(data, max_pixels), max_pixels, source)
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


def check_pixel_limit(height: int, width: int, max_pixels: int) -> None:
    """Refuse an image of `height` x `width` above the configured pixel limit."""
    if height * width > max_pixels:
        raise ResourceExhausted(
            f"the image is {width}x{height} = {width * height} pixels, above this server's "
            f"limit of {max_pixels} pixels: downscale it or send it in tiles"
        )


def dicom_summary(ds: Dataset) -> dict[str, Any]:
    """Non-identifying technical fields of a DICOM dataset, safe to log."""
    fields = ("Modality", "Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "BitsStored")
    fields += ("PixelRepresentation", "PhotometricInterpretation", "NumberOfFrames")
    summary: dict[str, Any] = {
        "TransferSyntaxUID": ds.get("file_meta", {}).get("TransferSyntaxUID")
    }
    for keyword in fields:
        try:
            summary[keyword] = ds.get(keyword)
        except _DICOM_ERRORS:
            summary[keyword] = "<unreadable>"
    return {k: v if v is None or isinstance(v, int) else str(v) for k, v in summary.items()}


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


def _decode_dicom(data: bytes, max_pixels: int) -> np.ndarray:
    try:
        syntax, meta_end = _file_meta(data)
        if syntax == DeflatedExplicitVRLittleEndian:
            _check_inflated_size(memoryview(data)[meta_end:], max_pixels)
        ds = dcmread(BytesIO(data), force=False)
        log.debug("decoding DICOM %s", dicom_summary(ds))
        return _dicom_pixels(ds, syntax, max_pixels)
    except _DICOM_ERRORS as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise InvalidInput(f"corrupt DICOM: {reason}") from exc


def _file_meta(data: bytes) -> tuple[UID, int]:
    """The transfer syntax and where the dataset starts, checked before any decompression."""
    fp = BytesIO(data)
    read_preamble(fp, False)
    meta = read_dataset(fp, False, True, stop_when=lambda tag, vr, length: tag >> 16 != 2)
    # Iterating converts every element, refusing what dcmread would reread as implicit VR, so
    # the syntax checked here (Deflated: before inflating) is the one dcmread acts on.
    list(meta)
    syntax = meta.get("TransferSyntaxUID")
    if not syntax:
        raise InvalidInput("corrupt DICOM: its file meta has no Transfer Syntax UID (0002,0010)")
    syntax = UID(str(syntax))
    if syntax not in _SYNTAXES:
        known = syntax.name != syntax
        name = f"{syntax.name} ({syntax})" if known else f"{syntax} (unknown)"
        raise InvalidInput(
            f"DICOM transfer syntax {name if syntax.is_valid else '(an invalid UID)'} is not "
            "supported: send uncompressed (Implicit/Explicit VR Little Endian, Explicit VR Big "
            "Endian, Deflated) or RLE Lossless DICOM, or decompress it first"
        )
    return syntax, fp.tell()


def _check_inflated_size(zipped: memoryview, max_pixels: int) -> None:
    """Inflate in bounded chunks, keeping nothing, so a deflate bomb is refused cheaply."""
    limit = 24 * max_pixels + (16 << 20)  # a frame of 3 x 8-byte samples plus 16 MiB of tags
    inflater, total, chunk = zlib.decompressobj(-zlib.MAX_WBITS), 0, zipped
    while chunk and not inflater.eof:
        total += len(inflater.decompress(chunk, 1 << 20))
        if total > limit:
            raise ResourceExhausted(
                f"the deflated DICOM inflates to more than {limit} bytes, more than an image of "
                f"at most {max_pixels} pixels needs"
            )
        chunk = inflater.unconsumed_tail


def _dicom_pixels(ds: Dataset, syntax: UID, max_pixels: int) -> np.ndarray:
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        raise InvalidInput("DICOM has no pixel data (7FE0,0010): send an image object")
    missing = [k for k in ("Rows", "Columns", "PhotometricInterpretation") if ds.get(k) is None]
    if missing:
        raise InvalidInput(f"corrupt DICOM: the image lacks {', '.join(missing)}")
    frames, samples = int(ds.get("NumberOfFrames") or 1), int(ds.get("SamplesPerPixel") or 1)
    if frames != 1:
        raise InvalidInput(
            f"the DICOM holds {frames} frames: send one per request (LocalizeStream)"
        )
    check_pixel_limit(int(ds.Rows), int(ds.Columns), max_pixels)
    photometric = str(ds.PhotometricInterpretation).strip()
    if photometric not in _PHOTOMETRIC or samples not in (1, 3):
        raise InvalidInput(
            f"DICOM {photometric!r} with {samples} samples per pixel is not supported: "
            f"send one of {', '.join(_PHOTOMETRIC)} with 1 or 3 samples"
        )
    if photometric == "PALETTE COLOR" and "RedPaletteColorLookupTableData" not in ds:
        raise InvalidInput("DICOM palettes with segmented lookup tables are not supported")
    if syntax == RLELossless:
        _check_rle_size(ds, int(ds.Rows) * int(ds.Columns) * samples)
    pixels = pixel_array(ds, index=0, decoding_plugin="pydicom")
    if photometric == "PALETTE COLOR":
        return apply_color_lut(pixels, ds)
    if photometric == "MONOCHROME1":
        pixels = _invert(pixels, int(ds.get("BitsStored") or 8 * pixels.itemsize))
    return _rescale(pixels, ds) if photometric.startswith("MONOCHROME") else pixels


def _check_rle_size(ds: Dataset, frame_samples: int) -> None:
    """RLE output is up to 64x its input: refuse more data than an encoded frame can need."""
    frame_bytes = frame_samples * math.ceil(int(ds.BitsAllocated) / 8)
    limit = frame_bytes * 129 // 128 + 64 + 1024  # literal runs, the header, item tags, slack
    if len(ds.PixelData) > limit:
        raise InvalidInput(
            f"corrupt DICOM: {len(ds.PixelData)} bytes of RLE data for a frame of "
            f"{frame_bytes} bytes (RLE never needs more than {limit})"
        )


def _invert(pixels: np.ndarray, bits_stored: int) -> np.ndarray:
    if pixels.dtype.kind == "f":
        return -pixels
    if pixels.dtype.kind == "i":
        return ~pixels  # -1 - v maps the signed stored range onto itself, reversed
    top = pixels.dtype.type(2 ** min(max(bits_stored, 1), 8 * pixels.itemsize) - 1)
    return top - np.minimum(pixels, top)


def _rescale(pixels: np.ndarray, ds: Dataset) -> np.ndarray:
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    slope = 1.0 if slope in (None, "") else float(slope)
    intercept = 0.0 if intercept in (None, "") else float(intercept)
    if slope == 1.0 and intercept == 0.0:
        return pixels
    return pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept)


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
