"""``python -m r8 search``: the fewest layers kept float so the int8 drop meets a budget, decided on
a validation split of the training images (disjoint from calibration), the test images used
once. The suite's hard model (``mnv2_cifar``) and its premise: ``suite/test_hard_model.py``."""

import json

import numpy as np
import pytest
import trained_models
from cli_run import r8_here

from r8.calibration import calibration_set
from r8.jobs.search import VALIDATION_SIZE, validation_split


def test_validation_split_is_stratified_seeded_and_disjoint_from_calibration(cifar10, calibration):
    val = validation_split(cifar10, calibration)
    again = validation_split(cifar10, calibration)
    assert len(val.labels) == VALIDATION_SIZE and np.array_equal(val.images, again.images)
    assert np.bincount(val.labels, minlength=10).tolist() == [VALIDATION_SIZE // 10] * 10
    # no validation image is a calibration image (pixel for pixel)
    cal_rows = {img.tobytes() for img in calibration.images}
    assert not any(img.tobytes() in cal_rows for img in val.images)
    assert not np.array_equal(validation_split(cifar10, calibration, seed=1).images, val.images)


def test_validation_split_takes_what_a_small_data_set_leaves():
    """The digits data (1,437 training images): what the calibration set leaves, equal per class."""
    from r8.data import load_dataset

    _, npz = trained_models.cached("digits")
    data = load_dataset(npz)
    cal = calibration_set(data, n=500)
    val = validation_split(data, cal)
    counts = np.bincount(val.labels, minlength=10)
    assert len(set(counts)) == 1 and 0 < len(val.labels) <= len(data.train.labels) - 500


def test_search_refuses_a_negative_budget_and_a_model_of_one_layer(tmp_path):
    done = r8_here("search", "--max-drop-pp", "-0.1", check=False)
    assert done.returncode == 2 and "cannot be met" in done.stderr
    _, npz = trained_models.cached("digits")
    one_layer = trained_models.one_layer_model(tmp_path / "one_layer.h5")
    done = r8_here("search", "--model", one_layer, "--data", npz, "--max-drop-pp", "0.3", "--out", tmp_path, check=False)
    assert done.returncode == 1 and "one_layer.h5" in done.stderr and "needs two or more" in done.stderr
    assert "Traceback" not in done.stderr


def test_search_refuses_a_backend_that_cannot_keep_layers_float(tmp_path):
    done = r8_here("search", "--backend", "tflite", "--max-drop-pp", "0.3", check=False)
    assert done.returncode == 2 and "cannot keep layers float" in done.stderr


def test_search_refuses_a_config_id_without_its_backend():
    done = r8_here("search", "--config", "qdq-u8u8-pertensor-minmax", "--max-drop-pp", "0.3", check=False)
    assert done.returncode == 2 and "needs --backend" in done.stderr and "best or worst" in done.stderr


@pytest.mark.accuracy
def test_a_search_starts_from_the_best_default_config_unless_told(tmp_path):
    """The default start: each backend's default config with the smallest validation drop
    (``worst``: the largest, as the hard model's gate starts), on ORT's default configs of the
    rescaled digits CNN (below), where they differ."""
    from r8 import artifacts
    from r8.backends import backend
    from r8.data import load_dataset
    from r8.jobs.search import default_start, search_job
    from r8.metrics import predict, top1
    from r8.model import load_model
    from r8.runtimes.runners import TorchRunner

    path, npz = trained_models.cached("digits")
    model, data, b = load_model(rescaled(path, tmp_path / "digits_rescaled.h5", "conv0", "conv1")), load_dataset(npz), backend("ort")
    cal = calibration_set(data, num_classes=model.num_classes)
    val = validation_split(data, cal)
    fp32 = predict(TorchRunner(artifacts.torch_fp32(model)), val.images, progress=False)
    top = {c.id: top1(predict(b.runner(c, b.build(model, c, cal)), val.images, progress=False), val.labels) for c in b.default}
    assert len(set(top.values())) > 1, top  # premise: the default configs differ on validation
    assert default_start(b, model, cal, val, fp32, "best").id in [c for c, t in top.items() if t == max(top.values())]
    assert default_start(b, model, cal, val, fp32, "worst").id in [c for c, t in top.items() if t == min(top.values())]
    (row,) = search_job(model, data, cal, 100.0, None, ["ort"], progress=False).rows
    assert top[row.config] == max(top.values()) and not row.float_layers


def rescaled(path, out, layer: str, next_layer: str, channel: int = 0, factor: float = 512.0):
    """``path`` with one output channel of ``layer`` (ReLU-activated) scaled up by ``factor`` and the
    matching input channel of ``next_layer`` scaled down: the same function in float (ReLU is
    positively homogeneous), but that channel's range swamps per-tensor int8 of the layer's weights
    and of its output. A test of the search, not a hard model (see test_hard_model.py)."""
    import shutil

    import h5py

    shutil.copyfile(path, out)
    with h5py.File(out, "r+") as f:
        w = f["model_weights"]
        w[f"{layer}/{layer}/kernel"][..., channel] *= factor
        w[f"{layer}/{layer}/bias"][channel] *= factor
        w[f"{next_layer}/{next_layer}/kernel"][:, :, channel, :] /= factor
    return out


# Each backend's per-tensor default config (torch: FX's, which it mixes): where a rescaled channel breaks int8. The
# search's default start (each backend's best default config) is tested below, its worst on the hard model (test_hard_model.py).
PER_TENSOR_STARTS = {"ort": "qdq-u8u8-pertensor-minmax", "torch": "fx-onednn-pertensor-histogram",
                     "litert": "a8w8-pertensor-minmax", "executorch": "xnnpack-pertensor", "nncf": "pertensor-fastbc"}


@pytest.mark.accuracy
def test_search_finds_the_layers_an_equivalent_rescaling_breaks(tmp_path, report):
    """On the digits CNN with one conv0 channel scaled 512x (and conv1 compensating), every backend
    that can keep layers float starts from its per-tensor config, which loses more than the budget
    (the premise, checked), and the search meets the budget on validation and on the test images by
    keeping float only conv0 / conv1, the layers the rescaling touched. NNCF's accuracy control at
    the same budget, from NNCF's per-tensor config, is its row beside them (measured: conv0 and conv1
    float, as the searches)."""
    from r8.backends import registry
    from r8.data import load_dataset
    from r8.jobs.search import search_job
    from r8.metrics import agreement, predict
    from r8.model import load_model
    from r8.runtimes.runners import reference_runner

    path, npz = trained_models.cached("digits")
    broken = rescaled(path, tmp_path / "digits_rescaled.h5", "conv0", "conv1")
    data = load_dataset(npz)
    assert agreement(predict(reference_runner(path), data.test.images, progress=False),
                     predict(reference_runner(broken), data.test.images, progress=False)) == 1.0  # the same function in float
    budget = 1.0
    model = load_model(broken)
    search_job(model, data, calibration_set(data, num_classes=model.num_classes), budget, tmp_path,
               starts=PER_TENSOR_STARTS, progress=False)
    search = json.loads((tmp_path / "digits_rescaled" / "search.json").read_text())
    anchor = next(r for r in search["rows"] if r["backend"] == "nncf")  # NNCF's accuracy control, same budget
    report(f"search on the rescaled digits CNN: nncf {anchor['config']}", f"float {anchor['float_layers']} "
           f"({anchor['float_mac_share']:.1%} MACs), test drop {anchor['drop_pp']:.2f} pp {anchor['drop_ci95_pp']}")
    assert anchor["float_layers"] and anchor["config"].startswith("accuracy-control")
    searched = [r for r in search["rows"] if r is not anchor]
    assert {r["backend"] for r in searched} == {b.name for b in registry().values() if b.keeps_layers_float}
    for r in searched:
        report(f"search on the rescaled digits CNN: {r['backend']} {r['config']}",
               f"start {r['steps'][0]['validation_drop_pp']:.2f} pp -> float {r['float_layers']} "
               f"({r['float_mac_share']:.1%} MACs), test drop {r['drop_pp']:.2f} pp {r['drop_ci95_pp']}")
        assert r["config"] == PER_TENSOR_STARTS[r["backend"]] and r["steps"][0]["validation_drop_ci95_pp"][1] > budget  # premise
        assert r["met"] and r["validation_drop_ci95_pp"][1] <= budget and r["drop_pp"] <= budget
        assert r["float_layers"] and set(r["float_layers"]) <= {"conv0", "conv1"}
        assert load_model(broken).sha256 == search["model"]["sha256"]
        assert all(r["speed"][k]["ms_bs1"] > 0 and r["speed"][k]["img_per_s_bs256"] > 0 for k in ("mixed", "int8", "fp32"))
        if registry()[r["backend"]].mcu:  # a .tflite: TFLite Micro runs the mixed file, a float layer takes more flash
            assert r["mcu"]["mixed"]["arena_bytes"] > 0 and r["mcu"]["mixed"]["flash_bytes"] > r["mcu"]["int8"]["flash_bytes"]
        else:
            assert r["mcu"] is None
    md = (tmp_path / "digits_rescaled" / "search.md").read_text()
    assert md.split("\n\n")[1].startswith("**Met**") and "On TFLite Micro" in md
    assert f"`nncf.quantize_with_accuracy_control` from {anchor['config'].removeprefix('accuracy-control-')}" in md
    assert (tmp_path / "digits_rescaled" / "search_steps.png").stat().st_size > 0
    assert "When int8 hurts: the fewest float layers" in (tmp_path / "index.html").read_text()


def _measured(layers: tuple, right: np.ndarray, labels_n: int):
    """A search candidate as the search measures it: its drop against an fp32 model right on every image."""
    from r8.jobs.search import Measured, Step
    from r8.metrics import paired_drop

    onehot = np.eye(2, dtype=np.float32)
    labels = np.zeros(labels_n, dtype=int)
    paired = paired_drop(onehot[labels], onehot[(~right).astype(int)], labels)
    return Measured(Step(layers, round(100 * (1 - right.mean()), 4), tuple(paired["drop_ci95_pp"])), right)


def test_a_search_step_buys_no_macs_with_noise():
    """A step keeps float the cheapest unit among those that meet the budget; where none does,
    among those the validation images cannot tell apart from the best (exact McNemar), so a unit
    that is better only by chance never wins over a cheaper one, and one that is truly better does."""
    from r8.jobs.search import next_unit

    n, rng = 10_000, np.random.default_rng(0)

    def wrong(k: int) -> np.ndarray:
        return np.isin(np.arange(n), rng.choice(n, k, replace=False))

    base = wrong(120)
    a_few_more = base | np.isin(np.arange(n), np.flatnonzero(~base)[:4])  # 4 images worse than base
    tried = {("big",): _measured(("big",), ~base, n), ("small",): _measured(("small",), ~a_few_more, n),
             ("far",): _measured(("far",), ~wrong(400), n)}
    macs = {("big",): 1000, ("small",): 10, ("far",): 1}
    assert tried[("big",)].step.validation_drop_ci95_pp[1] < tried[("small",)].step.validation_drop_ci95_pp[1]
    assert next_unit(tried, macs, budget_pp=0.5) == ("small",)  # 4 images apart: chance; the cheaper one
    clearly = base | np.isin(np.arange(n), np.flatnonzero(~base)[:60])  # 60 images worse: not chance
    tried[("small",)] = _measured(("small",), ~clearly, n)
    assert next_unit(tried, macs, budget_pp=0.5) == ("big",)
    assert next_unit(tried, macs, budget_pp=5.0) == ("far",)  # all meet a loose budget: the cheapest


@pytest.mark.parametrize("name", ["ort", "torch", "litert", "executorch"])
def test_each_backend_keeps_the_named_layer_float(name):
    """Op counts as proof: with conv1 float, one int8 conv fewer (ExecuTorch: XNNPACK runs it as a
    float convolution); an unknown layer is refused by name."""
    from r8 import R8Error
    from r8.backends import backend, litert, ort, pytorch
    from r8.core.cache import build_facts
    from r8.data import load_dataset
    from r8.model import load_model

    path, npz = trained_models.cached("digits")
    model, data = load_model(path), load_dataset(npz)
    cal = calibration_set(data, n=500)
    b = backend(name)
    config = next(c for c in b.default if b.keeps_layers_float and not b.unavailable(c) and (name != "torch" or c.flow == "fx"))
    count = {"ort": ort.int8_convs, "litert": litert.int8_layers,
             "torch": lambda p: pytorch.int8_convs(pytorch.load(config, p)),
             "executorch": lambda p: build_facts(p)["int8_convs"]}[name]
    mixed = b.build_mixed(model, config, cal, ("conv1",))
    assert count(mixed) == count(b.build_mixed(model, config, cal, ())) - 1 >= 1
    if name == "ort":
        assert ort.float_layers(model, mixed) == {"conv1"}
    if name == "executorch":  # XNNPACK runs it as a float convolution, by its kernels' own names in the ETDump
        from r8.runtimes.profile import executorch_profile

        def float_convs(path) -> int:
            ops = executorch_profile(path, data.test.images[:1]).ops
            return sum(t.op.startswith("Convolution (NHWC, F32)") for t in ops)
        assert float_convs(mixed) == float_convs(b.build_mixed(model, config, cal, ())) + 1
    with pytest.raises(R8Error, match="no conv / linear layer or add gap"):
        b.build_mixed(model, config, cal, ("gap",))


def int8_adds(name: str, config, path) -> int:
    """Adds whose output is int8: ORT's feed a QuantizeLinear, FX's are quantized::add, the LiteRT quantizer's write int8."""
    import onnx

    from r8.backends import pytorch

    if name == "ort":
        graph = onnx.load(str(path)).graph
        quantized = {n.input[0] for n in graph.node if n.op_type == "QuantizeLinear"}
        return sum(n.op_type == "Add" and n.output[0] in quantized for n in graph.node)
    if name == "torch":
        return str(pytorch.load(config, path).graph).count("quantized::add")
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    dtype = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    return sum(op["op_name"] == "ADD" and dtype[op["outputs"][0]] == np.int8 for op in interpreter._get_ops_details())


@pytest.mark.accuracy
@pytest.mark.parametrize("name", ["ort", "torch", "litert"])
def test_each_backend_keeps_a_residual_add_float(name, ic01, calibration):
    """A search unit can be a residual add (an add's int8 range can carry the error the float layers
    around it do not; docs/measured.md): with IC01's first add float, one int8 add fewer on each backend."""
    from r8 import artifacts
    from r8.backends import backend
    from r8.frontends.converted_layers import float_units, layer_macs

    units = float_units(artifacts.torch_fp32(ic01))
    assert [u for u in units if u not in layer_macs(artifacts.torch_fp32(ic01))] == ["add", "add_1", "add_2"]
    assert list(units).index("add") == list(units).index("conv2d_2") + 1  # in execution order
    b = backend(name)
    # a default config where this CPU runs one (torch's per-tensor FX default is oneDNN's, refused without VNNI)
    config = next(c for c in [*b.default, *b.full]
                  if not b.unavailable(c) and "pertensor" in c.id and (name != "torch" or c.flow == "fx"))
    assert int8_adds(name, config, b.build_mixed(ic01, config, calibration, ("add",))) == \
        int8_adds(name, config, b.build_mixed(ic01, config, calibration, ())) - 1 == 2


def test_onnx_runtime_runs_a_layer_kept_float_in_float(tmp_path):
    """ONNX Runtime's WeightBiasQuantization transformer quantizes, as it loads a file, the float
    weights of a conv between a DequantizeLinear and a QuantizeLinear: a layer a mixed build (or
    NNCF's accuracy control) keeps float would run int8 (the premise, checked on a plain session).
    r8's sessions run the file as written: its optimized graph has one int8 conv fewer."""
    import onnx
    import onnxruntime

    from r8.backends import backend
    from r8.data import load_dataset
    from r8.model import load_model
    from r8.runtimes.runners import onnx_session

    path, npz = trained_models.cached("digits")
    model = load_model(path)
    b = backend("ort")
    cal = calibration_set(load_dataset(npz), n=500)
    config = b.config("qdq-u8u8-pertensor-minmax")

    def int8_convs(file, session) -> int:
        options = onnxruntime.SessionOptions()
        options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
        session(str(file), options)
        return sum(n.op_type == "QLinearConv" for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node)

    plain = lambda file, options: onnxruntime.InferenceSession(file, options, providers=["CPUExecutionProvider"])  # noqa: E731
    full, mixed = b.build(model, config, cal), b.build_mixed(model, config, cal, ("conv0",))  # between int8 input and conv1
    assert int8_convs(full, plain) == int8_convs(mixed, plain) == 2  # the premise: ORT undoes the float layer
    assert int8_convs(full, onnx_session) == 2 and int8_convs(mixed, onnx_session) == 1
