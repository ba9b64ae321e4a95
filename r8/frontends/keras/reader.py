"""Read a full Keras model ``.h5`` (config + weights) with h5py alone, in both dialects.

Keras 2 (2.4 - 2.15, and tf-keras) writes ``inbound_nodes`` as nested lists
``[[["layer", node, tensor, {}], ...]]`` and weight names with ``:0``; Keras 3's legacy ``.h5``
writes ``{"args": [keras tensors with "keras_history"]}`` and weight names without it.
Sequential models list their layers without inbound nodes: each layer reads the previous one.

Nothing in a file is dropped silently: a call's constant operands (Keras 3's ``x + 3.0`` is an
``Add`` whose args hold the tensor and the number) are kept in order beside its tensors, a call
keyword that could change the result is refused by name, and each layer's config records which
keys its converter read (:class:`Config`), so that :mod:`r8.frontends.convert` can refuse the others. Keras
3 declares the shape of every tensor a layer reads: it becomes the producing layer's
``expected_shape``, which the converter checks its own output against.
"""

import io
import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from r8.core.errors import MAX_ELEMENTS, MAX_TENSOR_BYTES, R8Error


class Config(dict):
    """A layer's config that records the keys read from it (``[]``, ``get``, ``in``): what its
    converter did not read is checked against :data:`r8.frontends.keras.layers.registry.IGNORED_CONFIG`."""

    def __init__(self, *args):
        super().__init__(*args)
        self.read: set = set()

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)

    def __contains__(self, key) -> bool:
        self.read.add(key)
        return super().__contains__(key)

    def unread(self) -> list[str]:
        return [k for k in self.keys() if k not in self.read]


# call keywords that cannot change an inference result, with the values that keep it so
HARMLESS_CALL_KWARGS = {"training": (False, None), "mask": (None,)}


@dataclass
class KerasLayer:
    path: Path  # the .h5 it came from, for error messages
    name: str
    class_name: str
    config: dict
    inputs: list[str]  # names of the layers whose output this layer reads, in order
    weights: dict[str, np.ndarray] = field(default_factory=dict)  # "kernel", "gamma", ...
    # a Keras 2 op layer's (TFOpLambda) call arguments beside its first tensor: constants as they
    # are, tensors as {"input": i} (``inputs[i]``)
    call_kwargs: dict = field(default_factory=dict)
    keras_version: str = ""  # of the file: a few activations differ between Keras 2 and 3
    # constant operands of the call by position among all operands (Keras 3's ``3.0 - x``: {0: 3.0})
    constants: dict[int, np.ndarray] = field(default_factory=dict)
    expected_shape: tuple | None = None  # per sample, as the file declares it (None: any size)
    shares: str | None = None  # a shared layer's later call: the first call's name, whose modules it calls

    def __post_init__(self):
        self.config = Config(self.config)

    def error(self, msg: str) -> R8Error:
        return R8Error(f"{self.path}: layer '{self.name}' ({self.class_name}) {msg}")

    def weight(self, *keys: str, shape: tuple | None = None) -> np.ndarray:
        """The first of ``keys`` the layer has (Keras 2 and 3 name some weights differently),
        checked against the Keras-layout ``shape`` the config implies."""
        key = next((k for k in keys if k in self.weights), None)
        if key is None:
            raise self.error(f"has no weight '{keys[0]}' (has {sorted(self.weights)})")
        w = self.weights[key]
        if shape is not None and w.shape != tuple(shape):
            raise self.error(f"weight '{self.name}/{key}' has shape {w.shape}; its config implies {tuple(shape)}")
        return w


@dataclass
class KerasModel:
    path: Path
    layers: list[KerasLayer]  # in the file's order (Keras writes them topologically)
    inputs: list[str]
    outputs: list[str]
    keras_version: str

    def input_shapes(self) -> list[tuple]:
        """Per-sample Keras-layout shape of each input (no batch dimension)."""
        by_name = {layer.name: layer for layer in self.layers}
        shapes = []
        for name in self.inputs:
            c = by_name[name].config
            shape = c.get("batch_shape") or c.get("batch_input_shape")
            if not isinstance(shape, list) or not shape or any(d is None for d in shape[1:]):
                raise R8Error(f"{self.path}: input '{name}' has no fixed shape ({shape}); r8 needs one")
            if not all(isinstance(d, int) and 0 < d <= (1 << 20) for d in shape[1:]) or np.prod(shape[1:], dtype=np.float64) > MAX_ELEMENTS:
                raise R8Error(f"{self.path}: input '{name}' declares shape {shape}; expected positive sizes under 1 GiB")
            shapes.append(tuple(shape[1:]))
        return shapes


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


