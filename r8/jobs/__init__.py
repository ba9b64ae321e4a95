"""The jobs behind ``python -m r8``'s commands (``quantize``, ``study``; ``benchmark`` runs
the suite's pytest-benchmark module), one module each, for any model and data set. A job takes a model, a data
set and thresholds as values and writes its reports; it may import every layer below it (core
values, front-ends, backends, runtimes, reports), and nothing imports it but the CLI and the
pytest plugin."""
