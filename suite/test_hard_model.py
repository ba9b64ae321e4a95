"""When int8 hurts: the suite's hard model, ``mnv2_cifar`` (``trained_models.train_mnv2``), a
MobileNetV2-style CIFAR-10 net trained briefly at a high learning rate. Some of its expansion
channels die, the BatchNorm after the depthwise conv that reads one learns a variance of ~0, and
folding it into the conv (as every backend does) leaves channels whose weights are hundreds of
times larger than the rest: per-tensor int8 weights then lose the rest. The premise of every
test on it is checked here on the 10k test images, each figure measured once per run.

All under `slow`: training takes about 2 CPU minutes, and which channels die depends on the
training's path, so on the CPU's float kernels (2 epochs instead of 3 gave a model per-tensor int8
lost 0.02-0.37 pp on): the premise test is what says so where it stops holding."""

import json

import numpy as np
import pytest
import torch
import trained_models
from cli_run import r8

from r8 import artifacts
from r8.backends import backend
from r8.calibration import calibration_set
from r8.layers import conv_of_batchnorm
from r8.pytest_plugin import int8_rows_for

# backend -> (its per-tensor default config, the per-channel twin); the premise needs two of them
PER_TENSOR = {"ort": ("qdq-u8u8-pertensor-minmax", "qdq-u8s8-perchannel-minmax"),
              "tflite": ("int8-pertensor", "int8-perchannel"),
              "litert": ("a8w8-pertensor-minmax", "a8w8-perchannel-minmax")}
HARD_PP = 1.0  # what the premise asks a per-tensor config to lose (so each backend's worst default loses at least as much)


@pytest.fixture(scope="session")
def hard():
    from r8.data import load_dataset
    from r8.model import load_model

    path, data = trained_models.cached("mnv2_cifar")
    model, data = load_model(path), load_dataset(data)
    return model, data, calibration_set(data, num_classes=model.num_classes)


def folded_depthwise_ranges(model) -> dict[str, np.ndarray]:
    """Depthwise conv -> each output channel's largest |weight| with its BatchNorm folded in."""
    fp32 = artifacts.torch_fp32(model)
    ranges = {}
    for bn_name, conv_name in conv_of_batchnorm(fp32).items():
        conv, bn = fp32.get_submodule(conv_name), fp32.get_submodule(bn_name)
        if conv.groups > 1:
            with torch.no_grad():
                scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).abs()
                ranges[conv_name] = (conv.weight.abs().amax(dim=(1, 2, 3)) * scale).numpy()
    return ranges


@pytest.mark.slow
def test_folding_leaves_depthwise_channels_far_apart(hard, report):
    """Why per-tensor weights fail here: in some depthwise layer the folded channel ranges are at
    least 30x apart (largest over median): per-tensor, the median channel gets ±4 of int8's ±127 steps."""
    ratios = {name: float(r.max() / np.median(r)) for name, r in folded_depthwise_ranges(hard[0]).items()}
    report("mnv2_cifar: folded depthwise channel ranges, largest / median",
           ", ".join(f"{name} {ratio:.0f}x" for name, ratio in ratios.items() if ratio >= 10))
    assert max(ratios.values()) >= 30


@pytest.mark.slow
def test_hard_model_premise(hard, request, report):
    """The hard model is hard: per-tensor int8 loses at least 1.0 pp on each of two backends or
    more (so each one's worst default config, at least as bad, does too), measured on the 10k test
    images; what per-channel weights alone recover is reported beside it."""
    model, data, cal = hard
    row = int8_rows_for(request.config, model, data, cal)
    lost = {}
    for name, (per_tensor_id, per_channel_id) in PER_TENSOR.items():
        b = backend(name)
        per_tensor, per_channel = row(name, b.config(per_tensor_id)), row(name, b.config(per_channel_id))
        report(f"mnv2_cifar: {name} per-tensor / per-channel drop (pp, 95 % CI)",
               f"{per_tensor.drop_pp:.2f} {list(per_tensor.drop_ci95_pp)} / {per_channel.drop_pp:.2f} "
               f"{list(per_channel.drop_ci95_pp)}: per-channel recovers {per_tensor.drop_pp - per_channel.drop_pp:.2f} pp")
        lost[name] = per_tensor.drop_pp
    assert sum(drop >= HARD_PP for drop in lost.values()) >= 2, f"the hard model is not hard: per-tensor drops {lost} pp"


