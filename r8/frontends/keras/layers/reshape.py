"""Layers that move or copy values without arithmetic: Flatten, Reshape, Dropout, ZeroPadding2D,
Cropping2D, UpSampling2D, Permute."""

import numpy as np
from torch import nn

from r8.frontends.keras.layers.layout import box, check_fits, check_option, check_rank, pair
from r8.frontends.keras.layers.modules import Crop, KerasReshape, KerasTranspose, NhwcFlatten
from r8.frontends.keras.layers.registry import Steps, converter, uses
from r8.frontends.keras.reader import KerasLayer


@converter("Flatten")
def flatten(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    check_option(layer, "data_format", ("channels_last", None), "channels_last")
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
    check_rank(layer, shapes[0], 4)
    check_option(layer, "data_format", ("channels_last",), "channels_last")
    padding = layer.config["padding"]
    (top, bottom), (left, right) = box(padding)
    h, w, c = shapes[0]
    check_fits(layer, (h + top + bottom, w + left + right, c))
    return [(layer.name, nn.ZeroPad2d((left, right, top, bottom)))]


@converter("Cropping2D")
def cropping(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    check_rank(layer, shapes[0], 4)
    check_option(layer, "data_format", ("channels_last",), "channels_last")
    crop = layer.config["cropping"]
    (top, bottom), (left, right) = box(crop)
    return [(layer.name, Crop(top, bottom, left, right))]


@converter("UpSampling2D")
def upsampling(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    check_rank(layer, shapes[0], 4)
    check_option(layer, "data_format", ("channels_last",), "channels_last")
    check_option(layer, "interpolation", ("nearest", "bilinear"), "nearest")
    mode, size = layer.config.get("interpolation", "nearest"), pair(layer.config.get("size", 2))
    check_fits(layer, (shapes[0][0] * size[0], shapes[0][1] * size[1], shapes[0][2]))
    return [(layer.name, nn.Upsample(scale_factor=tuple(float(f) for f in size),
                                     mode=mode, **({"align_corners": False} if mode == "bilinear" else {})))]


@converter("Permute")
def permute(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    dims = list(layer.config["dims"])
    if sorted(dims) != list(range(1, len(shapes[0]) + 1)):
        raise layer.error(f"has dims={dims}; a permutation of 1..{len(shapes[0])}")
    return [(layer.name, KerasTranspose((0, *dims), len(shapes[0]) + 1))]
