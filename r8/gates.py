"""r8's gates as tests, for any model: run from a source checkout (``suite/test_gates.py``) or
from any repository after ``pip install r8[test]``:

    pytest --pyargs r8.gates --r8-model my_model.h5 --r8-data my_data.npz -m accuracy

Ids read as a table: ``test_int8_drop[ort-qdq-u8s8-perchannel-minmax-my_model]``. Each backend's
default matrix is `accuracy`-marked; the rest of its full matrix runs under `slow`. A failed gate
names the model, the gate, its threshold and the measured value.
"""

from pathlib import Path

import numpy as np
import pytest

from r8.backends import gated, registry
from r8.core.errors import R8Error
from r8.metrics import agreement, predict, top1
from r8.pytest_plugin import add_int8_row
from r8.rows import Row, best_row
from r8.thresholds import Gate, at_least, at_most


def check(model, gate: Gate) -> None:
    """A gate as a test. Missed, it fails naming the model, the gate, its threshold and the measured
    value; missed where a backend waives it on this CPU, it is an xfail naming the same: shown as an
    expected failure, never a pass."""
    if gate.waived_because:
        pytest.xfail(gate.message(model.stem))
    assert gate.passed, gate.message(model.stem)


def check_best_drop(model, name: str, what: str, drop: float, threshold: float) -> None:
    """A backend's best drop (``what``: which config, or how it was measured) against its gate."""
    check(model, at_most(f"best int8 drop pp {name} ({what})", drop, threshold, registry()[name].best_gate_waiver()))


@pytest.mark.accuracy
def test_parity_keras_torch(r8_model, r8_keras_probs, r8_torch_probs, r8_thresholds, r8_report):
    """The converted model gives the original's probabilities on every test image."""
    diff = float(np.abs(r8_keras_probs - r8_torch_probs).max())
    r8_report(f"{r8_model.stem}: parity keras-vs-torch max|dp|, argmax agreement", f"{diff:.2e}, "
           f"{agreement(r8_keras_probs, r8_torch_probs):.4%}")
    check(r8_model, at_most("parity keras-vs-torch max |dp|", diff, r8_thresholds.prob_atol))
    mismatched = np.flatnonzero(r8_keras_probs.argmax(1) != r8_torch_probs.argmax(1))
    check(r8_model, at_most(f"parity keras-vs-torch argmax: images that differ (first: {mismatched[:10]})",
                            int(mismatched.size), 0))


@pytest.mark.accuracy
@pytest.mark.parametrize("runtime", ["keras", "torch"])
def test_fp32_top1(runtime, r8_model, r8_keras_probs, r8_torch_probs, r8_data, r8_thresholds, r8_report):
    acc = top1({"keras": r8_keras_probs, "torch": r8_torch_probs}[runtime], r8_data.test.labels)
    r8_report(f"{r8_model.stem}: fp32 top-1 {runtime}", f"{acc:.2%}")
    check(r8_model, at_least(f"fp32 top-1 {runtime}", acc, r8_thresholds.min_top1))


@pytest.mark.accuracy
def test_onnx_parity(r8_model, r8_keras_probs, r8_data, r8_thresholds, r8_report):
    """The ONNX export (torch route) on ONNX Runtime gives the original's probabilities."""
    from r8 import artifacts
    from r8.runtimes.runners import OnnxRunner

    probs = predict(OnnxRunner(artifacts.onnx_fp32(r8_model, "torch")), r8_data.test.images, progress=False)
    diff = float(np.abs(probs - r8_keras_probs).max())
    r8_report(f"{r8_model.stem}: parity keras-vs-onnxruntime max|dp|", f"{diff:.2e}")
    check(r8_model, at_most("parity keras-vs-onnxruntime max |dp|", diff, r8_thresholds.prob_atol))
    check(r8_model, at_least("parity keras-vs-onnxruntime argmax agreement", agreement(probs, r8_keras_probs), 1.0))


