"""The benchmark's model facts and report (fast; the timings themselves are in test_benchmark.py)."""

import json

import numpy as np
import pytest

from r8.bench import macs_per_image
from r8.report import write_benchmark_report


def test_macs_match_the_keras_graph(keras_runner, torch_model, report):
    """MACs counted on the torch model equal those from the Keras layers' own shapes."""
    expected = 0
    for layer in keras_runner.model.layers:
        kind = type(layer).__name__
        if kind == "Conv2D":
            h, w, cin, cout = layer.kernel.shape
            _, oh, ow, _ = layer.output.shape
            expected += oh * ow * h * w * cin * cout
        elif kind == "Dense":
            expected += layer.kernel.shape[0] * layer.kernel.shape[1]
    macs = macs_per_image(torch_model)
    report("MACs per image", f"{macs:,}")
    assert macs == expected


def _fake_results(rng):
    runtimes = [("keras", "fp32", 70e-3, 13e-3, 0.8719), ("onnxruntime", "fp32", 20e-3, 0.1e-3, 0.8719),
                ("onnxruntime-int8-qop", "int8", 10e-3, 0.09e-3, 0.8713),
                ("torch-int8", "int8", 9e-3, 0.3e-3, 0.8690),  # faster, but drops 0.29 pp
                ("tflite-reference", "fp32", 21e-3, 0.07e-3, 0.8719),
                ("tflite-reference-int8", "int8", 6e-3, 0.04e-3, 0.8697)]
    benchmarks = []
    for name, precision, t256, t1, top1 in runtimes:
        info = {"runtime": name, "precision": precision, "config": "", "top1": top1, "size_bytes": 1000,
                "per_class": rng.uniform(0.7, 0.95, 10).tolist(),
                "confusion": rng.integers(0, 100, (10, 10)).tolist()}
        benchmarks += [{"extra_info": {**info, "batch": 256}, "stats": {"median": t256}},
                       {"extra_info": {**info, "batch": 1}, "stats": {"median": t1}}]
    return {"benchmarks": benchmarks}


def test_benchmark_report_contract(tmp_path, rng):
    report = write_benchmark_report(_fake_results(rng), 2, 12_500_000, 0.8719, 0.2, tmp_path)
    saved = json.loads((tmp_path / "benchmark.json").read_text())
    assert saved == json.loads(json.dumps(report)) and saved["threads"] == 2
    rows = {r["runtime"]: r for r in saved["rows"]}
    for r in saved["rows"]:
        assert {"runtime", "precision", "img_per_s_bs256", "ms_bs1", "top1"} <= set(r)
    assert rows["onnxruntime"]["img_per_s_bs256"] == pytest.approx(256 / 20e-3)
    assert rows["onnxruntime"]["ms_bs1"] == pytest.approx(0.1)
    assert rows["onnxruntime"]["gmacs_per_s"] == pytest.approx(256 / 20e-3 * 12.5e6 / 1e9)
    md = (tmp_path / "benchmark.md").read_text()
    # the best int8 must respect the 0.2 pp drop bound: torch-int8 is faster but drops 0.29 pp
    assert "best int8 within 0.2 pp (onnxruntime-int8-qop" in md
    assert "2.00x (target >= 2x)" in md
    for png in ("accuracy_vs_throughput.png", "per_class.png", "confusion_best_int8.png"):
        assert (tmp_path / png).stat().st_size > 10_000 and f"]({png})" in md
