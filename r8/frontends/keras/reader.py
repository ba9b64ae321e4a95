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

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from r8.core.errors import MAX_ELEMENTS, MAX_TENSOR_BYTES, R8Error
from r8.frontends.keras.calls import (
    call_index,
    check_call_kwargs,
    declared_shape,
    endpoints,
    inbound_calls,
    same_arguments,
    use_name,
)


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
        out[key] = read_array(group[wname])
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


def read_array(dataset) -> np.ndarray:
    """A weight as float32, refused before reading when it is not numeric or declares over 1 GiB."""
    if dataset.dtype.kind not in "fiu" or dataset.size * 4 > MAX_TENSOR_BYTES:
        raise TypeError(f"weight '{dataset.name}' is {dataset.dtype} of shape {dataset.shape}; r8 reads numeric weights under 1 GiB")
    return np.asarray(dataset, dtype=np.float32)


def open_h5(path: Path) -> h5py.File:
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


def h5_version(f: h5py.File) -> str:
    version = f.attrs.get("keras_version", "")
    return version.decode() if isinstance(version, bytes) else str(version)


def read_h5(path: str | os.PathLike) -> KerasModel:
    """Read a full Keras ``.h5`` model, Functional or Sequential, Keras 2 or Keras 3, without
    tensorflow; every problem is an R8Error naming the file."""
    path = Path(path)
    with open_h5(path) as f:
        try:
            config = json.loads(f.attrs["model_config"])
        except (ValueError, TypeError) as e:
            raise R8Error(f"{path}: model_config is not JSON ({e})") from None
        return model_from_config(path, config, h5_version(f), _H5Weights(f["model_weights"]))


NESTED = ("Functional", "Model", "Sequential")


def model_from_config(path: Path, config: dict, version: str, weights, prefix: str = "") -> KerasModel:
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
            calls = _calls(path, kind, spec, prefix + name, previous)
            own = None if cls in NESTED else weights(name, cls, spec["config"])  # read once, however often called
            for k, (refs, constants, kwargs) in enumerate(calls):  # a shared layer: one use per call
                use = use_name(prefix + name, k)
                kwargs = check_call_kwargs(path, use, cls, kwargs)
                if k == 0:
                    call0 = (constants, kwargs)
                elif not same_arguments(call0, (constants, kwargs)):  # its modules hold call 0's
                    raise R8Error(f"{path}: layer '{use}' ({cls}) is called again with other constant operands or "
                                  "keywords than its first call; r8 converts a shared layer whose calls differ only "
                                  "in the tensors they read")
                inputs = [r[0] if kind == "Sequential" else
                          use_name(prefix + r[0], call_index(path, use, (prefix + r[0], r[1]), version, nested))
                          for r in refs]
                inputs = [alias.get(i, i) for i in inputs]
                for producer, ref in zip(inputs, refs):
                    declared[producer] = declared.get(producer) or declared_shape(path, use, ref[3])
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
    return _finish(path, kind, config, version, layers, declared, alias, previous, prefix)



def _calls(path: Path, kind: str, spec: dict, name: str, previous: str | None) -> list[tuple[list[tuple], dict, dict]]:
    """Each call of the layer ``spec``: (tensors it reads, constant operands, keywords). A layer of a
    Sequential model reads the previous layer's output."""
    if kind == "Sequential":
        shape = (spec.get("build_config") or {}).get("input_shape")  # Keras 3 declares each input
        return [([(previous, 0, 0, shape)] if previous else [], {}, {})]
    return inbound_calls(path, name, spec.get("inbound_nodes", [])) or [([], {}, {})]

def _finish(path: Path, kind: str, config: dict, version: str, layers: list, declared: dict, alias: dict,
            previous: str | None, prefix: str) -> KerasModel:
    """The model of the flattened ``layers``: each layer's declared output shape, a Sequential
    model's implicit input, and the model's inputs and outputs."""
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
            ins = [prefix + n for n in endpoints(config["config"]["input_layers"])]
            outs = [alias.get(prefix + n, prefix + n) for n in endpoints(config["config"]["output_layers"])]
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
    inner = model_from_config(path, {"class_name": spec["class_name"], "config": spec["config"]}, version, weights, prefix)
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
