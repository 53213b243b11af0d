"""The random numbers of one sample: a counter-based stream keyed by (seed, index).

Value i of sample (seed, index) is splitmix64 of a key hashed from both, plus i: it depends on
nothing else, so a sample is the same in any order, process or machine, and with any numpy
(numpy keeps its generators' streams, not its distributions' algorithms, across versions).
The stream is computed in the compose kernel; each draw is a block of values, so a sample
costs a handful of calls rather than a generator and its method calls.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from synth_service import _kernel


class Draws:
    """A sample's stream of random numbers; each method takes the next values."""

    def __init__(self, seed: int, index: int) -> None:
        """The stream of sample `index` of the stream with `seed` (both >= 0)."""
        self._key = _kernel.stream_key(seed, index)
        self._at = 0

    def uniforms(self, count: int) -> np.ndarray:
        """`count` float64 values in [0, 1), 53 random bits each."""
        values = np.frombuffer(_kernel.uniforms(self._key, self._at, count), np.float64)
        self._at += count
        return values

    def raw(self, count: int) -> list[int]:
        """`count` uniform 64-bit integers."""
        values = np.frombuffer(_kernel.raw(self._key, self._at, count), np.uint64).tolist()
        self._at += count
        return values

    def integer(self, low: int, high: int) -> int:
        """A uniform integer in [low, high)."""
        return low + min(int(self.uniforms(1)[0] * (high - low)), high - low - 1)

    def poisson(self, mean: float) -> int:
        """A Poisson(mean) count from one uniform: by inversion up to a mean of 100, beyond
        by the normal approximation (off by under 1 % of a count there)."""
        u = float(self.uniforms(1)[0])
        if mean > 100:
            z = NormalDist().inv_cdf(min(max(u, 1e-12), 1 - 1e-12))
            return max(0, round(mean + math.sqrt(mean) * z))
        k, term = 0, math.exp(-mean)
        total = term
        while u >= total and term > 0.0:
            k += 1
            term *= mean / k
            total += term
        return k
