"""int8 accuracy gates: each quantized config vs the fp32 baseline on the 10k test images.

Ids read as a table: ``test_int8_drop[ort-qdq-u8s8-perchannel-entropy]``,
``test_int8_drop[torch-fx-x86-perchannel-histogram]``. Each backend's default matrix is
`accuracy`-marked (the CI gate); the rest of its full matrix runs under `slow`.
"""

import pytest

from r8 import paths
from r8.jobs import backend_configs, config_row, int8_row
from r8.metrics import predict
from r8.quant_torch import engine_available
from r8.runners import TfliteRunner

MAX_DROP_PP = 5.0  # issues #3/#4: every config
BEST_DROP_PP = 0.2  # issues #3/#4: each backend's best config, calibrated on training images only
BACKENDS = ("ort", "torch")


def _cases():
    for backend in BACKENDS:
        default, full = backend_configs(backend)
        for config in full:
            marks = [pytest.mark.accuracy if config in default else pytest.mark.slow]
            if backend == "torch" and not engine_available(config.engine):
                marks.append(pytest.mark.skip(reason=f"quantized engine {config.engine} not built into this torch"))
            yield pytest.param(backend, config, id=f"{backend}-{config.id}", marks=marks)


@pytest.fixture(scope="session")
def int8_rows(fp32_top1, test_split, report_int8_row):
    """Row per (backend, config), measured once per session and added to the report."""
    rows = {}

    def row(backend, config):
        if (backend, config) not in rows:
            rows[backend, config] = config_row(backend, config, fp32_top1, test_split)
            report_int8_row(rows[backend, config])
        return rows[backend, config]
    return row


@pytest.mark.parametrize("backend, config", list(_cases()))
def test_int8_drop(backend, config, int8_rows, report):
    row = int8_rows(backend, config)
    report(f"int8 {backend}-{row['config']}", f"{row['top1']:.2%} (drop {row['drop_pp']:.2f} pp)")
    assert row["drop_pp"] <= MAX_DROP_PP


@pytest.mark.accuracy
@pytest.mark.parametrize("backend", BACKENDS)
def test_best_config_within_target(backend, int8_rows, report):
    default = [c for c in backend_configs(backend)[0]
               if backend != "torch" or engine_available(c.engine)]
    best = min((int8_rows(backend, c) for c in default), key=lambda r: r["drop_pp"])
    report(f"best {backend} int8 config", f"{best['config']}: drop {best['drop_pp']:.2f} pp")
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
