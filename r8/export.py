"""ONNX export, two routes: the converted torch model (torch.onnx, NCHW input) and the Keras
reference itself (tf2onnx, NHWC input). Both get a dynamic batch dimension and are checked."""

import os
from pathlib import Path

import onnx
import torch

OPSET = 18


def torch_to_onnx(model: torch.nn.Module, path: str | os.PathLike, opset: int = OPSET) -> None:
    # The dynamo exporter folds the explicit TF-'same' ZeroPad2d into Conv's pads attribute.
    program = torch.onnx.export(model, (torch.zeros(2, 3, 32, 32),), dynamo=True, opset_version=opset,
                                input_names=["input"], output_names=["probs"],
                                dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
    program.save(str(path))
    _check(path)


def keras_to_onnx(h5: str | os.PathLike, path: str | os.PathLike, opset: int = OPSET) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf
    import tf2onnx

    model = keras.models.load_model(h5, compile=False)
    # Keras 3 models carry no saved input spec: tf2onnx needs it spelled out.
    spec = [tf.TensorSpec((None, 32, 32, 3), tf.float32, name="input")]
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset)
    onnx.save(proto, str(path))
    _check(path)


def _check(path: str | os.PathLike) -> None:
    onnx.checker.check_model(str(path), full_check=True)


def opset_of(path: str | os.PathLike) -> int:
    return next(o.version for o in onnx.load(str(Path(path))).opset_import if o.domain in ("", "ai.onnx"))
