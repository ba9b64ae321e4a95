"""One small converter per TFLite builtin op, in a registry (as :mod:`r8.frontends.keras.layers` for Keras
layers), building the same torch modules and layout: 4-D tensors NCHW in torch (TFLite's are
NHWC), every other rank as in TFLite; TF 'SAME' padding puts the odd pixel bottom/right.

A converter takes the op (:class:`r8.frontends.tflite.reader.TfliteNode`) and the per-sample TFLite-layout
shapes of its non-constant inputs, and returns ``(name, module)`` steps run one after the other.
Constant operands (weights, a MEAN's axes, an ADD's constant term) are read from the node.
"""

from typing import Callable

import numpy as np
import torch
from torch import nn

from r8.core.errors import MAX_ELEMENTS
from r8.frontends.keras.layers.conv import depthwise_weight, padded
from r8.frontends.keras.layers.layout import as_tensor, check_rank, tf_same_padding, torch_axis
from r8.frontends.keras.layers.modules import Add, Affine, Arith, ArithConst, Concat, KerasReshape, constant_in_torch_layout
from r8.frontends.keras.layers.pooling import pool_steps
from r8.frontends.keras.layers.registry import Steps, registrar
from r8.frontends.tflite.reader import TfliteNode

OPS: dict[str, Callable[[TfliteNode, list[tuple]], Steps]] = {}
FUSED = {0: None, 1: nn.ReLU, 2: lambda: nn.Hardtanh(-1.0, 1.0), 3: nn.ReLU6, 4: nn.Tanh}  # ActivationFunctionType
SAME, VALID = 0, 1  # tflite.Padding


op = registrar(OPS, "TFLite op")


# ---- helpers
def _fused(node: TfliteNode, steps: Steps) -> Steps:
    """The op's fused activation as a step of its own after it."""
    code = node.config.get("FusedActivationFunction", 0)
    if code not in FUSED:
        raise node.error(f"has fused activation {code}; supported: NONE, RELU, RELU_N1_TO_1, RELU6, TANH")
    return steps if FUSED[code] is None else steps + [(f"{node.name}_act", FUSED[code]())]


def _weight(node: TfliteNode, position: int, shape: tuple | None = None) -> np.ndarray:
    w = node.const(position)
    if w is None:
        raise node.error(f"input {position} is not a constant; r8 converts ops whose weights are in the file")
    if w.dtype != np.float32:
        raise node.error(f"input {position} is {w.dtype}: a quantized weight; r8 converts float .tflite files")
    if shape is not None and w.shape != tuple(shape):
        raise node.error(f"input {position} has shape {w.shape}; expected {tuple(shape)}")
    return w


def _pads(node: TfliteNode, hw: tuple, kernel: tuple, stride: tuple, dilation: tuple = (1, 1)) -> tuple:
    """(left, right, top, bottom) of the op's SAME or VALID padding."""
    padding = node.config.get("Padding", VALID)
    if padding == VALID:
        return 0, 0, 0, 0
    if padding != SAME:
        raise node.error(f"has padding {padding}; supported: SAME, VALID")
    effective = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    (top, bottom), (left, right) = (tf_same_padding(n, k, s) for n, k, s in zip(hw, effective, stride))
    return left, right, top, bottom


class Nhwc(nn.Module):
    """Runs ``op`` on a 4-D tensor in TFLite's NHWC layout (for ops whose axes mix H, W and C)."""

    def __init__(self, op: nn.Module, to_nchw: bool):
        super().__init__()
        self.op, self.to_nchw = op, to_nchw

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.op(x.permute(0, 2, 3, 1))
        return out.permute(0, 3, 1, 2) if self.to_nchw else out


class Mean(nn.Module):
    def __init__(self, dims: tuple, keepdim: bool):
        super().__init__()
        self.dims, self.keepdim = dims, keepdim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(self.dims, keepdim=self.keepdim)


class Pad(nn.Module):
    def __init__(self, pads: tuple):
        super().__init__()
        self.pads = pads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.pad(x, self.pads)


