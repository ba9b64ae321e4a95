"""Damaged model files, property-based (hypothesis): every front-end either converts the file and
the model runs on a zero input, or refuses it with ``R8Error`` naming the file; never any other
exception (a traceback reads like a verdict, or hides a bug).

Mutations of real and suite-built files: a config value replaced by a wrong type or an absurd
size, or deleted; a list made shorter or longer; a weight deleted, reshaped or retyped; the file
truncated at a random offset; for the flatbuffer, bytes flipped; for an ONNX file, a node's op
or attribute, an initializer or an input dimension changed; for a .pt2 archive, a scalar of its
JSON, a weight or a member changed. A derandomized 100 cases per front-end in CI (30 for .onnx,
20 for .pt2); 1,000 each under `slow` (300 for .pt2).
"""

import io
import json
import shutil
import zipfile
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from r8 import artifacts
from r8.core import paths
from r8.core.errors import R8Error
from r8.frontends.convert import convert, example_inputs

WRONG = [None, "x", -1, 0, 3.5, [], {}, [1], True, 10**9, [10**9, 10**9], {"class_name": "Lambda"}]


def _mutate_config(config: dict, data) -> dict:
    """One change to one layer's entry: its config, its class, or its inbound nodes."""
    layers = config["config"]["layers"]
    spec = layers[data.draw(st.integers(0, len(layers) - 1), label="layer")]
    where = data.draw(st.sampled_from(["config", "spec"]), label="where")
    node = spec["config"] if where == "config" and isinstance(spec.get("config"), dict) else spec
    key = data.draw(st.sampled_from(sorted(node)), label="key")
    action = data.draw(st.sampled_from(["replace", "delete", "shorten", "lengthen"]), label="action")
    if action == "delete":
        del node[key]
    elif action == "replace" or not isinstance(node[key], list) or not node[key]:
        node[key] = data.draw(st.sampled_from(WRONG), label="value")
    elif action == "shorten":
        node[key] = node[key][:-1]
    else:
        node[key] = node[key] + node[key][-1:]
    return config


def _mutate_weights(f: h5py.File, data) -> None:
    """Delete, reshape or retype one weight dataset of an open HDF5 file."""
    names = []
    f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    name = data.draw(st.sampled_from(sorted(names)), label="weight")
    values = f[name][()]
    del f[name]
    action = data.draw(st.sampled_from(["delete", "reshape", "retype"]), label="action")
    if action == "reshape":
        f.create_dataset(name, data=np.resize(values, (values.size + 1,) if values.ndim < 2 else values.shape[::-1]))
    elif action == "retype":
        f.create_dataset(name, data=np.array([b"w"] * max(values.size, 1)))


def _truncate(path: Path, data) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[:data.draw(st.integers(0, len(raw) - 1), label="offset")])


def damage_h5(base: Path, out: Path, data) -> None:
    shutil.copy(base, out)
    kind = data.draw(st.sampled_from(["config", "weights", "truncate"]), label="kind")
    if kind == "truncate":
        return _truncate(out, data)
    with h5py.File(out, "r+") as f:
        if kind == "config":
            f.attrs["model_config"] = json.dumps(_mutate_config(json.loads(f.attrs["model_config"]), data))
        else:
            _mutate_weights(f["model_weights"], data)


def damage_keras(base: Path, out: Path, data) -> None:
    kind = data.draw(st.sampled_from(["config", "weights", "truncate"]), label="kind")
    with zipfile.ZipFile(base) as z:
        members = {n: z.read(n) for n in z.namelist()}
    if kind == "config":
        members["config.json"] = json.dumps(_mutate_config(json.loads(members["config.json"]), data)).encode()
    elif kind == "weights":
        buffer = io.BytesIO(members["model.weights.h5"])
        with h5py.File(buffer, "r+") as f:
            _mutate_weights(f, data)
        members["model.weights.h5"] = buffer.getvalue()
    with zipfile.ZipFile(out, "w") as z:
        for name, raw in members.items():
            z.writestr(name, raw)
    if kind == "truncate":
        _truncate(out, data)


