"""Hand-built ONNX localizers (no torch): small graphs whose outputs are known in closed form."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from synthloc.modelcard import METADATA_KEY, ModelCard

STRIDE = 4
BOX_SIDE = 8.0  # every detection of the analytic detector is an 8 x 8 px box


def analytic_detector(card: ModelCard | None) -> onnx.ModelProto:
    """A detector whose heatmap is a sigmoid of 4x4 mean brightness; boxes are 8 x 8 px.

    A bright 4x4-aligned square on a dark image therefore gives one peak at its cell, centred
    (offset 0.5) on the cell, so the expected detection is known exactly.
    """
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, "h", "w"])
    outputs = [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", k, "rows", "cols"])
        for name, k in (("heatmap", 1), ("size", 2), ("offset", 2))
    ]

    def const(name: str, value: np.ndarray) -> onnx.TensorProto:
        return numpy_helper.from_array(value.astype(np.float32), name)

    initializers = [
        const("heat_w", np.full((1, 1, 1, 1), 10.0)),
        const("heat_b", np.full(1, -5.0)),
        const("zero_w", np.zeros((2, 1, 1, 1))),
        const("size_b", np.full(2, BOX_SIDE)),
        const("offset_b", np.full(2, 0.5)),
    ]
    pool = [STRIDE, STRIDE]
    nodes = [
        helper.make_node("AveragePool", ["image"], ["mean"], kernel_shape=pool, strides=pool),
        helper.make_node("Conv", ["mean", "heat_w", "heat_b"], ["heat_logit"]),
        helper.make_node("Sigmoid", ["heat_logit"], ["heatmap"]),
        helper.make_node("Conv", ["mean", "zero_w", "size_b"], ["size"]),
        helper.make_node("Conv", ["mean", "zero_w", "offset_b"], ["offset"]),
    ]
    graph = helper.make_graph(nodes, "analytic_detector", [image], outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if card is not None:
        helper.set_model_props(model, {METADATA_KEY: card.to_json()})
    onnx.checker.check_model(model)
    return model


def detector_card(**changes: object) -> ModelCard:
    """The card of the analytic detector."""
    fields = {
        "task": "detector",
        "class_names": ("nucleus",),
        "input_channels": 1,
        "stride": STRIDE,
        "size_divisor": 32,
        "score_threshold": 0.5,
    }
    return ModelCard(**{**fields, **changes})  # type: ignore[arg-type]
