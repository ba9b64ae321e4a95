"""Read a full Keras model ``.h5`` (config + weights) with h5py alone, in both dialects.

Keras 2 (2.4 - 2.15, and tf-keras) writes ``inbound_nodes`` as nested lists
``[[["layer", node, tensor, {}], ...]]`` and weight names with ``:0``; Keras 3's legacy ``.h5``
writes ``{"args": [keras tensors with "keras_history"]}`` and weight names without it.
Sequential models list their layers without inbound nodes: each layer reads the previous one.
"""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from r8.errors import R8Error


@dataclass
class KerasLayer:
    path: Path  # the .h5 it came from, for error messages
    name: str
    class_name: str
    config: dict
    inputs: list[str]  # names of the layers whose output this layer reads, in order
    weights: dict[str, np.ndarray] = field(default_factory=dict)  # "kernel", "gamma", ...

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
            if not shape or any(d is None for d in shape[1:]):
                raise R8Error(f"{self.path}: input '{name}' has no fixed shape ({shape}); r8 needs one")
            shapes.append(tuple(shape[1:]))
        return shapes


def _history(arg) -> list[tuple]:
    """Every ``keras_history`` (layer, node, tensor) in a Keras 3 call argument, in order."""
    if isinstance(arg, dict):
        if arg.get("class_name") == "__keras_tensor__":
            return [tuple(arg["config"]["keras_history"])]
        return [h for v in arg.values() for h in _history(v)]
    if isinstance(arg, list | tuple):
        return [h for v in arg for h in _history(v)]
    return []


def _inbound(path: Path, name: str, nodes: list) -> list[str]:
    if not nodes:
        return []
    if len(nodes) > 1:
        raise R8Error(f"{path}: layer '{name}' is called {len(nodes)} times (shared layers are not supported)")
    node = nodes[0]
    refs = _history(node.get("args", [])) if isinstance(node, dict) else [tuple(ref[:3]) for ref in node]
    for layer, node_index, tensor_index in refs:
        if node_index or tensor_index:
            raise R8Error(f"{path}: layer '{name}' reads output {tensor_index} of call {node_index} of "
                          f"'{layer}'; only single-call, single-output layers are supported")
    return [ref[0] for ref in refs]


def _endpoints(spec) -> list[str]:
    """``input_layers``/``output_layers``: ``[["a", 0, 0], ...]`` (Keras 2) or ``["a", 0, 0]``."""
    if spec and isinstance(spec[0], str):
        spec = [spec]
    return [s[0] for s in spec]


def _weights(group) -> dict[str, np.ndarray]:
    out = {}
    for wname in group.attrs.get("weight_names", []) if group is not None else []:
        wname = wname.decode() if isinstance(wname, bytes) else wname
        out[wname.rsplit("/", 1)[-1].split(":")[0]] = np.asarray(group[wname], dtype=np.float32)
    return out


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
    """The Keras version that wrote ``path`` (its attributes only, no weights read)."""
    with _open(Path(path)) as f:
        return _version(f)


def read_h5(path: str | os.PathLike) -> KerasModel:
    """Read a full Keras ``.h5`` model, Functional or Sequential, Keras 2 or Keras 3, without
    tensorflow; every problem is an R8Error naming the file."""
    path = Path(path)
    with _open(path) as f:
        config = json.loads(f.attrs["model_config"])
        version = _version(f)
        kind = config.get("class_name")
        if kind not in ("Functional", "Model", "Sequential"):
            raise R8Error(f"{path}: model class {kind!r} is not supported (Functional or Sequential only)")
        layers = []
        for spec in config["config"]["layers"]:
            name = spec.get("name") or spec["config"]["name"]
            cls = spec["class_name"]
            if cls in ("Functional", "Model", "Sequential"):
                raise R8Error(f"{path}: layer '{name}' is a nested model ({cls}); flatten it first")
            if kind == "Sequential":
                inputs = [layers[-1].name] if layers else []
            else:
                inputs = _inbound(path, name, spec.get("inbound_nodes", []))
            layers.append(KerasLayer(path, name, cls, spec["config"], inputs, _weights(f["model_weights"].get(name))))
    if kind == "Sequential":
        if layers and layers[0].class_name != "InputLayer":  # Keras 2 may leave the input implicit
            shape = layers[0].config.get("batch_input_shape")
            if not shape:
                raise R8Error(f"{path}: Sequential model without an input shape")
            layers.insert(0, KerasLayer(path, "input", "InputLayer", {"batch_input_shape": shape}, []))
            layers[1].inputs = ["input"]
        ins, outs = [layers[0].name], [layers[-1].name]
    else:
        ins, outs = _endpoints(config["config"]["input_layers"]), _endpoints(config["config"]["output_layers"])
    return KerasModel(path, layers, ins, outs, version)