def damage_tflite(base: Path, out: Path, data) -> None:
    shutil.copy(base, out)
    if data.draw(st.booleans(), label="truncate"):
        return _truncate(out, data)
    _flip(out, data)


def damage_onnx(base: Path, out: Path, data) -> None:
    """The protobuf truncated or its bytes flipped, or one field of the graph changed: a node's
    op or attribute, an initializer's shape or presence, an input's dimension."""
    import onnx

    kind = data.draw(st.sampled_from(["truncate", "flip", "op", "attribute", "initializer", "input"]), label="kind")
    if kind in ("truncate", "flip"):
        shutil.copy(base, out)
        return _truncate(out, data) if kind == "truncate" else _flip(out, data)
    proto = onnx.load(str(base))
    graph = proto.graph
    if kind == "op":
        node = graph.node[data.draw(st.integers(0, len(graph.node) - 1), label="node")]
        node.op_type = data.draw(st.sampled_from(["Foo", "Conv", "Relu", "Reshape", "Gemm", "Add", ""]), label="op")
    elif kind == "attribute":
        nodes = [n for n in graph.node if n.attribute]
        node = nodes[data.draw(st.integers(0, len(nodes) - 1), label="node")]
        attribute = node.attribute[data.draw(st.integers(0, len(node.attribute) - 1), label="attribute")]
        value = data.draw(st.sampled_from([-1, 0, 2, 10**6]), label="value")
        if attribute.ints:
            attribute.ints[data.draw(st.integers(0, len(attribute.ints) - 1), label="at")] = value
        else:
            attribute.i = value
    elif kind == "initializer":
        tensor = graph.initializer[data.draw(st.integers(0, len(graph.initializer) - 1), label="initializer")]
        if data.draw(st.booleans(), label="delete"):
            graph.initializer.remove(tensor)
        else:
            tensor.dims[:] = list(tensor.dims)[::-1] + [1] if len(tensor.dims) < 2 else list(tensor.dims)[::-1]
    else:
        dims = graph.input[0].type.tensor_type.shape.dim
        dim = dims[data.draw(st.integers(0, len(dims) - 1), label="dim")]
        value = data.draw(st.sampled_from([0, 1, 7, 10**9, "h"]), label="value")
        if isinstance(value, str):
            dim.dim_param = value
        else:
            dim.dim_value = value
    onnx.save(proto, str(out))


def _flip(path: Path, data) -> None:
    raw = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 8), label="flips")):
        raw[data.draw(st.integers(0, len(raw) - 1), label="at")] ^= data.draw(st.integers(1, 255), label="bits")
    path.write_bytes(bytes(raw))


def _json_leaves(node, path=()):
    """Every (path, value) of a JSON document's scalars."""
    if isinstance(node, dict):
        return [leaf for key, value in node.items() for leaf in _json_leaves(value, (*path, key))]
    if isinstance(node, list):
        return [leaf for i, value in enumerate(node) for leaf in _json_leaves(value, (*path, i))]
    return [(path, node)]


def damage_pt2(base: Path, out: Path, data) -> None:
    """The archive truncated or its bytes flipped (its CRCs catch those), or rewritten whole with
    one member changed: a scalar of its program or weights JSON replaced, a weight cut short, or a
    member left out."""
    kind = data.draw(st.sampled_from(["truncate", "flip", "json", "weight", "delete"]), label="kind")
    if kind in ("truncate", "flip"):
        shutil.copy(base, out)
        return _truncate(out, data) if kind == "truncate" else _flip(out, data)
    with zipfile.ZipFile(base) as z:
        members = {n: z.read(n) for n in z.namelist()}
    names = sorted(members)
    if kind == "json":
        documents = {n: json.loads(members[n]) for n in names if n.endswith(".json")}
        name = data.draw(st.sampled_from([n for n, d in documents.items() if _json_leaves(d)]), label="member")
        document = documents[name]
        leaves = _json_leaves(document)
        path, _ = leaves[data.draw(st.integers(0, len(leaves) - 1), label="leaf")]
        holder = document
        for key in path[:-1]:
            holder = holder[key]
        holder[path[-1]] = data.draw(st.sampled_from(WRONG), label="value")
        members[name] = json.dumps(document).encode()
    elif kind == "weight":
        name = data.draw(st.sampled_from([n for n in names if "/weights/weight_" in n]), label="member")
        members[name] = members[name][:data.draw(st.integers(0, len(members[name]) - 1), label="length")]
    else:
        del members[data.draw(st.sampled_from(names), label="member")]
    with zipfile.ZipFile(out, "w") as z:
        for name, raw in members.items():
            z.writestr(name, raw)


