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

from r8.errors import MAX_ELEMENTS
from r8.frontends.keras.reader import KerasLayer

Steps = list[tuple[str, nn.Module]]
CONVERTERS: dict[str, Callable[[KerasLayer, list[tuple]], Steps]] = {}
ACTIVATIONS = ("relu", "relu6", "softmax", "sigmoid", "tanh", "linear", "elu", "selu", "gelu", "swish", "silu", "softplus",
               "softsign", "exponential", "hard_sigmoid", "hard_silu", "hard_swish")


def registrar(registry: dict, what: str) -> Callable:
    """``@decorator(*names)`` that registers a converter under each name; a name registered twice
    is refused (here for Keras layer types, in :mod:`r8.frontends.tflite.ops` for TFLite ops)."""
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


def takes_constants(fn):
    """Marks a converter that reads the call's constant operands (``layer.constants``); every other
    converter is refused a call that has one."""
    fn.takes_constants = True
    return fn


# Config keys no converter reads, and why none can change an inference result. Any other key a
# converter leaves unread is refused by name (check_config_read): nothing is dropped silently.
IGNORED_CONFIG = {
    "name": "names the layer (r8 names the submodule after it)",
    "trainable": "whether training may update the weights",
    "dtype": "checked to be float32, the precision r8 computes in (a mixed-precision policy is refused)",
}
IGNORED_CONFIG_SUFFIXES = {
    "_initializer": "the weights' starting values before training; the file's trained weights are read",
    "_regularizer": "a penalty added to the training loss",
    "_constraint": "a projection applied to the weights after each training step",
}


def ignored_config(key: str) -> str | None:
    """Why an unread config key cannot change the result; None if it could."""
    return IGNORED_CONFIG.get(key) or next((why for end, why in IGNORED_CONFIG_SUFFIXES.items() if key.endswith(end)), None)


def dtype_name(value) -> str | None:
    """A dtype or dtype policy as Keras 2 (``"float32"``, ``{"class_name": "Policy", ...}``) or
    Keras 3 (``{"class_name": "DTypePolicy", "config": {"name": "float32"}}``) writes it."""
    if isinstance(value, dict):
        value = (value.get("config") or {}).get("name")
    return value if isinstance(value, str) else None


def check_config_read(layer: KerasLayer, shapes: list[tuple]) -> None:
    """After a layer's converter ran on inputs of ``shapes``: every config key it did not read is on
    the justified list (:data:`IGNORED_CONFIG`), and the layer computes in float32. Keras 2 may
    declare a first layer's input shape in its config: it must be the input's."""
    for key in ("batch_input_shape", "batch_shape"):
        declared = layer.config.get(key)
        if declared is not None and (len(shapes) != 1 or not isinstance(declared, list) or len(declared) != len(shapes[0]) + 1
                                     or any(d is not None and d != s for d, s in zip(declared[1:], shapes[0]))):
            raise layer.error(f"declares its input shape {key}={declared!r}; it gets {shapes}")
    for key in layer.config.unread():
        if ignored_config(key) is None:
            value = dict.get(layer.config, key)
            raise layer.error(f"has {key}={value!r} in its config, which r8 does not convert")
    dtype = dict.get(layer.config, "dtype")
    if dtype is not None and dtype_name(dtype) != "float32":
        raise layer.error(f"has dtype {dtype_name(dtype) or dtype!r}; r8 converts float32 layers (a mixed-precision "
                          "policy computes in another precision)")


def uses(layer: KerasLayer, *keys: str) -> None:
    """Marks config keys a converter knowingly leaves unused (say why beside the call)."""
    for key in keys:
        layer.config.get(key)


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


def _box(value) -> tuple[tuple[int, int], tuple[int, int]]:
    """ZeroPadding2D/Cropping2D's n, (rows, cols) or ((top, bottom), (left, right))."""
    return tuple(_pair(p) for p in (_pair(value) if isinstance(value, int) else value))


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


def _fits(layer: KerasLayer, shape: tuple) -> None:
    """A layer that grows its input (upsampling, padding, transposed convolution) is refused before
    it allocates an output over 1 GiB per sample (a damaged file may declare any size)."""
    if int(np.prod([max(int(d), 0) for d in shape], dtype=np.float64)) > MAX_ELEMENTS:
        raise layer.error(f"would compute a tensor of {tuple(shape)}: over 1 GiB per sample")