def _inbound(path: Path, name: str, nodes: list) -> list[tuple[list[tuple], dict, dict]]:
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
    """One inbound node: (tensors read, constant operands, call keywords), as :func:`_inbound`."""
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


def _call_index(path: Path, reader: str, ref: tuple[str, int], version: str, nested: set) -> int:
    """Which call of its producer a reference reads. Keras 2 counts a nested model's own graph as
    its call 0, so the calls the file lists are 1, 2, ... there."""
    producer, index = ref[0], ref[1]
    if version.startswith("2") and producer in nested:
        if index < 1:
            raise R8Error(f"{path}: layer '{reader}' reads call {index} of nested model '{producer}', which this "
                          "Keras 2 file does not list")
        return index - 1
    return index


def _same_arguments(first: tuple[dict, dict], other: tuple[dict, dict]) -> bool:
    """Whether two calls of one layer, each (constant operands, call keywords), pass the same (a Keras 2 op
    layer's, where a tensor keyword names its position among the call's tensors)."""
    (constants_a, kwargs_a), (constants_b, kwargs_b) = first, other
    return (json.dumps(kwargs_a, sort_keys=True, default=str) == json.dumps(kwargs_b, sort_keys=True, default=str)
            and constants_a.keys() == constants_b.keys()
            and all(np.array_equal(constants_a[i], constants_b[i]) for i in constants_a))


def use_name(layer: str, call: int) -> str:
    """The name of one call of a layer: its own for the first, ``name@k`` for call k of a shared one."""
    return f"{layer}@{call}" if call else layer


def _check_call_kwargs(path: Path, name: str, cls: str, kwargs: dict) -> dict:
    """The call keywords a converter reads (a Keras 2 op layer's); any other that could change
    the result (``training=True``, a mask) is refused by name."""
    kwargs = {k: v for k, v in kwargs.items() if not (k in HARMLESS_CALL_KWARGS and v in HARMLESS_CALL_KWARGS[k])}
    if kwargs and cls != "TFOpLambda":
        key, value = next(iter(kwargs.items()))
        raise R8Error(f"{path}: layer '{name}' ({cls}) is called with {key}={json.dumps(value)[:80]}, which r8 does "
                      "not convert")
    return kwargs


def _declared(path: Path, name: str, shape) -> tuple | None:
    """A declared per-sample shape (``[null, 5, 6, 4]`` -> (5, 6, 4)); None where none is declared."""
    if shape is None:
        return None
    if not isinstance(shape, list) or not shape or not all(d is None or (isinstance(d, int) and d >= 0) for d in shape):
        raise R8Error(f"{path}: layer '{name}' reads a tensor of declared shape {shape!r}; expected sizes or null")
    return tuple(shape[1:])


def _endpoints(spec) -> list[str]:
    """``input_layers``/``output_layers``: ``[["a", 0, 0], ...]`` (Keras 2) or ``["a", 0, 0]``."""
    if spec and isinstance(spec[0], str):
        spec = [spec]
    return [s[0] for s in spec]


def _weights(group, layer: str | None = None) -> dict[str, np.ndarray]:
    """A layer's weights by their own names (kernel, gamma, ...) from its ``model_weights`` group;
    with ``layer``, only those of that layer inside a nested model's group (their names end in
    ``layer/kernel``)."""
    out = {}
    for wname in group.attrs.get("weight_names", []) if isinstance(group, h5py.Group) else []:
        wname = wname.decode() if isinstance(wname, bytes) else wname
        parts = wname.split("/")
        if layer is not None and (len(parts) < 2 or parts[-2] != layer):
            continue
        if wname not in group or not isinstance(group[wname], h5py.Dataset):
            raise KeyError(f"weight '{wname}' is listed but not in the file")
        key = parts[-1].split(":")[0]
        if key in out:
            raise KeyError(f"two weights named '{key}' for layer '{layer}' in group '{group.name}'")
        out[key] = _array(group[wname])
    return out


class _H5Weights:
    """Each layer's weights in a legacy ``.h5``: a top-level layer's group holds its own, a nested
    model's group every weight of every layer inside it, at any depth."""

    def __init__(self, root, nested=None):
        self.root, self.nested = root, nested

    def __call__(self, name: str, cls: str, cfg: dict) -> dict:
        return _weights(self.root.get(name)) if self.nested is None else _weights(self.nested, layer=name)

    def scope(self, name: str, cls: str) -> "_H5Weights":
        """The weights of the layers inside the nested model ``name``."""
        return _H5Weights(self.root, self.root.get(name) if self.nested is None else self.nested)


