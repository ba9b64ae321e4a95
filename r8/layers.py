"""One small converter per Keras layer type, in a registry (the onnx2torch way).

A converter takes the Keras layer and the per-sample Keras-layout shapes of its inputs and
returns the torch modules that compute it, as ``(name, module)`` steps run one after the other
(the last step's output is the layer's output). Layout: 4-D tensors are NCHW in torch, every
other rank is as in Keras, so a Keras axis is mapped with :func:`torch_axis`.
"""

from typing import Callable

import numpy as np
import torch
from torch import nn

from r8.keras_h5 import KerasLayer

Steps = list[tuple[str, nn.Module]]
CONVERTERS: dict[str, Callable[[KerasLayer, list[tuple]], Steps]] = {}
ACTIVATIONS = ("relu", "relu6", "softmax", "sigmoid", "tanh", "linear")


def registrar(registry: dict, what: str) -> Callable:
    """``@decorator(*names)`` that registers a converter under each name; a name registered twice
    is refused (here for Keras layer types, in :mod:`r8.tflite_ops` for TFLite ops)."""
    def decorator(*names: str):
        def register(fn):
            for name in names:
                if name in registry:
                    raise ValueError(f"{what} {name!r} has a converter already")
                registry[name] = fn
            return fn
        return register
    return decorator


converter = registrar(CONVERTERS, "Keras layer type")


# ---- layout helpers
def torch_axis(axis: int, rank: int) -> int:
    """A Keras axis of a rank-``rank`` tensor (batch included) as the torch axis: for 4-D
    tensors Keras is NHWC and torch NCHW."""
    axis = axis % rank
    return {1: 2, 2: 3, 3: 1}.get(axis, axis) if rank == 4 else axis


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of TF 'same': the odd pixel goes after (bottom/right), which a
    symmetric PyTorch ``padding`` cannot express."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def _same_pads(layer: KerasLayer, hw: tuple, kernel: tuple, stride: tuple) -> tuple[int, int, int, int]:
    """(left, right, top, bottom), torch's order, for the layer's 'same' or 'valid' padding."""
    padding = layer.config.get("padding", "valid")
    if padding == "valid":
        return 0, 0, 0, 0
    if padding != "same":
        raise layer.error(f"has unsupported padding={padding!r}; supported: 'same', 'valid'")
    (top, bottom), (left, right) = (tf_same_padding(n, k, s) for n, k, s in zip(hw, kernel, stride))
    return left, right, top, bottom


def _check(layer: KerasLayer, option: str, supported: tuple, default=None) -> None:
    value = layer.config.get(option, default)
    value = tuple(value) if isinstance(value, list) else value
    if value not in supported:
        raise layer.error(f"has unsupported {option}={value!r}; supported: {', '.join(map(repr, supported))}")


def _rank(layer: KerasLayer, shape: tuple, *ranks: int) -> None:
    if len(shape) + 1 not in ranks:
        raise layer.error(f"gets a rank-{len(shape) + 1} input {shape}; supported: rank {' or '.join(map(str, ranks))}")


def activation(layer: KerasLayer, name, rank: int) -> nn.Module | None:
    """The torch module of a Keras activation by name (``None`` for linear)."""
    if name == "linear":
        return None
    modules = {"relu": nn.ReLU, "relu6": nn.ReLU6, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh,
               "softmax": lambda: nn.Softmax(dim=torch_axis(-1, rank))}
    if not isinstance(name, str) or name not in modules:
        raise layer.error(f"has unsupported activation {name!r}; supported: {', '.join(ACTIVATIONS)}")
    return modules[name]()


def _with_activation(layer: KerasLayer, steps: Steps, rank: int) -> Steps:
    """A fused activation (``activation=`` of Conv2D/Dense) becomes its own step after the layer."""
    name = layer.config.get("activation", "linear")
    module = activation(layer, name, rank)
    return steps + [(f"{layer.name}_{name}", module)] if module is not None else steps


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


# ---- small modules for what torch.nn has no layer for
class Add(nn.Module):
    """Keras Add as a module (a FloatFunctional, so eager-mode quantization can observe it).
    Merge layers take their inputs as one list (``takes_list``): TorchScript has no ``*args``."""

    takes_list = True

    def __init__(self):
        super().__init__()
        self.op = torch.ao.nn.quantized.FloatFunctional()

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = self.op.add(out, x)
        return out


