"""The benchmark's model facts and report (fast; the timings themselves are in test_benchmark.py)."""

import json

import pytest

from r8.jobs.benchmark import macs_per_image
from r8.report.benchmark import write_benchmark_report


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
                "reference": name.startswith("tflite-reference"),  # the published files the targets compare with
                "per_class": rng.uniform(0.7, 0.95, 10).tolist(),
                "confusion": rng.integers(0, 100, (10, 10)).tolist()}
        for threads, slower in ((1, 1.5), (2, 1.0)):  # 2 threads faster at bs256, 1 thread faster at bs1
            benchmarks += [{"extra_info": {**info, "batch": 256, "threads": threads}, "stats": {"median": t256 * slower, "iqr": 1e-4}},
                           {"extra_info": {**info, "batch": 1, "threads": threads}, "stats": {"median": t1 / slower, "iqr": 1e-5}}]
    # test_paired's entries: int8 at bs256 leads by 1.2x, but its interval reaches down to 1.1 (< the 1.15 goal);
    # fp32 at bs256 leads with its whole interval above 1.0
    for kind, a, b, ratio, ci in (("int8-vs-reference", "onnxruntime-int8-qop", "tflite-reference-int8", 1.2, [1.1, 1.3]),
                                  ("fp32-vs-reference", "onnxruntime", "tflite-reference", 1.05, [1.02, 1.08]),
                                  ("int8-vs-executorch", "onnxruntime-int8-qop", "executorch-int8", 1.5, [1.4, 1.6])):
        comparison = {"kind": kind, "name": kind, "batch": 256, "a": a, "b": b, "ratio": ratio, "ci95": ci,
                      "verdict": "faster", "rounds": 40, "stopped_by": "interval excludes 1.0",
                      "round_ratios": rng.normal(ratio, 0.05, 40).tolist(), "threads": [2, 2]}
        benchmarks.append({"extra_info": {"kind": kind, "batch": 256, "comparisons": [comparison]}, "stats": {"median": 9.0, "iqr": 0.0}})
    # test_paired's rankings: paired rounds name another winner than the unpaired medians would at batch 1
    # (tflite-reference-int8's block median is the lowest there), and a tie at batch 256
    for batch, fastest in ((1, ["onnxruntime-int8-qop"]), (256, ["onnxruntime-int8-qop", "tflite-reference-int8"])):
        pair = {"name": f"ranking at batch {batch}", "batch": batch, "a": "onnxruntime-int8-qop", "b": "tflite-reference-int8",
                "ratio": 1.4 if batch == 1 else 1.0, "ci95": [1.3, 1.5] if batch == 1 else [0.98, 1.02],
                "verdict": "faster" if batch == 1 else "no significant difference", "rounds": 30,
                "stopped_by": "interval excludes 1.0", "round_ratios": [1.0] * 30}
        ranking = {"batch": batch, "contenders": ["tflite-reference-int8", "onnxruntime-int8-qop"], "fastest": fastest,
                   "tie": len(fastest) > 1, "order": fastest, "verdict": "", "comparisons": [pair]}
        benchmarks.append({"extra_info": {"kind": "vs-fastest", "batch": batch, "ranking": ranking, "comparisons": []},
                           "stats": {"median": 9.0, "iqr": 0.0}})
    return {"benchmarks": benchmarks}


def test_the_winner_is_named_by_paired_rounds_not_by_medians(tmp_path, rng):
    from r8.report.index import write_index

    result = write_benchmark_report([_fake_results(rng)], 2, 12_500_000, 0.8719, 0.2, tmp_path / "resnet8",
                                    ({"fp32": 150.0, "int8": 600.0},) * 2, about={"model": {"stem": "resnet8"}})
    unpaired = min((r for r in result.rows if r.precision != "overhead"), key=lambda r: r.ms_bs1).runtime
    assert unpaired == "tflite-reference-int8"  # the premise: the medians alone would name this one
    md = (tmp_path / "resnet8" / "benchmark.md").read_text()
    assert md.index("# Fastest, by paired rounds") < md.index("# Targets") < md.index("# Runtimes")  # the verdict first
    assert "The fastest runtime at batch 1: run 1: onnxruntime-int8-qop (of 2 contender(s))" in md
    assert "The fastest runtime at batch 256: run 1: a tie of onnxruntime-int8-qop, tflite-reference-int8" in md
    assert "ExecuTorch int8 against r8's fastest int8 at batch 256: run 1: onnxruntime-int8-qop 1.50x [1.40, 1.60] faster" in md
    assert any(c["kind"] == "vs-fastest ranking" for c in result.comparisons)
    index, _ = write_index(tmp_path)
    assert "| onnxruntime-int8-qop | onnxruntime-int8-qop = tflite-reference-int8 |" in index.read_text()


