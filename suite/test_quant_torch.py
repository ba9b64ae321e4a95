"""PyTorch int8 artifacts: every conv really is int8, and the saved file (loaded without r8)
gives the same predictions as the model that was quantized."""

import copy

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from r8 import artifacts
from r8.backends.pytorch import DEFAULT_MATRIX, build, int8_convs, load, quantize, unavailable
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