class Concat(nn.Module):
    takes_list = True

    def __init__(self, dim: int):
        super().__init__()
        self.dim, self.op = dim, torch.ao.nn.quantized.FloatFunctional()

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return self.op.cat(xs, dim=self.dim)


class Arith(nn.Module):
    """Two tensors combined elementwise: add and mul as FloatFunctionals (eager quantization
    observes them), sub, div, max, min as torch ops."""

    takes_list = True

    def __init__(self, kind: str):
        super().__init__()
        self.kind, self.op = kind, torch.ao.nn.quantized.FloatFunctional()

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        a, b = xs
        if self.kind in ("add", "mul"):
            return self.op.add(a, b) if self.kind == "add" else self.op.mul(a, b)
        return {"sub": torch.sub, "div": torch.div, "max": torch.maximum, "min": torch.minimum}[self.kind](a, b)


class ArithConst(nn.Module):
    """A tensor and a constant: x (op) c, or c (op) x with ``const_first``."""

    def __init__(self, kind: str, const: torch.Tensor, const_first: bool = False):
        super().__init__()
        self.kind, self.const_first = kind, const_first
        self.register_buffer("const", const)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = (self.const, x) if self.const_first else (x, self.const)
        return {"add": torch.add, "mul": torch.mul, "sub": torch.sub, "div": torch.div, "max": torch.maximum,
                "min": torch.minimum}[self.kind](a, b)


def constant_in_torch_layout(array, rank: int) -> torch.Tensor:
    """A constant operand of a rank-``rank`` tensor, broadcast as Keras and TFLite do (trailing
    axes), in torch's layout: an NHWC constant becomes NCHW."""
    array = np.asarray(array, dtype=np.float32)
    if rank == 4:
        array = array.reshape((1,) * (4 - array.ndim) + array.shape).transpose(0, 3, 1, 2)
    return _tensor(array)


class KerasTranspose(nn.Module):
    """A transpose in Keras's layout (``perm`` over all axes, batch first and kept)."""

    def __init__(self, perm: tuple, rank: int):
        super().__init__()
        self.perm, self.nchw = tuple(perm), rank == 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1) if self.nchw else x
        x = x.permute(*self.perm)
        return x.permute(0, 3, 1, 2) if self.nchw else x


