"""The converter on any model of the MLPerf Tiny layer set, in both ``.h5`` dialects and as
Keras 3's ``.keras`` archive.

Every model in ``keras_models`` is built with Keras 3 (``keras``) and with Keras 2 (``tf-keras``),
given random weights and BatchNorm statistics, saved as ``.h5`` (and by Keras 3 as ``.keras``:
``dotkeras``), converted by r8 with h5py (and zipfile) alone, saved and reloaded with
``torch.export``, and compared with the Keras model that wrote the file. Ids read as a table:
``test_parity[keras2-mobilenet-v1-vww]``, ``test_parity[dotkeras-resnet8]``.
"""

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_run import r8, r8_here
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from keras_models import CLASSIFIERS, CONSTANT_CASES, FAMILIES, KERAS3_ONLY, LAYER_CASES, NESTED_CASES, random_inputs, randomize
from torch import nn

from r8.frontends.convert import convert, load_program, save
from r8.frontends.keras.layers.modules import NhwcFlatten

REL_TOL = 1e-5  # max |torch - keras| <= 1e-5 x the output's scale
DIALECTS = ("keras3", "keras2")  # the two .h5 dialects
FORMATS = (*DIALECTS, "dotkeras")  # and Keras 3's own .keras archive (config.json + model.weights.h5)


def keras_package(dialect: str):
    from r8.frontends.keras.reference import import_tensorflow

    import_tensorflow()
    if dialect == "keras2":
        import tf_keras

        return tf_keras
    import keras

    return keras


@dataclass
class Case:
    path: Path
    inputs: list[np.ndarray]  # Keras layout
    outputs: np.ndarray  # what the Keras model that wrote the file returns


def build_case(builder, dialect: str, folder: Path, name: str, seed: int = 0) -> Case:
    k = keras_package(dialect)
    k.utils.set_random_seed(seed)
    model = builder(k)
    rng = np.random.default_rng(seed)
    randomize(model, rng)
    path = folder / f"{name}-{dialect}.{'keras' if dialect == 'dotkeras' else 'h5'}"
    model.save(path)
    inputs = random_inputs(model, rng)
    return Case(path, inputs, np.asarray(model(inputs if len(inputs) > 1 else inputs[0], training=False)))


@pytest.fixture(scope="session")
def keras_case(tmp_path_factory):
    cases = {}

    def get(name: str, dialect: str) -> Case:
        if (name, dialect) not in cases:
            builder = FAMILIES.get(name) or LAYER_CASES[name]
            cases[name, dialect] = build_case(builder, dialect, tmp_path_factory.mktemp("h5"), name)
        return cases[name, dialect]
    return get


def run_torch(model: nn.Module, inputs: list[np.ndarray]) -> np.ndarray:
    """Feed Keras-layout inputs through the layout contract: 4-D in and out are NCHW."""
    xs = [torch.from_numpy(x).permute(0, 3, 1, 2) if x.ndim == 4 else torch.from_numpy(x) for x in inputs]
    with torch.inference_mode():
        y = model(*xs)
    return (y.permute(0, 2, 3, 1) if y.dim() == 4 else y).numpy()


def parity(model: nn.Module, case: Case) -> tuple[float, float]:
    """(max |torch - keras| / output scale, argmax agreement)."""
    out = run_torch(model, case.inputs)
    assert out.shape == case.outputs.shape
    scale = max(float(np.abs(case.outputs).max()), 1e-6)
    agree = float((out.reshape(len(out), -1).argmax(1) == case.outputs.reshape(len(out), -1).argmax(1)).mean())
    return float(np.abs(out - case.outputs).max()) / scale, agree


CASES = [pytest.param(name, dialect, id=f"{dialect}-{name}") for name in (*FAMILIES, *LAYER_CASES) for dialect in FORMATS
         if not (dialect == "keras2" and name in KERAS3_ONLY)]


