"""PyTorch int8 artifacts: every conv really is int8, and the saved file (loaded without r8)
gives the same predictions as the model that was quantized."""

import copy

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from r8 import artifacts
from r8.backends.pytorch import build, int8_convs
from r8.backends.torch_flows import DEFAULT_MATRIX, load, quantize, unavailable
from r8.metrics import agreement, predict
from r8.runtimes.runners import TorchRunner

CASES = [pytest.param(c, id=f"torch-{c.id}", marks=[pytest.mark.skip(reason=unavailable(c))] if unavailable(c) else [])
         for c in DEFAULT_MATRIX]


@pytest.mark.parametrize("config", CASES)
def test_saved_int8_model_has_int8_convs(config, ic01, calibration):
    saved = load(config, build(ic01, config, calibration))
    assert int8_convs(saved) == 9  # stem + 2 per stage + 2 shortcuts


@pytest.mark.parametrize("config", CASES)
def test_reload_gives_same_predictions(config, ic01, calibration, test_split, report):
    model, _ = quantize(artifacts.torch_fp32(ic01), config, calibration.images)
    images = test_split.images[:2000]
    fresh = predict(TorchRunner(model, engine=config.engine), images, progress=False)
    path = build(ic01, config, calibration)
    reloaded = predict(TorchRunner(load(config, path), engine=config.engine), images, progress=False)
    # Loading repacks int8 weights, exactly as a deepcopy does; fbgemm's first packing can round
    # differently, so the file is compared exactly with the repacked model...
    if config.flow != "pt2e":
        repacked = predict(TorchRunner(copy.deepcopy(model), engine=config.engine), images, progress=False)
        assert_allclose(reloaded, repacked, rtol=0, atol=1e-6)
    # ...and by predicted class with the model as it came out of convert.
    report(f"torch-{config.id} reload: max|dp|, argmax agreement (2k)",
           f"{np.abs(reloaded - fresh).max():.2e}, {agreement(reloaded, fresh):.2%}")
    assert agreement(reloaded, fresh) >= 0.999


def test_fp32_reference_is_not_counted_as_int8(torch_model):
    assert int8_convs(torch.export.export(torch_model, (torch.zeros(2, 3, 32, 32),)).module()) == 0


def _squeeze_excite_net(path):
    """MobileNetV3-like on 16x16x3, untrained (seeded): Rescaling first, an inverted residual whose
    input also feeds the residual Add, squeeze-and-excitation with a Multiply."""
    from r8.frontends.keras.reference import import_tensorflow

    import_tensorflow()
    import keras

    keras.utils.set_random_seed(0)
    L = keras.layers
    inputs = keras.Input((16, 16, 3))
    x = L.BatchNormalization()(L.Conv2D(8, 3, padding="same", use_bias=False)(L.Rescaling(1 / 127.5, -1.0)(inputs)))
    y = L.ReLU()(L.BatchNormalization()(L.Conv2D(16, 1, use_bias=False)(x)))
    y = L.ReLU()(L.BatchNormalization()(L.DepthwiseConv2D(3, padding="same", use_bias=False)(y)))
    s = L.Conv2D(16, 1, activation="hard_sigmoid")(L.Conv2D(4, 1, activation="relu")(L.GlobalAveragePooling2D(keepdims=True)(y)))
    y = L.BatchNormalization()(L.Conv2D(8, 1, use_bias=False)(L.Multiply()([y, s])))
    outputs = L.Dense(10, activation="softmax")(L.GlobalAveragePooling2D()(L.Add()([x, y])))
    keras.Model(inputs, outputs).save(path)
    return path


def test_a_flow_that_cannot_take_the_model_is_refused_with_the_reason(tmp_path, rng):
    """Found on a MobileNetV3-style CIFAR-10 net: eager mode quantizes the Rescaling after its
    QuantStub (no int8 kernel: it fails when run), and torchao's X86InductorQuantizer refuses a
    conv -> add whose other input is shared. Each is an R8Error naming the file and the flow (a
    config shown as not measured, with the reason), never a crash; FX takes the same model."""
    from r8 import R8Error
    from r8.calibration import CalibrationSet
    from r8.model import load_model

    model = load_model(_squeeze_excite_net(tmp_path / "se_net.h5"))
    images = rng.integers(0, 256, (20, 16, 16, 3), dtype=np.uint8)
    cal = CalibrationSet("calibration-train", images, np.arange(20) % 10, indices=np.arange(20), sha256="random-20", data="random")
    fx, eager, pt2e = (next(c for c in DEFAULT_MATRIX if c.flow == flow and not unavailable(c)) for flow in ("fx", "eager", "pt2e"))
    assert int8_convs(load(fx, build(model, fx, cal))) > 0
    for config, reason in ((eager, "eager mode leaves an op without int8 kernel"), (pt2e, "X86InductorQuantizer cannot annotate")):
        with pytest.raises(R8Error, match=reason) as refused:
            build(model, config, cal)
        assert "se_net.h5" in str(refused.value) and config.flow in str(refused.value)
