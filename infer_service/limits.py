"""The pixel limit every decoder applies (before decoding, where the header allows)."""

from __future__ import annotations

from synthloc.errors import ResourceExhausted


def check_pixel_limit(height: int, width: int, max_pixels: int) -> None:
    """Refuse an image of `height` x `width` above the configured pixel limit."""
    if height * width > max_pixels:
        raise ResourceExhausted(
            f"the image is {width}x{height} = {width * height} pixels, above this server's "
            f"limit of {max_pixels} pixels: downscale it or send it in tiles (`synthloc localize "
            "--tile 4096`, LocalizationClient.localize_tiled)"
        )
