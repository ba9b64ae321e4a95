"""Each job's typed result is written as its JSON file and read back whole: ``from_json`` of
``to_json`` gives the same value, and a file that lacks a field is refused by name."""

import json

import pytest

from r8.core.errors import R8Error
from r8.results import (
    BenchmarkResult,
    BenchmarkRow,
    McuResult,
    QuantizeResult,
    SearchResult,
    SearchRow,
    Sensitivity,
    Step,
    StudyResult,
    StudyRun,
    StudySummary,
)
from r8.rows import Int8Row, ReferenceRow
from r8.thresholds import at_least, at_most

ABOUT = {"model": {"stem": "m", "file": "m.h5", "sha256": "0" * 64, "input_shape": [32, 32, 3], "classes": 10},
         "data": {"name": "cifar10", "sha256": "1" * 64, "test": 10000, "train": 50000}}
ENV = {"cpu": "a CPU", "isa": ["avx2"], "cores": 2, "threads": 1, "versions": {}}


def _row(kind=Int8Row, **extra):
    base = dict(backend="ort", top1=0.86, drop_pp=0.1, drop_ci95_pp=(0.0, 0.2), mcnemar_p=0.5, discordant=(12, 2),
                per_class=(0.9,) * 10, subsets={"perf200": 0.85}, size_bytes=90_000, artifact="a.onnx", env=ENV)
    return kind(**base, **extra)


def results():
    step = Step(("conv1",), 0.1, (0.0, 0.2))
    search_row = SearchRow("ort", "qdq", 0.3, True, ("conv1",), 0.04, 0.86, 0.1, (0.0, 0.2), 0.1, (0.0, 0.2), (step,),
                           (Sensitivity(("conv1",), 1000, 30.5, 0.1, (0.0, 0.2)),), "m.onnx", {"mixed": {"ms_bs1": 1.0}})
    bench_row = BenchmarkRow("onnxruntime", "fp32", 0.5, 4000.0, "", 0.87, 300_000, "m.onnx", False, {"bs1": 1, "bs256": 2},
                             {"1": {"ms_bs1": 0.5}}, drop_pp=0.0, gmacs_per_s=50.0, peak_share=0.3)
    return [
        QuantizeResult(**ABOUT, fp32_top1=0.87, classes=["a"] * 10,
                       rows=[_row(config_id="qdq", calibration="train", artifact_digest="d"), _row(ReferenceRow)],
                       gates=[at_least("fp32 top-1", 0.87, 0.85), at_most("best int8 drop pp ort", 0.3, 0.2, "a reason")],
                       notes={"onnx2torch_float_ops": {"Add": 3}}, command="python -m r8 quantize", generated="now"),
        StudyResult(**ABOUT, fp32_top1=0.87, sizes=[100], seeds=[0, 1], runs=[StudyRun("ort", "qdq", 100, 0, 0.86, 0.1, 1.0, 2.0)],
                    summary=[StudySummary("ort", "qdq", 100, 2, 0.1, 0.05, 0.0, 0.2)]),
        SearchResult(**ABOUT, budget_pp=0.3, validation={"n": 5000, "source": "train"}, test_n=10000, fp32_top1=0.87,
                     macs={"conv1": 1000}, speed_rounds={"1": 30}, rows=[search_row]),
        BenchmarkResult(**ABOUT, threads=2, runs=1, macs_per_image=12_500_000, fp32_top1=0.87, best_drop_pp=0.2,
                        rows=[bench_row]),
        McuResult(**ABOUT, rows=[]),
    ]


@pytest.mark.parametrize("result", results(), ids=lambda r: type(r).__name__)
def test_a_result_reads_its_own_file_back(result):
    written = json.loads(json.dumps(result.to_json()))
    again = type(result).from_json(written)
    assert json.loads(json.dumps(again.to_json())) == written
    assert type(again.rows[0] if getattr(again, "rows", None) else again) is not dict


def test_the_quantize_result_keeps_its_typed_parts_and_notes():
    result = results()[0]
    again = QuantizeResult.from_json(json.loads(json.dumps(result.to_json())))
    assert again.rows == result.rows and again.gates == result.gates and again.notes == result.notes
    assert [g.failed for g in again.gates] == [False, False] and again.gates[1].verdict.startswith("not met on this CPU")


def test_a_file_lacking_a_field_is_refused_by_name():
    row = results()[2].rows[0].to_json()
    del row["met"]
    with pytest.raises(R8Error, match="a search row lacks met"):
        SearchRow.from_json(row)
