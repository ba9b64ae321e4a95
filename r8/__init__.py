"""r8: a trained TinyML model converted to PyTorch and ONNX without TensorFlow, quantized to int8
by every toolchain, and each step verified.

The entry points a library user calls are exported here and imported when first used, so
``import r8`` stays light::

    import r8

    model = r8.load_model("pretrainedResnet.h5")
    report = r8.quantize_job(model, r8.load_dataset("cifar10"), "all", "reports")
"""

import importlib

from r8.core.errors import R8Error
from r8.frontends.keras.reference import guard_triton

guard_triton()  # tensorflow imported before r8: keep triton from crashing the process later

# public name -> the module that defines it
API = {
    "convert": "r8.frontends.convert", "load_model": "r8.model", "Model": "r8.model", "load_dataset": "r8.data",
    "Dataset": "r8.data", "quantize_job": "r8.jobs.quantize", "search_job": "r8.jobs.search",
    "study_job": "r8.jobs.study", "benchmark_job": "r8.jobs.benchmark", "mcu_job": "r8.jobs.mcu",
    "Row": "r8.rows", "Int8Row": "r8.rows", "ReferenceRow": "r8.rows", "McuRow": "r8.rows", "best_row": "r8.rows",
    "Thresholds": "r8.thresholds", "Gate": "r8.thresholds",
}

__all__ = ["R8Error", *API]


def __getattr__(name: str):
    if name not in API:
        raise AttributeError(f"module 'r8' has no attribute {name!r}")
    return getattr(importlib.import_module(API[name]), name)
