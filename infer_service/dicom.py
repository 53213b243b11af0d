"""DICOM Part-10 bytes to pixels, refusing what cannot be decoded safely or alike everywhere.

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
from io import BytesIO
from typing import Any

import numpy as np
from pydicom import Dataset, dcmread, uid
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.filereader import read_dataset, read_preamble
from pydicom.pixels import apply_color_lut, pixel_array
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, RLELossless

from infer_service.limits import check_pixel_limit
from synthloc.errors import InvalidInput, ResourceExhausted

log = logging.getLogger(__name__)

_SYNTAXES = {uid.ImplicitVRLittleEndian, uid.ExplicitVRLittleEndian, uid.ExplicitVRBigEndian}
_SYNTAXES |= {DeflatedExplicitVRLittleEndian, RLELossless}
_PHOTOMETRIC = ("MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "PALETTE COLOR")
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# What pydicom raises on malformed input (the fuzz test found most of these). Our own errors pass
# through; the price is that a bug of ours in DICOM handling reads as a corrupt file.
_DICOM_ERRORS = (InvalidDicomError, BytesLengthException, ValueError, TypeError, KeyError)
_DICOM_ERRORS += (IndexError, AttributeError, EOFError, OverflowError, NotImplementedError)
_DICOM_ERRORS += (OSError, RuntimeError, struct.error, zlib.error)  # OSError: "no tag to read"


def decode_dicom(data: bytes, max_pixels: int) -> np.ndarray:
    """Pixels of a single-frame DICOM Part-10 file (see the module docstring for the rules)."""
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
