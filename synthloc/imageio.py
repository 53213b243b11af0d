"""Reading and writing images with their bit depth intact (8/16-bit PNG and TIFF, JPEG).

OpenCV orders colour channels BGR; everything here returns and accepts RGB so that the rest of
synthloc never has to think about it.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from synthloc.errors import InvalidInput, NotFound

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")


def decode_image(data: bytes, source: str) -> np.ndarray:
    """Decode encoded image bytes to HW or HWC (RGB) without changing the dtype."""
    if not data:
        raise InvalidInput(f"{source}: the image is empty (0 bytes)")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise InvalidInput(f"{source}: not a readable PNG, TIFF or JPEG image")
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    return image


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as HW or HWC (RGB), keeping its bit depth."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"{path}: no such image file")
    return decode_image(path.read_bytes(), str(path))


def encode_png(image: np.ndarray) -> bytes:
    """Encode a uint8/uint16 HW or HWC (RGB) array as PNG bytes."""
    if image.dtype not in (np.uint8, np.uint16):
        raise InvalidInput(f"PNG holds 8- or 16-bit pixels, not {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise InvalidInput(f"OpenCV could not encode an image of shape {image.shape} as PNG")
    return buf.tobytes()


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write a uint8/uint16 array as a lossless PNG file (creating its folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_png(image))
