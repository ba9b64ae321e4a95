"""How a Keras file writes a layer's calls: the tensors each call reads, its constant operands and
its keywords, in both dialects (Keras 2's nested lists, Keras 3's ``args`` / ``kwargs``), and the
shape Keras 3 declares for each tensor read."""

import json
from pathlib import Path

import numpy as np

from r8.core.errors import MAX_TENSOR_BYTES, R8Error

# call keywords that cannot change an inference result, with the values that keep it so
HARMLESS_CALL_KWARGS = {"training": (False, None), "mask": (None,)}


def _is_ref(value) -> bool:
    """A Keras 2 tensor reference: ``[layer, node, tensor]`` or ``[layer, node, tensor, kwargs]``."""
    return (isinstance(value, list) and len(value) in (3, 4) and isinstance(value[0], str)
            and all(isinstance(v, int) for v in value[1:3]))


def _is_keras2_constant(value) -> bool:
    """A Keras 2 op layer's first operand when it is a constant (``3.0 - x``):
    ``["_CONSTANT_VALUE", -1, 3.0, {"y": [tensor ref], ...}]``."""
    return isinstance(value, list) and len(value) == 4 and value[0] == "_CONSTANT_VALUE"


def _is_tensor(arg) -> bool:
    """A Keras 3 call argument that is a tensor (``keras_history``: the layer that made it)."""
    return isinstance(arg, dict) and arg.get("class_name") == "__keras_tensor__"


def _constant(arg) -> np.ndarray | None:
    """A Keras 3 call's constant operand (a number, a nested list of numbers, or a serialized
    numpy array / tensor) as float32; None for anything else."""
    if isinstance(arg, dict) and arg.get("class_name") in ("__numpy__", "__tensor__"):
        arg = arg.get("config", {}).get("value")
    if isinstance(arg, bool) or arg is None or isinstance(arg, str | dict):
        return None
    try:
        value = np.asarray(arg)
    except (ValueError, TypeError):
        return None
    if value.dtype.kind not in "iuf" or value.size * 4 > MAX_TENSOR_BYTES:
        return None
    return value.astype(np.float32)


def _keras3_call(path: Path, name: str, node: dict) -> tuple[list[tuple], dict, dict]:
    """(the keras tensors read, with their declared shapes; constant operands by position; call
    keywords) of a Keras 3 inbound node ``{"args": [...], "kwargs": {...}}``. A merge layer is
    called on one list of tensors, a ``keras.ops`` function on its operands: both are operands,
    in order."""
    args, kwargs = node.get("args", []), node.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise R8Error(f"{path}: layer '{name}' has an inbound node r8 cannot read: {json.dumps(node)[:200]}")
    operands = args[0] if len(args) == 1 and isinstance(args[0], list) else args
    refs, constants = [], {}
    for i, arg in enumerate(operands):
        if _is_tensor(arg):
            config = arg.get("config", {})
            refs.append((*config["keras_history"], config.get("shape")))
        elif (value := _constant(arg)) is not None:
            constants[i] = value
        else:
            raise R8Error(f"{path}: layer '{name}' is called with argument {i} = {json.dumps(arg)[:120]}, which r8 "
                          "does not convert (it takes tensors and numeric constants)")
    return refs, constants, kwargs


def inbound_calls(path: Path, name: str, nodes: list) -> list[tuple[list[tuple], dict, dict]]:
    """Per call of the layer (a shared layer has several): the tensors read, in order, as (layer,
    call of that layer, tensor, declared shape or None); constant operands by position; call
    keywords (a Keras 2 op layer's other call arguments)."""
    if not nodes:
        return []
    if not isinstance(nodes, list):
        raise R8Error(f"{path}: layer '{name}' has inbound_nodes {nodes!r}, not a list")
    if _is_keras2_constant(nodes[0]) or _is_ref(nodes[0]):  # a Keras 2 op layer (TFOpLambda): each call its first operand
        nodes = [[node] for node in nodes]
    return [_call(path, name, node) for node in nodes]


