"""CPU inference benchmarks (opt-in: `pytest -m benchmark`, or `nox -s benchmark`).

Each runtime at batch 1 (latency) and batch 256 (throughput), the same thread count for all;
``extra_info`` carries what the report needs (accuracy on the 10k test images, size, config).
"""

import pytest

from r8.bench import BATCHES, RUNTIME_NAMES, THREADS, runtimes
from r8.backends import backend
from r8.jobs import config_row
from r8.metrics import confusion, per_class, predict, top1

pytestmark = pytest.mark.benchmark


@pytest.fixture(scope="session")
def runtime_table(torch_probs, test_split):
    """Measures every default int8 config once, to pick the best ones to benchmark."""
    rows = {(b, c): config_row(b, c, torch_probs, test_split)
            for b in ("ort", "torch", "tflite") for c in backend(b).configs(available=True)}
    return runtimes(rows)


@pytest.fixture(scope="session")
def loaded(runtime_table, test_split):
    """name -> (runner, accuracy info), each runtime built and evaluated once."""
    cache = {}

    def get(name):
        if name not in cache:
            runtime = runtime_table[name]
            runner = runtime.make()
            probs = predict(runner, test_split.images, batch_size=256, progress=False)
            labels = test_split.labels
            cache[name] = runner, {
                "runtime": name, "precision": runtime.precision, "config": runtime.config,
                "threads": THREADS, "top1": top1(probs, labels), "per_class": per_class(probs, labels),
                "confusion": confusion(probs, labels), "size_bytes": runtime.file().stat().st_size,
                "artifact": str(runtime.file())}
        return cache[name]
    return get


@pytest.mark.parametrize("batch", BATCHES, ids=lambda b: f"bs{b}")
@pytest.mark.parametrize("name", RUNTIME_NAMES)
def test_inference(benchmark, name, batch, loaded, test_split):
    runner, info = loaded(name)
    images = test_split.images[:batch]
    benchmark.extra_info.update(info, batch=batch)
    rounds = 300 if batch == 1 else 30
    out = benchmark.pedantic(runner.predict, args=(images,), rounds=rounds, warmup_rounds=rounds // 10,
                             iterations=1)
    assert out.shape == (batch, 10)
