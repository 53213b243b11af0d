"""draws.py: a sample's counter-based random stream."""

from __future__ import annotations

import numpy as np

from synth_service.draws import Draws


def test_same_key_same_values_and_values_are_had_without_the_ones_before() -> None:
    whole = Draws(3, 17).uniforms(1000)
    split = Draws(3, 17)
    first, rest = split.uniforms(400), split.uniforms(600)
    assert np.array_equal(whole, np.concatenate([first, rest]))
    assert not np.array_equal(whole, Draws(3, 18).uniforms(1000))
    assert not np.array_equal(whole, Draws(4, 17).uniforms(1000))
    # (seed, index) and (index, seed) are different streams.
    assert not np.array_equal(Draws(17, 3).uniforms(1000), whole)


def test_uniforms_are_uniform_and_independent() -> None:
    u = Draws(0, 0).uniforms(1_000_000)
    assert u.dtype == np.float64 and u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.002 and abs(u.var() - 1 / 12) < 0.001
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.005
    counts = np.bincount((u * 16).astype(int), minlength=16)
    assert counts.min() > 0.98 * 1_000_000 / 16 and counts.max() < 1.02 * 1_000_000 / 16
    # Neighbouring samples of a stream share no values.
    assert not set(Draws(0, 1).raw(1000)) & set(Draws(0, 0).raw(1000))


def test_integer_stays_in_range_and_covers_it() -> None:
    draws = Draws(1, 2)
    values = [draws.integer(12, 29) for _ in range(5000)]
    assert min(values) == 12 and max(values) == 28
    assert draws.integer(5, 6) == 5


def test_poisson_has_its_mean_and_variance_on_both_methods() -> None:
    for mean in (0.5, 20.0, 400.0):
        draws = Draws(9, int(mean))
        k = np.array([draws.poisson(mean) for _ in range(20000)])
        assert k.min() >= 0
        assert abs(k.mean() - mean) < 0.03 * mean + 0.02
        assert abs(k.var() - mean) < 0.08 * mean + 0.05
