"""The LiteRT quantizer backend (``litert``): what its int8 .tflite holds, why r8's default
calibrates activation ranges on the calibration set's min/max and not on the quantizer's own
default (a moving average of each image's min/max), and the route a .tflite-only model takes."""

import re

import pytest

from r8.backends import backend
from r8.backends.litert import LitertConfig, float_tflite, signature
from r8.core.errors import R8Error
from r8.model import load_model
from r8.runtimes import mcu
from r8.runtimes.runners import TfliteRunner

MINMAX, MOVINGAVG = LitertConfig(True), LitertConfig(True, "movingavg")


def _input_quantization(path) -> tuple[float, int]:
    return TfliteRunner(path).inputs[0]["quantization"]


@pytest.mark.accuracy
def test_int8_file_is_integer_end_to_end(ic01, calibration):
    """Every op of the int8 file is an int8 kernel (no DEQUANTIZE back to float), and with the
    calibration set's min/max its input takes pixels exactly: int8 = pixel - 128, the MLCommons
    reference's input."""
    path = backend("litert").build(ic01, MINMAX, calibration)
    ops = mcu.ops(path)
    assert "CONV_2D" in ops and "DEQUANTIZE" not in ops and "QUANTIZE" not in ops, ops
    scale, zero_point = _input_quantization(path)
    assert scale == pytest.approx(1.0) and zero_point == -128


@pytest.mark.accuracy
def test_the_quantizers_default_ranges_clip(ic01, calibration, report):
    """The premise of r8's default: the quantizer's moving average of per-image extremes gives a
    narrower range than the calibration set's (here the input's: pixels above the clip saturate)."""
    clipped, _ = _input_quantization(backend("litert").build(ic01, MOVINGAVG, calibration))
    report("litert input scale, movingavg vs minmax", f"{clipped:.4f} vs 1.0")
    assert clipped < 1.0


@pytest.mark.slow
def test_minmax_ranges_lose_less_than_the_quantizers_default(int8_rows, report):
    """On IC01, the default config's drop is below the quantizer's own default's."""
    ours, theirs = int8_rows("litert", MINMAX), int8_rows("litert", MOVINGAVG)
    report("IC01 litert drop pp, minmax vs movingavg", f"{ours.drop_pp:.2f} vs {theirs.drop_pp:.2f}")
    assert ours.drop_pp < theirs.drop_pp


@pytest.mark.parametrize("model", ["ic01", "mnv2_cifar"])
def test_each_keras_layer_is_found_in_one_op(model, request):
    """A mixed build finds each conv / linear layer's and residual add's op by its Keras name in TF's op scopes: IC01's
    Keras 2 names (conv2d, conv2d_1, ...: conv2d is not conv2d_1) and the hard model's Keras 3 ones,
    written with a call index (b6_dw_1)."""
    import trained_models

    from r8.backends.litert import layer_scopes

    m = request.getfixturevalue("ic01") if model == "ic01" else load_model(trained_models.HARD_MODEL)
    scopes = layer_scopes(m, float_tflite(m))
    assert len(set(scopes.values())) == len(scopes) > 1
    assert all(re.search(f"/{re.escape(name)}(_1)?/", scope) for name, scope in scopes.items()), scopes


def test_a_tflite_is_quantized_as_it_is(tmp_path):
    """A float .tflite is the quantizer's input as it stands; one without a signature (IC01's
    published float file) is refused by name, with what to do."""
    from file_facts import tflite_model_path

    path = tflite_model_path(quantized=False)
    assert float_tflite(load_model(path)) == path.resolve()  # a data folder reached through a symlink too
    with pytest.raises(R8Error, match=f"{path.name}: has no signature, and the LiteRT quantizer calibrates through one"):
        signature(path)


def test_a_data_folder_reached_through_a_symlink_works(tmp_path, monkeypatch):
    """R8_DATA_DIR may be a symlink (data on another disk): models load and compare by their
    resolved paths."""
    from r8.core import paths

    link = tmp_path / "data"
    link.symlink_to(paths.data_dir().resolve(), target_is_directory=True)
    monkeypatch.setenv("R8_DATA_DIR", str(link))
    path = paths.mlcommons_dir() / "pretrainedResnet.tflite"
    assert path.parent.parent == link and path.resolve() != path  # the premise: reached through the link
    assert float_tflite(load_model(path)) == path.resolve()
    assert load_model(paths.keras_model_path()).path == paths.keras_model_path().resolve()
