"""A model born in PyTorch: ``cifar_resnet_torch.pt2``, a CIFAR-10 ResNet written and trained in
PyTorch (``trained_models.train_torch_resnet``) and saved as a ``torch.export`` program, committed
(``trained_models.TORCH_MODEL``) like the hard model.

The gate (``accuracy``): the program is what the trainer builds, converts with parity on the 10k
test images, reaches the issue's 80 % fp32 top-1, and one ORT and one PyTorch (PT2E) int8 config
stay within the drop gate. Nightly: ``quantize --backend all`` and every gate on it, beside the
gate's two configs that cover the same path. Slow: the trainer trains it again."""

import json

import numpy as np
import pytest
import torch
import trained_models
from cli_run import r8
from test_onnx_pt2 import first_config

from r8.frontends.convert import convert, input_layout
from r8.frontends.program import read_program
from r8.metrics import agreement, predict, top1
from r8.runtimes.runners import TorchRunner, reference_runner
from r8.thresholds import DEFAULT

MIN_TOP1 = 0.80  # the bar for a small PyTorch-born CIFAR-10 model
PROB_ATOL = 1e-5  # the conversion gate of every front-end


@pytest.fixture(scope="session")
def torch_born():
    from r8.model import load_model

    return load_model(trained_models.TORCH_MODEL)


@pytest.fixture(scope="session")
def torch_born_probs(torch_born, test_split):
    """(r8's conversion, the program itself) on the 10k test images."""
    return (predict(TorchRunner(convert(torch_born.path)), test_split.images, progress=False),
            predict(reference_runner(torch_born.path), test_split.images, progress=False))