def _call(path: Path, name: str, node) -> tuple[list[tuple], dict, dict]:
    """One inbound node: (tensors read, constant operands, call keywords), as :func:`inbound_calls`."""
    kwargs, constants = {}, {}
    if isinstance(node, dict):  # Keras 3
        refs, constants, kwargs = _keras3_call(path, name, node)
    else:  # Keras 2: a list of refs, each [layer, node, tensor, call kwargs]
        first_constant = isinstance(node, list) and len(node) == 1 and _is_keras2_constant(node[0])
        if first_constant and (value := _constant(node[0][2])) is not None:
            constants, refs = {0: value}, []
        elif isinstance(node, list) and node and all(_is_ref(r) for r in node):
            refs = [(*ref[:3], None) for ref in node]
        else:
            raise R8Error(f"{path}: layer '{name}' has an inbound node r8 cannot read: {json.dumps(node)[:200]}")
        for key, value in (node[0][3] if len(node[0]) == 4 and isinstance(node[0][3], dict) else {}).items():
            if _is_ref(value):  # a tensor passed by keyword, e.g. the y of x * y
                kwargs[key] = {"input": len(refs)}
                refs.append((*value[:3], None))
            elif key != "name":
                kwargs[key] = value
    for layer, _, tensor_index, _ in refs:
        if tensor_index:
            raise R8Error(f"{path}: layer '{name}' reads output {tensor_index} of '{layer}'; only single-output "
                          "layers are supported")
    return refs, constants, kwargs


def call_index(path: Path, reader: str, ref: tuple[str, int], version: str, nested: set) -> int:
    """Which call of its producer a reference reads. Keras 2 counts a nested model's own graph as
    its call 0, so the calls the file lists are 1, 2, ... there."""
    producer, index = ref[0], ref[1]
    if version.startswith("2") and producer in nested:
        if index < 1:
            raise R8Error(f"{path}: layer '{reader}' reads call {index} of nested model '{producer}', which this "
                          "Keras 2 file does not list")
        return index - 1
    return index


def same_arguments(first: tuple[dict, dict], other: tuple[dict, dict]) -> bool:
    """Whether two calls of one layer, each (constant operands, call keywords), pass the same (a Keras 2 op
    layer's, where a tensor keyword names its position among the call's tensors)."""
    (constants_a, kwargs_a), (constants_b, kwargs_b) = first, other
    return (json.dumps(kwargs_a, sort_keys=True, default=str) == json.dumps(kwargs_b, sort_keys=True, default=str)
            and constants_a.keys() == constants_b.keys()
            and all(np.array_equal(constants_a[i], constants_b[i]) for i in constants_a))


def use_name(layer: str, call: int) -> str:
    """The name of one call of a layer: its own for the first, ``name@k`` for call k of a shared one."""
    return f"{layer}@{call}" if call else layer


def check_call_kwargs(path: Path, name: str, cls: str, kwargs: dict) -> dict:
    """The call keywords a converter reads (a Keras 2 op layer's); any other that could change
    the result (``training=True``, a mask) is refused by name."""
    kwargs = {k: v for k, v in kwargs.items() if not (k in HARMLESS_CALL_KWARGS and v in HARMLESS_CALL_KWARGS[k])}
    if kwargs and cls != "TFOpLambda":
        key, value = next(iter(kwargs.items()))
        raise R8Error(f"{path}: layer '{name}' ({cls}) is called with {key}={json.dumps(value)[:80]}, which r8 does "
                      "not convert")
    return kwargs


def declared_shape(path: Path, name: str, shape) -> tuple | None:
    """A declared per-sample shape (``[null, 5, 6, 4]`` -> (5, 6, 4)); None where none is declared."""
    if shape is None:
        return None
    if not isinstance(shape, list) or not shape or not all(d is None or (isinstance(d, int) and d >= 0) for d in shape):
        raise R8Error(f"{path}: layer '{name}' reads a tensor of declared shape {shape!r}; expected sizes or null")
    return tuple(shape[1:])


def endpoints(spec) -> list[str]:
    """``input_layers``/``output_layers``: ``[["a", 0, 0], ...]`` (Keras 2) or ``["a", 0, 0]``."""
    if spec and isinstance(spec[0], str):
        spec = [spec]
    return [s[0] for s in spec]