def _array(dataset) -> np.ndarray:
    """A weight as float32, refused before reading when it is not numeric or declares over 1 GiB."""
    if dataset.dtype.kind not in "fiu" or dataset.size * 4 > MAX_TENSOR_BYTES:
        raise TypeError(f"weight '{dataset.name}' is {dataset.dtype} of shape {dataset.shape}; r8 reads numeric weights under 1 GiB")
    return np.asarray(dataset, dtype=np.float32)


def _open(path: Path) -> h5py.File:
    """The ``.h5`` of a full Keras model, open for reading; R8Error naming the file otherwise."""
    if not path.is_file():
        raise R8Error(f"{path}: file not found")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise R8Error(f"{path}: not a readable HDF5 file ({e})") from None
    if "model_config" not in f.attrs or "model_weights" not in f:
        f.close()
        raise R8Error(f"{path}: no 'model_config'/'model_weights': not a full Keras model file "
                      "(weights-only files are not supported)")
    return f


def _version(f: h5py.File) -> str:
    version = f.attrs.get("keras_version", "")
    return version.decode() if isinstance(version, bytes) else str(version)


def keras_version(path: str | os.PathLike) -> str:
    """The Keras version that wrote ``path`` (its attributes, or a .keras's metadata.json: no
    weights read)."""
    path = Path(path)
    if path.suffix.lower() == ".keras":
        return str(json.loads(_archive(path)["metadata.json"]).get("keras_version", ""))
    with _open(path) as f:
        return _version(f)


def read_h5(path: str | os.PathLike) -> KerasModel:
    """Read a full Keras ``.h5`` model, Functional or Sequential, Keras 2 or Keras 3, without
    tensorflow; every problem is an R8Error naming the file."""
    path = Path(path)
    with _open(path) as f:
        try:
            config = json.loads(f.attrs["model_config"])
        except (ValueError, TypeError) as e:
            raise R8Error(f"{path}: model_config is not JSON ({e})") from None
        return _model(path, config, _version(f), _H5Weights(f["model_weights"]))


NESTED = ("Functional", "Model", "Sequential")


