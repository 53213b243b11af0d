"""What LocalizationClient sends and receives: requests built from images, replies turned into
LocalizeResult, and the checks made before anything is sent."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from infer_service.client_types import Found, ImageInput, LocalizeResult
from synthloc.errors import InvalidInput, NotFound
from synthloc.v1 import common_pb2, localization_pb2

# Frames a client decodes from its own files before sending them: no limit worth the name
# (the service applies its own to each frame it is sent).
CLIENT_MAX_PIXELS = 1 << 34
_TENSOR_DTYPES = {
    np.dtype(np.uint8): common_pb2.DTYPE_UINT8,
    np.dtype(np.uint16): common_pb2.DTYPE_UINT16,
    np.dtype(np.float32): common_pb2.DTYPE_FLOAT32,
}


def is_dicom(data: bytes) -> bool:
    """True for DICOM Part-10 bytes: a 128-byte preamble, then 'DICM'."""
    return data[128:132] == b"DICM"


def frame_count(data: bytes) -> int:
    """How many images encoded bytes hold: a DICOM file's Number of Frames (read from its
    header only), else 1. A header that cannot be read counts 1: the service will say why."""
    if not is_dicom(data):
        return 1
    from io import BytesIO

    from pydicom import dcmread

    try:
        ds = dcmread(BytesIO(data), stop_before_pixels=True, specific_tags=["NumberOfFrames"])
        return max(int(ds.get("NumberOfFrames") or 1), 1)
    except Exception:  # pydicom raises many kinds on malformed headers
        return 1


def check_threshold(threshold: float | None) -> None:
    """InvalidInput unless the score threshold is None or in [0, 1]."""
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise InvalidInput(f"threshold: must be in [0, 1], got {threshold}")


def build_request(
    image: ImageInput,
    model: str = "",
    version: str = "",
    threshold: float | None = None,
    return_heatmap: bool = False,
    request_id: str = "",
    window: tuple[float, float] | None = None,
) -> localization_pb2.LocalizeRequest:
    """The LocalizeRequest for one image; InvalidInput / NotFound for what cannot be sent.
    `window`: the intensities the server scales to 0 and 1 (for a tile: its image's)."""
    check_threshold(threshold)
    request = localization_pb2.LocalizeRequest(
        request_id=request_id,
        model_name=model,
        model_version=version,
        return_heatmap=return_heatmap,
    )
    if window is not None:
        request.intensity_low, request.intensity_high = window
    if threshold is not None:
        request.score_threshold = threshold
    if isinstance(image, np.ndarray):
        request.tensor.CopyFrom(tensor_from_array(image))
    elif isinstance(image, (bytes, bytearray, memoryview)):
        request.encoded_image = bytes(image)
    elif isinstance(image, (str, Path)):
        request.encoded_image = read_image_file(Path(image))
    else:
        raise InvalidInput(
            "image: expected encoded image bytes, a file path or a numpy array, got "
            f"{type(image).__name__}"
        )
    return request


def read_image_file(path: Path) -> bytes:
    """The bytes of an image file, with errors that name it."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise NotFound(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InvalidInput(f"{path}: is a folder; give an image file") from None
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read ({exc.strerror})") from None


def tensor_from_array(pixels: np.ndarray) -> common_pb2.Tensor:
    """An HW or HWC array as a little-endian Tensor message."""
    dtype = pixels.dtype.newbyteorder("=")
    if dtype not in _TENSOR_DTYPES:
        raise InvalidInput(
            f"image: arrays of {pixels.dtype} are not supported; convert to uint8, uint16 or "
            "float32 (e.g. pixels.astype(np.float32))"
        )
    if pixels.ndim not in (2, 3):
        raise InvalidInput(f"image: expected an HW or HWC array, got shape {pixels.shape}")
    data = np.ascontiguousarray(pixels, dtype=dtype.newbyteorder("<")).tobytes()
    return common_pb2.Tensor(dtype=_TENSOR_DTYPES[dtype], shape=list(pixels.shape), data=data)


def result_from_reply(reply: localization_pb2.LocalizeResponse) -> LocalizeResult:
    """A LocalizeResponse as a LocalizeResult."""
    heatmap = None
    if reply.HasField("heatmap") and reply.heatmap.HasField("maps"):
        maps = reply.heatmap.maps
        heatmap = np.frombuffer(maps.data, "<f4").reshape(tuple(maps.shape)).astype(np.float32)
    t = reply.timings
    return LocalizeResult(
        detections=[
            Found(
                d.class_name,
                d.score,
                (d.box.x, d.box.y, d.box.width, d.box.height),
                (d.point.x, d.point.y),
                d.class_id,
            )
            for d in reply.detections
        ],
        model=reply.model_name,
        version=reply.model_version,
        provider=reply.provider,
        height=reply.image_height,
        width=reply.image_width,
        total_ms=t.total_ms,
        request_id=reply.request_id,
        timings_ms={
            "decode": t.decode_ms,
            "queue": t.queue_ms,
            "compute": t.compute_ms,
            "postprocess": t.postprocess_ms,
        },
        heatmap=heatmap,
        heatmap_stride=reply.heatmap.stride if heatmap is not None else 0.0,
        intensity_window=(reply.intensity_low, reply.intensity_high)
        if reply.HasField("intensity_low")
        else None,
    )
