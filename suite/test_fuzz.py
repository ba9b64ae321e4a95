"""Damaged model files, property-based (hypothesis): every front-end either converts the file and
the model runs on a zero input, or refuses it with ``R8Error`` naming the file; never any other
exception (a traceback reads like a verdict, or hides a bug).

Mutations of real and suite-built files: a config value replaced by a wrong type or an absurd
size, or deleted; a list made shorter or longer; a weight deleted, reshaped or retyped; the file
truncated at a random offset; for the flatbuffer, bytes flipped. A derandomized 100 cases per
front-end in CI; 1,000 each under `slow`.
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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    raw = bytearray(base.read_bytes())
    if data.draw(st.booleans(), label="truncate"):
        out.write_bytes(bytes(raw[:data.draw(st.integers(0, len(raw) - 1), label="offset")]))
        return
    for _ in range(data.draw(st.integers(1, 8), label="flips")):
        raw[data.draw(st.integers(0, len(raw) - 1), label="at")] ^= data.draw(st.integers(1, 255), label="bits")
    out.write_bytes(bytes(raw))


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """front-end -> (file, how to damage it): the MLCommons files, and suite-built Keras 3 ones."""
    from keras_models import FAMILIES, randomize
    from test_convert_models import keras_package

    folder = tmp_path_factory.mktemp("bases")
    k = keras_package("keras3")
    model = FAMILIES["dscnn-kws"](k)
    randomize(model, np.random.default_rng(0))
    model.save(folder / "dscnn.h5")
    model.save(folder / "dscnn.keras")
    return {"h5-keras2-ic01": (paths.keras_model_path(), damage_h5), "h5-keras3-dscnn": (folder / "dscnn.h5", damage_h5),
            "keras-dscnn": (folder / "dscnn.keras", damage_keras),
            "tflite-ic01": (paths.mlcommons_dir() / "pretrainedResnet.tflite", damage_tflite)}


FRONT_ENDS = ["h5-keras2-ic01", "h5-keras3-dscnn", "keras-dscnn", "tflite-ic01"]


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
    outcomes = _check_front_end(*bases[front_end], tmp_path, examples=100)
    report(f"damaged {front_end} files", dict(outcomes))


@pytest.mark.slow
@pytest.mark.parametrize("front_end", FRONT_ENDS)
def test_damaged_files_thousand_cases(front_end, bases, tmp_path, report):
    outcomes = _check_front_end(*bases[front_end], tmp_path, examples=1000)
    report(f"damaged {front_end} files (slow)", dict(outcomes))
