"""r8: the MLPerf Tiny ResNet8, converted from Keras to PyTorch and ONNX, quantized, verified."""

from r8.errors import R8Error

__all__ = ["R8Error"]
