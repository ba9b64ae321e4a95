"""``.onnx`` files (torch.onnx's, tf2onnx's, any exporter's) -> PyTorch through onnx2torch.

Every node is checked before anything is converted: an op (or opset version) onnx2torch has no
converter for, or an attribute it would convert wrongly, is refused by name, never converted
approximately. The result keeps r8's contract: a 4-D input is NCHW. A file whose image input is
NHWC (tf2onnx's, which transposes it first) gets a permute in front, and its layout is recorded
as ``model.meta["layout"]`` for ``inspect``.
"""

import os
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import fx

from r8.core.errors import MAX_ELEMENTS, R8Error, cause

CONTRACT = """An ONNX model converted to PyTorch by r8 (onnx2torch).

Layout contract: 4-D inputs are NCHW, whatever the ONNX file's layout (an NHWC file is permuted
first); inputs take the values the ONNX model took; the batch dimension is dynamic.
"""

NHWC_TO_NCHW = [0, 3, 1, 2]


def read_onnx(path: str | os.PathLike) -> onnx.ModelProto:
    """The checked model proto of ``path``; R8Error naming the file for a damaged or invalid one."""
    path = Path(path)
    try:
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto)
    except Exception as e:  # protobuf's DecodeError, the checker's ValidationError, a missing external file
        raise R8Error(f"{path}: not a valid ONNX model ({cause(e)})") from None
    return proto


def _dims(value: onnx.ValueInfoProto) -> list:
    """Each dimension of a graph input or output: its size, or its name (or None) where dynamic."""
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
            for d in value.type.tensor_type.shape.dim]