def _model(path: Path, config: dict, version: str, weights, prefix: str = "") -> KerasModel:
    """The model described by a Keras model config; ``weights(name, class, config)`` gives each
    layer's weights by Keras's names (kernel, gamma, ...), ``weights.scope(name, class)`` those of
    a nested model's layers. A nested model (a Sequential or Functional model used as a layer, at
    any depth) is flattened into this one: its layers are named by their path (``backbone/conv1``),
    its inputs become the tensors it is called on, and what reads it reads its output."""
    kind = config.get("class_name") if isinstance(config, dict) else None
    if kind not in NESTED:
        raise R8Error(f"{path}: model class {kind!r} is not supported (Functional or Sequential only)")
    layers, specs = [], _get(path, "model_config", config, "config", "layers")
    declared: dict[str, tuple] = {}  # layer -> its output's shape, as the layers that read it declare it
    alias: dict[str, str] = {}  # each use of a nested model -> the layer whose output is its output
    previous = None  # a Sequential model's last output
    nested: set[str] = set()  # the nested models met so far
    for n, spec in enumerate(specs if isinstance(specs, list) else []):
        name = f"#{n}"
        try:
            name = spec.get("name") or spec["config"]["name"]
            cls = spec["class_name"]
            if not isinstance(name, str) or not isinstance(cls, str) or not isinstance(spec["config"], dict):
                raise TypeError("its name, class_name or config has the wrong type")
            if kind == "Sequential":
                shape = (spec.get("build_config") or {}).get("input_shape")  # Keras 3 declares each input
                calls = [([(previous, 0, 0, shape)] if previous else [], {}, {})]
            else:
                calls = _inbound(path, prefix + name, spec.get("inbound_nodes", [])) or [([], {}, {})]
            own = None if cls in NESTED else weights(name, cls, spec["config"])  # read once, however often called
            for k, (refs, constants, kwargs) in enumerate(calls):  # a shared layer: one use per call
                use = use_name(prefix + name, k)
                kwargs = _check_call_kwargs(path, use, cls, kwargs)
                if k == 0:
                    call0 = (constants, kwargs)
                elif not _same_arguments(call0, (constants, kwargs)):  # its modules hold call 0's
                    raise R8Error(f"{path}: layer '{use}' ({cls}) is called again with other constant operands or "
                                  "keywords than its first call; r8 converts a shared layer whose calls differ only "
                                  "in the tensors they read")
                inputs = [r[0] if kind == "Sequential" else
                          use_name(prefix + r[0], _call_index(path, use, (prefix + r[0], r[1]), version, nested))
                          for r in refs]
                inputs = [alias.get(i, i) for i in inputs]
                for producer, ref in zip(inputs, refs):
                    declared[producer] = declared.get(producer) or _declared(path, use, ref[3])
                if cls in NESTED:
                    nested.add(prefix + name)
                    start = len(layers)
                    previous = _nest(path, spec, version, weights.scope(name, cls), f"{use}/", inputs, constants,
                                     layers, alias, declared)
                    if k:  # each layer of this use calls the modules of the first use's
                        first = {layer.name: layer for layer in layers[:start]}
                        for layer in layers[start:]:
                            same = first[layer.name.replace(f"{use}/", f"{prefix}{name}/", 1)]
                            layer.shares = same.shares or same.name
                    continue
                layers.append(KerasLayer(path, use, cls, spec["config"], inputs, own, kwargs, version, constants,
                                         shares=prefix + name if k else None))
                previous = use
        except R8Error:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, OSError) as e:
            raise R8Error(f"{path}: layer '{prefix}{name}' has a malformed entry in the model config or weights "
                          f"({type(e).__name__}: {e})") from None
    if not layers:
        raise R8Error(f"{path}: the model config lists no layers")
    for layer in layers:
        layer.expected_shape = layer.expected_shape or declared.get(layer.name)
    if kind == "Sequential":
        if layers[0].class_name != "InputLayer":  # Keras 2 may leave the input implicit
            shape = layers[0].config.get("batch_input_shape")
            if not shape and not prefix:  # a nested model's input is what it is called on: no shape needed
                raise R8Error(f"{path}: Sequential model without an input shape")
            layers.insert(0, KerasLayer(path, prefix + "input", "InputLayer", {"batch_input_shape": shape}, []))
            layers[1].inputs = [prefix + "input"]
        ins, outs = [layers[0].name], [previous]
    else:
        try:
            ins = [prefix + n for n in _endpoints(config["config"]["input_layers"])]
            outs = [alias.get(prefix + n, prefix + n) for n in _endpoints(config["config"]["output_layers"])]
        except (KeyError, TypeError, IndexError) as e:
            raise R8Error(f"{path}: the model config's input_layers/output_layers are malformed ({e!r})") from None
        names = {layer.name for layer in layers}
        if not ins or any(not isinstance(n, str) or n not in names for n in ins + outs):
            raise R8Error(f"{path}: the model's inputs {ins} / outputs {outs} are not among its layers")
    return KerasModel(path, layers, ins, outs, version)


def _nest(path: Path, spec: dict, version: str, weights, prefix: str, inputs: list[str], constants: dict,
          layers: list, alias: dict, declared: dict) -> str:
    """Flattens the nested model ``spec``, called on the layers ``inputs``, into ``layers``; returns
    the name of the layer whose output is the nested model's."""
    name = prefix.rstrip("/")  # this use of the nested model
    if constants:
        raise R8Error(f"{path}: nested model '{name}' is called with constant operands; r8 converts tensors only")
    inner = _model(path, {"class_name": spec["class_name"], "config": spec["config"]}, version, weights, prefix)
    if not inputs:  # the first layer of a Sequential model: its input is the model's
        inputs = [layer.name for layer in inner.layers if layer.name in inner.inputs]
        layers += [layer for layer in inner.layers if layer.name in inner.inputs]
    if len(inner.inputs) != len(inputs) or len(inner.outputs) != 1:
        raise R8Error(f"{path}: nested model '{name}' has {len(inner.inputs)} input(s) and {len(inner.outputs)} "
                      f"output(s), called on {len(inputs)}; r8 flattens nested models of one output called on "
                      "all their inputs")
    feeds = dict(zip(inner.inputs, inputs))  # the nested model's inputs are the tensors it is called on
    for layer in inner.layers:
        if layer.name in feeds:
            if layer.expected_shape is not None:  # what the inner layers declare about their input, about the outer tensor
                declared[feeds[layer.name]] = declared.get(feeds[layer.name]) or layer.expected_shape
            continue
        layer.inputs = [feeds.get(i, i) for i in layer.inputs]
        layers.append(layer)
    output = feeds.get(inner.outputs[0], inner.outputs[0])
    alias[name] = output
    return output


