"""The float ``.tflite`` route: the flatbuffer read without TensorFlow (the ``tflite`` schema
bindings), one converter per builtin op (``r8.frontends.tflite.ops.OPS``), checked against LiteRT's float
interpreter on the file itself.

Cases: small Keras models written to ``.tflite`` by TF's own converter (batch fixed at 1, as
MLPerf Tiny's files are), chosen so that together they hold every op the registry converts that
TF's converter emits (a test checks the coverage), and the MLPerf Tiny families of
``keras_models``. Ids read as a table: ``test_tflite_parity[same-odd]``.
"""

from pathlib import Path

import numpy as np
import pytest
from keras_models import FAMILIES

from r8.core import paths
from r8.core.cache import build_once, sha256
from r8.core.errors import R8Error
from r8.frontends.convert import convert
from r8.frontends.convert import inspect as inspect_model
from r8.frontends.tflite.ops import OPS
from r8.frontends.tflite.reader import read_tflite
from r8.runtimes.runners import TfliteRunner, TorchRunner

SUITE = Path(__file__).resolve().parent
ATOL = 1e-5  # probabilities and small activations: max |torch - LiteRT|, relative to the output's scale


def same_odd(k):
    """Odd sizes and stride 2: TF 'SAME' puts the odd pixel bottom/right."""
    L = k.layers
    x = i = k.Input((9, 9, 3))
    x = L.Conv2D(4, 3, strides=2, padding="same", activation="relu")(x)
    x = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="relu6")(x)
    x = L.MaxPooling2D(2, padding="same")(x)
    x = L.AveragePooling2D(2, strides=1, padding="same")(x)
    x = L.Flatten()(x)
    return k.Model(i, L.Dense(5, activation="softmax")(x))


def merges(k):
    L = k.layers
    i = k.Input((8, 8, 4))
    a, b = L.Conv2D(6, 3, padding="same")(i), L.Conv2D(6, 1, activation="tanh")(i)
    x, y = L.Add()([a, b]), L.Multiply()([a, b])
    c = L.Activation("hard_swish")(L.Concatenate()([x, L.Subtract()([x, y])]))
    g = L.ReLU(max_value=6.0)(L.GlobalAveragePooling2D()(c))
    return k.Model(i, L.Dense(3, activation="sigmoid")(g))


def pad_rescale(k):
    """An uneven ZeroPadding2D, constants in MUL/ADD (Rescaling), MEAN with keepdims, RELU."""
    L = k.layers
    x = i = k.Input((7, 6, 2))
    x = L.Rescaling(1 / 127.5, offset=-1.0)(x)
    x = L.Conv2D(3, 3)(L.ZeroPadding2D(((1, 2), (0, 1)))(x))
    x = L.ReLU()(L.Reshape((3,))(L.GlobalAveragePooling2D(keepdims=True)(x)))
    return k.Model(i, L.Softmax()(L.Dense(4)(x)))


CASES = {"same-odd": same_odd, "merges": merges, "pad-rescale": pad_rescale,
         **{f"family-{name}": FAMILIES[name] for name in ("resnet-two-stages-odd-input", "mobilenet-v1-vww",
                                                          "autoencoder-ad", "dscnn-kws")}}
NOT_EMITTED = {"SQUEEZE", "EXPAND_DIMS", "PADV2", "RELU_N1_TO_1"}  # TF's converter folds these: unit-tested below


def _write_tflite(builder, out: Path) -> None:
    """The Keras 3 model, random weights, written by TF's converter with the batch fixed at 1."""
    from keras_models import randomize

    from r8.frontends.keras.reference import import_tensorflow

    tf = import_tensorflow()
    import keras

    keras.utils.set_random_seed(0)
    model = builder(keras)
    randomize(model, np.random.default_rng(0))
    (shape,) = [tuple(t.shape[1:]) for t in model.inputs]
    fixed = keras.Input(batch_shape=(1, *shape))  # a batch of 1 keeps Flatten a plain RESHAPE
    out.write_bytes(tf.lite.TFLiteConverter.from_keras_model(keras.Model(fixed, model(fixed))).convert())


@pytest.fixture(scope="session")
def tflite_case():
    def get(name: str) -> Path:
        builder = CASES[name]
        sources = {f.name: sha256(f) for f in (SUITE / "test_tflite.py", SUITE / "keras_models.py")}
        return build_once(f"tflite-cases/{name}.tflite", sources, lambda tmp: _write_tflite(builder, tmp))
    return get


def _inputs(path: Path, n: int = 8) -> np.ndarray:
    shape = read_tflite(path).input_shapes()[0]
    return np.random.default_rng(1).uniform(-2, 2, (n, *shape)).astype(np.float32)


def _parity(path: Path) -> float:
    """max |torch - LiteRT| over 8 random inputs, relative to the output's scale."""
    x = _inputs(path)
    litert = TfliteRunner(path, interpreter="litert")
    ref = np.concatenate([litert.predict(x[i:i + 1]) for i in range(len(x))])  # batch 1: the file's RESHAPEs fix it
    got = TorchRunner(convert(path)).predict(x)  # takes the NHWC array, as every runner does
    got = got.transpose(0, 2, 3, 1) if got.ndim == 4 else got
    return float(np.abs(got - ref).max() / max(1.0, float(np.abs(ref).max())))


