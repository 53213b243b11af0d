"""Input normalisation of 8/16-bit images: synthloc.preprocess against what it replaced.

    .venv/bin/python benchmarks/preprocess.py [--rounds 5]

Side by side in one run, medians over --rounds rounds, for 512x512 8-bit, 512x512 and
2048x2048 12-bit (a microscope's or a DICOM's range) and 512x512 full 16-bit noise.
Percentiles:
- synthloc: the counting and reading in C (synthloc/native/pixels.c);
- counting in numpy/OpenCV: cv2.calcHist (8-bit) or np.bincount (16-bit), np.cumsum and
  np.searchsorted, as synthloc did before;
- np.percentile, which sorts.
Scaling into a float32 buffer given the percentiles: synthloc's one pass in C against numpy's
subtract and multiply. Every answer is checked against numpy's first.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import cv2
import numpy as np

from synthloc._native import scale_into
from synthloc.preprocess import percentiles

QS = (1.0, 99.9)


def counted_in_numpy(image: np.ndarray) -> list[float]:
    """The earlier implementation: a numpy/OpenCV histogram, its cumulative sum, searches."""
    flat = image.ravel()
    n = flat.size
    if image.dtype == np.uint8:
        counts = cv2.calcHist([flat], [0], None, [256], [0, 256]).ravel().astype(np.int64)
    else:
        counts = np.bincount(flat)
    cdf = np.cumsum(counts)
    result = []
    for q in QS:
        rank = q / 100 * (n - 1)
        below = int(np.floor(rank))
        low = int(np.searchsorted(cdf, below + 1))
        high = int(np.searchsorted(cdf, min(below + 2, n)))
        result.append(low + (high - low) * (rank - below))
    return result


def timed_ms(call, image: np.ndarray, repeats: int) -> float:
    call(image)
    start = time.perf_counter()
    for _ in range(repeats):
        call(image)
    return (time.perf_counter() - start) / repeats * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    cv2.setNumThreads(1)  # as in a server's request thread: one core's figure
    rng = np.random.default_rng(0)
    images = {
        "u8 512x512": rng.integers(0, 256, (512, 512)).astype(np.uint8),
        "u16 512x512, 12-bit": rng.integers(0, 4096, (512, 512)).astype(np.uint16),
        "u16 2048x2048, 12-bit": rng.integers(0, 4096, (2048, 2048)).astype(np.uint16),
        "u16 512x512, 16-bit": rng.integers(0, 65536, (512, 512)).astype(np.uint16),
    }
    methods = {
        "synthloc": lambda image: percentiles(image, QS),
        "counted_in_numpy": counted_in_numpy,
        "np.percentile": lambda image: list(np.percentile(image, QS)),
    }
    for image in images.values():
        want = np.percentile(image, QS)
        for name, call in methods.items():
            if not np.allclose(call(image), want, rtol=0, atol=1e-9):
                raise SystemExit(f"{name} disagrees with np.percentile")
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for label, image in images.items():
            repeats = max(3, int(2e7 / image.size))
            for name, call in methods.items():
                times.setdefault((label, name), []).append(timed_ms(call, image, repeats))
    header = f"{'image':24s} {'synthloc':>10s} {'numpy count':>12s} {'np.percentile':>14s}"
    print(header, "ms, speed-up")
    for label in images:
        ms = [statistics.median(times[label, name]) for name in methods]
        ratio = statistics.median(
            a / b
            for a, b in zip(times[label, "counted_in_numpy"], times[label, "synthloc"], strict=True)
        )
        print(f"{label:24s} {ms[0]:10.3f} {ms[1]:12.3f} {ms[2]:14.3f}   {ratio:.2f}x")
    scaling(images, args.rounds)
    return 0


def scaling(images: dict[str, np.ndarray], rounds: int) -> None:
    """(pixels - lo) * factor into a float32 buffer: C against numpy, same values."""
    lo, factor = np.float32(11.5), np.float32(1 / 3000)

    def in_c(image: np.ndarray, out: np.ndarray) -> None:
        scale_into(image, out, float(lo), float(factor))

    def in_numpy(image: np.ndarray, out: np.ndarray) -> None:
        np.subtract(image, lo, out=out, dtype=np.float32, casting="unsafe")
        out *= factor

    methods = {"synthloc": in_c, "numpy": in_numpy}
    outs = {label: np.empty(image.shape, np.float32) for label, image in images.items()}
    for label, image in images.items():
        in_numpy(image, want := np.empty(image.shape, np.float32))
        in_c(image, outs[label])
        if outs[label].tobytes() != want.tobytes():
            raise SystemExit(f"scaling {label} in C differs from numpy")
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(rounds):
        for label, image in images.items():
            repeats = max(3, int(2e7 / image.size))
            for name, call in methods.items():
                call(image, outs[label])
                start = time.perf_counter()
                for _ in range(repeats):
                    call(image, outs[label])
                ms = (time.perf_counter() - start) / repeats * 1000
                times.setdefault((label, name), []).append(ms)
    print(f"\n{'scaling':24s} {'synthloc':>10s} {'numpy':>12s} ms, speed-up")
    for label in images:
        c, n = (statistics.median(times[label, name]) for name in methods)
        ratio = statistics.median(
            a / b for a, b in zip(times[label, "numpy"], times[label, "synthloc"], strict=True)
        )
        print(f"{label:24s} {c:10.3f} {n:12.3f}   {ratio:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
