"""Read a float ``.tflite`` flatbuffer without TensorFlow or LiteRT: the ``tflite`` package's
bindings, generated from TFLite's own ``schema.fbs`` (every builtin op and options table, with
no hand-kept copy of the schema in r8), over ``flatbuffers``.

The graph comes out in the shape :mod:`r8.frontends.convert` builds from: a list of nodes in execution
order (TFLite writes operators topologically), each with its type (the builtin op's name), the
names of the nodes it reads, its options as a dict and its constant inputs as numpy arrays.
Nodes are named after the op and its output tensor's index, so names are short and unique.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from r8.core.errors import MAX_TENSOR_BYTES, R8Error

# TensorType -> numpy dtype, for the types a float model's tensors have
DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 7: np.int16, 9: np.int8, 6: np.bool_}
INT8_TYPES = {3, 7, 9}  # UINT8, INT16, INT8: a quantized model's activations


@dataclass
class TfliteNode:
    path: Path
    name: str
    class_name: str  # the builtin op's name: CONV_2D, ...
    config: dict  # the op's options, read field by field from its options table
    inputs: list[str]  # names of the nodes whose output this op reads, in order (constants left out)
    weights: dict[str, np.ndarray] = field(default_factory=dict)  # input position ("0", "1", ...) -> constant
    operands: list = field(default_factory=list)  # per input position: a node name, "const" or None (absent)
    expected_shape: tuple | None = None  # per sample, the output tensor's declared shape

    def error(self, msg: str) -> R8Error:
        return R8Error(f"{self.path}: op '{self.name}' ({self.class_name}) {msg}")

    def const(self, position: int) -> np.ndarray | None:
        return self.weights.get(str(position))


@dataclass
class TfliteGraph:
    path: Path
    layers: list[TfliteNode]  # the graph inputs (class_name "InputLayer") first, then the ops
    inputs: list[str]
    outputs: list[str]
    shapes: dict[str, tuple]

    def input_shapes(self) -> list[tuple]:
        return [self.shapes[name] for name in self.inputs]


def _options(op) -> dict:
    """The op's builtin options as {field name: value}, read through the generated accessors."""
    import tflite

    kind = op.BuiltinOptionsType()
    names = {v: k for k, v in vars(tflite.BuiltinOptions).items() if isinstance(v, int)}
    if kind == 0 or kind not in names or not hasattr(tflite, names[kind]):
        return {}
    options = getattr(tflite, names[kind])()
    table = op.BuiltinOptions()
    options.Init(table.Bytes, table.Pos)
    out = {}
    for attr in dir(options):
        if attr.startswith(("Init", "GetRootAs", "_")) or attr.endswith(("IsNone", "Length")) or not attr[0].isupper():
            continue
        try:
            value = getattr(options, attr)()
        except TypeError:  # a vector's element accessor (takes an index): read through its AsNumpy twin
            continue
        if attr.endswith("AsNumpy"):
            attr, value = attr.removesuffix("AsNumpy"), [] if isinstance(value, int) else value.tolist()
        out[attr] = value
    return out


def _shape(tensor) -> tuple:
    shape = tensor.ShapeAsNumpy()
    return () if isinstance(shape, int) else tuple(int(d) for d in shape)


def flatbuffer(path: Path):
    """The ``tflite.Model`` of a .tflite file; R8Error naming the file if it is not one."""
    import tflite

    if not path.is_file():
        raise R8Error(f"{path}: file not found")
    buf = path.read_bytes()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise R8Error(f"{path}: not a TFLite flatbuffer (no 'TFL3' identifier)")
    return tflite.Model.GetRootAsModel(buf, 0)


def op_name(model, op) -> str:
    """The builtin name of an operator (``CONV_2D``; ``CUSTOM (name)`` for a custom op)."""
    from tflite.utils import BUILTIN_OPCODE2NAME

    code = model.OperatorCodes(op.OpcodeIndex())
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())  # see the schema's comment on both
    kind = BUILTIN_OPCODE2NAME.get(builtin, f"opcode {builtin}")
    return f"CUSTOM ({code.CustomCode().decode(errors='replace')})" if kind == "CUSTOM" else kind