@pytest.mark.parametrize("name", list(CASES))
def test_tflite_parity(name, tflite_case):
    assert _parity(tflite_case(name)) <= ATOL


def test_cases_cover_the_registry(tflite_case):
    """Every op r8 converts appears in a parity case, except those TF's converter never writes."""
    seen = {node.class_name for name in CASES for node in read_tflite(tflite_case(name)).layers}
    assert set(OPS) - NOT_EMITTED <= seen, f"no parity case holds {sorted(set(OPS) - NOT_EMITTED - seen)}"


def test_same_padding_placement_is_checked(tflite_case, monkeypatch):
    """Mutation: the odd pixel of 'SAME' put top/left (PyTorch's habit) must break parity."""
    import r8.frontends.tflite.ops

    real = r8.frontends.tflite.ops.tf_same_padding
    monkeypatch.setattr(r8.frontends.tflite.ops, "tf_same_padding", lambda *a: real(*a)[::-1])
    assert _parity(tflite_case("same-odd")) > 1e-3


def test_filter_layout_is_checked(tflite_case, monkeypatch):
    """Mutation: a CONV_2D filter read as (out, W, H, in) instead of (out, H, W, in) must break parity."""
    import r8.frontends.tflite.reader

    real = r8.frontends.tflite.reader._constant
    monkeypatch.setattr(r8.frontends.tflite.reader, "_constant", lambda *a: (lambda w: w.swapaxes(1, 2) if w.ndim == 4 else w)(real(*a)))
    assert _parity(tflite_case("same-odd")) > 1e-3


@pytest.mark.parametrize("kind", ["SQUEEZE", "EXPAND_DIMS"])
def test_reshaping_ops_keep_tflite_element_order(kind):
    """SQUEEZE / EXPAND_DIMS are reshapes to the declared shape, in TFLite's (NHWC) element order."""
    import torch

    from r8.frontends.tflite.reader import TfliteNode

    before, after = ((1, 1, 6), (6,)) if kind == "SQUEEZE" else ((6,), (1, 1, 6))
    node = TfliteNode(Path("x.tflite"), "op", kind, {}, ["input_0"], expected_shape=after)
    (_, module), = OPS[kind](node, [before])
    nhwc = torch.arange(6.0).reshape(1, *before)
    x = nhwc.permute(0, 3, 1, 2) if nhwc.dim() == 4 else nhwc
    y = module(x)
    assert torch.equal(y.permute(0, 2, 3, 1) if y.dim() == 4 else y, nhwc.reshape(1, *after))


def test_int8_tflite_is_refused_with_the_reason():
    path = paths.mlcommons_dir() / "pretrainedResnet_quant.tflite"
    with pytest.raises(R8Error, match="integer-quantized model.*reference to compare with"):
        convert(path)


@pytest.mark.parametrize("damage", ["not-a-flatbuffer", "truncated", "empty"])
def test_damaged_tflite_is_refused(damage, tmp_path):
    good = (paths.mlcommons_dir() / "pretrainedResnet.tflite").read_bytes()
    data = {"not-a-flatbuffer": b"PK\x03\x04" + good[4:], "truncated": good[:len(good) // 3], "empty": b""}[damage]
    path = tmp_path / "damaged.tflite"
    path.write_bytes(data)
    with pytest.raises(R8Error, match="damaged.tflite"):
        convert(path)


def test_inspect_lists_every_op():
    rows, problems = inspect_model(paths.mlcommons_dir() / "pretrainedResnet.tflite")
    assert not problems and rows[0]["type"] == "InputLayer" and rows[-1]["type"] == "SOFTMAX"
    assert sum(r["type"] == "CONV_2D" for r in rows) == 9 and rows[-1]["shape"] == (10,)


@pytest.mark.accuracy
def test_mlcommons_float_tflite_equals_litert(test_split, report):
    """IC01's published float file on the 10k test images: r8's torch model gives LiteRT's
    probabilities (max |dp| <= 1e-5, same argmax). IC02, which exists only as .tflite, is checked
    the same way by its pipeline test (suite/test_ic02.py)."""
    from r8.metrics import agreement, predict, top1

    path = paths.mlcommons_dir() / "pretrainedResnet.tflite"
    litert = predict(TfliteRunner(path), test_split.images, progress=False)
    torch_probs = predict(TorchRunner(convert(path)), test_split.images, progress=False)
    diff = float(np.abs(litert - torch_probs).max())
    report("IC01 .tflite: torch vs LiteRT max|dp|, argmax agreement, top-1 (10k)",
           f"{diff:.2e}, {agreement(litert, torch_probs):.4%}, {top1(torch_probs, test_split.labels):.2%}")
    assert diff <= 1e-5 and agreement(litert, torch_probs) == 1.0
