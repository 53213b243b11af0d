"""Which objects a sample gets: class draws (where they go: the compiled kernel, kernel.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synth_service.draws import Draws
from synth_service.library import ObjectLibrary
from synth_service.recipe import LabelMode, Recipe


@dataclass(frozen=True)
class ClassTable:
    """How a recipe samples the library's classes (built once per recipe, kernel.prepare)."""

    cdf: np.ndarray  # cumulative sampling probability per class
    eligible: np.ndarray  # class ids with a weight above 0


def class_weights(recipe: Recipe, library: ObjectLibrary) -> np.ndarray:
    """Sampling weight per library class; classes without objects get 0."""
    counts = np.array([len(ix) for ix in library.by_class], float)
    if recipe.class_weights is None:
        weights = counts.copy()
    else:
        weights = np.array([recipe.class_weights.get(n, 0.0) for n in library.class_names])
    weights[counts == 0] = 0.0
    return weights


def class_table(recipe: Recipe, library: ObjectLibrary) -> ClassTable:
    """The recipe's class weights as a cumulative distribution, and the classes it can draw."""
    weights = class_weights(recipe, library)
    total = weights.sum()
    cdf = np.cumsum(weights / total) if total > 0 else np.zeros_like(weights)
    if total > 0:
        cdf /= cdf[-1]
    return ClassTable(cdf, np.flatnonzero(weights > 0))


def draw_classes(recipe: Recipe, table: ClassTable, draws: Draws) -> list[int]:
    """The class of every object to place, per the recipe's count and label mode."""
    if recipe.poisson_mean is not None:
        count = draws.poisson(recipe.poisson_mean)
    else:
        count = draws.integer(recipe.count_range[0], recipe.count_range[1] + 1)
    eligible = table.eligible
    if recipe.label_mode is LabelMode.STRONG:
        # Inverse-CDF draws over the class weights.
        return np.searchsorted(table.cdf, draws.uniforms(count), side="right").tolist()
    if recipe.label_mode is LabelMode.WEAK_SINGLE_CLASS:
        # Class-balanced: every eligible class equally often, whatever the library holds.
        chosen = int(eligible[draws.integer(0, len(eligible))])
        return [chosen] * max(count, 1)
    present = eligible[draws.uniforms(len(eligible)) < 0.5]
    if present.size == 0:
        present = eligible[[draws.integer(0, len(eligible))]]
    picks = draws.uniforms(max(count - present.size, 0))
    extra = present[np.minimum((picks * present.size).astype(np.int64), present.size - 1)]
    return [int(c) for c in np.concatenate([present, extra])]
