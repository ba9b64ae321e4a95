"""r8's CPU inference benchmarks (:mod:`r8.jobs.benchmark_suite`; opt-in: `pytest -m benchmark`, or `nox -s
benchmark`), on the models of ``--r8-model`` (default: the MLPerf Tiny IC01 ResNet8)."""

from r8.jobs.benchmark_suite import block_medians, loaded, pytest_generate_tests, runtime_table, test_inference  # noqa: F401
