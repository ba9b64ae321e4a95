"""ONNX export, two routes: the converted torch model (torch.onnx, NCHW input) and the Keras
reference itself (tf2onnx, NHWC input). Both get a dynamic batch dimension and are checked. And
the float ``.tflite`` of a model born outside Keras and TFLite (litert-torch, an optional extra)."""

import os
import re
from pathlib import Path

import onnx
import torch

from r8.core.console import native_stderr_quiet
from r8.core.errors import R8Error, cause
from r8.frontends.convert import WHOLE_GRAPH, example_inputs

OPSET = 18


def torch_to_onnx(model: torch.fx.GraphModule, path: str | os.PathLike, opset: int = OPSET) -> None:
    # The dynamo exporter folds the explicit TF-'same' ZeroPad2d into Conv's pads attribute.
    program = torch.onnx.export(model, example_inputs(model), dynamo=True, opset_version=opset,
                                input_names=["input"], output_names=["probs"],
                                dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
    program.save(str(path))
    _check(path)


def keras_to_onnx(h5: str | os.PathLike, path: str | os.PathLike, opset: int = OPSET) -> None:
    from r8.frontends.keras.reference import import_tensorflow, load_keras_model

    if Path(h5).suffix.lower() in WHOLE_GRAPH:
        raise R8Error(f"{h5}: r8 converts a {Path(h5).suffix} file with onnx2torch already; the fallback route "
                      "takes a Keras or .tflite file")
    tf = import_tensorflow()
    import tf2onnx

    if Path(h5).suffix.lower() == ".tflite":  # tf2onnx reads a .tflite directly (NHWC input, as the file)
        with native_stderr_quiet():
            proto, _ = tf2onnx.convert.from_tflite(str(h5), opset=opset)
        onnx.save(canonical_names(proto), str(path))
        return _check(path)

    model = load_keras_model(h5)
    # Keras 3 models carry no saved input spec: tf2onnx needs it spelled out.
    spec = [tf.TensorSpec((None, *model.inputs[0].shape[1:]), tf.float32, name="input")]
    with native_stderr_quiet():
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset)
    onnx.save(canonical_names(proto), str(path))
    _check(path)


def canonical_names(proto: onnx.ModelProto) -> onnx.ModelProto:
    """tf2onnx numbers the names it makes up (``new_shape__24``) from a counter whose order
    follows Python's per-process hash seed, so two exports of one model differ in names only:
    renumber them in order of first use and sort the initializers, which makes the file the same
    in every process."""
    numbers: dict[str, str] = {}

    def rename(name: str) -> str:
        return _MADE_UP.sub(lambda m: "__" + numbers.setdefault(m[1], str(len(numbers))), name)

    graph = proto.graph
    for node in graph.node:
        node.name = rename(node.name)
        node.input[:] = map(rename, node.input)
        node.output[:] = map(rename, node.output)
    for named in (*graph.initializer, *graph.value_info, *graph.input, *graph.output):
        named.name = rename(named.name)
    graph.initializer.sort(key=lambda t: t.name)  # their order, too, varies from process to process
    return proto


_MADE_UP = re.compile(r"__(\d+)")


def _check(path: str | os.PathLike) -> None:
    onnx.checker.check_model(str(path), full_check=True)




def torch_to_tflite(model: torch.fx.GraphModule, path: str | os.PathLike, source: str | os.PathLike) -> None:
    """The float ``.tflite`` of a converted model (NCHW input) with litert-torch: channels-last
    input as a Keras-born file's (litert-torch's ``to_channel_last_io``), batch 1 and a
    ``serving_default`` signature, the form TFLite Micro and the LiteRT quantizer take. R8Error
    naming ``source`` where litert-torch is not installed or cannot convert it."""
    import importlib.util

    from r8.core.console import tf_converter_quiet

    if not importlib.util.find_spec("litert_torch"):
        raise R8Error(f"{source}: its float .tflite needs litert-torch, which is not installed "
                      "(pip install 'r8[litert-torch]')")
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")  # r8 prints its own progress
    import litert_torch

    sample = torch.zeros(1, *model.meta["input_shapes"][0][1:], model.meta["input_shapes"][0][0])
    try:
        with tf_converter_quiet():
            edge = litert_torch.convert(litert_torch.to_channel_last_io(model, args=[0]), (sample,))
            edge.export(str(path))
    except Exception as e:  # an op litert-torch has no lowering for, named by it
        raise R8Error(f"{source}: litert-torch cannot convert it to a .tflite ({cause(e)})") from None
