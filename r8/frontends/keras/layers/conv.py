"""Convolutions and Dense: Conv2D, DepthwiseConv2D, SeparableConv2D, Conv2DTranspose, Conv1D,
DepthwiseConv1D."""

import numpy as np
import torch
from torch import nn

from r8.frontends.keras.layers.activations import with_activation
from r8.frontends.keras.layers.layout import as_tensor, check_fits, check_option, check_rank, one, pair, same_pads
from r8.frontends.keras.layers.modules import As2d, Crop
from r8.frontends.keras.layers.registry import Steps, converter
from r8.frontends.keras.reader import KerasLayer


@converter("Conv2D", "DepthwiseConv2D")
def conv2d(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    (shape,) = shapes
    check_rank(layer, shape, 4)
    check_option(layer, "data_format", ("channels_last",), "channels_last")
    check_option(layer, "dilation_rate", ((1, 1),), (1, 1))
    c, (h, w, cin) = layer.config, shape
    kernel, stride = pair(c["kernel_size"]), pair(c.get("strides", 1))
    if layer.class_name == "DepthwiseConv2D":  # kernel (H, W, in, multiplier)
        check_option(layer, "groups", (1,), 1)  # tf-keras writes the Conv base's groups
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
        conv.weight.copy_(as_tensor(weight))
        if bias:
            conv.bias.copy_(as_tensor(layer.weight("bias", shape=(cout,))))
    return with_activation(layer, padded(layer.name, conv, same_pads(layer, (h, w), kernel, stride)), 4)


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
    check_rank(layer, shape, 2)  # a Dense on an image tensor needs a Flatten first
    check_option(layer, "quantization_config", (None,))  # Keras 3's own int8/float8 weights: not float
    check_option(layer, "lora_rank", (None,))  # a LoRA delta added to the kernel
    units, bias = layer.config["units"], layer.config.get("use_bias", True)
    linear = nn.Linear(shape[0], units, bias=bias)
    with torch.no_grad():
        linear.weight.copy_(as_tensor(layer.weight("kernel", shape=(shape[0], units)).T))  # (in, out)
        if bias:
            linear.bias.copy_(as_tensor(layer.weight("bias", shape=(units,))))
    return with_activation(layer, [(layer.name, linear)], 2)


@converter("SeparableConv2D")
def separable_conv2d(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    (shape,) = shapes
    check_rank(layer, shape, 4)
    check_option(layer, "data_format", ("channels_last",), "channels_last")
    check_option(layer, "groups", (1,), 1)
    check_option(layer, "dilation_rate", ((1, 1),), (1, 1))
    c, (h, w, cin) = layer.config, shape
    kernel, stride, mult = pair(c["kernel_size"]), pair(c.get("strides", 1)), c.get("depth_multiplier", 1)
    depthwise = nn.Conv2d(cin, cin * mult, kernel, stride, groups=cin, bias=False)
    pointwise = nn.Conv2d(cin * mult, c["filters"], 1, bias=c.get("use_bias", True))
    with torch.no_grad():
        dk = layer.weight("depthwise_kernel", shape=(*kernel, cin, mult))
        depthwise.weight.copy_(as_tensor(depthwise_weight(dk.reshape(*kernel, cin * mult))))
        pointwise.weight.copy_(as_tensor(layer.weight("pointwise_kernel", shape=(1, 1, cin * mult, c["filters"]))
                                       .transpose(3, 2, 0, 1)))
        if pointwise.bias is not None:
            pointwise.bias.copy_(as_tensor(layer.weight("bias", shape=(c["filters"],))))
    steps = padded(f"{layer.name}_depthwise", depthwise, same_pads(layer, (h, w), kernel, stride))
    return with_activation(layer, steps + [(layer.name, pointwise)], 4)


@converter("Conv2DTranspose")
def conv2d_transpose(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    """The full transposed convolution, then TF's crop: 'same' keeps H * stride rows, starting
    (kernel - stride) // 2 in; 'valid' keeps (H - 1) * stride + max(kernel, stride)."""
    (shape,) = shapes
    check_rank(layer, shape, 4)
    check_option(layer, "data_format", ("channels_last",), "channels_last")
    check_option(layer, "dilation_rate", ((1, 1),), (1, 1))
    check_option(layer, "output_padding", (None,), None)
    check_option(layer, "groups", (1,), 1)
    check_option(layer, "padding", ("same", "valid"), "valid")
    c, (h, w, cin) = layer.config, shape
    kernel, stride, cout = pair(c["kernel_size"]), pair(c.get("strides", 1)), c["filters"]
    check_fits(layer, ((h + 1) * max(stride[0], kernel[0]), (w + 1) * max(stride[1], kernel[1]), cout))
    extra = tuple(max(s - k, 0) for k, s in zip(kernel, stride))
    conv = nn.ConvTranspose2d(cin, cout, kernel, stride, output_padding=extra, bias=c.get("use_bias", True))
    with torch.no_grad():
        conv.weight.copy_(as_tensor(layer.weight("kernel", shape=(*kernel, cout, cin)).transpose(3, 2, 0, 1)))
        if conv.bias is not None:
            conv.bias.copy_(as_tensor(layer.weight("bias", shape=(cout,))))
    steps: Steps = [(layer.name, conv)]
    if c.get("padding") == "same":
        full = [(n - 1) * s + max(k, s) for n, k, s in zip((h, w), kernel, stride)]
        (top, left) = (max(k - s, 0) // 2 for k, s in zip(kernel, stride))
        bottom, right = (f - b - n * s for f, b, n, s in zip(full, (top, left), (h, w), stride))
        steps.append((f"{layer.name}_crop", Crop(top, bottom, left, right)))
    return with_activation(layer, steps, 4)


@converter("Conv1D", "DepthwiseConv1D")
def conv1d(layer: KerasLayer, shapes: list[tuple]) -> Steps:
    """As a 2-D convolution with a 1 x k kernel on (N, C, 1, L); the tensor stays (N, L, C)."""
    (shape,) = shapes
    check_rank(layer, shape, 3)
    check_option(layer, "data_format", ("channels_last",), "channels_last")
    check_option(layer, "dilation_rate", ((1,), 1), 1)
    c, (length, cin) = layer.config, shape
    (k,), (s,) = (one(c["kernel_size"]), one(c.get("strides", 1)))
    if layer.class_name == "DepthwiseConv1D":  # kernel (k, in, multiplier)
        check_option(layer, "groups", (1,), 1)
        mult = c.get("depth_multiplier", 1)
        weight = layer.weight("depthwise_kernel", "kernel", shape=(k, cin, mult)).reshape(k, cin * mult).T[:, None, None, :]
        groups, cout = cin, cin * mult
    else:  # kernel (k, in / groups, out)
        groups, cout = c.get("groups", 1), c["filters"]
        weight = layer.weight("kernel", shape=(k, cin // groups, cout)).transpose(2, 1, 0)[:, :, None, :]
    bias = c.get("use_bias", True)
    conv = nn.Conv2d(cin, cout, (1, k), (1, s), groups=groups, bias=bias)
    with torch.no_grad():
        conv.weight.copy_(as_tensor(weight))
        if bias:
            conv.bias.copy_(as_tensor(layer.weight("bias", shape=(cout,))))
    pads = same_pads(layer, (1, length), (1, k), (1, s))  # (left, right, 0, 0) along the length
    return with_activation(layer, [(layer.name, As2d(*[m for _, m in padded(layer.name, conv, pads)]))], 3)
