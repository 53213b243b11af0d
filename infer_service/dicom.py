"""DICOM Part-10 bytes to pixels, refusing what cannot be decoded safely or alike everywhere.

DICOM decisions (pixels are what the localizer's percentile normalisation sees, so they follow
the standard's display semantics; a positive affine change of the values would not matter):
- Only syntaxes pydicom decodes with numpy alone: native, Deflated and RLE Lossless (its own
  "pydicom" plugin), whatever other plugins (Pillow, ...) are installed, so every host behaves
  alike. Others are refused by name and UID.
- A request holds one image, so the service refuses multi-frame objects (cine loops, enhanced
  CT/MR, tiled whole-slide images) instead of silently localizing their first frame. Clients
  open them with `open_dicom` and send each frame as a tensor over LocalizeStream
  (`LocalizationClient.localize_frames`): every frame is decoded by the rules below.
- MONOCHROME1 is inverted over the stored range, so brighter always means higher.
- The Modality LUT's linear part (RescaleSlope/Intercept) is applied, giving float32 (HU for CT):
  stored values are not the physical quantity, a negative slope flips contrast, and signed values
  need a signed-capable dtype anyway. Enhanced multi-frame objects keep it in the Pixel Value
  Transformation functional group, per frame or shared; that takes precedence over the top-level
  attributes. A Modality LUT Sequence is not applied.
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


class DicomFrames:
    """A DICOM Part-10 image object whose header passed the checks; `frame(i)` decodes frame i
    alone (0-based), by this module's rules. Build it with `open_dicom`."""

    def __init__(self, ds: Dataset, count: int) -> None:
        self._ds, self.count = ds, count
        self.photometric = str(ds.PhotometricInterpretation).strip()

    def frame(self, index: int) -> np.ndarray:
        """Frame `index` as the localizer should see it (HW or HWC; InvalidInput if corrupt)."""
        if not 0 <= index < self.count:
            raise IndexError(f"frame {index} of a DICOM with {self.count} frames")
        ds = self._ds
        try:
            pixels = pixel_array(ds, index=index, decoding_plugin="pydicom")
            if self.photometric == "PALETTE COLOR":
                return apply_color_lut(pixels, ds)
            if self.photometric == "MONOCHROME1":
                pixels = _invert(pixels, int(ds.get("BitsStored") or 8 * pixels.itemsize))
            if self.photometric.startswith("MONOCHROME"):
                return _rescale(pixels, *_rescale_values(ds, index))
            return pixels
        except _DICOM_ERRORS as exc:  # a malformed attribute too (BitsStored, RescaleSlope)
            raise _corrupt(exc) from exc


def open_dicom(data: bytes, max_pixels: int, max_frames: int | None = 1) -> DicomFrames:
    """Read and check a DICOM Part-10 file's header; frames are decoded later, one at a time.

    Each frame must fit `max_pixels`. With `max_frames` (the service: 1) a file with more
    frames is refused, and a Deflated file may inflate to no more than that many frames need,
    checked before dcmread inflates it; None (a client opening its own files) checks neither.
    """
    try:
        syntax, meta_end = _file_meta(data)
        if syntax == DeflatedExplicitVRLittleEndian and max_frames is not None:
            _check_inflated_size(memoryview(data)[meta_end:], max_pixels, max_frames)
        ds = dcmread(BytesIO(data), force=False)
        log.debug("decoding DICOM %s", dicom_summary(ds))
        frames = _checked_frames(ds, syntax, max_pixels)
    except _DICOM_ERRORS as exc:
        raise _corrupt(exc) from exc
    if max_frames is not None and frames.count > max_frames:
        raise InvalidInput(
            f"the DICOM holds {frames.count} frames and a request takes one image: send each "
            "frame as a tensor over LocalizeStream (`synthloc localize` and `synthloc pacs` "
            "split multi-frame files that way)"
        )
    return frames


