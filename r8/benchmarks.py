"""r8's CPU inference benchmarks as a pytest-benchmark module: run by ``python -m r8 benchmark``
(which writes the report), from a source checkout (``suite/test_benchmark.py``, ``pytest -m
benchmark``) or from any repository after ``pip install r8[test]``:

    pytest --pyargs r8.benchmarks -m benchmark --r8-model my_model.h5 --benchmark-json=out.json

Each runtime at batch 1 (latency) and batch 256 (throughput), at 1 and 2 threads; ``extra_info``
carries what the report needs (accuracy on the 10k test images, size, config, threads, artifact).
The ``overhead-*`` rows time an identity-sized model: each runtime's per-call floor.
"""

import pytest

from r8.backends import backend
from r8.errors import R8Error
from r8.jobs.benchmark import BATCHES, RUNTIME_NAMES, THREAD_COUNTS, THREADS, runtimes
from r8.metrics import confusion, per_class, predict, top1


@pytest.fixture(scope="session")
def runtime_table(r8_model, r8_data, r8_calibration, r8_int8_rows):
    """Measures every default int8 config once, to pick the best ones to benchmark (the model of
    ``--r8-model``, default the MLPerf Tiny ResNet8)."""
    rows = {}
    for b in ("ort", "torch", "tflite"):
        for c in backend(b).configs(available=True):
            try:
                rows[b, c] = r8_int8_rows(b, c)
            except R8Error:  # the backend cannot take this model (e.g. TFLite's quantizer and a .tflite)
                break
    return runtimes(r8_model, r8_data, r8_calibration, rows)


@pytest.fixture(scope="session")
def loaded(runtime_table, r8_data):
    """(name, threads) -> (runner, info); each runtime evaluated on the 10k test images once."""
    runners, infos = {}, {}

    def get(name, threads):
        runtime = runtime_table[name]
        if (name, threads) not in runners:
            runners[name, threads] = runtime.make(threads)
        if name not in infos:
            info = {"runtime": name, "precision": runtime.precision, "config": runtime.config, "reference": runtime.reference,
                    "size_bytes": runtime.file().stat().st_size, "artifact": str(runtime.file())}
            if runtime.precision != "overhead":
                probs = predict(runners[name, threads], r8_data.test.images, batch_size=256, progress=False)
                labels = r8_data.test.labels
                info.update(top1=top1(probs, labels), per_class=per_class(probs, labels),
                            confusion=confusion(probs, labels))
            infos[name] = info
        return runners[name, threads], infos[name]
    return get


@pytest.mark.benchmark  # on the function, so a module that imports it (suite/test_benchmark.py) keeps it
@pytest.mark.parametrize("threads", THREAD_COUNTS, ids=lambda t: f"t{t}")
@pytest.mark.parametrize("batch", BATCHES, ids=lambda b: f"bs{b}")
@pytest.mark.parametrize("name", RUNTIME_NAMES)
def test_inference(benchmark, name, batch, threads, runtime_table, loaded, r8_model, r8_data):
    if name in ("keras", "torch-cuda") and threads != THREADS:
        pytest.skip(f"{name}: its thread pools are fixed once started (measured at {THREADS} threads only)")
    if name not in runtime_table:
        pytest.skip(f"{name}: not a runtime of {r8_model.stem} on {r8_data.name} (its backend cannot take the model, "
                    "no published reference file, "
                    "or float data where the runtime takes uint8 pixels)")
    runner, info = loaded(name, threads)
    images = r8_data.test.images[:batch]
    benchmark.extra_info.update(info, batch=batch, threads=threads)
    rounds = 300 if batch == 1 else 30
    out = benchmark.pedantic(runner.predict, args=(images,), rounds=rounds, warmup_rounds=rounds // 10,
                             iterations=1)
    assert out.shape == (batch, 1 if info["precision"] == "overhead" else r8_model.num_classes)