class NhwcFlatten(nn.Module):
    """Keras Flatten of a 4-D tensor: (H, W, C) element order, not torch's (C, H, W)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).flatten(1)


class KerasReshape(nn.Module):
    """Keras Reshape in Keras's element order: NCHW inputs are read as NHWC, and a 4-D result
    is returned as NCHW."""

    def __init__(self, target: tuple, from_nchw: bool):
        super().__init__()
        self.target, self.from_nchw = tuple(target), from_nchw

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.from_nchw:
            x = x.permute(0, 2, 3, 1)
        x = x.reshape(-1, *self.target)
        return x.permute(0, 3, 1, 2) if len(self.target) == 3 else x


class GlobalAvgPool(nn.Module):
    def __init__(self, keepdims: bool):
        super().__init__()
        self.keepdims = keepdims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=self.keepdims)


class SameAvgPool(nn.Module):
    """TF 'same' average pooling with an uneven padding: the mean over the cells inside the
    image only (padded cells do not count), as a zero pad, a pool and a fixed rescale."""

    def __init__(self, kernel: tuple, stride: tuple, pads: tuple, hw: tuple):
        super().__init__()
        self.pad, self.pool = nn.ZeroPad2d(pads), nn.AvgPool2d(kernel, stride)
        with torch.no_grad():
            inside = self.pool(self.pad(torch.ones(1, 1, *hw)))  # fraction of each window inside
        self.register_buffer("rescale", 1 / inside)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.pad(x)) * self.rescale


# ---- converters
@converter("Conv2D", "DepthwiseConv2D")
def conv2d(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    (shape,) = shapes
    _rank(layer, shape, 4)
    _check(layer, "data_format", ("channels_last",), "channels_last")
    _check(layer, "dilation_rate", ((1, 1),), (1, 1))
    c, (h, w, cin) = layer.config, shape
    kernel, stride = _pair(c["kernel_size"]), _pair(c.get("strides", 1))
    if layer.class_name == "DepthwiseConv2D":  # kernel (H, W, in, multiplier)
        mult = c.get("depth_multiplier", 1)
        k = layer.weight("depthwise_kernel", "kernel", shape=(*kernel, cin, mult))
        groups, cout = cin, cin * mult  # output channel c * mult + m, as Keras orders them
        weight = k.reshape(*kernel, cout).transpose(2, 0, 1)[:, None]
    else:  # kernel (H, W, in / groups, out)
        groups, cout = c.get("groups", 1), c["filters"]
        weight = layer.weight("kernel", shape=(*kernel, cin // groups, cout)).transpose(3, 2, 0, 1)
    bias = c.get("use_bias", True)
    conv = nn.Conv2d(cin, cout, kernel, stride, groups=groups, bias=bias)
    with torch.no_grad():
        conv.weight.copy_(_tensor(weight))
        if bias:
            conv.bias.copy_(_tensor(layer.weight("bias", shape=(cout,))))
    return _with_activation(layer, padded(layer.name, conv, _same_pads(layer, (h, w), kernel, stride)), 4)


def padded(name: str, conv: nn.Conv2d, pads: tuple) -> Steps:
    """The conv with (left, right, top, bottom) ``pads``: its own symmetric padding where they are
    even, else an explicit pad before it (TF puts the odd pixel bottom/right)."""
    left, right, top, bottom = pads
    if (left, top) == (right, bottom):
        conv.padding = (top, left)
        return [(name, conv)]
    return [(f"{name}_pad", nn.ZeroPad2d(pads)), (name, conv)]


@converter("Dense")
def dense(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    (shape,) = shapes
    _rank(layer, shape, 2)  # a Dense on an image tensor needs a Flatten first
    units, bias = layer.config["units"], layer.config.get("use_bias", True)
    linear = nn.Linear(shape[0], units, bias=bias)
    with torch.no_grad():
        linear.weight.copy_(_tensor(layer.weight("kernel", shape=(shape[0], units)).T))  # (in, out)
        if bias:
            linear.bias.copy_(_tensor(layer.weight("bias", shape=(units,))))
    return _with_activation(layer, [(layer.name, linear)], 2)


@converter("BatchNormalization")
def batch_norm(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    (shape,) = shapes
    _rank(layer, shape, 2, 4)
    rank, axis = len(shape) + 1, layer.config.get("axis", -1)
    axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
    if not isinstance(axis, int) or axis % rank != rank - 1:
        raise layer.error(f"has unsupported axis={axis!r}; supported: the last axis (-1)")
    n, c = shape[-1], layer.config
    bn = (nn.BatchNorm2d if rank == 4 else nn.BatchNorm1d)(n, eps=float(c["epsilon"]))
    with torch.no_grad():
        bn.weight.copy_(_tensor(layer.weight("gamma", shape=(n,))) if c.get("scale", True) else torch.ones(n))
        bn.bias.copy_(_tensor(layer.weight("beta", shape=(n,))) if c.get("center", True) else torch.zeros(n))
        bn.running_mean.copy_(_tensor(layer.weight("moving_mean", shape=(n,))))
        bn.running_var.copy_(_tensor(layer.weight("moving_variance", shape=(n,))))
    return [(layer.name, bn)]


@converter("Activation")
def activation_layer(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    module = activation(layer, layer.config["activation"], len(shapes[0]) + 1)
    return [(layer.name, module or nn.Identity())]


@converter("ReLU")
def relu(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    _check(layer, "negative_slope", (0, 0.0, None), 0)
    _check(layer, "threshold", (0, 0.0, None), 0)
    top = layer.config.get("max_value")
    module = nn.ReLU() if top is None else nn.ReLU6() if top == 6 else nn.Hardtanh(0.0, float(top))
    return [(layer.name, module)]


@converter("Softmax")
def softmax(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    return [(layer.name, nn.Softmax(dim=torch_axis(layer.config.get("axis", -1), len(shapes[0]) + 1)))]


@converter("Add")
def add(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    if len(set(shapes)) != 1:
        raise layer.error(f"adds tensors of different shapes {shapes} (broadcasting is not supported)")
    return [(layer.name, Add())]


@converter("Concatenate")
def concatenate(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    return [(layer.name, Concat(torch_axis(layer.config.get("axis", -1), len(shapes[0]) + 1)))]


@converter("AveragePooling2D", "MaxPooling2D")
def pooling(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    (shape,) = shapes
    _rank(layer, shape, 4)
    _check(layer, "data_format", ("channels_last",), "channels_last")
    kernel = _pair(layer.config["pool_size"])
    stride = _pair(layer.config.get("strides") or kernel)  # Keras: strides None = pool_size
    pads = _same_pads(layer, shape[:2], kernel, stride)
    return pool_steps(layer.name, layer.class_name == "AveragePooling2D", kernel, stride, pads, shape[:2])


def pool_steps(name: str, average: bool, kernel: tuple, stride: tuple, pads: tuple, hw: tuple) -> Steps:
    """A 2-D pooling with (left, right, top, bottom) ``pads``: as TF, an average over the cells
    inside the image only, a max over them (padding never wins)."""
    left, right, top, bottom = pads
    if (left, top) == (right, bottom):
        pool = (nn.AvgPool2d(kernel, stride, (top, left), count_include_pad=False) if average
                else nn.MaxPool2d(kernel, stride, (top, left)))
        return [(name, pool)]
    if average:
        return [(name, SameAvgPool(kernel, stride, pads, hw))]
    return [(f"{name}_pad", nn.ConstantPad2d(pads, float("-inf"))), (name, nn.MaxPool2d(kernel, stride))]


@converter("GlobalAveragePooling2D")
def global_average_pooling(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    _rank(layer, shapes[0], 4)
    _check(layer, "data_format", ("channels_last",), "channels_last")
    return [(layer.name, GlobalAvgPool(bool(layer.config.get("keepdims", False))))]


@converter("Flatten")
def flatten(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    _check(layer, "data_format", ("channels_last", None), "channels_last")
    return [(layer.name, NhwcFlatten() if len(shapes[0]) == 3 else nn.Flatten())]


@converter("Reshape")
def reshape(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    target, size = list(layer.config["target_shape"]), int(np.prod(shapes[0]))
    if -1 in target:  # resolve it now: the batch dimension is torch's -1
        target[target.index(-1)] = size // -int(np.prod(target))
    if int(np.prod(target)) != size:
        raise layer.error(f"cannot reshape {shapes[0]} to {tuple(layer.config['target_shape'])}")
    return [(layer.name, KerasReshape(tuple(target), from_nchw=len(shapes[0]) == 3))]


@converter("Dropout")
def dropout(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    return [(layer.name, nn.Identity())]  # identity at inference


@converter("ZeroPadding2D")
def zero_padding(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    _rank(layer, shapes[0], 4)
    _check(layer, "data_format", ("channels_last",), "channels_last")
    padding = layer.config["padding"]
    (top, bottom), (left, right) = (_pair(p) for p in (_pair(padding) if isinstance(padding, int) else padding))
    return [(layer.name, nn.ZeroPad2d((left, right, top, bottom)))]


# ---- Keras 2's op layers: a TensorFlow function applied to tensors, named in the config (no code)
TF_ARITH = {"__operators__.add": "add", "math.add": "add", "math.multiply": "mul", "__operators__.mul": "mul",
            "math.subtract": "sub", "__operators__.sub": "sub", "math.truediv": "div", "__operators__.truediv": "div",
            "math.maximum": "max", "math.minimum": "min"}
TF_UNARY = {"nn.relu": nn.ReLU, "nn.relu6": nn.ReLU6, "math.sigmoid": nn.Sigmoid, "nn.sigmoid": nn.Sigmoid}
TF_OTHER = ("reshape", "concat", "compat.v1.transpose", "transpose")


@converter("TFOpLambda")
def tf_op(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    fn, kw, rank = layer.config.get("function"), layer.call_kwargs, len(shapes[0]) + 1
    if fn in TF_ARITH:
        y = kw.get("y")
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
        size, target = int(np.prod(shapes[0])), list(shape[1:])
        if -1 in target:
            target[target.index(-1)] = size // -int(np.prod(target))
        if int(np.prod(target)) != size:
            raise layer.error(f"cannot reshape {shapes[0]} to {tuple(shape)}")
        return [(layer.name, KerasReshape(tuple(target), from_nchw=len(shapes[0]) == 3))]
    if fn == "concat":
        return [(layer.name, Concat(torch_axis(int(kw.get("axis", 0)), rank)))]
    if fn in ("compat.v1.transpose", "transpose"):
        perm = kw.get("perm") or kw.get("a")
        if not isinstance(perm, list) or sorted(perm) != list(range(rank)) or perm[0] != 0:
            raise layer.error(f"transposes with perm={perm!r}; r8 takes a permutation that keeps the batch axis first")
        return [(layer.name, KerasTranspose(tuple(perm), rank))]
    raise layer.error(f"applies the TensorFlow function {fn!r}, which r8 does not convert; supported: "
                      f"{', '.join([*TF_ARITH, *TF_UNARY, *TF_OTHER])}")


SUPPORTED = ("InputLayer", *sorted(CONVERTERS))
