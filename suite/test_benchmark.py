"""r8's CPU inference benchmarks (:mod:`r8.benchmarks`; opt-in: `pytest -m benchmark`, or `nox -s
benchmark`), on the models of ``--r8-model`` (default: the MLPerf Tiny IC01 ResNet8)."""

from r8.benchmarks import loaded, runtime_table, test_inference  # noqa: F401
