"""Session fixtures: every artifact is built once into R8_CACHE_DIR (see r8.cache) and shared.

The suite runs on the real inputs under R8_DATA_DIR; when they are missing it fails with the
reason instead of skipping, so a run without data never counts as a pass.
"""

import json

import numpy as np
import pytest

from r8 import artifacts, paths
from r8.convert import convert, load_program
from r8.data import load_split
from r8.index import append_step_summary
from r8.metrics import predict, top1
from r8.report import write_quantization_report
from r8.runners import KerasRunner, TorchRunner


# ---- measured figures: printed at the end of the run and written to R8_CACHE_DIR/reports/
def pytest_configure(config):
    config.r8_measured, config.r8_int8_rows = {}, []


def pytest_terminal_summary(terminalreporter, config):
    measured = getattr(config, "r8_measured", {})
    if not measured:
        return
    terminalreporter.section("r8 measured")
    for key, value in measured.items():
        terminalreporter.write_line(f"{key}: {value}")
    out = paths.cache_dir() / "reports"
    out.mkdir(parents=True, exist_ok=True)
    (out / "measured.json").write_text(json.dumps(measured, indent=1))
    append_step_summary("## r8 measured\n\n| figure | value |\n|---|---|\n"
                        + "\n".join(f"| {k} | {v} |" for k, v in measured.items()))
    if config.r8_int8_rows:
        report = {**config.r8_int8_base, "rows": config.r8_int8_rows, "sqnr": []}
        for path in write_quantization_report(report, out):
            terminalreporter.write_line(f"int8 table written to {path}")


@pytest.fixture(scope="session")
def report(request):
    """``report(key, value)`` records a measured figure for the end-of-run summary."""
    def record(key, value):
        request.config.r8_measured[key] = value
    return record


@pytest.fixture(scope="session")
def report_int8_row(request, fp32_top1, calibration):
    """Adds a measured int8 row to the quantization report written at the end of the run."""
    request.config.r8_int8_base = {
        "fp32_top1": fp32_top1,
        "calibration": calibration.summary()}
    return request.config.r8_int8_rows.append


# ---- inputs
@pytest.fixture(scope="session")
def h5_path():
    path = paths.keras_model_path()
    if not path.is_file():
        pytest.fail(f"{path} not found: set R8_DATA_DIR to a root laid out like shared/data")
    return path


@pytest.fixture(scope="session")
def test_split():
    return load_split("test")


@pytest.fixture(scope="session")
def perf200():
    return load_split("perf200")


# ---- models and their predictions on the 10k test images
@pytest.fixture(scope="session")
def keras_runner(h5_path):
    return KerasRunner(h5_path)


@pytest.fixture(scope="session")
def torch_model(h5_path):
    """The converted model, fresh from the .h5 (``meta["keras_outputs"]``: Keras layer -> submodule)."""
    return convert(h5_path)


@pytest.fixture(scope="session")
def exported_path(h5_path):
    """The converted model as a torch.export program in the cache, rebuilt when the .h5 changes."""
    return artifacts.exported_program()


@pytest.fixture(scope="session")
def exported_model(exported_path):
    return load_program(exported_path)


@pytest.fixture(scope="session")
def keras_probs(keras_runner, test_split):
    return predict(keras_runner, test_split.images, progress=False)


@pytest.fixture(scope="session")
def torch_probs(torch_model, test_split):
    return predict(TorchRunner(torch_model), test_split.images, progress=False)


@pytest.fixture(scope="session")
def fp32_top1(torch_probs, test_split):
    """The baseline every int8 drop is measured against: the converted torch model."""
    return top1(torch_probs, test_split.labels)


@pytest.fixture(scope="session")
def calibration():
    from r8.calibration import calibration_set

    return calibration_set()


@pytest.fixture
def rng():
    return np.random.default_rng(0)