# ---- converters
@op("CONV_2D", "DEPTHWISE_CONV_2D")
def conv2d(node: TfliteNode, shapes: list[tuple]) -> Steps:
    (shape,) = shapes
    check_rank(node, shape, 4)
    (h, w, cin), c = shape, node.config
    stride, dilation = (c.get("StrideH", 1), c.get("StrideW", 1)), (c.get("DilationHFactor", 1), c.get("DilationWFactor", 1))
    raw = _weight(node, 1)
    if raw.ndim != 4:
        raise node.error(f"has a rank-{raw.ndim} filter {raw.shape}; expected rank 4")
    if node.class_name == "DEPTHWISE_CONV_2D":  # filter (1, H, W, in * multiplier); output c * mult + m
        cout, kernel, groups = raw.shape[3], raw.shape[1:3], cin
        if raw.shape[0] != 1 or cout % cin:
            raise node.error(f"has a depthwise filter {raw.shape} for {cin} input channels")
        weight = depthwise_weight(raw[0])
    else:  # filter (out, H, W, in / groups)
        cout, kernel = raw.shape[0], raw.shape[1:3]
        if raw.shape[3] == 0 or cin % raw.shape[3] or cout % (cin // raw.shape[3]):
            raise node.error(f"has a filter {raw.shape} for {cin} input channels")
        groups, weight = cin // raw.shape[3], raw.transpose(0, 3, 1, 2)
    bias = node.const(2) is not None
    conv = nn.Conv2d(cin, cout, tuple(kernel), stride, dilation=dilation, groups=groups, bias=bias)
    with torch.no_grad():
        conv.weight.copy_(as_tensor(weight))
        if bias:
            conv.bias.copy_(as_tensor(_weight(node, 2, (cout,))))
    return _fused(node, padded(node.name, conv, _pads(node, (h, w), tuple(kernel), stride, dilation)))


@op("FULLY_CONNECTED")
def fully_connected(node: TfliteNode, shapes: list[tuple]) -> Steps:
    (shape,) = shapes
    if node.config.get("WeightsFormat", 0) != 0 or node.config.get("KeepNumDims", False):
        raise node.error("uses shuffled weights or keep_num_dims; r8 converts the default FULLY_CONNECTED")
    weight = _weight(node, 1)
    if weight.ndim != 2 or int(np.prod(shape)) % weight.shape[1]:
        raise node.error(f"has weights {weight.shape} for an input {shape}")
    units, size = weight.shape
    bias = node.const(2) is not None
    linear = nn.Linear(size, units, bias=bias)
    with torch.no_grad():
        linear.weight.copy_(as_tensor(weight))  # TFLite stores (out, in), as torch does
        if bias:
            linear.bias.copy_(as_tensor(_weight(node, 2, (units,))))
    steps: Steps = []
    if shape != (size,):  # TFLite flattens its input to (-1, in) in its own element order
        steps.append((f"{node.name}_flatten", KerasReshape((size,), from_nchw=len(shape) == 3)))
    return _fused(node, steps + [(node.name, linear)])


@op("ADD", "SUB", "MUL")
def binary(node: TfliteNode, shapes: list[tuple]) -> Steps:
    kind = node.class_name.lower()
    if node.operands.count("const") == 1:
        position = node.operands.index("const")
        const = constant_in_torch_layout(_weight(node, position), len(shapes[0]) + 1)
        return _fused(node, [(node.name, ArithConst(kind, const, const_first=position == 0))])
    if len(shapes) != 2:
        raise node.error(f"has {len(shapes)} tensor operands; expected 2")
    if shapes[0] != shapes[1]:
        raise node.error(f"combines tensors of different shapes {shapes} (broadcasting is not supported)")
    return _fused(node, [(node.name, Add() if kind == "add" else Arith(kind))])


@op("AVERAGE_POOL_2D", "MAX_POOL_2D")
def pooling(node: TfliteNode, shapes: list[tuple]) -> Steps:
    (shape,) = shapes
    check_rank(node, shape, 4)
    c = node.config
    kernel, stride = (c.get("FilterHeight", 1), c.get("FilterWidth", 1)), (c.get("StrideH", 1), c.get("StrideW", 1))
    pads = _pads(node, shape[:2], kernel, stride)
    return _fused(node, pool_steps(node.name, node.class_name == "AVERAGE_POOL_2D", kernel, stride, pads, shape[:2]))


@op("MEAN")
def mean(node: TfliteNode, shapes: list[tuple]) -> Steps:
    (shape,) = shapes
    rank, axes = len(shape) + 1, _weight_int(node, 1)
    if any(a % rank == 0 for a in axes):
        raise node.error("averages over the batch axis")
    keep = bool(node.config.get("KeepDims", False))
    if rank == 4 and not keep and sorted(a % 4 for a in axes) != [1, 2]:  # a result whose axes mix: in NHWC
        return [(node.name, Nhwc(Mean(tuple(a % 4 for a in axes), keep), to_nchw=False))]
    return [(node.name, Mean(tuple(torch_axis(a, rank) for a in axes), keep))]


def _weight_int(node: TfliteNode, position: int) -> list[int]:
    value = node.const(position)
    if value is None or value.dtype.kind not in "iu":
        raise node.error(f"input {position} must be a constant integer tensor")
    return [int(v) for v in value.reshape(-1)]


@op("RESHAPE", "SQUEEZE", "EXPAND_DIMS")
def reshape(node: TfliteNode, shapes: list[tuple]) -> Steps:
    """Each is a reshape to the output shape the file declares (checked against the element count)."""
    (shape,) = shapes
    target = node.expected_shape
    if target is None or int(np.prod(target)) != int(np.prod(shape)) or any(d < 1 for d in target):
        raise node.error(f"reshapes {shape} to {target}")
    return [(node.name, KerasReshape(tuple(target), from_nchw=len(shape) == 3))]


@op("PAD", "PADV2")
def pad(node: TfliteNode, shapes: list[tuple]) -> Steps:
    (shape,) = shapes
    rank = len(shape) + 1
    pads = _weight_int(node, 1)
    if len(pads) != 2 * rank or any(p < 0 for p in pads):
        raise node.error(f"has paddings {pads} for a rank-{rank} tensor")
    if node.class_name == "PADV2" and node.const(2) is not None and float(node.const(2).reshape(-1)[0]) != 0.0:
        raise node.error("pads with a non-zero constant")
    pairs = [pads[2 * i:2 * i + 2] for i in range(rank)]
    if np.prod([d + sum(p) for d, p in zip(shape, pairs[1:])], dtype=np.float64) > MAX_ELEMENTS:
        raise node.error(f"pads {shape} by {pairs[1:]}: over 1 GiB per sample")
    if pairs[0] != [0, 0]:
        raise node.error("pads the batch axis")
    if rank == 4 and pairs[3] == [0, 0]:
        (top, bottom), (left, right) = pairs[1], pairs[2]
        return [(node.name, nn.ZeroPad2d((left, right, top, bottom)))]
    order = [torch_axis(a, rank) for a in range(rank)]  # torch axis of each TFLite axis
    by_torch = {order[a]: pairs[a] for a in range(rank)}
    torch_pads = tuple(p for axis in reversed(range(1, rank)) for p in by_torch[axis])  # F.pad: last axis first
    return [(node.name, Pad(torch_pads))]


@op("CONCATENATION")
def concatenation(node: TfliteNode, shapes: list[tuple]) -> Steps:
    if node.weights:
        raise node.error("concatenates a constant; r8 concatenates tensors only")
    return _fused(node, [(node.name, Concat(torch_axis(node.config.get("Axis", -1), len(shapes[0]) + 1)))])


@op("SOFTMAX")
def softmax(node: TfliteNode, shapes: list[tuple]) -> Steps:
    beta = float(node.config.get("Beta", 1.0))
    steps = [] if beta == 1.0 else [(f"{node.name}_beta", Affine(beta, 0.0))]
    return steps + [(node.name, nn.Softmax(dim=torch_axis(-1, len(shapes[0]) + 1)))]


ELEMENTWISE = {"LOGISTIC": nn.Sigmoid, "TANH": nn.Tanh, "RELU": nn.ReLU, "RELU6": nn.ReLU6, "HARD_SWISH": nn.Hardswish,
               "RELU_N1_TO_1": lambda: nn.Hardtanh(-1.0, 1.0)}


@op(*ELEMENTWISE)
def elementwise(node: TfliteNode, shapes: list[tuple]) -> Steps:
    return [(node.name, ELEMENTWISE[node.class_name]())]


SUPPORTED = tuple(sorted(OPS))