@pytest.mark.parametrize("name, dialect", CASES)
def test_parity(name, dialect, keras_case, tmp_path, report):
    case = keras_case(name, dialect)
    start = time.perf_counter()
    model = convert(case.path)
    seconds = time.perf_counter() - start
    rel, agree = parity(model, case)
    if name in FAMILIES or name in CONSTANT_CASES or name in NESTED_CASES or name == "hard-sigmoid-const-operands":
        report(f"convert {dialect}-{name}: max|d|/scale, argmax agreement, convert s",
               f"{rel:.2e}, {agree:.0%}, {seconds:.3f}")
    assert rel <= REL_TOL
    if name in CLASSIFIERS:
        assert agree == 1.0
        assert case.outputs.max(1).mean() < 0.99, "saturated softmax: parity would prove little"


# torch.export sees the converted module, which is the same for a case in every format: the gate saves
# each case's Keras 3 .h5 (an export and a load take over half of a case's time), nightly
# every format
SAVED_CASES = [pytest.param(*p.values, id=p.id, marks=() if p.values[1] == "keras3" else pytest.mark.nightly)
               for p in CASES]


@pytest.mark.parametrize("name, dialect", SAVED_CASES)
def test_saved_program_keeps_parity(name, dialect, keras_case, tmp_path):
    """The converted model saved with ``torch.export`` and loaded again gives the Keras model's outputs."""
    case = keras_case(name, dialect)
    program, _ = save(convert(case.path), tmp_path / "model.pt")
    assert parity(load_program(program), case)[0] <= REL_TOL


def test_every_converter_reads_its_config_or_ignores_it_for_a_reason(keras_case, report):
    """Every converter, walked over every case that uses it (all families and layer cases, every
    format): each config key it leaves unread is on the short list of keys that cannot change an
    inference result, each with its reason; any other key is refused (tested below)."""
    from r8.frontends.convert import _build, _reader
    from r8.frontends.keras.layers.registry import CONVERTERS, IGNORED_CONFIG, IGNORED_CONFIG_SUFFIXES, ignored_config

    unread: dict[str, set] = {}
    for param in CASES:
        graph, converters, supported = _reader(keras_case(*param.values).path)
        _build(graph, converters, supported)
        for layer in graph.layers:
            if layer.class_name != "InputLayer" and not layer.shares:  # a shared layer's later call: read once, at its first
                unread.setdefault(layer.class_name, set()).update(layer.config.unread())
    assert set(unread) == set(CONVERTERS), f"converters no case walks: {set(CONVERTERS) - set(unread)}"
    for cls, keys in sorted(unread.items()):
        assert all(ignored_config(key) for key in keys), (cls, keys)
    justified = {**IGNORED_CONFIG, **{f"*{end}": why for end, why in IGNORED_CONFIG_SUFFIXES.items()}}
    assert len(justified) <= 6 and all(len(why) > 20 for why in justified.values())
    ignored = sorted({key for keys in unread.values() for key in keys})
    report("config keys converters leave unread (each on the justified list)", ", ".join(ignored))


