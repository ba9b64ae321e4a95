"""Keras (NHWC) to torch (NCHW) layout, TF's 'same' padding, and the checks every converter makes
of a layer's options and input shape."""

import numpy as np
import torch

from r8.core.errors import MAX_ELEMENTS
from r8.frontends.keras.reader import KerasLayer


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


def pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def box(value) -> tuple[tuple[int, int], tuple[int, int]]:
    """ZeroPadding2D/Cropping2D's n, (rows, cols) or ((top, bottom), (left, right))."""
    return tuple(pair(p) for p in (pair(value) if isinstance(value, int) else value))


def same_pads(layer: KerasLayer, hw: tuple, kernel: tuple, stride: tuple) -> tuple[int, int, int, int]:
    """(left, right, top, bottom), torch's order, for the layer's 'same' or 'valid' padding."""
    padding = layer.config.get("padding", "valid")
    if padding == "valid":
        return 0, 0, 0, 0
    if padding != "same":
        raise layer.error(f"has unsupported padding={padding!r}; supported: 'same', 'valid'")
    (top, bottom), (left, right) = (tf_same_padding(n, k, s) for n, k, s in zip(hw, kernel, stride))
    return left, right, top, bottom


def check_option(layer: KerasLayer, option: str, supported: tuple, default=None) -> None:
    value = layer.config.get(option, default)
    value = tuple(value) if isinstance(value, list) else value
    if value not in supported:
        raise layer.error(f"has unsupported {option}={value!r}; supported: {', '.join(map(repr, supported))}")


def check_rank(layer: KerasLayer, shape: tuple, *ranks: int) -> None:
    if len(shape) + 1 not in ranks:
        raise layer.error(f"gets a rank-{len(shape) + 1} input {shape}; supported: rank {' or '.join(map(str, ranks))}")


def check_fits(layer: KerasLayer, shape: tuple) -> None:
    """A layer that grows its input (upsampling, padding, transposed convolution) is refused before
    it allocates an output over 1 GiB per sample (a damaged file may declare any size)."""
    if int(np.prod([max(int(d), 0) for d in shape], dtype=np.float64)) > MAX_ELEMENTS:
        raise layer.error(f"would compute a tensor of {tuple(shape)}: over 1 GiB per sample")


def as_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def one(value) -> tuple[int]:
    return (value,) if isinstance(value, int) else tuple(value)
