"""Merge layers (Add, Concatenate, Multiply, Subtract, Maximum, Minimum, Average) and Keras 3's
arithmetic with a constant operand."""

import numpy as np

from r8.frontends.keras.layers.layout import torch_axis
from r8.frontends.keras.layers.modules import Add, Arith, ArithConst, Concat, constant_in_torch_layout
from r8.frontends.keras.layers.registry import Steps, converter, takes_constants
from r8.frontends.keras.reader import KerasLayer


def with_constant(layer: KerasLayer, kind: str, shapes: list[tuple]) -> Steps:
    """One tensor and one constant, in the call's order: Keras 3's ``x + 3.0`` or ``3.0 - x``
    (a ``keras.ops`` call in a functional model is saved as the merge layer's class)."""
    if len(shapes) != 1 or len(layer.constants) != 1:
        raise layer.error(f"combines {len(shapes)} tensor(s) and {len(layer.constants)} constant(s); r8 takes one "
                          "tensor and one constant")
    ((position, value),), shape = layer.constants.items(), shapes[0]
    try:
        fits = np.broadcast_shapes((1, *shape), value.shape) == (1, *shape)
    except ValueError:
        fits = False
    if not fits:
        raise layer.error(f"combines a tensor of shape {shape} with a constant of shape {value.shape}, which would "
                          "change its shape")
    return [(layer.name, ArithConst(kind, constant_in_torch_layout(value, len(shape) + 1), const_first=position == 0))]


@converter("Add")
@takes_constants
def add(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    if layer.constants:
        return with_constant(layer, "add", shapes)
    if len(set(shapes)) != 1:
        raise layer.error(f"adds tensors of different shapes {shapes} (broadcasting is not supported)")
    return [(layer.name, Add())]


@converter("Concatenate")
def concatenate(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    return [(layer.name, Concat(torch_axis(layer.config.get("axis", -1), len(shapes[0]) + 1)))]


# ---- the CNN layers beyond the MLPerf Tiny set
MERGE_KINDS = {"Multiply": "mul", "Subtract": "sub", "Maximum": "max", "Minimum": "min", "Average": "mean",
               "TrueDivide": "div", "Divide": "div"}  # the last two: Keras 3's x / y (keras.ops)


@converter(*MERGE_KINDS)
@takes_constants
def merge(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    kind = MERGE_KINDS[layer.class_name]
    if layer.constants and kind != "mean":
        return with_constant(layer, kind, shapes)
    if layer.constants or (kind == "div" and len(shapes) != 2):
        raise layer.error(f"combines {len(shapes)} tensor(s) and {len(layer.constants)} constant(s); r8 takes "
                          + ("two tensors" if kind == "div" else "tensors only"))
    try:  # Keras broadcasts (a squeeze-and-excitation Multiply: (H, W, C) x (1, 1, C)); so does torch, in NCHW
        np.broadcast_shapes(*shapes)
    except ValueError:
        raise layer.error(f"merges tensors of shapes {shapes}, which do not broadcast") from None
    if len({len(s) for s in shapes}) != 1 or (layer.class_name == "Subtract" and len(shapes) != 2):
        raise layer.error(f"merges tensors of shapes {shapes}; r8 merges tensors of one rank (Subtract: two)")
    return [(layer.name, Arith(kind))]