def read_tflite(path: str | os.PathLike) -> TfliteGraph:
    """The graph of a float ``.tflite``; R8Error naming the file for anything else (not a
    flatbuffer, an int8 model, several subgraphs, a custom op)."""

    path = Path(path)
    model = flatbuffer(path)
    try:
        if model.SubgraphsLength() != 1:
            raise R8Error(f"{path}: has {model.SubgraphsLength()} subgraphs; r8 converts single-graph models")
        graph = model.Subgraphs(0)
        tensors = [graph.Tensors(i) for i in range(graph.TensorsLength())]
        ins = [int(i) for i in graph.InputsAsNumpy()]
        outs = [int(i) for i in graph.OutputsAsNumpy()]
        quantized = [t.Name().decode() for i, t in enumerate(tensors) if i in ins + outs and t.Type() in INT8_TYPES]
        if quantized:
            raise R8Error(f"{path}: is an integer-quantized model (tensor {quantized[0]!r} is "
                          f"{np.dtype(DTYPES[tensors[ins[0]].Type()]).name}); r8 converts float .tflite files. "
                          "An int8 .tflite is a reference to compare with (its row in the report), not a source")
        names = {i: f"input_{n}" for n, i in enumerate(ins)}  # tensor index -> the node that makes it
        nodes = [TfliteNode(path, names[i], "InputLayer", {}, []) for i in ins]
        shapes = {names[i]: _shape(tensors[i])[1:] for i in ins}
        for n in range(graph.OperatorsLength()):
            op = graph.Operators(n)
            kind = op_name(model, op)
            outputs = [int(i) for i in op.OutputsAsNumpy()] if op.OutputsLength() else []
            if len(outputs) != 1:
                raise R8Error(f"{path}: op {n} ({kind}) has {len(outputs)} outputs; r8 converts single-output ops")
            node = TfliteNode(path, f"{kind.lower()}_{outputs[0]}", kind, _options(op), [])
            for position, i in enumerate(int(i) for i in op.InputsAsNumpy()) if op.InputsLength() else []:
                if i < 0:
                    node.operands.append(None)  # an optional input left out (e.g. no bias)
                elif i in names:
                    node.operands.append(names[i])
                    node.inputs.append(names[i])
                else:
                    node.operands.append("const")
                    node.weights[str(position)] = _constant(path, model, tensors[i], kind)
            out = tensors[outputs[0]]
            if out.Type() != 0:
                raise node.error(f"outputs a {DTYPES.get(out.Type(), out.Type())} tensor; r8 converts float32 graphs")
            node.expected_shape = _shape(out)[1:]
            names[outputs[0]] = node.name
            nodes.append(node)
        missing = [i for i in outs if i not in names]
        if missing:
            raise R8Error(f"{path}: output tensors {missing} are made by no op")
        return TfliteGraph(path, nodes, [names[i] for i in ins], [names[i] for i in outs], shapes)
    except R8Error:
        raise
    except Exception as e:  # a damaged flatbuffer fails inside the generated accessors
        raise R8Error(f"{path}: not a readable TFLite model ({type(e).__name__}: {e})") from None


def _constant(path: Path, model, tensor, kind: str) -> np.ndarray:
    name, shape = tensor.Name().decode(errors="replace"), _shape(tensor)
    dtype = DTYPES.get(tensor.Type())
    if dtype is None:
        raise R8Error(f"{path}: constant {name!r} of {kind} has tensor type {tensor.Type()}, which r8 does not read")
    size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if any(d < 0 for d in shape) or size > MAX_TENSOR_BYTES:
        raise R8Error(f"{path}: constant {name!r} of {kind} declares shape {shape}, refused before reading it")
    buffer = model.Buffers(tensor.Buffer())
    raw = buffer.DataAsNumpy()
    data = b"" if isinstance(raw, int) else raw.tobytes()
    if buffer.Offset() > 1:  # large models keep buffers after the flatbuffer
        data = path.read_bytes()[buffer.Offset():buffer.Offset() + buffer.Size()]
    if len(data) != size:
        raise R8Error(f"{path}: constant {name!r} of {kind} has {len(data)} bytes; shape {shape} needs {size}")
    return np.frombuffer(data, dtype).reshape(shape).copy()