def decode_dicom(data: bytes, max_pixels: int) -> np.ndarray:
    """Pixels of a single-frame DICOM Part-10 file (see the module docstring for the rules)."""
    return open_dicom(data, max_pixels).frame(0)


def _corrupt(exc: Exception) -> InvalidInput:
    reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    return InvalidInput(f"corrupt DICOM: {reason}")


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


def _check_inflated_size(zipped: memoryview, max_pixels: int, frames: int) -> None:
    """Inflate in bounded chunks, keeping nothing, so a deflate bomb is refused cheaply."""
    limit = frames * 24 * max_pixels + (16 << 20)  # frames of 3 x 8-byte samples, 16 MiB of tags
    inflater, total, chunk = zlib.decompressobj(-zlib.MAX_WBITS), 0, zipped
    while chunk and not inflater.eof:
        total += len(inflater.decompress(chunk, 1 << 20))
        if total > limit:
            raise ResourceExhausted(
                f"the deflated DICOM inflates to more than {limit} bytes, more than "
                f"{'an image' if frames == 1 else f'{frames} frames'} of at most {max_pixels} "
                "pixels needs"
            )
        chunk = inflater.unconsumed_tail


def _checked_frames(ds: Dataset, syntax: UID, max_pixels: int) -> DicomFrames:
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        raise InvalidInput("DICOM has no pixel data (7FE0,0010): send an image object")
    missing = [k for k in ("Rows", "Columns", "PhotometricInterpretation") if ds.get(k) is None]
    if missing:
        raise InvalidInput(f"corrupt DICOM: the image lacks {', '.join(missing)}")
    frames, samples = int(ds.get("NumberOfFrames") or 1), int(ds.get("SamplesPerPixel") or 1)
    if frames < 1:
        raise InvalidInput(f"corrupt DICOM: Number of Frames is {frames}")
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
        _check_rle_size(ds, int(ds.Rows) * int(ds.Columns) * samples, frames)
    return DicomFrames(ds, frames)


def _check_rle_size(ds: Dataset, frame_samples: int, frames: int) -> None:
    """RLE output is up to 64x its input: refuse more data than the encoded frames can need."""
    frame_bytes = frame_samples * math.ceil(int(ds.BitsAllocated) / 8)
    # Per frame: literal runs, the segment header, an item tag; then slack for the offsets.
    limit = frames * (frame_bytes * 129 // 128 + 64 + 8) + 1024
    if len(ds.PixelData) > limit:
        what = "a frame" if frames == 1 else f"{frames} frames"
        raise InvalidInput(
            f"corrupt DICOM: {len(ds.PixelData)} bytes of RLE data for {what} of "
            f"{frame_bytes} bytes (RLE never needs more than {limit})"
        )


def _invert(pixels: np.ndarray, bits_stored: int) -> np.ndarray:
    if pixels.dtype.kind == "f":
        return -pixels
    if pixels.dtype.kind == "i":
        return ~pixels  # -1 - v maps the signed stored range onto itself, reversed
    top = pixels.dtype.type(2 ** min(max(bits_stored, 1), 8 * pixels.itemsize) - 1)
    return top - np.minimum(pixels, top)


def _rescale_values(ds: Dataset, index: int) -> tuple[Any, Any]:
    """RescaleSlope and RescaleIntercept for frame `index`: from the Pixel Value Transformation
    functional group (per frame, else shared) of enhanced objects, else the top-level ones."""
    for groups, i in (
        ("PerFrameFunctionalGroupsSequence", index),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        items = ds.get(groups)
        if (
            items
            and len(items) > i
            and (transform := items[i].get("PixelValueTransformationSequence"))
        ):
            return transform[0].get("RescaleSlope"), transform[0].get("RescaleIntercept")
    return ds.get("RescaleSlope"), ds.get("RescaleIntercept")


def _rescale(pixels: np.ndarray, slope: Any, intercept: Any) -> np.ndarray:
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
