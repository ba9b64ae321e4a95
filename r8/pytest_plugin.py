"""r8's pytest plugin (entry point ``pytest11: r8``): the options that point the suite, or r8's
gates run from any repository, at a model and a data set, and the session fixtures built from them.

    pytest --pyargs r8.gates --r8-model my_model.h5 --r8-data my_data.npz -m accuracy

``--r8-model`` may be given several times: every fixture below is parametrized over the models
(the model's stem is in each test id). Without it, the MLPerf Tiny IC01 ResNet8 under
R8_DATA_DIR. Missing inputs fail with the reason instead of skipping, so a run without data never
counts as a pass.
"""

import json
import os
import re
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from r8.core import paths
from r8.core.environment import THREADS_VAR, limit_threads
from r8.runtimes.timing import CAP_S
from r8.thresholds import GATES, Thresholds, add_gate_options


def pytest_addoption(parser):
    """``--r8-model PATH`` (repeatable) and ``--r8-data DATA``: what the gates run on;
    ``--r8-min-top1``, ``--r8-max-drop-pp``, ``--r8-best-drop-pp``: the gates' thresholds;
    ``--r8-tier TIER``: a tier of ``TIERS``; ``--r8-bench-threads`` and ``--r8-bench-cap-s``: the
    benchmarks' thread count and each paired comparison's time cap."""
    group = parser.getgroup("r8", "r8: the model and data the gates run on")
    group.addoption("--r8-model", action="append", default=None, metavar="PATH",
                    help="a model file r8 converts (repeatable; default: the MLPerf Tiny IC01 ResNet8)")
    group.addoption("--r8-data", default="cifar10", metavar="DATA",
                    help="cifar10 (default) or FILE.npz with x_train, y_train, x_test, y_test")
    add_gate_options(group.addoption, prefix="--r8-")
    group.addoption("--r8-tier", choices=dict(TIERS), metavar="TIER",
                    help=f"select a tier of tests ({', '.join(dict(TIERS))}), narrowed by any -m given with it")
    group.addoption("--r8-bench-threads", type=int, default=2, metavar="N",
                    help="benchmarks: the most threads any runtime gets (default 2; each is also timed at 1)")
    group.addoption("--r8-bench-cap-s", type=float, default=CAP_S, metavar="S",
                    help=f"benchmarks: each paired comparison's time cap, s (default {CAP_S:.0f})")
    group.addoption("--r8-shard", metavar="K/N", help="run only the models of shard K of N: whole models, balanced by "
                                                      "the seconds in --r8-durations (a model zoo over CI runners)")
    group.addoption("--r8-durations", type=Path, default=Path(".r8-durations.json"), metavar="FILE",
                    help="each model's seconds, which --r8-shard balances by (default .r8-durations.json)")
    group.addoption("--r8-store-durations", action="store_true",
                    help="add this run's seconds per model (every test that uses it) to --r8-durations")
    parser.addini("r8_default_tier", "fast: a run given no -m selects the fast tier (r8's own checkout)", default="")


# The test tiers, written here only: nox, tox and the suite pass --r8-tier, and r8's pytest.ini
# asks for the fast tier as its default.
GATE = "not benchmark and not slow and not nightly"  # the fast tests and the accuracy gates
TIERS = (("fast", f"not accuracy and {GATE}"), ("gate", GATE), ("nightly", "nightly and not slow"))  # (name, -m)

MARKERS = ("accuracy: full test-set accuracy gates (minutes, part of CI)",
           "benchmark: pytest-benchmark timings (opt-in, never part of CI's gate)",
           "slow: long runs beyond the CI gate (full quantization matrices)",
           "nightly: checks moved out of the CI gate where a cheaper gate check covers the same code (nox -s nightly)",
           "quiet: timings of real runtimes that need the machine to themselves (nox -s tests runs them after the "
           "parallel tests, alone)")

# Fixtures backed by this run's in-memory memo (below): under pytest-xdist the tests using them
# share one worker (``--dist loadgroup``), so nothing is measured twice. A source checkout's
# conftest marks its own such fixtures with :func:`measure_once`.
MEASURED_ONCE = ("r8_int8_rows", "r8_torch_probs", "r8_keras_probs")
MEASURED_GROUP = "r8-measured"


def selected_tier(config) -> str:
    """The marker expression this run selects: ``--r8-tier``'s (narrowed by ``-m``), else the ``-m``
    given, else the ini's default tier (r8's own checkout: fast), else every test."""
    given, tier, tiers = config.option.markexpr, config.getoption("r8_tier") or None, dict(TIERS)
    if tier:
        return f"({tiers[tier]}) and ({given})" if given else tiers[tier]
    return given or tiers.get(config.getini("r8_default_tier"), "")