def _edited(path: Path, out: Path, edit) -> Path:
    """A copy of the Keras 3 ``.h5`` at ``path`` whose model config ``edit({class: layer spec})`` changed."""
    import json
    import shutil

    import h5py

    shutil.copy(path, out)
    with h5py.File(out, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        edit({layer["class_name"]: layer for layer in config["config"]["layers"]})
        f.attrs["model_config"] = json.dumps(config)
    return out


def _set(layer: str, *keys, value):
    def edit(layers):
        node = layers[layer]
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    return edit


REFUSED = [  # (edit of a Keras 3 conv + "3.0 - x" + Flatten model, words the refusal must hold)
    pytest.param(_set("Conv2D", "config", "experimental_option", value=1), ["'conv'", "experimental_option=1", "config"],
                 id="unknown-config-key"),
    pytest.param(_set("Conv2D", "config", "dtype", value="mixed_float16"), ["'conv'", "mixed_float16"], id="mixed-precision"),
    pytest.param(_set("Conv2D", "inbound_nodes", 0, "kwargs", "training", value=True), ["'conv'", "training=true"],
                 id="called-with-training-true"),
    pytest.param(lambda layers: layers["Flatten"]["inbound_nodes"][0]["args"].append(2.0), ["'flat'", "constant operand", "2."],
                 id="constant-operand-to-flatten"),
    pytest.param(_set("Subtract", "inbound_nodes", 0, "args", 0, value="three"), ["layer 'subtract", "argument 0", "three"],
                 id="string-operand"),
    pytest.param(_set("Subtract", "inbound_nodes", 0, "args", 1, "config", "shape", value=[None, 6, 7, 4]),
                 ["'conv'", "(6, 7, 4)", "declares", "(5, 7, 4)"], id="declared-shape-differs"),
    pytest.param(lambda layers: layers["Subtract"]["inbound_nodes"].append(
        {**layers["Subtract"]["inbound_nodes"][0], "args": [4.0, *layers["Subtract"]["inbound_nodes"][0]["args"][1:]]}),
        ["layer 'subtract", "@1' (Subtract)", "called again with other constant operands"],
        id="shared-layer-called-with-another-constant"),
]


@pytest.mark.parametrize("edit, words", REFUSED)
def test_what_r8_does_not_convert_is_refused_by_name(edit, words, tmp_path):
    """Nothing that could change the result is dropped: an unread config key, a dtype policy, a
    call keyword, a constant operand where a layer takes none, an argument of another kind, a
    computed shape unlike the one the file declares: each exits 2 naming the layer and the thing."""
    k = keras_package("keras3")
    inputs = k.Input((5, 7, 3), name="pixels")
    x = k.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    y = k.ops.subtract(3.0, x)
    k.Model(inputs, k.layers.Flatten(name="flat")(y)).save(tmp_path / "m.h5")
    assert convert(tmp_path / "m.h5")  # the file as Keras wrote it converts
    done = r8_here("convert", "--model", _edited(tmp_path / "m.h5", tmp_path / "edited.h5", edit), "-o", tmp_path / "m.pt",
              check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-1500:]
    assert all(w in done.stderr for w in words), done.stderr


def test_keras_ops_average_is_not_the_average_layer(tmp_path):
    """``keras.ops.average(x, axis=1)`` is saved as an ``Average`` with an axis: a reduction, not the
    merge layer; refused by name instead of converted as an identity."""
    k = keras_package("keras3")
    inputs = k.Input((5, 7, 3))
    k.Model(inputs, k.ops.average(k.layers.Conv2D(4, 1)(inputs), axis=1)).save(tmp_path / "m.h5")
    done = r8_here("convert", "--model", tmp_path / "m.h5", "-o", tmp_path / "m.pt", check=False)
    assert done.returncode == 2 and "(Average)" in done.stderr and ("weights=" in done.stderr or "axis=" in done.stderr)


def test_submodules_are_named_after_keras_layers(keras_case):
    case = keras_case("resnet8", "keras3")
    model = convert(case.path)
    from r8.frontends.keras.reader import read_h5

    layers = [layer.name for layer in read_h5(case.path).layers if layer.class_name != "InputLayer"]
    assert set(layers) <= {name for name, _ in model.named_children()}
    assert set(model.meta["keras_outputs"]) == set(layers)


def test_saved_program_states_the_layout_contract(keras_case, tmp_path):
    program, _ = save(convert(keras_case("flatten-after-conv", "keras3").path), tmp_path / "m.pt")
    extra = {"CONTRACT.txt": ""}
    with open(program, "rb") as f:
        torch.export.load(f, extra_files=extra)
    assert "NCHW" in extra["CONTRACT.txt"] and "(H, W, C)" in extra["CONTRACT.txt"]


# ---- mutations: each re-introduces a classic conversion mistake that the parity gate must catch
def _torch_flatten(model):
    for name, module in model.named_children():
        if isinstance(module, NhwcFlatten):
            model.add_submodule(name, nn.Flatten())  # flattens (C, H, W): a permuted vector


def _depthwise_channels_permuted(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d) and m.groups > 1 and m.out_channels > m.groups:
                mult = m.out_channels // m.groups  # kernel read as (H, W, multiplier, in)
                m.weight.copy_(m.weight.reshape(m.groups, mult, *m.weight.shape[1:]).transpose(0, 1)
                               .reshape(m.weight.shape).clone())


def _odd_pixel_before(model):
    for name, module in model.named_children():
        if isinstance(module, nn.ZeroPad2d) and name.endswith("_pad"):
            left, right, top, bottom = module.padding
            model.add_submodule(name, nn.ZeroPad2d((right, left, bottom, top)))


def _sibling_weights_swapped(model):
    """The two towers' modules trade weights (the same shapes): each nested model's weights must
    land on its own use."""
    towers = [[m for n, m in model.named_children() if n.startswith(side) and list(m.parameters())]
              for side in ("left_", "right_")]
    assert len(towers[0]) == len(towers[1]) > 0
    with torch.no_grad():
        for a, b in zip(*towers):
            for pa, pb in zip(a.parameters(), b.parameters()):
                held = pa.clone()
                pa.copy_(pb)
                pb.copy_(held)
            for ba, bb in zip(a.buffers(), b.buffers()):
                held = ba.clone()
                ba.copy_(bb)
                bb.copy_(held)


MUTATIONS = [
    pytest.param(_torch_flatten, "flatten-after-conv", id="torch-flatten-order"),
    pytest.param(_torch_flatten, "dscnn-streaming-ww", id="torch-flatten-order-dscnn"),
    pytest.param(_depthwise_channels_permuted, "depthwise-mult2-s2-same", id="depthwise-kernel-layout"),
    pytest.param(_odd_pixel_before, "conv-same-k4-even-kernel", id="same-padding-odd-pixel-before"),
    pytest.param(_odd_pixel_before, "conv-same-k2x5-s2x3", id="same-padding-stride2-odd-size"),
    pytest.param(_sibling_weights_swapped, "nested-sibling-towers", id="nested-sibling-weights-swapped"),
]


@pytest.mark.parametrize("mutate, name", MUTATIONS)
def test_parity_gate_catches(mutate, name, keras_case, report):
    case = keras_case(name, "keras3")
    model = copy.deepcopy(convert(case.path))
    mutate(model)
    rel, _ = parity(model, case)
    report(f"mutation {mutate.__name__} on {name}: max|d|/scale", f"{rel:.2e}")
    assert rel > REL_TOL


# ---- property-based: small random conv graphs
@st.composite
def conv_graphs(draw):
    """A builder of a random chain of conv-family layers (with an optional residual add) on a
    random odd-or-even input, and the dialect to save it in."""
    h, w, c = draw(st.integers(4, 11)), draw(st.integers(4, 11)), draw(st.integers(1, 4))
    ops = draw(st.lists(st.tuples(
        st.sampled_from(["conv", "depthwise", "bn", "relu", "maxpool", "avgpool", "pad", "residual"]),
        st.integers(1, 4), st.integers(1, 2), st.sampled_from(["same", "valid"]), st.integers(1, 3)),
        min_size=1, max_size=6))
    head = draw(st.booleans())

    def build(k):
        L = k.layers
        inputs = k.Input((h, w, c))
        x = inputs
        for op, size, stride, padding, n in ops:
            fits = padding == "same" or min(x.shape[1:3]) >= size
            if op == "conv" and fits:
                x = L.Conv2D(n + 1, size, strides=stride, padding=padding)(x)
            elif op == "depthwise" and fits:
                x = L.DepthwiseConv2D(size, strides=stride, padding=padding, depth_multiplier=n)(x)
            elif op == "bn":
                x = L.BatchNormalization()(x)
            elif op == "relu":
                x = L.ReLU(max_value=6.0 if n == 1 else None)(x)
            elif op in ("maxpool", "avgpool") and fits and size > 1:
                x = (L.MaxPooling2D if op == "maxpool" else L.AveragePooling2D)(size, stride, padding)(x)
            elif op == "pad":
                x = L.ZeroPadding2D(((0, size), (n, 0)))(x)
            elif op == "residual":
                x = L.Add()([x, L.Conv2D(x.shape[-1], size, padding="same")(x)])
        if head:
            x = L.Dense(3, activation="softmax")(L.Flatten()(x))
        return k.Model(inputs, x)
    return build, draw(st.sampled_from(FORMATS))


@settings(max_examples=20, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(graph=conv_graphs())
def test_random_conv_graphs(graph, tmp_path):
    build, dialect = graph
    case = build_case(build, dialect, tmp_path, "random")
    rel, _ = parity(convert(case.path), case)
    assert rel <= REL_TOL


# ---- the command line on any model

@pytest.mark.parametrize("name", ["resnet8-wide-26-52-104", "mobilenet-v1-vww", "autoencoder-ad", "dscnn-streaming-ww"])
@pytest.mark.parametrize("dialect", FORMATS)
def test_cli_convert(name, dialect, keras_case, tmp_path):
    from r8.cli import main  # in-process: the subprocess path is tested below and in test_cli

    case = keras_case(name, dialect)
    assert main(["convert", "--model", str(case.path), "-o", str(tmp_path / "out.pt")]) == 0
    assert parity(load_program(tmp_path / "out.pt"), case)[0] <= REL_TOL


def test_cli_inspect_names_unsupported_layers(tmp_path):
    k = keras_package("keras3")
    inputs = k.Input((8, 8, 3))
    x = k.layers.LayerNormalization(name="norm")(inputs)  # a layer r8 does not convert
    k.Model(inputs, k.layers.Dense(2)(k.layers.Flatten(name="flat")(x))).save(tmp_path / "m.h5")
    done = r8("inspect", "--model", str(tmp_path / "m.h5"), check=False)
    assert done.returncode == 1
    assert "norm" in done.stdout and "UNSUPPORTED" in done.stdout and "LayerNormalization" in done.stdout
    assert "(8, 8, 3)" in done.stdout  # the input row still has its shape
    done = r8("convert", "--model", str(tmp_path / "m.h5"), "-o", str(tmp_path / "m.pt"), check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert all(w in done.stderr for w in (str(tmp_path / "m.h5"), "'norm'", "LayerNormalization", "supported: "))
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize("dialect", FORMATS)
def test_a_layer_inside_a_nested_model_is_named_by_its_path(dialect, tmp_path):
    k = keras_package("keras3" if dialect == "dotkeras" else dialect)
    inputs = k.Input((8, 8, 3))
    inner = k.Sequential([k.Input((8, 8, 3)), k.layers.Conv2D(4, 1, name="conv"),
                          k.layers.LayerNormalization(name="norm")], name="backbone")
    middle = k.Model(inputs, inner(inputs), name="outer")
    x = k.Input((8, 8, 3))
    path = tmp_path / f"m.{'keras' if dialect == 'dotkeras' else 'h5'}"
    k.Model(x, k.layers.Dense(2)(k.layers.Flatten()(middle(x)))).save(path)
    done = r8_here("inspect", "--model", str(path), check=False)
    assert done.returncode == 1 and "outer/backbone/conv" in done.stdout and "outer/backbone/norm" in done.stdout
    done = r8_here("convert", "--model", str(path), "-o", str(tmp_path / "m.pt"), check=False)
    assert done.returncode == 2 and "'outer/backbone/norm' (LayerNormalization)" in done.stderr


def _numel(state: dict) -> int:
    return sum(t.numel() for k, t in state.items() if not k.endswith("num_batches_tracked"))


@pytest.mark.parametrize("name", ["nested-siamese-shared-tower", "shared-dense-called-twice"])
def test_a_shared_layer_holds_its_weights_once(name, keras_case):
    """One module called at each use: the converted model and its exported program hold as many
    numbers as Keras counts (each shared weight once)."""
    case = keras_case(name, "keras3")
    model = convert(case.path)
    calls = [node.target for node in model.graph.nodes if node.op == "call_module"]
    assert len(calls) > len(set(calls)), "no module is called twice"
    k = keras_package("keras3")
    assert _numel(model.state_dict()) == k.models.load_model(case.path, compile=False).count_params()
    inputs = [torch.from_numpy(x).permute(0, 3, 1, 2) if x.ndim == 4 else torch.from_numpy(x) for x in case.inputs]
    assert _numel(torch.export.export(model, tuple(inputs)).state_dict) == _numel(model.state_dict())


def test_cli_inspect_supported_model(keras_case):
    done = r8_here("inspect", "--model", str(keras_case("dscnn-kws", "keras2").path), check=False)
    assert done.returncode == 0 and "every layer is supported" in done.stdout
    assert "DepthwiseConv2D" in done.stdout and "(25, 5, 64)" in done.stdout


def test_evaluate_refuses_a_model_that_does_not_fit_the_data(keras_case):
    path = keras_case("autoencoder-ad", "keras3").path
    done = r8_here("evaluate", "--backend", "torch", "--model", str(path), "--subset", "perf200", check=False)
    # both shapes are named: the data's and the model's
    assert done.returncode == 2 and str(path) in done.stderr and "(32, 32, 3) per sample" in done.stderr


def test_evaluate_any_cifar10_classifier(keras_case):
    import json

    path = keras_case("resnet8-wide-26-52-104", "keras2").path
    results = [json.loads(r8_here("evaluate", "--backend", b, "--model", str(path), "--subset", "perf200", "--json").stdout)
               for b in ("torch", "keras")]
    assert results[0]["n"] == 200 and results[0]["top1"] == results[1]["top1"]


# ---- the converted graphs are quantizable by every torch flow
@pytest.mark.parametrize("flow", ["fx", "eager", "pt2e"])
@pytest.mark.parametrize("name", ["mobilenet-v1-vww", "dscnn-kws", "dscnn-streaming-ww"])
def test_converted_graph_quantizes(name, flow, keras_case):
    from r8.backends.pytorch import int8_convs
    from r8.backends.torch_flows import TorchConfig, quantize
    from r8.runtimes.runners import quantized_engine

    case = keras_case(name, "keras3")
    model = convert(case.path)
    config = TorchConfig(flow, "x86" if flow == "pt2e" else "onednn", True, "minmax")
    images = np.clip(case.inputs[0] * 40 + 128, 0, 255).astype(np.uint8)  # quantize calibrates on uint8 NHWC
    qmodel, _ = quantize(model, config, images)
    convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    assert int8_convs(qmodel if flow == "pt2e" else torch.jit.script(qmodel)) == convs
    with torch.inference_mode(), quantized_engine(config.engine):
        out = qmodel(torch.from_numpy(images).permute(0, 3, 1, 2).float())
    assert out.shape == case.outputs.shape and torch.isfinite(out).all()


# ---- .keras archives r8 must refuse
def test_dotkeras_lambda_is_refused_never_run(tmp_path):
    """A Lambda layer is serialized Python code: refused with the reason, the code never runs (it
    would write a sentinel file)."""
    from r8.core.errors import R8Error

    k = keras_package("keras3")
    sentinel = tmp_path / "ran"
    inputs = k.Input((4,))
    touch = eval(f"lambda x: (open({str(sentinel)!r}, 'w').close(), x)[1]")  # no closure: Keras serializes the code
    out = k.layers.Lambda(touch)(inputs)
    k.Model(inputs, k.layers.Dense(2)(out)).save(tmp_path / "lambda.keras", zipped=True)
    sentinel.unlink(missing_ok=True)  # Keras itself ran it while building
    with pytest.raises(R8Error, match="lambda.keras: holds serialized Python code"):
        convert(tmp_path / "lambda.keras")
    assert not sentinel.exists()


@pytest.mark.parametrize("damage", ["not-a-zip", "no-config", "weights-not-hdf5"])
def test_damaged_dotkeras_is_refused(damage, keras_case, tmp_path):
    import zipfile

    from r8.core.errors import R8Error

    good = keras_case("resnet8", "dotkeras").path
    bad = tmp_path / "bad.keras"
    if damage == "not-a-zip":
        bad.write_bytes(b"not a zip" + good.read_bytes()[100:])
    else:
        with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
            for item in src.namelist():
                if damage == "no-config" and item == "config.json":
                    continue
                data = src.read(item)
                dst.writestr(item, b"garbage" if damage == "weights-not-hdf5" and item.endswith(".h5") else data)
    with pytest.raises(R8Error, match="bad.keras"):
        convert(bad)


# ---- Keras 2's op layers (TFOpLambda): a TensorFlow function named in the config, tensors or constants
def _tf_op_model(k, tf):
    i = k.Input((4, 4, 3))
    a = i + 3.0  # __operators__.add with a constant
    b = tf.math.multiply(a, i)  # a tensor operand
    c = tf.math.minimum(tf.math.maximum(tf.nn.relu6(b), 0.5), 5.0)
    e = tf.math.add(tf.math.truediv(tf.math.subtract(c, i), 2.0), i)
    f = tf.math.sigmoid(tf.nn.relu(e))
    r = tf.reshape(tf.compat.v1.transpose(f, [0, 2, 1, 3]), (-1, 48))
    return k.Model(i, k.layers.Dense(3, activation="softmax")(tf.concat([r, r * 2.0], axis=-1)))


def test_tf_op_layers_convert_with_parity(tmp_path):
    from r8.frontends.keras.layers.tf_ops import TF_ARITH, TF_OTHER, TF_UNARY
    from r8.frontends.keras.reader import read_h5
    from r8.frontends.keras.reference import import_tensorflow

    tf, k = import_tensorflow(), keras_package("keras2")
    model = _tf_op_model(k, tf)
    model.save(tmp_path / "ops.h5")
    used = {layer.config["function"] for layer in read_h5(tmp_path / "ops.h5").layers if layer.class_name == "TFOpLambda"}
    listed = {"__operators__.add", "math.multiply", "math.add", "math.subtract", "math.truediv", "math.maximum",
              "math.minimum", "nn.relu6", "nn.relu", "math.sigmoid", "reshape", "concat", "compat.v1.transpose"}
    assert listed <= used <= {*TF_ARITH, *TF_UNARY, *TF_OTHER}  # the supported list, each in the file
    x = np.random.default_rng(0).normal(size=(8, 4, 4, 3)).astype(np.float32)
    case = Case(tmp_path / "ops.h5", [x], np.asarray(model(x, training=False)))
    rel, agree = parity(convert(case.path), case)
    assert rel <= REL_TOL and agree == 1.0


@pytest.mark.parametrize("op", ["math.exp", "slicing"])
def test_other_tf_op_layers_are_refused(op, tmp_path):
    from r8.frontends.keras.reference import import_tensorflow

    tf, k = import_tensorflow(), keras_package("keras2")
    i = k.Input((4, 4, 3))
    x = tf.math.exp(i) if op == "math.exp" else i[:, 1:]
    k.Model(i, k.layers.Flatten()(x)).save(tmp_path / "op.h5")
    done = r8_here("convert", "--model", tmp_path / "op.h5", "-o", tmp_path / "op.pt", check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr and str(tmp_path / "op.h5") in done.stderr
    assert ("'math.exp', which r8 does not convert" if op == "math.exp" else "SlicingOpLambda") in done.stderr


def test_evaluate_takes_a_model_with_two_inputs(tmp_path):
    """A siamese classifier (one tower on two inputs, Subtract, softmax head) as .h5 and as the
    float .tflite TF's converter writes: `r8 evaluate` takes it with x_test_0, x_test_1 in the
    model's input order (labels are Keras's own classes, so a right evaluation scores 1.0 and the
    inputs swapped score less); data with one input array and the int8 jobs are refused by name."""
    import json

    from keras_models import siamese_classifier

    from r8.data import load_dataset
    from r8.frontends.keras.reference import import_tensorflow
    from r8.metrics import evaluate
    from r8.model import load_model
    from r8.runtimes.runners import TfliteRunner

    k = keras_package("keras3")
    k.utils.set_random_seed(0)
    model = siamese_classifier(k)
    rng = np.random.default_rng(0)
    randomize(model, rng)
    h5 = tmp_path / "siamese.h5"
    model.save(h5)
    tflite = tmp_path / "siamese.tflite"
    tflite.write_bytes(import_tensorflow().lite.TFLiteConverter.from_keras_model(model).convert())

    def data_file(name: str, order: list[int], n: int = 200) -> Path:
        xs = [rng.normal(0, 1, (n, 12, 10, 3)).astype(np.float32) for _ in range(2)]
        labels = np.asarray(model(xs, training=False)).argmax(1)
        path = tmp_path / f"{name}.npz"
        np.savez(path, **{f"x_{part}_{i}": xs[j] for part in ("train", "test") for i, j in enumerate(order)},
                 y_train=labels, y_test=labels)
        return path

    keras_order = data_file("keras-order", [0, 1])
    # the .tflite's inputs in its subgraph's order, matched to the Keras inputs by name
    names = [d["name"] for d in TfliteRunner(tflite).inputs]
    tflite_order = [next(i for i, x in enumerate(("left", "right")) if x in n) for n in names]
    cases = {(h5, "torch"): keras_order, (tflite, "torch"): data_file("tflite-order", tflite_order)}
    for (path, backend), data in cases.items():
        done = r8_here("evaluate", "--backend", backend, "--model", path, "--data", data, "--subset", "test", "--json", check=False)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["top1"] == 1.0, (path.name, backend)
    # the references in-process: LiteRT on the .tflite, and the data's checks
    tfl_model, tfl_data = load_model(tflite, several_inputs=True), load_dataset(cases[tflite, "torch"])
    tfl_data.check(tfl_model)
    assert evaluate(TfliteRunner(tflite), tfl_data.test, progress=False)["top1"] == 1.0
    swapped = load_dataset(data_file("swapped", tflite_order[::-1]))
    assert evaluate(TfliteRunner(tflite), swapped.test, progress=False)["top1"] < 1.0  # the order is the model's, not any

    one = tmp_path / "one-array.npz"
    x = np.zeros((4, 12, 10, 3), np.float32)
    np.savez(one, x_train=x, y_train=np.zeros(4, np.int64), x_test=x, y_test=np.zeros(4, np.int64))
    done = r8_here("evaluate", "--backend", "torch", "--model", h5, "--data", one, check=False)
    assert done.returncode == 2 and "holds 1 input array(s)" in done.stderr and "takes 2 input(s)" in done.stderr
    done = r8_here("quantize", "--model", h5, "--data", keras_order, "--backend", "ort", "--out", tmp_path / "q", check=False)
    assert done.returncode == 2 and "has 2 inputs" in done.stderr and "`r8 evaluate`" in done.stderr
    assert not (tmp_path / "q").exists()
