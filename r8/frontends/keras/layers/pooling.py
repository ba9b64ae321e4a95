"""Pooling: average and max, 2-D and 1-D, local and global."""

from torch import nn

from r8.frontends.keras.layers.layout import check_option, check_rank, one, pair, same_pads
from r8.frontends.keras.layers.modules import As2d, GlobalAvgPool, GlobalMaxPool, SameAvgPool, Unsqueeze2d
from r8.frontends.keras.layers.registry import Steps, converter
from r8.frontends.keras.reader import KerasLayer


@converter("AveragePooling2D", "MaxPooling2D")
def pooling(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    (shape,) = shapes
    check_rank(layer, shape, 4)
    check_option(layer, "data_format", ("channels_last",), "channels_last")
    kernel = pair(layer.config["pool_size"])
    stride = pair(layer.config.get("strides") or kernel)  # Keras: strides None = pool_size
    pads = same_pads(layer, shape[:2], kernel, stride)
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
    check_rank(layer, shapes[0], 4)
    check_option(layer, "data_format", ("channels_last",), "channels_last")
    return [(layer.name, GlobalAvgPool(bool(layer.config.get("keepdims", False))))]


@converter("GlobalMaxPooling2D")
def global_max_pooling(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    check_rank(layer, shapes[0], 4)
    check_option(layer, "data_format", ("channels_last",), "channels_last")
    return [(layer.name, GlobalMaxPool(bool(layer.config.get("keepdims", False))))]


@converter("AveragePooling1D", "MaxPooling1D")
def pooling1d(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    (shape,) = shapes
    check_rank(layer, shape, 3)
    check_option(layer, "data_format", ("channels_last",), "channels_last")
    (k,) = one(layer.config["pool_size"])
    (s,) = one(layer.config.get("strides") or k)
    pads = same_pads(layer, (1, shape[0]), (1, k), (1, s))
    steps = pool_steps(layer.name, layer.class_name == "AveragePooling1D", (1, k), (1, s), pads, (1, shape[0]))
    return [(layer.name, As2d(*[m for _, m in steps]))]


@converter("GlobalAveragePooling1D", "GlobalMaxPooling1D")
def global_pooling1d(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    check_rank(layer, shapes[0], 3)
    check_option(layer, "data_format", ("channels_last",), "channels_last")
    keep = bool(layer.config.get("keepdims", False))
    pool = GlobalAvgPool(keep) if layer.class_name == "GlobalAveragePooling1D" else GlobalMaxPool(keep)
    return [(layer.name, As2d(pool))] if keep else [(layer.name, nn.Sequential(Unsqueeze2d(), pool))]
