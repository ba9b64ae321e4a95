"""int8 accuracy gates: each quantized config vs the fp32 baseline on the 10k test images.

Ids read as a table: ``test_int8_drop[ort-qdq-u8s8-perchannel-entropy]``. The default matrix is
`accuracy`-marked (CI gate); the rest of the full matrix runs under `slow`.
"""

import pytest

from r8 import artifacts, paths
from r8.jobs import int8_row
from r8.metrics import predict
from r8.quant_ort import DEFAULT_MATRIX, FULL_MATRIX
from r8.runners import OnnxRunner, TfliteRunner

MAX_DROP_PP = 5.0  # issue #3/#4: every config
BEST_DROP_PP = 0.2  # issue #3: the best ORT config, calibrated on training images only

CONFIGS = [pytest.param(("ort", c), id=f"ort-{c.id}",
                        marks=pytest.mark.accuracy if c in DEFAULT_MATRIX else pytest.mark.slow)
           for c in FULL_MATRIX]


@pytest.fixture(scope="session")
def int8_rows(fp32_top1, test_split, report_int8_row):
    """Row per (backend, config), measured once per session and added to the report."""
    rows = {}

    def row(backend, config):
        if (backend, config) not in rows:
            path = artifacts.ort_int8(config)
            probs = predict(OnnxRunner(path), test_split.images, progress=False)
            rows[backend, config] = int8_row(backend, f"{config.id}-train", probs, fp32_top1,
                                             test_split, path.stat().st_size)
            report_int8_row(rows[backend, config])
        return rows[backend, config]
    return row


@pytest.mark.parametrize("case", CONFIGS)
def test_int8_drop(case, int8_rows, report):
    row = int8_rows(*case)
    report(f"int8 {row['backend']}-{row['config']}", f"{row['top1']:.2%} (drop {row['drop_pp']:.2f} pp)")
    assert row["drop_pp"] <= MAX_DROP_PP


@pytest.mark.accuracy
def test_best_ort_config_within_target(int8_rows, report):
    best = min((int8_rows("ort", c) for c in DEFAULT_MATRIX), key=lambda r: r["drop_pp"])
    report("best ORT int8 config", f"{best['config']}: drop {best['drop_pp']:.2f} pp")
    assert best["drop_pp"] <= BEST_DROP_PP


@pytest.mark.accuracy
def test_tflite_int8_reference(fp32_top1, test_split, report_int8_row, report):
    """The MLCommons int8 model (input = pixel - 128) on the same 10k images, as an anchor."""
    path = paths.tflite_model_path(quantized=True)
    probs = predict(TfliteRunner(path), test_split.images, progress=False)
    row = int8_row("tflite-reference", "mlcommons-int8 (calibrated on test images)", probs,
                   fp32_top1, test_split, path.stat().st_size)
    report_int8_row(row)
    report("int8 tflite-reference", f"{row['top1']:.2%} (drop {row['drop_pp']:.2f} pp)")
    assert row["drop_pp"] <= MAX_DROP_PP
