"""Keras ResNet8 ``.h5`` -> PyTorch, with h5py alone (no tensorflow).

The Keras graph (layers and their inbound nodes in ``model_config``) is walked from the input
and matched, layer by layer, onto :class:`r8.model.ResNet8`; every mismatch is an error that
names the file and the layer.
"""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import nn

from r8.cache import atomic_write
from r8.errors import R8Error
from r8.model import ResNet8

SUPPORTED = {"InputLayer", "Conv2D", "BatchNormalization", "Activation", "ReLU", "Add",
             "AveragePooling2D", "Flatten", "Dense"}


@dataclass
class KerasLayer:
    name: str
    kind: str  # class_name, or "relu"/"softmax" for activation layers
    config: dict
    inputs: list[str]
    weights: dict[str, np.ndarray] = field(default_factory=dict)  # "kernel", "gamma", ...


class KerasGraph:
    def __init__(self, path: Path, layers: dict[str, KerasLayer], input_name: str):
        self.path, self.layers, self.input_name = path, layers, input_name

    def error(self, msg: str) -> R8Error:
        return R8Error(f"{self.path}: {msg}")

    def consumers(self, name: str) -> list[KerasLayer]:
        return [layer for layer in self.layers.values() if name in layer.inputs]

    def next(self, name: str, kind: str) -> KerasLayer:
        """The single layer fed by ``name``, which must be of ``kind``."""
        found = self.consumers(name)
        if len(found) != 1 or found[0].kind != kind:
            got = ", ".join(f"{c.name} ({c.kind})" for c in found) or "nothing"
            raise self.error(f"expected one {kind} layer after '{name}', found {got}; "
                             "not the MLPerf Tiny ResNet8 architecture")
        return found[0]


def _layer_kind(class_name: str, config: dict) -> str:
    if class_name == "Activation":
        return config["activation"]
    return "relu" if class_name == "ReLU" else class_name


def read_h5(path: str | os.PathLike) -> KerasGraph:
    """Read a full Keras 2 ``.h5`` model (config + weights) without tensorflow."""
    path = Path(path)
    if not path.is_file():
        raise R8Error(f"{path}: file not found")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise R8Error(f"{path}: not a readable HDF5 file ({e})") from None
    with f:
        if "model_config" not in f.attrs or "model_weights" not in f:
            raise R8Error(f"{path}: no 'model_config'/'model_weights': not a full Keras model file "
                          "(weights-only files are not supported)")
        config = json.loads(f.attrs["model_config"])
        layers, inputs = {}, []
        for spec in config["config"]["layers"]:
            name, cls = spec["name"], spec["class_name"]
            if cls not in SUPPORTED:
                raise R8Error(f"{path}: layer '{name}' has unsupported type {cls}; "
                              "not the MLPerf Tiny ResNet8 architecture")
            inbound = [n[0] for node in spec.get("inbound_nodes", []) for n in node]
            layer = KerasLayer(name, _layer_kind(cls, spec["config"]), spec["config"], inbound)
            group = f["model_weights"].get(name)
            for wname in group.attrs.get("weight_names", []) if group is not None else []:
                wname = wname.decode() if isinstance(wname, bytes) else wname
                short = wname.rsplit("/", 1)[-1].split(":")[0]
                layer.weights[short] = np.asarray(group[wname], dtype=np.float32)
            layers[name] = layer
            if cls == "InputLayer":
                inputs.append(name)
    if len(inputs) != 1:
        raise R8Error(f"{path}: expected one input layer, found {len(inputs)}")
    return KerasGraph(path, layers, inputs[0])


def match_resnet8(graph: KerasGraph) -> dict[str, str]:
    """Torch module name -> Keras layer name, by walking the Keras graph from its input."""
    m: dict[str, str] = {}

    def chain(start: str, steps: list[tuple[str, str]]) -> str:
        cur = start
        for torch_name, kind in steps:
            cur = m[torch_name] = graph.next(cur, kind).name
        return cur

    x = chain(graph.input_name, [("conv", "Conv2D"), ("bn", "BatchNormalization"), ("relu", "relu")])
    for stage in ("stage1", "stage2", "stage3"):
        convs = [c for c in graph.consumers(x) if c.kind == "Conv2D"]
        body = [c for c in convs if tuple(c.config["kernel_size"]) == (3, 3)]
        if len(body) != 1:
            raise graph.error(f"expected one 3x3 Conv2D after '{x}' ({stage}), found {len(body)}")
        m[f"{stage}.conv1"] = body[0].name
        y = chain(body[0].name, [(f"{stage}.bn1", "BatchNormalization"), (f"{stage}.relu1", "relu"),
                                 (f"{stage}.conv2", "Conv2D"), (f"{stage}.bn2", "BatchNormalization")])
        add = graph.next(y, "Add")
        shortcut = [i for i in add.inputs if i != y]
        if len(add.inputs) != 2 or len(shortcut) != 1:
            raise graph.error(f"'{add.name}' must add '{y}' and one shortcut, got {add.inputs}")
        if shortcut[0] != x:
            if shortcut[0] not in {c.name for c in convs} or graph.layers[shortcut[0]].inputs != [x]:
                raise graph.error(f"shortcut '{shortcut[0]}' of '{add.name}' is neither '{x}' "
                                  "nor a Conv2D of it")
            m[f"{stage}.shortcut"] = shortcut[0]
        m[f"{stage}.add"] = add.name
        x = chain(add.name, [(f"{stage}.relu2", "relu")])
    out = chain(x, [("pool", "AveragePooling2D"), ("flatten", "Flatten"), ("fc", "Dense")])
    if graph.layers[out].config.get("activation") != "softmax" or graph.consumers(out):
        raise graph.error(f"'{out}' must be the output Dense layer with softmax activation")
    unused = set(graph.layers) - set(m.values()) - {graph.input_name}
    if unused:
        raise graph.error(f"layers not part of ResNet8: {sorted(unused)}")
    return m


