"""r8: Keras .h5 -> PyTorch with h5py alone; the MLPerf Tiny ResNet8 converted, exported to ONNX,
quantized to int8 and verified."""

from r8.core.errors import R8Error
from r8.frontends.keras.reference import guard_triton

guard_triton()  # tensorflow imported before r8: keep triton from crashing the process later

__all__ = ["R8Error"]
