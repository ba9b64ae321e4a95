"""Keras 3's own format, a ``.keras`` zip of ``config.json``, ``metadata.json`` and
``model.weights.h5``, read with zipfile and h5py; and the Keras version of any Keras file."""

import io
import json
import os
import re
import zipfile
from pathlib import Path

import h5py

from r8.core.errors import R8Error
from r8.frontends.keras.reader import KerasModel, h5_version, model_from_config, open_h5, read_array


def keras_version(path: str | os.PathLike) -> str:
    """The Keras version that wrote ``path`` (its attributes, or a .keras's metadata.json: no
    weights read)."""
    path = Path(path)
    if path.suffix.lower() == ".keras":
        return str(json.loads(_archive(path)["metadata.json"]).get("keras_version", ""))
    with open_h5(path) as f:
        return h5_version(f)


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
        return model_from_config(path, config, version, _KerasWeights(f, "", config.get("class_name") == "Sequential"))


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
        values = [read_array(found[str(i)]) for i in range(len(found))]
        names = _variable_names(cls, cfg)
        return {names[i] if i < len(names) else f"var{i}": v for i, v in enumerate(values)}

    def scope(self, name: str, cls: str) -> "_KerasWeights":
        return _KerasWeights(self.f, self._group(name, cls) + "/", cls == "Sequential")