def activation(layer: KerasLayer, name, rank: int) -> nn.Module | None:
    """The torch module of a Keras activation by name (``None`` for linear)."""
    if name == "linear":
        return None
    modules = {"relu": nn.ReLU, "relu6": nn.ReLU6, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh,
               "softmax": lambda: nn.Softmax(dim=torch_axis(-1, rank)), "elu": nn.ELU, "selu": nn.SELU,
               "gelu": nn.GELU, "swish": nn.SiLU, "silu": nn.SiLU, "softplus": nn.Softplus, "softsign": nn.Softsign,
               "exponential": Exp, "hard_silu": nn.Hardswish, "hard_swish": nn.Hardswish,
               # Keras 2: clip(0.2 x + 0.5, 0, 1); Keras 3: relu6(x + 3) / 6 (torch's Hardsigmoid)
               "hard_sigmoid": nn.Hardsigmoid if not layer.keras_version.startswith("2.") else lambda: Affine(0.2, 0.5, 0, 1)}
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


def elementwise(kind: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a (kind) b``; an if-chain rather than a dict of functions, which TorchScript (the eager
    int8 flow's file format) cannot compile."""
    if kind == "add":
        return torch.add(a, b)
    if kind == "mul":
        return torch.mul(a, b)
    if kind == "sub":
        return torch.sub(a, b)
    if kind == "div":
        return torch.div(a, b)
    if kind == "max":
        return torch.maximum(a, b)
    if kind == "min":
        return torch.minimum(a, b)
    raise ValueError(kind)


class Arith(nn.Module):
    """Tensors combined elementwise, left to right: add and mul as FloatFunctionals (eager
    quantization observes them); sub, div, max, min; mean (Keras Average)."""

    takes_list = True

    def __init__(self, kind: str):
        super().__init__()
        self.kind, self.op = kind, torch.ao.nn.quantized.FloatFunctional()

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            if self.kind in ("add", "mul"):
                out = self.op.add(out, x) if self.kind == "add" else self.op.mul(out, x)
            else:
                out = elementwise("add" if self.kind == "mean" else self.kind, out, x)
        return out / len(xs) if self.kind == "mean" else out


class ArithConst(nn.Module):
    """A tensor and a constant: x (op) c, or c (op) x with ``const_first``."""

    def __init__(self, kind: str, const: torch.Tensor, const_first: bool = False):
        super().__init__()
        self.kind, self.const_first = kind, const_first
        self.register_buffer("const", const)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = (self.const, x) if self.const_first else (x, self.const)
        return elementwise(self.kind, a, b)


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


class Exp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x)


class Affine(nn.Module):
    """x * scale + offset (tensors in torch's layout, or numbers), clipped to [low, high] if given."""

    def __init__(self, scale, offset, low: float | None = None, high: float | None = None):
        super().__init__()
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))
        self.register_buffer("offset", torch.as_tensor(offset, dtype=torch.float32))
        self.low, self.high = low, high

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * self.scale + self.offset
        return y if self.low is None else y.clamp(self.low, self.high)


class KerasPReLU(nn.Module):
    """max(x, 0) + alpha * min(x, 0), alpha per element (Keras's shape, shared axes of size 1)."""

    def __init__(self, alpha: torch.Tensor):
        super().__init__()
        self.register_buffer("alpha", alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x) - self.alpha * torch.relu(-x)


class Crop(nn.Module):
    def __init__(self, top: int, bottom: int, left: int, right: int):
        super().__init__()
        self.box = top, bottom, left, right

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom, left, right = self.box
        return x[:, :, top:x.shape[2] - bottom, left:x.shape[3] - right]


class GlobalMaxPool(nn.Module):
    def __init__(self, keepdims: bool):
        super().__init__()
        self.keepdims = keepdims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax((2, 3), keepdim=self.keepdims)


class As2d(nn.Module):
    """Runs 2-D modules on a Keras 1-D tensor (N, L, C), as an image (N, C, 1, L)."""

    def __init__(self, *modules: nn.Module):
        super().__init__()
        self.body = nn.Sequential(*modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x.permute(0, 2, 1).unsqueeze(2))
        return y.squeeze(2).permute(0, 2, 1)


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
        _check(layer, "groups", (1,), 1)  # tf-keras writes the Conv base's groups
        mult = c.get("depth_multiplier", 1)
        k = layer.weight("depthwise_kernel", "kernel", shape=(*kernel, cin, mult))
        groups, cout = cin, cin * mult  # output channel c * mult + m, as Keras orders them
        weight = depthwise_weight(k.reshape(*kernel, cout))
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


