"""ONNX export (both routes), the shared calibration set, and proof that every ORT int8 model
really runs its convolutions in int8 (op-type counts)."""

import numpy as np
import onnx
import pytest
from file_facts import op_counts, opset_of

from r8 import artifacts
from r8.backends.ort import DEFAULT_MATRIX, build, build_integer_input, initializers, int8_convs, onnx_preprocessed
from r8.calibration import calibration_set, stratified_indices
from r8.core import paths
from r8.metrics import agreement, predict
from r8.runtimes.runners import OnnxRunner, OpenVinoRunner
from r8.thresholds import DEFAULT

PROB_ATOL = DEFAULT.prob_atol  # ONNX vs Keras, as for torch vs Keras (onnxruntime-torch: r8.gates.test_onnx_parity)


@pytest.mark.parametrize("runtime, route", [(OnnxRunner, "keras"), (OpenVinoRunner, "torch")],
                         ids=["onnxruntime-keras", "openvino-torch"])
def test_onnx_parity_10k(runtime, route, ic01, keras_probs, test_split, report):
    path = artifacts.onnx_fp32(ic01, route)
    onnx.checker.check_model(str(path), full_check=True)
    assert opset_of(path) >= 13
    probs = predict(runtime(path), test_split.images, progress=False)
    diff = float(np.abs(probs - keras_probs).max())
    report(f"parity keras-vs-{runtime.__name__}[{route}] max|dp|, argmax agreement (10k)",
           f"{diff:.2e}, {agreement(probs, keras_probs):.4%}")
    assert diff <= PROB_ATOL
    assert agreement(probs, keras_probs) == 1.0


def test_calibration_set_is_stratified_training_images(calibration, cifar10):
    train = cifar10.train
    assert calibration.source == "train" and not calibration.summary()["overlaps_test_set"]
    assert len(calibration.labels) == 1000
    assert np.array_equal(np.bincount(calibration.labels, minlength=10), np.full(10, 100))
    assert np.array_equal(calibration.images, train.images[calibration.indices])
    saved = np.load(next((paths.cache_dir() / "calibration").glob("cifar10-*/train-n1000-seed0.npz")))
    assert {"indices", "seed", "sha256", "source", "split"} <= set(saved.files)
    assert str(saved["split"]) == "train"


def test_calibration_indices_are_seeded(cifar10):
    labels = cifar10.train.labels
    a, b = stratified_indices(labels, 100, seed=0), stratified_indices(labels, 100, seed=0)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, stratified_indices(labels, 100, seed=1))


def test_mlcommons_calibration_is_labelled_as_test_overlap(cifar10):
    cal = calibration_set(cifar10, source="mlcommons-test-overlap")
    assert cal.summary()["overlaps_test_set"]
    idx = np.load(paths.mlcommons_dir() / "calibration_samples_idxs.npy")
    assert np.array_equal(cal.images, cifar10.test.images[idx])


@pytest.mark.parametrize("config", DEFAULT_MATRIX, ids=lambda c: f"ort-{c.id}")
def test_ort_int8_is_quantized(config, ic01, calibration):
    fp32_convs = op_counts(onnx_preprocessed(ic01))["Conv"]
    path = build(ic01, config, calibration)
    counts = op_counts(path)
    assert fp32_convs == 9
    assert int8_convs(path) == fp32_convs, f"not every Conv is int8: {dict(counts)}"
    if config.fmt == "qop":
        assert counts["QLinearConv"] == fp32_convs and counts["Conv"] == 0
    else:
        assert counts["QuantizeLinear"] > 0 and counts["DequantizeLinear"] > counts["QuantizeLinear"]



# ---- integer inputs: int8 models that take the uint8 NHWC pixels themselves
def _input_quantization(path):
    graph = onnx.load(str(path)).graph
    quant = next(n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] == graph.input[0].name)
    init = initializers(graph)
    return float(init[quant.input[1]]), init[quant.input[2]]


@pytest.mark.parametrize("config", DEFAULT_MATRIX, ids=lambda c: f"ort-{c.id}")
def test_integer_input_model(config, ic01, calibration, test_split, report):
    from r8.runtimes.runners import OnnxRunner, onnx_layout

    source = build(ic01, config, calibration)
    scale, zero = _input_quantization(source)
    if not (scale == 1.0 and zero.dtype == np.uint8 and zero == 0):  # e.g. Percentile clips 255 away
        with pytest.raises(ValueError, match="only uint8, scale 1, zero point 0"):
            build_integer_input(ic01, config, calibration)
        return
    path = build_integer_input(ic01, config, calibration)
    runner = OnnxRunner(path)
    assert runner.integer and onnx_layout(runner.dims, test_split.images.shape) == "nhwc"
    assert op_counts(path)["QuantizeLinear"] == op_counts(source)["QuantizeLinear"] - 1
    integer = predict(runner, test_split.images, progress=False)
    floating = predict(OnnxRunner(source), test_split.images, progress=False)
    report(f"ort-{config.id} uint8-NHWC input vs float input: max|dp| (10k)", f"{np.abs(integer - floating).max():.1e}")
    assert np.array_equal(integer.argmax(1), floating.argmax(1)) and np.abs(integer - floating).max() <= 1e-6