def _cases():
    for b in registry().values():
        for config in b.full:
            marks = [pytest.mark.accuracy if config in b.default else pytest.mark.slow]
            if b.unavailable(config):
                marks.append(pytest.mark.skip(reason=b.unavailable(config)))
            yield pytest.param(b.name, config, id=f"{b.name}-{config.id}", marks=marks)


def check_row(row: Row, n: int) -> None:
    """The row's figures are consistent with each other."""
    b, c = row.discordant
    assert b - c == round(row.drop_pp / 100 * n)  # the drop is b - c images
    lo, hi = row.drop_ci95_pp
    assert lo <= row.drop_pp <= hi
    assert 0 <= row.mcnemar_p <= 1 and (b + c > 0 or row.mcnemar_p == 1)
    assert row.size_bytes == Path(row.artifact).stat().st_size and 0 <= min(row.per_class) <= row.top1 <= max(row.per_class) <= 1


@pytest.mark.parametrize("backend, config", list(_cases()))
def test_int8_drop(backend, config, r8_model, r8_calibration, r8_int8_rows, r8_data, r8_thresholds, r8_report):
    try:
        row = r8_int8_rows(backend, config)
    except R8Error as e:  # out of this backend's reach for this model: shown, never counted as a pass
        pytest.skip(f"{r8_model.stem}: {backend} cannot take it: {e}")
    lo, hi = row.drop_ci95_pp
    # What was measured only: the build's seconds are in the row (the model's quantization report),
    # so two runners that measure one row report one figure and their reports merge.
    r8_report(f"{r8_model.stem}: int8 {backend}-{row.config}",
              f"{row.top1:.2%} (drop {row.drop_pp:.2f} pp, 95 % CI [{lo:.2f}, {hi:.2f}], McNemar p "
              f"{row.mcnemar_p:.3g}, discordant {row.discordant})")
    check_row(row, len(r8_data.test.labels))
    assert (row.backend, row.config_id, row.calibration) == (backend, config.id, r8_calibration.source)
    assert row.artifact == str(registry()[backend].build(r8_model, config, r8_calibration))
    check(r8_model, at_most(f"int8 drop pp {backend}-{config.id}", row.drop_pp, r8_thresholds.max_drop_pp))


@pytest.mark.accuracy
@pytest.mark.parametrize("name", [b.name for b in gated()])
def test_best_config_within_target(name, r8_model, r8_int8_rows, r8_thresholds, r8_report):
    rows = []
    for config in registry()[name].configs(available=True):
        try:
            rows.append(r8_int8_rows(name, config))
        except R8Error:
            continue  # skipped with its reason by test_int8_drop
    if not rows:
        pytest.skip(f"{r8_model.stem}: {name} can quantize none of its configs for this model")
    best = best_row(rows, name)
    r8_report(f"{r8_model.stem}: best {name} int8 config", f"{best.config}: drop {best.drop_pp:.2f} pp")
    check_best_drop(r8_model, name, best.config, best.drop_pp, r8_thresholds.best_drop_pp)


@pytest.mark.accuracy
def test_int8_reference(request, r8_model, r8_data, r8_torch_probs, r8_thresholds, r8_report):
    """The model's published int8 .tflite on the same images, as an anchor (where it has one)."""
    from r8.jobs.quantize import reference_row

    row = reference_row(r8_model, r8_data, r8_torch_probs, progress=False)
    if row is None:
        pytest.skip(f"{r8_model.stem}: no published int8 .tflite of this model beside it")
    add_int8_row(request.config, r8_model, r8_data, None, row)
    r8_report(f"{r8_model.stem}: int8 reference", f"{row.top1:.2%} (drop {row.drop_pp:.2f} pp)")
    check_row(row, len(r8_data.test.labels))
    check(r8_model, at_most("int8 drop pp of the published reference", row.drop_pp, r8_thresholds.max_drop_pp))
