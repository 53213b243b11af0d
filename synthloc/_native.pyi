"""Types of synthloc._native (synthloc/native/histogram.c)."""

from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12

def order_statistics(pixels: Buffer, ranks: list[int]) -> list[int]: ...