def _get(path: Path, what: str, node, *keys):
    """``node[k1][k2]...`` of a config, or R8Error naming the file and the missing key."""
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            raise R8Error(f"{path}: {what} has no '{key}' where r8 expects it")
        node = node[key]
    return node


# ---- Keras 3's own format: a zip of config.json, metadata.json and model.weights.h5
def _snake(name: str) -> str:
    """Keras's ``naming.to_snake_case``: the weights file names each layer's group after its class."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _variable_names(cls: str, config: dict) -> list[str]:
    """The order in which a layer creates its variables (``vars/0``, ``vars/1``, ...)."""
    if cls == "BatchNormalization":
        return [*(["gamma"] if config.get("scale", True) else []), *(["beta"] if config.get("center", True) else []),
                "moving_mean", "moving_variance"]
    return {"SeparableConv2D": ["depthwise_kernel", "pointwise_kernel", "bias"], "Normalization": ["mean", "variance", "count"],
            "PReLU": ["alpha"]}.get(cls, ["kernel", "bias"])  # convolutions, Dense: the kernel, then the bias if any


def _refuse_code(path: Path, node) -> None:
    """A Lambda layer or any serialized Python function: refused, never deserialized."""
    if isinstance(node, dict):
        if node.get("class_name") in ("Lambda", "__lambda__", "function") or "__lambda__" in node:
            raise R8Error(f"{path}: holds serialized Python code ({node.get('class_name')}); r8 never executes "
                          "code from a model file")
        for value in node.values():
            _refuse_code(path, value)
    elif isinstance(node, list):
        for value in node:
            _refuse_code(path, value)


def _archive(path: Path, *names: str) -> dict[str, bytes]:
    """The named members of a ``.keras`` zip (metadata.json alone by default)."""
    if not path.is_file():
        raise R8Error(f"{path}: file not found")
    try:
        with zipfile.ZipFile(path) as z:
            return {name: z.read(name) for name in names or ("metadata.json",)}
    except KeyError as e:
        raise R8Error(f"{path}: not a Keras model archive ({e.args[0]})") from None
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise R8Error(f"{path}: not a readable .keras file ({e})") from None


def read_keras(path: str | os.PathLike) -> KerasModel:
    """Read a Keras 3 ``.keras`` file (Functional or Sequential) with zipfile and h5py."""
    path = Path(path)
    members = _archive(path, "config.json", "metadata.json", "model.weights.h5")
    try:
        config = json.loads(members["config.json"])
        version = json.loads(members["metadata.json"]).get("keras_version", "")
    except ValueError as e:
        raise R8Error(f"{path}: not a readable .keras file ({e})") from None
    weights_h5 = members["model.weights.h5"]
    _refuse_code(path, config)
    try:
        f = h5py.File(io.BytesIO(weights_h5), "r")
    except OSError as e:
        raise R8Error(f"{path}: model.weights.h5 is not readable HDF5 ({e})") from None
    with f:
        return _model(path, config, version, _KerasWeights(f, "", config.get("class_name") == "Sequential"))


class _KerasWeights:
    """Each layer's variables in a ``.keras``'s ``model.weights.h5``: under ``layers/<class in
    snake case>[_k]/vars`` (k counting the layers of one class), a nested model's under its own
    group's ``layers/``."""

    def __init__(self, f, prefix: str, sequential: bool):
        self.f, self.prefix, self.sequential, self.used, self.groups = f, prefix, sequential, {}, {}

    def _group(self, name: str, cls: str) -> str:
        """The layer's group; the same for every call of a shared layer (counted once, by name)."""
        if name not in self.groups:
            group = _snake(cls)
            self.used[group] = self.used.get(group, -1) + 1
            self.groups[name] = f"{self.prefix}layers/{group}" + (f"_{self.used[group]}" if self.used[group] else "")
        return self.groups[name]

    def __call__(self, name: str, cls: str, cfg: dict) -> dict:
        if cls == "InputLayer" and self.sequential:
            return {}  # a Sequential model's layer list (as saved) leaves its input out
        found = self.f.get(self._group(name, cls) + "/vars")
        if found is None:
            return {}
        values = [_array(found[str(i)]) for i in range(len(found))]
        names = _variable_names(cls, cfg)
        return {names[i] if i < len(names) else f"var{i}": v for i, v in enumerate(values)}

    def scope(self, name: str, cls: str) -> "_KerasWeights":
        return _KerasWeights(self.f, self._group(name, cls) + "/", cls == "Sequential")