def _weight(graph: KerasGraph, layer: KerasLayer, key: str, shape: tuple, module: str) -> torch.Tensor:
    if key not in layer.weights:
        raise graph.error(f"layer '{layer.name}' has no weight '{key}' (has {sorted(layer.weights)})")
    w = layer.weights[key]
    if key == "kernel":  # Keras (H, W, in, out) conv / (in, out) dense -> torch (out, in, H, W) / (out, in)
        w = w.transpose(3, 2, 0, 1) if w.ndim == 4 else w.T
    if w.shape != shape:
        raise graph.error(f"weight '{layer.name}/{key}' has shape {layer.weights[key].shape}, "
                          f"which does not fit ResNet8 {module} (torch shape {tuple(shape)})")
    return torch.from_numpy(np.ascontiguousarray(w))


def _check_conv(graph: KerasGraph, layer: KerasLayer, conv: nn.Conv2d, name: str) -> None:
    c = layer.config
    want = {"kernel_size": list(conv.kernel_size), "strides": list(conv.stride), "padding": "same",
            "activation": "linear", "data_format": "channels_last", "use_bias": True}
    got = {k: c.get(k) for k in want}
    if got != want or c.get("dilation_rate", [1, 1]) != [1, 1] or c.get("groups", 1) != 1:
        raise graph.error(f"layer '{layer.name}' config {got} does not fit ResNet8 {name} {want}")


def load_weights(model: ResNet8, graph: KerasGraph, mapping: dict[str, str]) -> None:
    with torch.no_grad():
        for name, keras_name in mapping.items():
            layer, module = graph.layers[keras_name], model.get_submodule(name)
            if isinstance(module, nn.Sequential):  # same_conv: (pad, conv)
                module = module[1]
                _check_conv(graph, layer, module, name)
            if isinstance(module, nn.Conv2d | nn.Linear):
                module.weight.copy_(_weight(graph, layer, "kernel", module.weight.shape, name))
                module.bias.copy_(_weight(graph, layer, "bias", module.bias.shape, name))
            elif isinstance(module, nn.BatchNorm2d):
                module.eps = float(layer.config["epsilon"])
                for key, p in [("gamma", module.weight), ("beta", module.bias),
                               ("moving_mean", module.running_mean),
                               ("moving_variance", module.running_var)]:
                    p.copy_(_weight(graph, layer, key, p.shape, name))
            elif isinstance(module, nn.AvgPool2d):
                if layer.config["pool_size"] != [module.kernel_size] * 2:
                    raise graph.error(f"layer '{keras_name}' pool_size {layer.config['pool_size']} "
                                      f"!= ResNet8's {module.kernel_size}")


def convert(path: str | os.PathLike) -> tuple[ResNet8, dict[str, str]]:
    """Build the torch ResNet8 from a Keras ``.h5``; returns (model in eval mode, name mapping)."""
    graph = read_h5(path)
    mapping = match_resnet8(graph)
    model = ResNet8()
    load_weights(model, graph, mapping)
    return model.eval(), mapping


def save(model: nn.Module, out: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``out`` (a ``torch.export`` program, loadable with ``torch.export.load`` and no r8)
    and ``out`` with suffix ``.state_dict.pt``; each written to a temp file, then renamed."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = out.with_name(out.stem + ".state_dict.pt")
    atomic_write(out, lambda tmp: save_program(model, tmp))
    atomic_write(state, lambda tmp: torch.save(model.state_dict(), tmp))
    return out, state


def save_program(model: nn.Module, path: Path) -> None:
    """``torch.export`` the NCHW model with a dynamic batch dimension and save it to ``path``."""
    example = (torch.zeros(2, 3, 32, 32),)
    program = torch.export.export(model, example, dynamic_shapes=({0: torch.export.Dim("batch")},))
    with open(path, "wb") as f:  # a file object: torch.export insists on a .pt2 name otherwise
        torch.export.save(program, f)


def load_program(path: str | os.PathLike) -> nn.Module:
    """Load a model written by :func:`save` (plain ``torch.export.load`` works too)."""
    with open(path, "rb") as f:
        return torch.export.load(f).module()