class _TinyNet(torch.nn.Module):
    """A small program to damage (each case that still loads is exported to ONNX: seconds)."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = torch.nn.Conv2d(3, 4, 3), torch.nn.Linear(4, 10)

    def forward(self, x):
        return torch.softmax(self.fc(torch.relu(self.conv(x)).mean((2, 3))), dim=1)


@pytest.fixture(scope="module")
def bases(tmp_path_factory, ic01):
    """front-end -> (file, how to damage it): the MLCommons files, and suite-built Keras 3 ones."""
    from keras_models import FAMILIES, randomize
    from test_convert_models import keras_package

    folder = tmp_path_factory.mktemp("bases")
    k = keras_package("keras3")
    model = FAMILIES["dscnn-kws"](k)
    randomize(model, np.random.default_rng(0))
    model.save(folder / "dscnn.h5")
    model.save(folder / "dscnn.keras")
    torch.manual_seed(0)
    program = torch.export.export(_TinyNet().eval(), (torch.zeros(2, 3, 8, 8),),
                                  dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, folder / "tiny.pt2")
    return {"onnx-ic01": (shutil.copy(artifacts.onnx_fp32(ic01, "torch"),
                                      folder / "ic01.onnx"), damage_onnx),
            "pt2-tiny": (folder / "tiny.pt2", damage_pt2),
            "h5-keras2-ic01": (paths.keras_model_path(), damage_h5), "h5-keras3-dscnn": (folder / "dscnn.h5", damage_h5),
            "keras-dscnn": (folder / "dscnn.keras", damage_keras),
            "tflite-ic01": (paths.mlcommons_dir() / "pretrainedResnet.tflite", damage_tflite)}


FRONT_ENDS = ["h5-keras2-ic01", "h5-keras3-dscnn", "keras-dscnn", "tflite-ic01", "onnx-ic01", "pt2-tiny"]
# cases per front-end in CI and under `slow`, where a case takes longer: an ONNX file is checked and
# converted whole, and a .pt2 that still loads is exported to ONNX first (seconds)
CASES = {"onnx-ic01": (30, 1000), "pt2-tiny": (20, 300)}


def _check_front_end(base: Path, damage, folder: Path, examples: int) -> Counter:
    """Outcomes of ``examples`` damaged copies: refused (R8Error naming the file) or converted and
    run; anything else fails the test."""
    out, outcomes = folder / f"damaged{base.suffix}", Counter()

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def case(data):
        damage(base, out, data)
        try:
            model = convert(out)
        except R8Error as e:
            assert str(out) in str(e)
            outcomes["refused"] += 1
            return
        model(*example_inputs(model, 1))  # converted: it must also run
        outcomes["converted and ran"] += 1

    case()
    return outcomes


@pytest.mark.parametrize("front_end", FRONT_ENDS)
def test_damaged_files_are_refused_or_converted(front_end, bases, tmp_path, report):
    outcomes = _check_front_end(*bases[front_end], tmp_path, examples=CASES.get(front_end, (100,))[0])
    report(f"damaged {front_end} files", dict(outcomes))


@pytest.mark.slow
@pytest.mark.parametrize("front_end", FRONT_ENDS)
def test_damaged_files_thousand_cases(front_end, bases, tmp_path, report):
    outcomes = _check_front_end(*bases[front_end], tmp_path, examples=CASES.get(front_end, (0, 1000))[1])
    report(f"damaged {front_end} files (slow)", dict(outcomes))
