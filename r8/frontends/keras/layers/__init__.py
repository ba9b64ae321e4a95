"""One small converter per Keras layer type, in a registry (the onnx2torch way), one module per
layer family.

A converter takes the Keras layer and the per-sample Keras-layout shapes of its inputs and
returns the torch modules that compute it, as ``(name, module)`` steps run one after the other
(the last step's output is the layer's output). Layout: 4-D tensors are NCHW in torch, every
other rank is as in Keras, so a Keras axis is mapped with :func:`r8.frontends.keras.layers.layout.torch_axis`.
"""

from r8.frontends.keras.layers import activations, conv, merge, normalization, pooling, reshape, tf_ops  # noqa: F401 (they register)
from r8.frontends.keras.layers.registry import CONVERTERS, check_config_read, converter

SUPPORTED = ("InputLayer", *sorted(CONVERTERS))

__all__ = ["CONVERTERS", "SUPPORTED", "check_config_read", "converter"]
