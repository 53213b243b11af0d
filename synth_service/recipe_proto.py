"""Recipe <-> synthloc.v1.Recipe. An unset proto field keeps the value of the base recipe."""

from __future__ import annotations

import dataclasses

from synth_service.recipe import BlendMode, LabelMode, NoiseModel, Recipe
from synthloc.errors import InvalidInput
from synthloc.v1 import common_pb2, synthesis_pb2

_DTYPES = {common_pb2.DTYPE_UINT8: "uint8", common_pb2.DTYPE_UINT16: "uint16"}
_DTYPE_ENUMS = {name: value for value, name in _DTYPES.items()}


def _range(msg: common_pb2.Range) -> tuple[float, float]:
    return (msg.min, msg.max)


def recipe_from_proto(msg: synthesis_pb2.Recipe, base: Recipe) -> Recipe:
    """Overlay the fields set in msg onto base."""
    changes: dict = {}
    for name in ("height", "width", "channels"):
        if msg.HasField(name):
            changes[name] = getattr(msg, name)
    if msg.dtype != common_pb2.DTYPE_UNSPECIFIED:
        if msg.dtype not in _DTYPES:
            raise InvalidInput(
                f"recipe.dtype: must be DTYPE_UINT8 or DTYPE_UINT16, got "
                f"{common_pb2.DType.Name(msg.dtype)}"
            )
        changes["dtype"] = _DTYPES[msg.dtype]
    if msg.HasField("objects_per_image"):
        which = msg.objects_per_image.WhichOneof("count")
        if which == "uniform":
            u = msg.objects_per_image.uniform
            changes.update(count_range=(u.min, u.max), poisson_mean=None)
        elif which == "poisson_mean":
            changes["poisson_mean"] = msg.objects_per_image.poisson_mean
    if msg.HasField("class_weights"):
        changes["class_weights"] = dict(msg.class_weights.weights)
    for name in ("scale", "rotation_deg"):
        if msg.HasField(name):
            changes[name] = _range(getattr(msg, name))
    if msg.HasField("flips"):
        changes["flips"] = msg.flips
    for name in ("brightness", "contrast", "gamma"):
        if msg.photometric.HasField(name):
            changes[name] = _range(getattr(msg.photometric, name))
    if msg.noise.model != synthesis_pb2.NOISE_MODEL_UNSPECIFIED:
        changes["noise"] = NoiseModel(msg.noise.model)
    if msg.noise.HasField("sigma"):
        changes["noise_sigma"] = _range(msg.noise.sigma)
    if msg.blur.HasField("probability"):
        changes["blur_probability"] = msg.blur.probability
    if msg.blur.HasField("sigma"):
        changes["blur_sigma"] = _range(msg.blur.sigma)
    if msg.blending:
        modes = []
        for item in msg.blending:
            if item.mode == synthesis_pb2.BLEND_MODE_UNSPECIFIED:
                raise InvalidInput("recipe.blending: every entry needs a mode")
            modes.append((BlendMode(item.mode), item.weight))
        changes["blending"] = tuple(modes)
    if msg.overlap.HasField("max_iou"):
        changes["max_iou"] = msg.overlap.max_iou
    if msg.overlap.HasField("min_visible_fraction"):
        changes["min_visible_fraction"] = msg.overlap.min_visible_fraction
    if msg.HasField("border_truncation"):
        changes["border_truncation"] = msg.border_truncation
    if msg.distractors.HasField("mean_count"):
        changes["distractor_mean"] = msg.distractors.mean_count
    if msg.label_mode != synthesis_pb2.LABEL_MODE_UNSPECIFIED:
        changes["label_mode"] = LabelMode(msg.label_mode)
    if msg.HasField("context_probability"):
        changes["context_probability"] = msg.context_probability
    return dataclasses.replace(base, **changes)


def recipe_to_proto(recipe: Recipe) -> synthesis_pb2.Recipe:
    """Every field of the recipe, set explicitly."""
    msg = synthesis_pb2.Recipe(
        height=recipe.height,
        width=recipe.width,
        channels=recipe.channels,
        dtype=_DTYPE_ENUMS[recipe.dtype],
        flips=recipe.flips,
        border_truncation=recipe.border_truncation,
        label_mode=int(recipe.label_mode),
        context_probability=recipe.context_probability,
    )
    if recipe.poisson_mean is not None:
        msg.objects_per_image.poisson_mean = recipe.poisson_mean
    else:
        msg.objects_per_image.uniform.min, msg.objects_per_image.uniform.max = recipe.count_range
    if recipe.class_weights is not None:
        msg.class_weights.SetInParent()
        msg.class_weights.weights.update(recipe.class_weights)
    _set(msg.scale, recipe.scale)
    _set(msg.rotation_deg, recipe.rotation_deg)
    _set(msg.photometric.brightness, recipe.brightness)
    _set(msg.photometric.contrast, recipe.contrast)
    _set(msg.photometric.gamma, recipe.gamma)
    msg.noise.model = int(recipe.noise)
    _set(msg.noise.sigma, recipe.noise_sigma)
    msg.blur.probability = recipe.blur_probability
    _set(msg.blur.sigma, recipe.blur_sigma)
    for mode, weight in recipe.blending:
        msg.blending.add(mode=int(mode), weight=weight)
    msg.overlap.max_iou = recipe.max_iou
    msg.overlap.min_visible_fraction = recipe.min_visible_fraction
    msg.distractors.mean_count = recipe.distractor_mean
    return msg


def _set(target: common_pb2.Range, interval: tuple[float, float]) -> None:
    target.min, target.max = interval
