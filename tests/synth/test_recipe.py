"""Recipe: defaults, proto round trip, hashing, validation naming the field."""

from __future__ import annotations

import dataclasses

import pytest

from synth_service.recipe import BlendMode, LabelMode, Recipe, validate_recipe
from synth_service.recipe_proto import recipe_from_proto, recipe_to_proto
from synthloc.errors import InvalidInput
from synthloc.v1 import synthesis_pb2

CLASSES = ["nucleus", "micronucleus"]


def test_proto_round_trip_keeps_every_field() -> None:
    recipe = Recipe(
        height=300,
        width=200,
        channels=3,
        dtype="uint16",
        poisson_mean=7.5,
        class_weights={"nucleus": 2.0, "micronucleus": 0.5},
        scale=(0.5, 2.0),
        blending=((BlendMode.POISSON, 1.0),),
        label_mode=LabelMode.WEAK_PRESENCE,
        distractor_mean=1.5,
        flips=False,
        context_probability=0.7,
    )
    assert recipe_from_proto(recipe_to_proto(recipe), Recipe()) == recipe
    assert recipe_from_proto(recipe_to_proto(recipe), Recipe()).content_hash() == (
        recipe.content_hash()
    )


def test_unset_fields_keep_the_base_recipe() -> None:
    msg = synthesis_pb2.Recipe(height=64)
    msg.overlap.max_iou = 0.0
    recipe = recipe_from_proto(msg, Recipe())
    assert recipe == dataclasses.replace(Recipe(), height=64, max_iou=0.0)


def test_hash_changes_with_any_field() -> None:
    base = Recipe().content_hash()
    assert len(base) == 16
    assert dataclasses.replace(Recipe(), blur_probability=0.21).content_hash() != base
    assert dataclasses.replace(Recipe(), context_probability=0.5).content_hash() != base
    assert Recipe(class_weights={"nucleus": 1.0}).content_hash() != base
    assert Recipe().content_hash() == base


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"height": 0}, "recipe.height: must be > 0, got 0"),
        ({"width": -3}, "recipe.width: must be > 0, got -3"),
        ({"height": 5000, "width": 5000}, "above this server's limit of 16777216"),
        ({"class_weights": {}}, "recipe.class_weights: is set but empty"),
        ({"class_weights": {"cell": 1.0}}, "recipe.class_weights: unknown class 'cell'"),
        ({"count_range": (5, 2)}, "recipe.objects_per_image.uniform: needs 0 <= min <= max"),
        ({"scale": (0.0, 1.0)}, "recipe.scale: must be > 0"),
        ({"blending": ((BlendMode.HARD, 0.0),)}, "recipe.blending: needs at least one mode"),
        ({"channels": 2}, "recipe.channels: must be 1 or 3"),
        ({"min_visible_fraction": 1.5}, "recipe.overlap.min_visible_fraction: must be in [0, 1]"),
        ({"context_probability": -0.1}, "recipe.context_probability: must be in [0, 1]"),
    ],
)
def test_validation_names_the_field(changes: dict, message: str) -> None:
    with pytest.raises(InvalidInput) as err:
        validate_recipe(dataclasses.replace(Recipe(), **changes), CLASSES, 4096 * 4096)
    assert message in str(err.value)


def test_default_recipe_is_valid() -> None:
    validate_recipe(Recipe(), CLASSES, 512 * 512)