def graph_inputs(proto: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The inputs a caller feeds (an initializer listed as an input has a default: not one)."""
    given = {t.name for t in proto.graph.initializer}
    return [i for i in proto.graph.input if i.name not in given]


def layout_of(path: str | os.PathLike) -> str:
    return layout(read_onnx(path))


def layout(proto: onnx.ModelProto) -> str:
    """``NHWC`` where the (first) input is a 4-D tensor whose every reader transposes it to NCHW
    first (tf2onnx's files, Keras-born), else ``NCHW`` for a 4-D input (PyTorch's), ``-`` otherwise."""
    inputs = graph_inputs(proto)
    if not inputs or len(_dims(inputs[0])) != 4:
        return "-"
    first = inputs[0]
    readers = [n for n in proto.graph.node if first.name in n.input]
    transposes = [n for n in readers if n.op_type == "Transpose"
                  and [a.ints for a in n.attribute if a.name == "perm"] == [NHWC_TO_NCHW]]
    return "NHWC" if readers and len(transposes) == len(readers) else "NCHW"


def _opsets(proto: onnx.ModelProto) -> dict[str, int]:
    return {(o.domain if o.domain != "ai.onnx" else ""): o.version for o in proto.opset_import}


def _constant(proto: onnx.ModelProto, name: str) -> np.ndarray | None:
    for t in proto.graph.initializer:
        if t.name == name:
            return onnx.numpy_helper.to_array(t)
    for node in proto.graph.node:
        if node.op_type == "Constant" and name in node.output:
            return next((onnx.numpy_helper.to_array(a.t) for a in node.attribute if a.name == "value"), None)
    return None


def node_problem(proto: onnx.ModelProto, node: onnx.NodeProto) -> str | None:
    """Why onnx2torch (with r8's converters) cannot convert ``node`` exactly (None: it can)."""
    from onnx2torch.node_converters import get_converter

    from r8.frontends.onnx_ops import REDUCE_AXES_AS_INPUT

    version = _opsets(proto).get(node.domain)
    if version is None:
        return f"its domain {node.domain!r} is not among the file's opsets"
    try:
        get_converter(node.op_type, version, node.domain)
    except NotImplementedError:
        return f"onnx2torch has no converter for {node.op_type} at opset {version}" + \
            (f" (domain {node.domain})" if node.domain else "")
    if node.op_type == "Reshape" and any(a.name == "allowzero" and a.i for a in node.attribute):
        shape = _constant(proto, node.input[1])
        if shape is None or 0 in shape:
            return "Reshape with allowzero=1 and a shape that is not a constant without zeros"
    if version >= REDUCE_AXES_AS_INPUT.get(node.op_type, version + 1):
        if len(node.input) > 1 and node.input[1] and _constant(proto, node.input[1]) is None:
            return f"{node.op_type} with axes computed at run time; r8 converts constant axes"
        if any(a.name == "noop_with_empty_axes" and a.i for a in node.attribute):
            return f"{node.op_type} with noop_with_empty_axes=1"
    return None


def problems(proto: onnx.ModelProto, path) -> list[str]:
    """Every reason the file cannot be converted, each naming its node or input."""
    out = [] if graph_inputs(proto) else ["it has no inputs"]
    for value in graph_inputs(proto):
        elem = value.type.tensor_type.elem_type
        if elem != onnx.TensorProto.FLOAT:
            out.append(f"input {value.name!r} is {onnx.TensorProto.DataType.Name(elem)}; r8 converts float32 inputs")
        dims = _dims(value)
        if not dims or isinstance(dims[0], int):
            out.append(f"input {value.name!r} has shape {dims} with no dynamic batch dimension; export it with "
                       "one (torch.onnx.export(..., dynamic_shapes=...), tf2onnx's default)")
        elif not all(isinstance(d, int) and d > 0 for d in dims[1:]):
            out.append(f"input {value.name!r} has shape {dims}: a dynamic dimension other than the batch; r8 "
                       "converts models whose sample shape is fixed")
        elif np.prod(dims[1:], dtype=float) > MAX_ELEMENTS:
            out.append(f"input {value.name!r} has shape {dims}: over 1 GiB per sample")
    for node in proto.graph.node:
        reason = node_problem(proto, node)
        if reason:
            out.append(f"node {node.name or node.output[0]!r} ({node.op_type}): {reason}")
    return [f"{path}: {p}" for p in out]


def _allowzero_off(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Reshape's ``allowzero=1`` (torch.onnx writes it) is the same function as 0 for a constant
    shape without zeros, the only kind :func:`node_problem` lets through; onnx2torch takes 0 only."""
    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    for node in proto.graph.node:
        if node.op_type == "Reshape":
            for a in node.attribute:
                if a.name == "allowzero":
                    a.i = 0
    return proto


def _adds_as_modules(model: fx.GraphModule) -> None:
    """Each add of two computed tensors (a residual add) as r8's ``Add`` module, the one the Keras
    and TFLite front-ends build: int8 flows observe and quantize it as they do there, and
    ``r8 search`` can keep it float (:func:`r8.frontends.converted_layers.float_units`)."""
    from onnx2torch.node_converters.binary_math_operations import OnnxBinaryMathOperation

    from r8.frontends.keras.layers.modules import Add

    for node in list(model.graph.find_nodes(op="call_module")):
        module = model.get_submodule(node.target)
        if (isinstance(module, OnnxBinaryMathOperation) and module.math_op_function is torch.add
                and module.broadcast is None and len(node.args) == 2
                and all(isinstance(a, fx.Node) and a.op != "get_attr" for a in node.args)):
            model.add_submodule(node.target, Add())
            node.args = (list(node.args),)
    model.recompile()


def _binary_ops_as_functions(model: fx.GraphModule, shapes: list) -> None:
    """The rest of onnx2torch's binary math modules as the torch functions they call. Its Div picks
    true or integer division by its inputs' dtype at run time, which FX cannot trace; the dtypes are
    fixed by the graph, so one run on zeros decides each."""
    from onnx2torch.node_converters.binary_math_operations import OnnxBinaryMathOperation

    nodes = [n for n in model.graph.find_nodes(op="call_module")
             if isinstance(model.get_submodule(n.target), OnnxBinaryMathOperation)
             and model.get_submodule(n.target).broadcast is None]
    floating = {}

    def record(name):
        def hook(module, args) -> None:  # a pre-hook's return value would replace the inputs
            floating[name] = all(a.is_floating_point() for a in args)
        return hook
    hooks = [model.get_submodule(n.target).register_forward_pre_hook(record(n.target)) for n in nodes]
    with torch.no_grad():
        model(*(torch.zeros(1, *s) for s in shapes))
    for hook in hooks:
        hook.remove()
    for node in nodes:
        function = model.get_submodule(node.target).math_op_function
        is_div = function not in (torch.add, torch.sub, torch.mul)
        kwargs = {"rounding_mode": "trunc"} if is_div and not floating[node.target] else {}
        with model.graph.inserting_before(node):
            node.replace_all_uses_with(model.graph.call_function(torch.div if is_div else function, node.args, kwargs))
        model.graph.erase_node(node)
    model.delete_all_unused_submodules()
    model.recompile()


def _permute_input(model: fx.GraphModule) -> None:
    """The module takes NCHW, as every r8 model does: an NHWC file's input permuted first."""
    placeholder = next(iter(model.graph.find_nodes(op="placeholder")))
    with model.graph.inserting_after(placeholder):
        permuted = model.graph.call_function(torch.permute, (placeholder, (0, 2, 3, 1)))
    placeholder.replace_all_uses_with(permuted, delete_user_cb=lambda user: user is not permuted)
    model.recompile()


def to_torch(path: str | os.PathLike, proto: onnx.ModelProto | None = None) -> fx.GraphModule:
    """The torch model of an ``.onnx`` file (or of ``proto``, read from it), in eval mode."""
    from onnx2torch import convert

    from r8.frontends.onnx_route import fold_constant_reshapes, plain_module_names

    proto = read_onnx(path) if proto is None else proto
    found = problems(proto, path)
    if found:
        raise R8Error("; ".join(found))
    inputs = graph_inputs(proto)
    shapes = [tuple(_dims(i)[1:]) for i in inputs]
    file_layout = layout(proto)
    nhwc = file_layout == "NHWC"
    if nhwc:
        shapes[0] = (shapes[0][2], shapes[0][0], shapes[0][1])
    try:
        model = convert(_allowzero_off(proto)).eval()
        fold_constant_reshapes(model)
        plain_module_names(model)
        _adds_as_modules(model)
        if nhwc:
            _permute_input(model)
        _binary_ops_as_functions(model, shapes)
        with torch.no_grad():
            outputs = model(*(torch.zeros(1, *s) for s in shapes))
    except Exception as e:  # a converter's refusal of an attribute, weights that do not fit: named with the file
        raise R8Error(f"{path}: onnx2torch's module of it cannot be built or run ({cause(e)})") from None
    outputs = outputs if isinstance(outputs, tuple | list) else (outputs,)
    model.meta.update(input_shapes=shapes, output_shapes=[tuple(o.shape[1:]) for o in outputs],
                      keras_outputs={}, layout=file_layout, contract=CONTRACT)
    return model


def layer_table(path: str | os.PathLike, proto: onnx.ModelProto | None = None) -> tuple[list[dict], list[str]]:
    """``inspect``'s layer table of an ``.onnx`` file (or of ``proto``, read from it), a row per
    node, and its problems."""
    proto = read_onnx(path) if proto is None else proto
    try:
        inferred = onnx.shape_inference.infer_shapes(proto)
    except Exception:  # shapes are a courtesy of the table: a file shape inference cannot follow shows "?"
        inferred = proto
    shapes = {v.name: tuple(_dims(v)[1:]) for v in (*inferred.graph.value_info, *inferred.graph.output,
                                                     *inferred.graph.input)}
    sizes = {t.name: int(np.prod(t.dims)) for t in proto.graph.initializer}
    rows = [{"name": i.name, "type": "Input", "params": 0, "shape": shapes.get(i.name),
             "problem": None} for i in graph_inputs(proto)]
    for node in proto.graph.node:
        rows.append({"name": node.name or node.output[0], "type": node.op_type,
                     "params": sum(sizes.get(i, 0) for i in node.input), "shape": shapes.get(node.output[0]),
                     "problem": node_problem(proto, node)})
    return rows, problems(proto, path)