@pytest.mark.slow
def test_every_default_config_on_the_hard_model(hard, tmp_path, report):
    """The premise as the issue words it, over each backend's every default config: the worst one
    loses at least 1.0 pp on two backends or more. Reported: each backend's worst and best
    config, and whether any default config is within 0.2 pp of fp32."""
    model = hard[0]
    r8("quantize", "--model", model.path, "--out", tmp_path, "--min-top1", "0.5", check=False)  # gates: reported there
    rows = [r for r in json.loads((tmp_path / model.stem / "quantization.json").read_text())["rows"] if r["kind"] == "int8"]
    worst = {}
    for name in sorted({r["backend"] for r in rows}):
        ranked = sorted((r for r in rows if r["backend"] == name), key=lambda r: r["drop_pp"])
        report(f"mnv2_cifar: {name} default configs, best / worst drop (pp)",
               f"{ranked[0]['config']} {ranked[0]['drop_pp']:.2f} / {ranked[-1]['config']} {ranked[-1]['drop_pp']:.2f}")
        worst[name] = ranked[-1]["drop_pp"]
    report("mnv2_cifar: default configs within 0.2 pp", ", ".join(f"{r['backend']} {r['config']}" for r in rows
                                                                   if r["drop_pp"] <= 0.2) or "none")
    assert sum(drop >= HARD_PP for drop in worst.values()) >= 2, f"worst default drops {worst} pp"


SEARCH_BUDGET_PP, SEARCH_MAC_SHARE = 0.3, 0.10  # the gate: met on two backends, float layers <= 10 % of MACs


@pytest.mark.slow
def test_search_meets_a_tight_budget_on_the_hard_model(hard, tmp_path, report):
    """``r8 search --max-drop-pp 0.3`` on the hard model, from each backend's worst default config:
    the start config loses more than the budget (the premise), and the search meets the budget (the
    validation upper bound and the test drop) on two backends or more with float layers holding at
    most 10 % of the MACs; NNCF's accuracy control at the same budget is reported beside them (measured:
    met on ORT and the LiteRT quantizer; torch meets the validation bound but its test drop is 0.39 pp)."""
    model = hard[0]
    done = r8("search", "--model", model.path, "--max-drop-pp", SEARCH_BUDGET_PP, "--out", tmp_path, check=False)
    rows = json.loads((tmp_path / model.stem / "search.json").read_text())["rows"]
    for r in rows:
        report(f"mnv2_cifar: search at {SEARCH_BUDGET_PP} pp, {r['backend']} {r['config']}",
               f"{'met' if r['met'] else 'not met'} with {len(r['float_layers'])} float layers ({r['float_mac_share']:.1%} "
               f"of the MACs), validation {r['validation_drop_pp']:.2f} pp {r['validation_drop_ci95_pp']}, "
               f"test {r['drop_pp']:.2f} pp {r['drop_ci95_pp']}")
    searched = [r for r in rows if r["backend"] != "nncf"]
    assert done.returncode in (0, 1) and all(r["steps"][0]["validation_drop_ci95_pp"][1] > SEARCH_BUDGET_PP for r in searched)
    tight = [r for r in searched if r["met"] and r["drop_pp"] <= SEARCH_BUDGET_PP and r["float_mac_share"] <= SEARCH_MAC_SHARE]
    assert len(tight) >= 2, [(r["backend"], r["float_mac_share"]) for r in searched]