def depthwise_weight(kernel: np.ndarray) -> np.ndarray:
    """A depthwise kernel (H, W, in * multiplier), output channel c * multiplier + m as Keras and
    TFLite order them, as torch's grouped-conv weight (in * multiplier, 1, H, W)."""
    return kernel.transpose(2, 0, 1)[:, None]


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
    _check(layer, "quantization_config", (None,))  # Keras 3's own int8/float8 weights: not float
    _check(layer, "lora_rank", (None,))  # a LoRA delta added to the kernel
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
    # how training updates the moving statistics (and renormalizes batches); inference reads them as they are
    uses(layer, "momentum", "synchronized", "renorm", "renorm_clipping", "renorm_momentum")
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
    return reshape_steps(layer, shapes[0], layer.config["target_shape"])


def reshape_steps(layer: KerasLayer, shape: tuple, target: list) -> Steps:
    """A reshape of a per-sample ``shape`` to ``target`` (per sample, one -1 allowed), in Keras's
    element order."""
    size, resolved = int(np.prod(shape)), list(target)
    if -1 in resolved:  # resolve it now: the batch dimension is torch's -1
        resolved[resolved.index(-1)] = size // -int(np.prod(resolved))
    if int(np.prod(resolved)) != size:
        raise layer.error(f"cannot reshape {shape} to {tuple(target)}")
    return [(layer.name, KerasReshape(tuple(resolved), from_nchw=len(shape) == 3))]


