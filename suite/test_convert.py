"""The MLPerf Tiny ResNet8 (the real Keras 2.4 ``.h5``) vs its conversion: outputs on all 10k
test images, every intermediate layer, and the model facts that bite (kernel layout, TF 'same'
padding, BatchNorm epsilon)."""

import copy
import sys

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from torch import nn

from r8.frontends.keras.layers.layout import tf_same_padding
from r8.frontends.keras.reader import read_h5
from r8.metrics import agreement, predict
from r8.runtimes.runners import TorchRunner
from r8.thresholds import DEFAULT

PROB_ATOL = DEFAULT.prob_atol  # the 10k-image parity itself is a gate: r8.gates.test_parity_keras_torch


# Conv/BN/add outputs hold raw-pixel-scale values (up to a few hundred), so their float32
# rounding differs by more than the softmax output does: compare relative to each tensor's scale.
LAYER_RTOL = 1e-5


def _keras_layer_outputs(keras_runner, names, images):
    model = keras_runner.model
    keras = sys.modules[type(model).__module__.split(".")[0]]  # tf_keras for this Keras 2 file
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    return [np.asarray(o) for o in probe([images.astype(np.float32)], training=False)]


def _torch_layer_outputs(model, names, images):
    outs = {}
    hooks = [model.get_submodule(n).register_forward_hook(
        lambda mod, args, out, n=n: outs.__setitem__(n, out.permute(0, 2, 3, 1).numpy()))
        for n in names]
    try:
        TorchRunner(model).predict(images)
    finally:
        for h in hooks:
            h.remove()
    return [outs[n] for n in names]


def test_parity_per_layer(keras_runner, h5_path, torch_model, test_split):
    kinds = {layer.name: layer.class_name for layer in read_h5(h5_path).layers}
    keras_names = [k for k in torch_model.meta["keras_outputs"] if kinds[k] in ("Conv2D", "BatchNormalization", "Add")]
    assert len(keras_names) == 9 + 7 + 3  # every conv, bn and add of ResNet8
    names = [torch_model.meta["keras_outputs"][k] for k in keras_names]
    images = test_split.images[:256]
    keras_out = _keras_layer_outputs(keras_runner, keras_names, images)
    torch_out = _torch_layer_outputs(torch_model, names, images)
    for name, k, t in zip(keras_names, keras_out, torch_out):
        scale = float(np.abs(k).max())
        assert_allclose(t, k, rtol=0, atol=LAYER_RTOL * scale, err_msg=f"torch != keras at {name} (scale {scale:.1f})")


def test_output_contract(torch_model, exported_model, rng):
    images = rng.integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)
    runner = TorchRunner(torch_model)
    probs = runner.predict(images)
    assert probs.shape == (7, 10) and probs.dtype == np.float32
    assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert np.array_equal(probs, runner.predict(images)), "not deterministic"
    assert_allclose(TorchRunner(exported_model).predict(images), probs, rtol=0, atol=1e-6)


def test_exported_program_reloads_and_matches(exported_model, torch_probs, test_split):
    probs = predict(TorchRunner(exported_model), test_split.images, progress=False)
    assert_allclose(probs, torch_probs, rtol=0, atol=1e-6)


def test_config_facts(h5_path, torch_model):
    eps = {layer.config["epsilon"] for layer in read_h5(h5_path).layers if layer.class_name == "BatchNormalization"}
    assert eps == {1e-3}
    assert all(m.eps == 1e-3 for m in torch_model.modules() if isinstance(m, nn.BatchNorm2d))
    assert tf_same_padding(32, 3, 2) == (0, 1)  # the odd pixel goes bottom/right
    assert tf_same_padding(32, 3, 1) == (1, 1)
    assert tf_same_padding(32, 1, 2) == (0, 0)


# Each mutation re-introduces one classic conversion mistake; the parity gate must catch it.
def _pytorch_padding(model):
    for name, module in list(model.named_children()):
        if isinstance(module, nn.ZeroPad2d) and name.endswith("_pad"):  # TF 'same', stride 2: (0, 1)
            model.add_submodule(name, nn.ZeroPad2d(1))  # PyTorch's symmetric padding=1 instead


def _bn_default_eps(model):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = 1e-5


def _kernel_hw_swapped(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.copy_(m.weight.transpose(2, 3).clone())


@pytest.mark.parametrize("mutate", [_pytorch_padding, _bn_default_eps, _kernel_hw_swapped],
                         ids=["symmetric-padding", "bn-eps-1e-5", "kernel-hw-swapped"])
def test_parity_gate_catches(mutate, torch_model, keras_probs, test_split, report):
    broken = copy.deepcopy(torch_model)
    mutate(broken)
    probs = predict(TorchRunner(broken), test_split.images, progress=False)
    diff, agree = float(np.abs(probs - keras_probs).max()), agreement(probs, keras_probs)
    report(f"mutation {mutate.__name__}: max|dp|, argmax agreement", f"{diff:.2e}, {agree:.2%}")
    assert diff > PROB_ATOL


@pytest.mark.parametrize("kind", ["add", "mul", "sub", "div", "max", "min", "mean"])
def test_elementwise_modules_compile_to_torchscript(kind, rng):
    """The eager int8 flow saves TorchScript, which compiles every branch of a forward: a merge or
    constant op (a Keras Multiply of a squeeze-and-excitation block, Keras 3's ``x + 3.0``) must
    script, and the scripted module compute what the module does."""
    from r8.frontends.keras.layers.modules import Arith, ArithConst

    a, b = (torch.from_numpy(rng.standard_normal((2, 3, 4, 4), dtype=np.float32)) + 3 for _ in range(2))
    merge = Arith(kind)
    assert torch.equal(torch.jit.script(merge)([a, b]), merge([a, b]))
    if kind != "mean":
        const = ArithConst(kind, b[0])
        assert torch.equal(torch.jit.script(const)(a), const(a))
