"""BatchNormalization, Rescaling and Normalization: per-channel affine maps."""

import numpy as np
import torch
from torch import nn

from r8.frontends.keras.layers.layout import as_tensor, check_rank
from r8.frontends.keras.layers.modules import Affine, constant_in_torch_layout
from r8.frontends.keras.layers.registry import Steps, converter, uses
from r8.frontends.keras.reader import KerasLayer


@converter("BatchNormalization")
def batch_norm(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    (shape,) = shapes
    check_rank(layer, shape, 2, 4)
    rank, axis = len(shape) + 1, layer.config.get("axis", -1)
    axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
    if not isinstance(axis, int) or axis % rank != rank - 1:
        raise layer.error(f"has unsupported axis={axis!r}; supported: the last axis (-1)")
    n, c = shape[-1], layer.config
    # how training updates the moving statistics (and renormalizes batches); inference reads them as they are
    uses(layer, "momentum", "synchronized", "renorm", "renorm_clipping", "renorm_momentum")
    bn = (nn.BatchNorm2d if rank == 4 else nn.BatchNorm1d)(n, eps=float(c["epsilon"]))
    with torch.no_grad():
        bn.weight.copy_(as_tensor(layer.weight("gamma", shape=(n,))) if c.get("scale", True) else torch.ones(n))
        bn.bias.copy_(as_tensor(layer.weight("beta", shape=(n,))) if c.get("center", True) else torch.zeros(n))
        bn.running_mean.copy_(as_tensor(layer.weight("moving_mean", shape=(n,))))
        bn.running_var.copy_(as_tensor(layer.weight("moving_variance", shape=(n,))))
    return [(layer.name, bn)]


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
