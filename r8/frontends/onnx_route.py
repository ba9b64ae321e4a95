"""The fallback conversion route: Keras -> ONNX (tf2onnx) -> PyTorch (onnx2torch).

The result takes what the Keras model takes: NHWC float pixels (tf2onnx keeps Keras's layout and
puts a Transpose first). onnx2torch's ``OnnxReshape`` checks its shape tensor at run time
(``if torch.any(shape == 0)``), which neither ``torch.export`` nor FX tracing can follow; a
Reshape whose shape is a constant without zeros is the plain ``torch.reshape`` it stands for, so
r8 rewrites it as one. Nothing else of onnx2torch's graph is changed.
"""

import os
import re
from contextlib import contextmanager

import torch
from torch import fx

from r8.core.errors import R8Error, cause

CONTRACT = """A Keras model converted to PyTorch by r8's fallback route (tf2onnx -> onnx2torch).

Layout contract: inputs are what the Keras model takes, in Keras's layout (NHWC for images:
for the MLPerf Tiny ResNet8, raw pixels 0..255, float32); the batch dimension is dynamic.
"""


def fold_constant_reshapes(model: fx.GraphModule) -> None:
    from onnx2torch.node_converters.reshape import OnnxReshape

    for node in list(model.graph.find_nodes(op="call_module")):
        shape_node = node.args[1] if len(node.args) == 2 else None
        if not isinstance(model.get_submodule(node.target), OnnxReshape) or getattr(shape_node, "op", None) != "get_attr":
            continue
        shape = [int(v) for v in model.get_buffer(shape_node.target).tolist()]
        if 0 in shape:
            continue  # ONNX's "copy this dimension": left to onnx2torch
        with model.graph.inserting_before(node):
            node.replace_all_uses_with(model.graph.call_function(torch.reshape, (node.args[0], tuple(shape))))
        model.graph.erase_node(node)
    model.graph.eliminate_dead_code()
    model.delete_all_unused_submodules()
    model.recompile()


def plain_module_names(model: fx.GraphModule) -> None:
    """Submodules renamed to identifiers: onnx2torch names them after the ONNX nodes, and tf2onnx's
    node names of a .tflite (``model_4/conv2d_36/BiasAdd;model_4/...,...``) hold the commas that
    torch.export's serializer splits its module stack on (the saved program would not load)."""
    taken: set[str] = set()
    for node in model.graph.find_nodes(op="call_module"):
        if re.fullmatch(r"[A-Za-z_]\w*", node.target) and node.target not in taken:
            taken.add(node.target)
            continue
        name = base = re.sub(r"\W", "_", node.target).lstrip("_0123456789")[-60:] or "module"
        i = 1
        while name in taken or hasattr(model, name):
            name, i = f"{base}_{i}", i + 1
        taken.add(name)
        model.add_submodule(name, model.get_submodule(node.target))
        node.target = name
    model.delete_all_unused_submodules()
    model.recompile()


@contextmanager
def route_limit(path: str | os.PathLike, what: str):
    """What torch's tracers (FX, ``torch.export``) cannot follow in onnx2torch's module of a model
    (its Shape -> Slice of a Flatten calls ``.numpy()`` on the traced shape, say) is a limit of
    the fallback route for that model, not a bug in r8: an R8Error saying so, with the reason,
    which the jobs show as "not measured"."""
    try:
        yield
    except R8Error:
        raise
    except Exception as e:
        raise R8Error(f"{path}: the onnx2torch route's module cannot be {what}: {cause(e)}") from None


def onnx_to_torch(path: str | os.PathLike) -> fx.GraphModule:
    """The onnx2torch model of the Keras-route ONNX file ``path`` (NHWC input), in eval mode."""
    from onnx2torch import convert

    import r8.frontends.onnx_ops  # noqa: F401  r8's converters for ops onnx2torch lacks at opset 18

    try:
        model = convert(str(path)).eval()
    except NotImplementedError as e:  # an op (or opset version) onnx2torch has no converter for
        raise R8Error(f"{path}: onnx2torch cannot convert this model: {e}") from None
    fold_constant_reshapes(model)
    plain_module_names(model)
    model.meta.update(input_shapes=[_onnx_input_shape(path)], nhwc=True, contract=CONTRACT)
    return model


def _onnx_input_shape(path) -> tuple:
    import onnx

    dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    return tuple(d.dim_value for d in dims[1:])
