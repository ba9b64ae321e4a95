"""r8's CPU inference benchmarks as a pytest-benchmark module: run by ``python -m r8 benchmark``
(which writes the report), from a source checkout (``suite/test_benchmark.py``, ``pytest -m
benchmark``) or from any repository after ``pip install r8[test]``:

    pytest --pyargs r8.jobs.benchmark_suite -m benchmark --r8-model my_model.h5 --benchmark-json=out.json

Each runtime at batch 1 (latency) and batch 256 (throughput), at 1 and 2 threads; ``extra_info``
carries what the report needs (accuracy on the 10k test images, size, config, threads, artifact).
The ``overhead-*`` rows time an identity-sized model: each runtime's per-call floor.

``test_paired`` then ranks each comparison's candidates in interleaved rounds (:mod:`r8.runtimes.ranking`),
times the winner against what it is compared with (:mod:`r8.runtimes.timing`; r8's fastest int8 also
against ExecuTorch's), and puts the ranking and each comparison's ratio, interval and verdict in its
``extra_info``.
"""

from functools import partial

import pytest

from r8.backends import backend
from r8.core.errors import R8Error
from r8.jobs.benchmark import (
    BATCHES,
    COMPARISONS,
    EXECUTORCH,
    VS_EXECUTORCH,
    candidates,
    fixed_threads,
    runtime_names,
    runtimes,
    thread_counts,
)
from r8.metrics import confusion, per_class, predict, top1
from r8.runtimes.ranking import rank, rank_all
from r8.runtimes.timing import VERDICTS, compare


def pytest_generate_tests(metafunc):
    """The thread counts (``--r8-bench-threads``) and runtime names (a GPU row where there is one),
    read when the tests are collected."""
    if "threads" in metafunc.fixturenames:
        counts = thread_counts(metafunc.config.getoption("r8_bench_threads"))
        metafunc.parametrize("threads", counts, ids=lambda t: f"t{t}")
    if "name" in metafunc.fixturenames:
        import torch

        metafunc.parametrize("name", runtime_names(torch.cuda.is_available()))


@pytest.fixture(scope="session")
def runtime_table(r8_model, r8_data, r8_calibration, r8_int8_rows):
    """Measures every default int8 config once, to pick the best ones to benchmark (the model of
    ``--r8-model``, default the MLPerf Tiny ResNet8)."""
    rows = {}
    for b in ("ort", "torch", "tflite", "litert", "executorch"):
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


@pytest.fixture(scope="session")
def block_medians():
    """(runtime, batch) -> {threads: median seconds}, filled by test_inference: what the paired
    comparisons pick their runtimes and thread counts by."""
    return {}


@pytest.mark.benchmark  # on the function, so a module that imports it (suite/test_benchmark.py) keeps it
@pytest.mark.parametrize("batch", BATCHES, ids=lambda b: f"bs{b}")
def test_inference(benchmark, name, batch, threads, runtime_table, loaded, block_medians, r8_model, r8_data, request):
    if name not in runtime_table:
        pytest.skip(f"{name}: not a runtime of {r8_model.stem} on {r8_data.name} (its backend cannot take the model, "
                    "no published reference file, "
                    "or float data where the runtime takes uint8 pixels)")
    only = fixed_threads(name, request.config.getoption("r8_bench_threads"))
    if only is not None and threads != only:
        pytest.skip(f"{name}: its thread pool is fixed once started (measured at {only} threads only)")
    runner, info = loaded(name, threads)
    images = r8_data.test.images[:batch]
    benchmark.extra_info.update(info, batch=batch, threads=threads)
    rounds = 300 if batch == 1 else 30
    out = benchmark.pedantic(runner.predict, args=(images,), rounds=rounds, warmup_rounds=rounds // 10,
                             iterations=1)
    assert out.shape == (batch, 1 if info["precision"] == "overhead" else r8_model.num_classes)
    if benchmark.stats:  # None under --benchmark-disable
        block_medians.setdefault((name, batch), {})[threads] = benchmark.stats.stats.median


@pytest.mark.benchmark
@pytest.mark.parametrize("batch", BATCHES, ids=lambda b: f"bs{b}")
@pytest.mark.parametrize("kind", COMPARISONS)
def test_paired(benchmark, kind, batch, runtime_table, loaded, block_medians, r8_thresholds, r8_data, request):
    """The candidates of one comparison ranked in paired rounds (r8.runtimes.ranking), each at its
    faster thread count; the winner then against the published file (or, for ``vs-fastest``, against
    each runtime outside the contenders, admitting one that beats it: ``rank_all``). The ranking and
    every comparison go to ``extra_info``; pytest-benchmark's own figure here is the time they took."""
    faster = {n: min(t.items(), key=lambda kv: kv[1]) for (n, b), t in block_medians.items() if b == batch}
    if "torch" not in faster:  # the fp32 model the drops are taken from
        pytest.skip(f"no block timings at batch {batch}: test_paired runs after test_inference in the same session")
    fp32_top1 = loaded("torch", faster["torch"][0])[1]["top1"]
    drops = {n: (fp32_top1 - loaded(n, t)[1].get("top1", fp32_top1)) * 100 for n, (t, _) in faster.items()}
    seconds = {n: s for n, (_, s) in faster.items()}
    names, reference = candidates(kind, runtime_table, seconds, drops, r8_thresholds.best_drop_pp)
    if not names:
        pytest.skip(f"{kind}: nothing to compare for this model (no published reference file, or no int8 runtime "
                    f"within {r8_thresholds.best_drop_pp} pp)")
    images, cap_s = r8_data.test.images[:batch], request.config.getoption("r8_bench_cap_s")

    def call(n):
        return n, partial(loaded(n, faster[n][0])[0].predict, images)

    def run():
        calls = dict(call(n) for n in names)
        if reference is None:  # vs-fastest: the winner also meets every runtime outside the contenders
            ranking, rest = rank_all(batch, calls, seconds, COMPARISONS[kind], cap_s=cap_s)
            winner, after = ranking.order()[0], [(kind, c) for c in rest]
        else:
            ranking = rank(batch, calls, seconds, cap_s=cap_s)
            winner = ranking.order()[0]
            after = [(kind, compare(COMPARISONS[kind], batch, call(winner), call(reference), cap_s=cap_s))]
        if kind == "int8-vs-reference" and EXECUTORCH in faster and winner != EXECUTORCH:
            after.append((VS_EXECUTORCH[0], compare(VS_EXECUTORCH[1], batch, call(winner), call(EXECUTORCH), cap_s=cap_s)))
        return ranking, after
    ranking, after = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(kind=kind, batch=batch, ranking=ranking.as_dict(), comparisons=[
        {"kind": k, **c.as_dict(), "threads": [faster[c.a][0], faster[c.b][0]]} for k, c in after])
    assert all(c.verdict in VERDICTS for c in (*ranking.comparisons, *(c for _, c in after)))
