"""The suite's session fixtures: the MLPerf Tiny IC01 ResNet8 on CIFAR-10, whose facts most tests
check. The options (``--r8-model``, ``--r8-data``, thresholds), the per-model ``r8_*`` fixtures
and the end-of-run figures come from r8's pytest plugin (``r8.pytest_plugin``, installed as an
entry point); the fixtures below reuse its computations, so nothing is measured twice.

Every artifact is built once into R8_CACHE_DIR (see r8.core.cache) and shared. The suite runs on the
real inputs under R8_DATA_DIR; when they are missing it fails with the reason instead of
skipping, so a run without data never counts as a pass.
"""

import numpy as np
import pytest

from r8 import artifacts
from r8.core import paths
from r8.frontends.convert import load_program
from r8.pytest_plugin import int8_rows_for, measure_once, predictions


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook, which reads the group marks
def pytest_collection_modifyitems(items):
    # Under pytest-xdist: the IC01 tests that share these per-run memos (and the IC02 quantize job's
    # report) each run on one worker, so none is measured twice.
    measure_once(items, {"keras_probs", "torch_probs", "fp32_top1", "int8_rows"})
    measure_once(items, {"ic02_reports"}, group="ic02-quantize-job")


@pytest.fixture(scope="session")
def report(r8_report):
    return r8_report


# ---- inputs
@pytest.fixture(scope="session")
def h5_path():
    path = paths.keras_model_path()
    if not path.is_file():
        pytest.fail(f"{path} not found: set R8_DATA_DIR to a root laid out like shared/data")
    return path


@pytest.fixture(scope="session")
def ic01(h5_path):
    from r8.model import load_model

    return load_model(h5_path)


@pytest.fixture(scope="session")
def cifar10():
    from r8.data import load_dataset

    return load_dataset("cifar10")


@pytest.fixture(scope="session")
def test_split(cifar10):
    return cifar10.test


@pytest.fixture(scope="session")
def perf200(cifar10):
    return cifar10.split("perf200")


# ---- models and their predictions on the 10k test images
@pytest.fixture(scope="session")
def keras_runner(h5_path):
    from r8.runtimes.runners import KerasRunner

    return KerasRunner(h5_path)


@pytest.fixture(scope="session")
def torch_model(ic01):
    """The converted model, fresh from the .h5 (``meta["keras_outputs"]``: Keras layer -> submodule)."""
    return artifacts.torch_fp32(ic01)


@pytest.fixture(scope="session")
def exported_path(ic01):
    """The converted model as a torch.export program in the cache, rebuilt when the .h5 changes."""
    return artifacts.exported_program(ic01)


@pytest.fixture(scope="session")
def exported_model(exported_path):
    return load_program(exported_path)


@pytest.fixture(scope="session")
def keras_probs(request, ic01, cifar10):
    return predictions(request.config, ic01, cifar10, "keras")


@pytest.fixture(scope="session")
def torch_probs(request, ic01, cifar10):
    return predictions(request.config, ic01, cifar10, "torch")


@pytest.fixture(scope="session")
def fp32_top1(torch_probs, test_split):
    """The baseline every int8 drop is measured against: the converted torch model."""
    from r8.metrics import top1

    return top1(torch_probs, test_split.labels)


@pytest.fixture(scope="session")
def calibration(cifar10):
    from r8.calibration import calibration_set

    return calibration_set(cifar10)


@pytest.fixture(scope="session")
def int8_rows(request, ic01, cifar10, calibration):
    """Row per (backend, config) of the ResNet8, measured once per session (shared with the gates)."""
    return int8_rows_for(request.config, ic01, cifar10, calibration)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