def test_benchmark_report_contract(tmp_path, rng):
    slow_run = _fake_results(rng)
    for b in slow_run["benchmarks"]:  # a second run, everything twice as slow; a third as the first
        b["stats"] = {"median": b["stats"]["median"] * 2, "iqr": b["stats"]["iqr"]}
    report = write_benchmark_report([_fake_results(rng), slow_run, _fake_results(rng)], 2, 12_500_000, 0.8719, 0.2,
                                    tmp_path, ({"fp32": 150.0, "int8": 600.0}, {"fp32": 150.0, "int8": 450.0}))
    saved = json.loads((tmp_path / "benchmark.json").read_text())
    assert saved == json.loads(json.dumps(report.to_json())) and report.threads == 2 and report.runs == 3
    assert json.loads(json.dumps(type(report).from_json(saved).to_json())) == saved  # read back whole
    rows = {r["runtime"]: r for r in saved["rows"]}
    for r in saved["rows"]:
        assert {"runtime", "precision", "img_per_s_bs256", "ms_bs1", "top1", "threads", "iqr_ms_bs1", "by_threads"} <= set(r)
    assert rows["onnxruntime"]["img_per_s_bs256"] == pytest.approx(256 / 20e-3)  # the median of 3 runs
    assert rows["onnxruntime"]["img_per_s_bs256_runs"] == pytest.approx([256 / 20e-3, 128 / 20e-3, 256 / 20e-3])
    assert rows["onnxruntime"]["ms_bs1"] == pytest.approx(0.1 / 1.5) and rows["onnxruntime"]["threads"] == {"bs1": 1, "bs256": 2}
    assert rows["onnxruntime"]["gmacs_per_s"] == pytest.approx(256 / 20e-3 * 12.5e6 / 1e9)
    md = (tmp_path / "benchmark.md").read_text()
    targets = {(t["precision"], t["batch"]): t for t in saved["targets"]}
    int8, fp32 = targets["int8", "bs256"], targets["fp32", "bs256"]
    assert int8["ratios"] == [1.2] * 3 and int8["rounds"] == [40] * 3 and int8["met"] is False  # 1.2x, but its lower bound 1.1
    assert fp32["met"] is True and targets["fp32", "bs1"]["met"] is None  # no paired comparison: no verdict
    # the per-block medians of the same runs, beside: the best int8 within the 0.2 pp bound (torch-int8 drops 0.29 pp)
    assert int8["block_ratios"] == pytest.approx([6e-3 / 10e-3] * 3)
    assert md.index("# Targets") < md.index("# Runtimes")  # the verdict first
    assert "target >= 1.15x on the interval's lower bound: **NOT met**" in md and "1.20x [1.10, 1.30] faster, 40 rounds" in md
    assert {"run", "kind", "name", "batch", "a", "b", "ratio", "ci95", "verdict", "rounds", "stopped_by"} <= set(
        saved["comparisons"][0]) and len(saved["comparisons"]) == 15 and "round_ratios" not in saved["comparisons"][0]
    assert sum(c["kind"] == "vs-fastest ranking" for c in saved["comparisons"]) == 6 and len(saved["rankings"]) == 6
    assert saved["peaks_drift"] and "int8 600 / 450 GMAC/s" in md and "differ by more than 10%" in md
    assert rows["onnxruntime-int8-qop"]["peak_share"] == pytest.approx(256 / 10e-3 * 12.5e6 / 1e9 / 525)
    for png in ("accuracy_vs_throughput.png", "per_class.png", "confusion_best_int8.png", "paired_ratios.png"):
        assert (tmp_path / png).stat().st_size > 10_000 and f"]({png})" in md


def test_the_per_op_profiles_line_up_by_op_kind(tmp_path, rng):
    from r8.runtimes.profile import OpTime, Profile

    def made(file, engine, ops, bare, runner):
        return Profile(file, engine, 1, 1, tuple(OpTime(i, op, (1, 10), us) for i, (op, us) in enumerate(ops)), bare, runner)

    ours = made("qop.onnx", "onnxruntime", [("QLinearConv", 30.0), ("QLinearConv", 20.0), ("QLinearAdd", 4.0)], 60.0, 90.0)
    published = made("ref.tflite", "litert", [("CONV_2D", 40.0), ("CONV_2D", 25.0), ("ADD", 3.0), ("SOFTMAX", 1.0)], 75.0, 85.0)
    profiles = [{"batch": 1, "role": "r8's fastest int8", "runtime": "onnxruntime-int8-qop", "threads": 1, **ours.as_dict()},
                {"batch": 1, "role": "published int8", "runtime": "tflite-reference-int8", "threads": 1, **published.as_dict()},
                {"batch": 256, "role": "r8's fastest int8", "runtime": "openvino-int8-qdq", "threads": 2,
                 "none": "no per-op profiler for openvino-int8-qdq"}]
    result = write_benchmark_report([_fake_results(rng)], 2, 12_500_000, 0.8719, 0.2, tmp_path, profiles=profiles)
    md = (tmp_path / "benchmark.md").read_text()
    assert md.index("# Fastest, by paired rounds") < md.index("# Per-op profile")
    assert "| conv | 2 ops, 50.0 | 2 ops, 65.0 |" in md and "| softmax | - | 1 ops, 1.0 |" in md
    assert "| runner's overhead | 30.0 | 10.0 |" in md and "no per-op profiler for openvino-int8-qdq." in md
    assert Profile.from_dict(result.profiles[1]) == published