def pytest_configure(config):
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    config.option.markexpr = selected_tier(config)
    # What one pytest run measured: figures for its summary, int8 rows per model for its report,
    # and the predictions and rows it computed once; all of it lives and dies with this run.
    config.r8_measured, config.r8_int8_rows, config.r8_predictions, config.r8_rows = {}, {}, {}, {}
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers and not os.environ.get(THREADS_VAR):  # a pytest-xdist worker: its share of the cores
        limit_threads(max(1, (os.cpu_count() or 1) // int(workers)))


def measure_once(items, fixtures, group: str = MEASURED_GROUP) -> None:
    """Puts the tests that use any of ``fixtures`` in one pytest-xdist group."""
    for item in items:
        if set(fixtures) & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook, which reads the group marks
def pytest_collection_modifyitems(items):
    measure_once(items, MEASURED_ONCE)


# ---- pytest-xdist: each worker hands what it measured to the controller, which reports it all
def pytest_sessionfinish(session):
    config = session.config
    if hasattr(config, "workeroutput"):  # a worker: its figures and rows go back as JSON
        from r8.results import QuantizeResult

        rows = {stem: QuantizeResult(**base, rows=rows).to_json() for stem, (base, rows) in config.r8_int8_rows.items()}
        config.workeroutput["r8"] = json.dumps({"measured": config.r8_measured, "int8_rows": rows})


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """The controller, as each worker ends: gathers its figures and int8 rows (sent as JSON)."""
    from r8.results import QuantizeResult

    done = json.loads(getattr(node, "workeroutput", {}).get("r8", "{}"))
    config = node.config
    config.r8_measured.update(done.get("measured", {}))
    for stem, report in done.get("int8_rows", {}).items():
        result = QuantizeResult.from_json(report)
        base = {k: getattr(result, k) for k in ("model", "data", "calibration", "fp32_top1", "classes")}
        config.r8_int8_rows.setdefault(stem, (base, []))[1].extend(result.rows)


def model_paths(config) -> list[Path]:
    """The models this run gates: every ``--r8-model`` (default IC01), or with ``--r8-shard`` its share."""
    models = [Path(p).resolve() for p in config.getoption("r8_model") or [paths.keras_model_path()]]
    shard = config.getoption("r8_shard")
    return shard_models(models, shard, model_seconds(config.getoption("r8_durations"))) if shard else models


# ---- a model zoo over CI runners: whole models to each shard, so no two runners build one model's artifacts
def model_seconds(path: Path) -> dict[str, float]:
    if not path.is_file():
        return {}
    try:
        return {str(k): float(v) for k, v in json.loads(path.read_text()).items()}
    except (ValueError, AttributeError):
        raise pytest.UsageError(f"{path}: not a durations file (a JSON object of model stem: seconds)") from None


def shard_models(models: list[Path], shard: str, seconds: dict[str, float]) -> list[Path]:
    """The models of shard ``K/N``: longest first, each to the least loaded shard; a model without a
    measured time counts as the mean of those measured (1 s where none is)."""
    try:
        k, n = map(int, shard.split("/"))
    except ValueError:
        raise pytest.UsageError(f"--r8-shard {shard}: give K/N, such as 1/3") from None
    if not 1 <= k <= n or n > len(models):
        raise pytest.UsageError(f"--r8-shard {shard}: {len(models)} model(s) fill shards 1 to {len(models)} at most")
    known = [seconds[m.stem] for m in models if m.stem in seconds]
    cost = {m: seconds.get(m.stem, sum(known) / len(known) if known else 1.0) for m in models}
    loads, mine = [0.0] * n, []
    for m in sorted(models, key=lambda m: (-cost[m], m.stem)):
        least = loads.index(min(loads))
        loads[least] += cost[m]
        if least == k - 1:
            mine.append(m)
    return [m for m in models if m in mine]


def store_model_seconds(terminalreporter, config) -> None:
    """Adds each model's seconds in this run (setup, call and teardown of every test whose id names
    it) to the durations file, keeping the other models' times there."""
    stems = [m.stem for m in model_paths(config)]
    spent = dict.fromkeys(stems, 0.0)
    for reports in terminalreporter.stats.values():
        for r in reports:
            for stem in stems:
                if re.search(rf"[\[-]{re.escape(stem)}[-\]]", getattr(r, "nodeid", "")):
                    spent[stem] += getattr(r, "duration", 0.0)
    path = config.getoption("r8_durations")
    path.write_text(json.dumps({**model_seconds(path), **{k: round(v, 1) for k, v in spent.items()}}, indent=1))


def pytest_generate_tests(metafunc):
    """Every test that uses the model (directly or through a fixture) runs once per model."""
    if "r8_model" in metafunc.fixturenames:
        models = model_paths(metafunc.config)
        metafunc.parametrize("r8_model", models, indirect=True, scope="session", ids=[p.stem for p in models])


# ---- measured figures: printed at the end of the run and written to R8_CACHE_DIR/reports/
def pytest_terminal_summary(terminalreporter, config):
    from r8.report.files import append_step_summary
    from r8.report.quantization import write_quantization_report
    from r8.results import QuantizeResult

    if config.getoption("r8_store_durations"):
        store_model_seconds(terminalreporter, config)
    measured = getattr(config, "r8_measured", {})
    if not measured:
        return
    terminalreporter.section("r8 measured")
    for key, value in measured.items():
        terminalreporter.write_line(f"{key}: {value}")
    out = paths.cache_dir() / "reports"
    out.mkdir(parents=True, exist_ok=True)
    # Added to the figures already there, as the index keeps every model measured so far: a runner
    # may run one pytest command per model and data set.
    earlier = out / "measured.json"
    measured_so_far = {**(json.loads(earlier.read_text()) if earlier.is_file() else {}), **measured}
    earlier.write_text(json.dumps(measured_so_far, indent=1))
    append_step_summary("## r8 measured\n\n| figure | value |\n|---|---|\n"
                        + "\n".join(f"| {k} | {v} |" for k, v in measured.items()))
    for stem, (base, rows) in config.r8_int8_rows.items():
        made_by = "pytest with r8's plugin (its gates' outcomes: the JUnit file)"
        for path in write_quantization_report(QuantizeResult(**base, rows=rows, command=made_by), out / stem):
            terminalreporter.write_line(f"int8 table written to {path}")


@pytest.fixture(scope="session")
def r8_report(request):
    """``r8_report(key, value)`` records a measured figure for the end-of-run summary."""
    def record(key, value):
        request.config.r8_measured[key] = value
    return record


# ---- shared computations: a source checkout's own fixtures reuse them instead of measuring twice
def predictions(config, model, data, runtime: str) -> np.ndarray:
    """``keras`` (the original file, loaded by Keras) or ``torch`` (r8's conversion) on the test
    images, computed once per pytest run (``config``: the pytest config)."""
    from r8.artifacts import torch_fp32
    from r8.metrics import predict
    from r8.runtimes.runners import TorchRunner, reference_runner

    key = (model.sha256, data.sha256, runtime)
    if key not in config.r8_predictions:
        runner = reference_runner(model.path) if runtime == "keras" else TorchRunner(torch_fp32(model))
        config.r8_predictions[key] = predict(runner, data.test.images, progress=False)
    return config.r8_predictions[key]


def int8_rows_for(config, model, data, cal) -> Callable:
    """``row(backend, config)``: the int8 row, measured once per pytest run and added to the
    model's report (``config``: the pytest config)."""
    from r8.jobs.quantize import config_row

    def row(backend, backend_config):
        key = (model.sha256, data.sha256, cal.sha256, backend, backend_config)
        if key not in config.r8_rows:
            fp32 = predictions(config, model, data, "torch")
            config.r8_rows[key] = config_row(model, data, backend, backend_config, fp32, cal)
            add_int8_row(config, model, data, cal, config.r8_rows[key])
        return config.r8_rows[key]
    return row


def add_int8_row(config, model, data, cal, row) -> None:
    """Adds a measured row (:class:`r8.rows.Row`) to the model's quantization report written at the end of the run
    (``cal``: its calibration set, None for the default one)."""
    from r8.calibration import calibration_set
    from r8.metrics import top1
    from r8.model import describe

    if model.stem not in config.r8_int8_rows:
        cal = cal or calibration_set(data, num_classes=model.num_classes)
        base = {**describe(model, data, cal), "fp32_top1": top1(predictions(config, model, data, "torch"), data.test.labels),
                "classes": list(data.class_names(model.num_classes))}
        config.r8_int8_rows[model.stem] = (base, [])
    config.r8_int8_rows[model.stem][1].append(row)


# ---- inputs
@pytest.fixture(scope="session")
def r8_model(request):
    """The :class:`r8.model.Model` under test (parametrized over ``--r8-model``)."""
    from r8 import R8Error
    from r8.model import load_model

    try:
        return load_model(request.param)
    except R8Error as e:
        pytest.fail(f"--r8-model: {e} (set R8_DATA_DIR to a root laid out like shared/data, or pass --r8-model)")


@pytest.fixture(scope="session")
def r8_data(request, r8_model):
    """The :class:`r8.data.Dataset` of ``--r8-data``, checked against the model."""
    from r8 import R8Error
    from r8.data import load_dataset

    try:
        data = load_dataset(request.config.getoption("r8_data"))
        data.check(r8_model)
    except R8Error as e:
        pytest.fail(f"--r8-data: {e}")
    return data


@pytest.fixture(scope="session")
def r8_thresholds(request) -> Thresholds:
    return Thresholds(**{name: request.config.getoption(f"r8_{name}") for name in GATES})


@pytest.fixture(scope="session")
def r8_keras_probs(request, r8_model, r8_data):
    return predictions(request.config, r8_model, r8_data, "keras")


@pytest.fixture(scope="session")
def r8_torch_probs(request, r8_model, r8_data):
    return predictions(request.config, r8_model, r8_data, "torch")


@pytest.fixture(scope="session")
def r8_calibration(r8_model, r8_data):
    from r8.calibration import calibration_set

    return calibration_set(r8_data, num_classes=r8_model.num_classes)


@pytest.fixture(scope="session")
def r8_int8_rows(request, r8_model, r8_data, r8_calibration):
    """``row(backend, config)``, measured once per session and added to the model's report."""
    return int8_rows_for(request.config, r8_model, r8_data, r8_calibration)
