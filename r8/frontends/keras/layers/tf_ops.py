"""Keras 2's op layers (TFOpLambda): a TensorFlow function applied to tensors, named in the
config; no code is read."""

import numpy as np
from torch import nn

from r8.frontends.keras.layers.layout import torch_axis
from r8.frontends.keras.layers.merge import with_constant
from r8.frontends.keras.layers.modules import Arith, ArithConst, Concat, KerasTranspose, constant_in_torch_layout
from r8.frontends.keras.layers.registry import Steps, converter, takes_constants
from r8.frontends.keras.layers.reshape import reshape_steps
from r8.frontends.keras.reader import KerasLayer

# ---- Keras 2's op layers: a TensorFlow function applied to tensors, named in the config (no code)
TF_ARITH = {"__operators__.add": "add", "math.add": "add", "math.multiply": "mul", "__operators__.mul": "mul",
            "math.subtract": "sub", "__operators__.sub": "sub", "math.truediv": "div", "__operators__.truediv": "div",
            "math.divide": "div",
            "math.maximum": "max", "math.minimum": "min"}
TF_UNARY = {"nn.relu": nn.ReLU, "nn.relu6": nn.ReLU6, "math.sigmoid": nn.Sigmoid, "nn.sigmoid": nn.Sigmoid}
TF_OTHER = ("reshape", "concat", "compat.v1.transpose", "transpose")


@converter("TFOpLambda")
@takes_constants
def tf_op(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    fn, kw, rank = layer.config.get("function"), layer.call_kwargs, len(shapes[0]) + 1
    reads = {"y"} if fn in TF_ARITH else {"shape"} if fn == "reshape" else {"axis"} if fn == "concat" else \
        {"perm", "a"} if fn in ("compat.v1.transpose", "transpose") else set()
    if set(kw) - reads:
        key = sorted(set(kw) - reads)[0]
        raise layer.error(f"applies {fn} with {key}={kw[key]!r}, which r8 does not convert")
    if layer.constants and fn not in TF_ARITH:
        raise layer.error(f"applies {fn} to a constant first operand, which r8 does not convert")
    if fn in TF_ARITH:
        y = kw.get("y")
        if layer.constants:  # the constant came first (3.0 - x): x is the y
            return with_constant(layer, TF_ARITH[fn], shapes)
        if isinstance(y, dict) and "input" in y:
            if len(shapes) != 2 or shapes[0] != shapes[1]:
                raise layer.error(f"applies {fn} to tensors of shapes {shapes} (broadcasting is not supported)")
            return [(layer.name, Arith(TF_ARITH[fn]))]
        if y is None or isinstance(y, dict | str) or np.asarray(y).dtype.kind not in "iuf":
            raise layer.error(f"applies {fn} to {y!r}; r8 takes a tensor or a numeric constant")
        return [(layer.name, ArithConst(TF_ARITH[fn], constant_in_torch_layout(y, rank)))]
    if fn in TF_UNARY:
        return [(layer.name, TF_UNARY[fn]())]
    if fn == "reshape":
        shape = kw.get("shape")
        if not isinstance(shape, list) or not shape:
            raise layer.error(f"reshapes to {shape!r}; r8 takes a constant shape")
        return reshape_steps(layer, shapes[0], shape[1:])  # its shape has the batch dimension first
    if fn == "concat":
        return [(layer.name, Concat(torch_axis(int(kw.get("axis", 0)), rank)))]
    if fn in ("compat.v1.transpose", "transpose"):
        perm = kw.get("perm") or kw.get("a")
        if not isinstance(perm, list) or sorted(perm) != list(range(rank)) or perm[0] != 0:
            raise layer.error(f"transposes with perm={perm!r}; r8 takes a permutation that keeps the batch axis first")
        return [(layer.name, KerasTranspose(tuple(perm), rank))]
    raise layer.error(f"applies the TensorFlow function {fn!r}, which r8 does not convert; supported: "
                      f"{', '.join([*TF_ARITH, *TF_UNARY, *TF_OTHER])}")