def test_it_is_the_trainers_pytorch_model(torch_born):
    """The premise: a torch.export program of the trainer's architecture (its parameter and buffer
    names), channels-first, which r8 converts into conv and linear modules."""
    program = read_program(torch_born.path)
    assert set(program.state_dict) | set(program.constants) >= set(trained_models.torch_resnet().state_dict())
    assert input_layout(torch_born.path) == "NCHW" and torch_born.input_shape == (32, 32, 3)
    layers = [m for m in convert(torch_born.path).modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    assert len(layers) == 10  # the stem, two per block, two shortcuts, the classifier


@pytest.mark.accuracy
def test_parity_10k(torch_born_probs, report):
    ours, program = torch_born_probs
    diff = float(np.abs(ours - program).max())
    report("cifar_resnet_torch: parity r8 vs the program (10k): max|dp|, argmax agreement",
           f"{diff:.2e}, {agreement(ours, program):.4%}")
    assert diff <= PROB_ATOL and agreement(ours, program) == 1.0


@pytest.mark.accuracy
def test_fp32_top1(torch_born_probs, test_split, report):
    acc = top1(torch_born_probs[1], test_split.labels)
    report("cifar_resnet_torch: fp32 top-1 (10k)", f"{acc:.2%}")
    assert acc >= MIN_TOP1


@pytest.mark.accuracy
@pytest.mark.parametrize("backend,flow", [("ort", None), ("torch", "pt2e")])
def test_int8_within_the_drop_gate(backend, flow, torch_born, torch_born_probs, cifar10, report):
    from r8.calibration import calibration_set
    from r8.jobs.quantize import config_row

    config = first_config(backend, flow)
    row = config_row(torch_born, cifar10, backend, config, torch_born_probs[0], calibration_set(cifar10))
    report(f"cifar_resnet_torch: int8 {backend}-{config.id}",
           f"{row.top1:.2%} (drop {row.drop_pp:.2f} pp, 95 % CI [{row.drop_ci95_pp[0]:.2f}, {row.drop_ci95_pp[1]:.2f}])")
    assert row.drop_pp <= DEFAULT.max_drop_pp


@pytest.mark.accuracy
@pytest.mark.nightly
def test_quantize_every_backend(torch_born, tmp_path, report):
    """``quantize --backend all``: every backend that takes a program has rows and every gate
    passes (or is waived on this CPU, with the reason); the ones that cannot take it say why."""
    done = r8("quantize", "--model", torch_born.path, "--out", tmp_path, "--min-top1", MIN_TOP1, check=False)
    q = json.loads((tmp_path / torch_born.stem / "quantization.json").read_text())
    measured = {r["backend"] for r in q["rows"] if r["kind"] == "int8"}
    assert {"ort", "torch", "nncf", "executorch"} <= measured
    for skipped in q["skipped"]:
        assert skipped["reason"] and torch_born.path.name in skipped["reason"]
    for name in sorted(measured):
        best = min((r for r in q["rows"] if r["backend"] == name), key=lambda r: r["drop_pp"])
        report(f"cifar_resnet_torch: best int8 {name}", f"{best['config']} {best['top1']:.2%} (drop "
               f"{best['drop_pp']:.2f} pp, 95 % CI [{best['drop_ci95_pp'][0]:.2f}, {best['drop_ci95_pp'][1]:.2f}])")
    report("cifar_resnet_torch: not measured", "; ".join(sorted({f"{s['backend']}: {s['reason']}"
                                                                 for s in q["skipped"]})))
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.slow
def test_the_trainer_reproduces_the_committed_model(report):
    """``train_torch_resnet`` run here (cached) reaches 80 % again; whether its program holds the
    committed weights, bit for bit, is reported."""
    from r8.data import load_dataset

    path, _ = trained_models.cached("torch_resnet")
    ours, committed = (read_program(p).state_dict for p in (path, trained_models.TORCH_MODEL))
    same = all(torch.equal(ours[k], committed[k]) for k in committed)
    report("cifar_resnet_torch trained again: the committed weights, bit for bit", "yes" if same else "no")
    data = load_dataset("cifar10")
    acc = top1(predict(reference_runner(path), data.test.images, progress=False), data.test.labels)
    report("cifar_resnet_torch trained again: fp32 top-1 (10k)", f"{acc:.2%}")
    assert acc >= MIN_TOP1


def _litert_torch():
    return pytest.importorskip("litert_torch", reason="litert-torch is not installed (pip install 'r8[litert-torch]'): "
                                                      "no float .tflite of a PyTorch-born model")


@pytest.mark.accuracy
def test_float_tflite_parity(torch_born, torch_born_probs, test_split, report):
    """litert-torch's float .tflite of the model (what the LiteRT quantizer and TFLite Micro take),
    held to the conversion gate against torch on the 10k test images."""
    from r8.backends.litert import float_tflite
    from r8.runtimes.runners import TfliteRunner

    _litert_torch()
    probs = predict(TfliteRunner(float_tflite(torch_born)), test_split.images, progress=False)
    diff = float(np.abs(probs - torch_born_probs[0]).max())
    report("cifar_resnet_torch: parity float .tflite (litert-torch) vs torch (10k): max|dp|, argmax agreement",
           f"{diff:.2e}, {agreement(probs, torch_born_probs[0]):.4%}")
    assert diff <= PROB_ATOL and agreement(probs, torch_born_probs[0]) == 1.0


@pytest.mark.accuracy
@pytest.mark.nightly
def test_mcu_on_its_int8_tflite(torch_born, torch_born_probs, test_split, report):
    """``r8 mcu``: the LiteRT quantizer's int8 .tflite of the model on TFLite Micro's kernels."""
    _litert_torch()
    fp32 = top1(torch_born_probs[0], test_split.labels)
    done = r8("mcu", "--model", torch_born.path, "--json", check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(done.stdout)["rows"]
    assert rows and all(r["arena_bytes"] > 0 and r["flash_bytes"] > 0 for r in rows)
    for r in rows:
        report(f"cifar_resnet_torch: TFLM {r['config']}", f"top-1 {r['top1']:.2%} (LiteRT {r['litert_top1']:.2%}), "
               f"arena {r['arena_bytes']:,} B, flash {r['flash_bytes']:,} B")
        assert (fp32 - r["top1"]) * 100 <= DEFAULT.max_drop_pp  # the drop gate of every int8 config