@converter("Dropout")
def dropout(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    uses(layer, "rate", "noise_shape", "seed")  # they shape the training-time noise: identity at inference
    return [(layer.name, nn.Identity())]


@converter("ZeroPadding2D")
def zero_padding(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    _rank(layer, shapes[0], 4)
    _check(layer, "data_format", ("channels_last",), "channels_last")
    padding = layer.config["padding"]
    (top, bottom), (left, right) = _box(padding)
    h, w, c = shapes[0]
    _fits(layer, (h + top + bottom, w + left + right, c))
    return [(layer.name, nn.ZeroPad2d((left, right, top, bottom)))]


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


@converter("Rescaling")
def rescaling(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    rank = len(shapes[0]) + 1
    scale, offset = (constant_in_torch_layout(layer.config.get(k, d), rank) for k, d in (("scale", 1.0), ("offset", 0.0)))
    return [(layer.name, Affine(scale, offset))]


@converter("Normalization")
def normalization(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    """(x - mean) / max(sqrt(variance), 1e-7) over the last axis (Keras's epsilon)."""
    c, rank, channels = layer.config, len(shapes[0]) + 1, shapes[0][-1]
    if c.get("invert", False) or c.get("axis", -1) not in (-1, rank - 1, [-1], [rank - 1]):
        raise layer.error("normalizes over an axis other than the last, or inverts; r8 takes axis=-1, invert=False")
    mean, var = ((np.asarray(c[k], np.float32) if c.get(k) is not None else layer.weight(k)) for k in ("mean", "variance"))
    if mean.size != channels or var.size != channels:
        raise layer.error(f"has mean/variance of {mean.size}/{var.size} values for {channels} channels")
    std = np.maximum(np.sqrt(var.reshape(-1)), 1e-7)
    scale, offset = 1 / std, -mean.reshape(-1) / std
    return [(layer.name, Affine(constant_in_torch_layout(scale, rank), constant_in_torch_layout(offset, rank)))]


@converter("LeakyReLU")
def leaky_relu(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    slope = layer.config.get("negative_slope", layer.config.get("alpha", 0.3))  # Keras 3 / Keras 2 spelling
    return [(layer.name, nn.LeakyReLU(float(slope)))]


@converter("ELU")
def elu(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    return [(layer.name, nn.ELU(float(layer.config.get("alpha", 1.0))))]


@converter("PReLU")
def prelu(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    alpha, shared = layer.weight("alpha"), layer.config.get("shared_axes") or []
    if alpha.ndim != len(shapes[0]) or any(a not in (1, s) for a, s in zip(alpha.shape, shapes[0])) \
            or any(not isinstance(ax, int) or not 0 < ax <= alpha.ndim or alpha.shape[ax - 1] != 1 for ax in shared):
        raise layer.error(f"has alpha {alpha.shape} (shared_axes={shared}) for an input {shapes[0]}")
    return [(layer.name, KerasPReLU(constant_in_torch_layout(alpha, len(shapes[0]) + 1)))]


@converter("GlobalMaxPooling2D")
def global_max_pooling(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    _rank(layer, shapes[0], 4)
    _check(layer, "data_format", ("channels_last",), "channels_last")
    return [(layer.name, GlobalMaxPool(bool(layer.config.get("keepdims", False))))]


@converter("Cropping2D")
def cropping(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    _rank(layer, shapes[0], 4)
    _check(layer, "data_format", ("channels_last",), "channels_last")
    crop = layer.config["cropping"]
    (top, bottom), (left, right) = _box(crop)
    return [(layer.name, Crop(top, bottom, left, right))]


@converter("UpSampling2D")
def upsampling(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    _rank(layer, shapes[0], 4)
    _check(layer, "data_format", ("channels_last",), "channels_last")
    _check(layer, "interpolation", ("nearest", "bilinear"), "nearest")
    mode, size = layer.config.get("interpolation", "nearest"), _pair(layer.config.get("size", 2))
    _fits(layer, (shapes[0][0] * size[0], shapes[0][1] * size[1], shapes[0][2]))
    return [(layer.name, nn.Upsample(scale_factor=tuple(float(f) for f in size),
                                     mode=mode, **({"align_corners": False} if mode == "bilinear" else {})))]


@converter("Permute")
def permute(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    dims = list(layer.config["dims"])
    if sorted(dims) != list(range(1, len(shapes[0]) + 1)):
        raise layer.error(f"has dims={dims}; a permutation of 1..{len(shapes[0])}")
    return [(layer.name, KerasTranspose((0, *dims), len(shapes[0]) + 1))]


@converter("SeparableConv2D")
def separable_conv2d(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    (shape,) = shapes
    _rank(layer, shape, 4)
    _check(layer, "data_format", ("channels_last",), "channels_last")
    _check(layer, "groups", (1,), 1)
    _check(layer, "dilation_rate", ((1, 1),), (1, 1))
    c, (h, w, cin) = layer.config, shape
    kernel, stride, mult = _pair(c["kernel_size"]), _pair(c.get("strides", 1)), c.get("depth_multiplier", 1)
    depthwise = nn.Conv2d(cin, cin * mult, kernel, stride, groups=cin, bias=False)
    pointwise = nn.Conv2d(cin * mult, c["filters"], 1, bias=c.get("use_bias", True))
    with torch.no_grad():
        dk = layer.weight("depthwise_kernel", shape=(*kernel, cin, mult))
        depthwise.weight.copy_(_tensor(depthwise_weight(dk.reshape(*kernel, cin * mult))))
        pointwise.weight.copy_(_tensor(layer.weight("pointwise_kernel", shape=(1, 1, cin * mult, c["filters"]))
                                       .transpose(3, 2, 0, 1)))
        if pointwise.bias is not None:
            pointwise.bias.copy_(_tensor(layer.weight("bias", shape=(c["filters"],))))
    steps = padded(f"{layer.name}_depthwise", depthwise, _same_pads(layer, (h, w), kernel, stride))
    return _with_activation(layer, steps + [(layer.name, pointwise)], 4)


@converter("Conv2DTranspose")
def conv2d_transpose(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    """The full transposed convolution, then TF's crop: 'same' keeps H * stride rows, starting
    (kernel - stride) // 2 in; 'valid' keeps (H - 1) * stride + max(kernel, stride)."""
    (shape,) = shapes
    _rank(layer, shape, 4)
    _check(layer, "data_format", ("channels_last",), "channels_last")
    _check(layer, "dilation_rate", ((1, 1),), (1, 1))
    _check(layer, "output_padding", (None,), None)
    _check(layer, "groups", (1,), 1)
    _check(layer, "padding", ("same", "valid"), "valid")
    c, (h, w, cin) = layer.config, shape
    kernel, stride, cout = _pair(c["kernel_size"]), _pair(c.get("strides", 1)), c["filters"]
    _fits(layer, ((h + 1) * max(stride[0], kernel[0]), (w + 1) * max(stride[1], kernel[1]), cout))
    extra = tuple(max(s - k, 0) for k, s in zip(kernel, stride))
    conv = nn.ConvTranspose2d(cin, cout, kernel, stride, output_padding=extra, bias=c.get("use_bias", True))
    with torch.no_grad():
        conv.weight.copy_(_tensor(layer.weight("kernel", shape=(*kernel, cout, cin)).transpose(3, 2, 0, 1)))
        if conv.bias is not None:
            conv.bias.copy_(_tensor(layer.weight("bias", shape=(cout,))))
    steps: Steps = [(layer.name, conv)]
    if c.get("padding") == "same":
        full = [(n - 1) * s + max(k, s) for n, k, s in zip((h, w), kernel, stride)]
        (top, left) = (max(k - s, 0) // 2 for k, s in zip(kernel, stride))
        bottom, right = (f - b - n * s for f, b, n, s in zip(full, (top, left), (h, w), stride))
        steps.append((f"{layer.name}_crop", Crop(top, bottom, left, right)))
    return _with_activation(layer, steps, 4)


@converter("Conv1D", "DepthwiseConv1D")
def conv1d(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    """As a 2-D convolution with a 1 x k kernel on (N, C, 1, L); the tensor stays (N, L, C)."""
    (shape,) = shapes
    _rank(layer, shape, 3)
    _check(layer, "data_format", ("channels_last",), "channels_last")
    _check(layer, "dilation_rate", ((1,), 1), 1)
    c, (length, cin) = layer.config, shape
    (k,), (s,) = (_one(c["kernel_size"]), _one(c.get("strides", 1)))
    if layer.class_name == "DepthwiseConv1D":  # kernel (k, in, multiplier)
        _check(layer, "groups", (1,), 1)
        mult = c.get("depth_multiplier", 1)
        weight = layer.weight("depthwise_kernel", "kernel", shape=(k, cin, mult)).reshape(k, cin * mult).T[:, None, None, :]
        groups, cout = cin, cin * mult
    else:  # kernel (k, in / groups, out)
        groups, cout = c.get("groups", 1), c["filters"]
        weight = layer.weight("kernel", shape=(k, cin // groups, cout)).transpose(2, 1, 0)[:, :, None, :]
    bias = c.get("use_bias", True)
    conv = nn.Conv2d(cin, cout, (1, k), (1, s), groups=groups, bias=bias)
    with torch.no_grad():
        conv.weight.copy_(_tensor(weight))
        if bias:
            conv.bias.copy_(_tensor(layer.weight("bias", shape=(cout,))))
    pads = _same_pads(layer, (1, length), (1, k), (1, s))  # (left, right, 0, 0) along the length
    return _with_activation(layer, [(layer.name, As2d(*[m for _, m in padded(layer.name, conv, pads)]))], 3)


def _one(value) -> tuple[int]:
    return (value,) if isinstance(value, int) else tuple(value)


@converter("AveragePooling1D", "MaxPooling1D")
def pooling1d(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    (shape,) = shapes
    _rank(layer, shape, 3)
    _check(layer, "data_format", ("channels_last",), "channels_last")
    (k,) = _one(layer.config["pool_size"])
    (s,) = _one(layer.config.get("strides") or k)
    pads = _same_pads(layer, (1, shape[0]), (1, k), (1, s))
    steps = pool_steps(layer.name, layer.class_name == "AveragePooling1D", (1, k), (1, s), pads, (1, shape[0]))
    return [(layer.name, As2d(*[m for _, m in steps]))]


@converter("GlobalAveragePooling1D", "GlobalMaxPooling1D")
def global_pooling1d(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    _rank(layer, shapes[0], 3)
    _check(layer, "data_format", ("channels_last",), "channels_last")
    keep = bool(layer.config.get("keepdims", False))
    pool = GlobalAvgPool(keep) if layer.class_name == "GlobalAveragePooling1D" else GlobalMaxPool(keep)
    return [(layer.name, As2d(pool))] if keep else [(layer.name, nn.Sequential(Unsqueeze2d(), pool))]


class Unsqueeze2d(nn.Module):
    """(N, L, C) as the image (N, C, 1, L)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 1).unsqueeze(2)


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


SUPPORTED = ("InputLayer", *sorted(CONVERTERS))
