"""The small torch modules for what ``torch.nn`` has no layer for, shared by the Keras and the
TFLite converters."""

import numpy as np
import torch
from torch import nn

from r8.frontends.keras.layers.layout import as_tensor


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
    return as_tensor(array)


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


class Unsqueeze2d(nn.Module):
    """(N, L, C) as the image (N, C, 1, L)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 1).unsqueeze(2)
