"""``python -m r8 report merge``: shards' reports as one reports root with one index. A row or a
gate seen once, or twice with the same numbers, merges; twice with other numbers, it is refused by
name; the figures of the pytest plugin merge the same way."""

import json
from dataclasses import replace

import pytest

from r8.cli import main
from r8.core.errors import R8Error
from r8.report.merge import failed_tests, merge_reports, summary
from r8.report.quantization import write_quantization_report
from r8.results import QuantizeResult
from r8.rows import Int8Row
from r8.thresholds import at_least, at_most

ENV = {"cpu": "a CPU", "isa": ["avx2"], "cores": 2, "threads": 1, "versions": {}}


def _row(config_id: str, drop: float, env=ENV, artifact="a.onnx", quantize_s=1.0) -> Int8Row:
    return Int8Row("ort", top1=0.87 - drop / 100, drop_pp=drop, drop_ci95_pp=(drop - 0.2, drop + 0.2), mcnemar_p=0.5,
                   discordant=(3, 1), per_class=(0.9,) * 10, subsets={}, size_bytes=90_000, artifact=artifact, env=env,
                   config_id=config_id, calibration="train", artifact_digest=config_id, quantize_s=quantize_s)


def _shard(root, stem: str, rows, gates=(), measured=None):
    result = QuantizeResult(model={"stem": stem, "file": f"{stem}.h5"}, data={"name": "cifar10", "test": 10000},
                            fp32_top1=0.87, classes=[str(c) for c in range(10)], rows=list(rows), gates=list(gates),
                            calibration={"n": 1000, "source": "train", "seed": 0, "overlaps_test_set": False})
    write_quantization_report(result, root / stem)
    if measured:
        (root / "measured.json").write_text(json.dumps(measured))
    return root


def test_three_shards_merge_into_one_index(tmp_path):
    a = _shard(tmp_path / "a", "ic01", [_row("c1", 0.1)], [at_least("fp32 top-1", 0.87, 0.85)], {"ic01: fp32": "87.00%"})
    # the same row again, built elsewhere (another runner's path, time and CPU): the same measurement
    b = _shard(tmp_path / "b", "ic01", [_row("c1", 0.1, env={**ENV, "cpu": "another"}, artifact="/x/a.onnx", quantize_s=9.0),
                                        _row("c2", 0.3)], [at_most("int8 drop pp ort-c2-train", 0.3, 5.0)])
    c = _shard(tmp_path / "c", "digits", [_row("c1", 0.5)], measured={"digits: fp32": "97.0%"})
    page = merge_reports([a, b, c], tmp_path / "merged")
    ic01 = QuantizeResult.from_json(json.loads((tmp_path / "merged" / "ic01" / "quantization.json").read_text()))
    assert sorted(r.config for r in ic01.rows) == ["c1-train", "c2-train"] and len(ic01.gates) == 2
    assert json.loads((tmp_path / "merged" / "measured.json").read_text()) == {"ic01: fp32": "87.00%", "digits: fp32": "97.0%"}
    index = page.with_suffix(".md").read_text()
    assert "| ic01 |" in index and "| digits |" in index


def test_another_report_merges_when_it_says_the_same_and_is_refused_when_not(tmp_path):
    conversion = {"model": {"stem": "ic01", "file": "ic01.h5"}, "data": {"name": "cifar10", "test": 10000}, "n": 10000,
                  "classes": [str(c) for c in range(10)], "keras_top1": 0.87, "keras_per_class": [0.87] * 10,
                  "torch_per_class": [0.87] * 10, "max_abs_diff": 3e-6, "agreement": 1.0, "command": "python -m r8 quantize"}
    shards = []
    for name, generated, top1 in (("a", "2026-12-06T10:00:00", 0.87), ("b", "2026-12-06T11:00:00", 0.87),
                                  ("c", "2026-12-06T12:00:00", 0.86)):
        shard = _shard(tmp_path / name, "ic01", [_row("c1", 0.1)])
        (shard / "ic01" / "conversion.json").write_text(json.dumps({**conversion, "generated": generated, "torch_top1": top1}))
        shards.append(shard)
    merge_reports(shards[:2], tmp_path / "merged")  # only the stamp differs
    assert json.loads((tmp_path / "merged" / "ic01" / "conversion.json").read_text())["generated"] == "2026-12-06T10:00:00"
    with pytest.raises(R8Error, match="ic01/conversion.json differs between .*a and .*c"):
        merge_reports([shards[0], shards[2]], tmp_path / "merged2")


def test_a_row_measured_twice_with_other_numbers_is_refused_by_name(tmp_path):
    a = _shard(tmp_path / "a", "ic01", [_row("c1", 0.1)])
    b = _shard(tmp_path / "b", "ic01", [_row("c1", 0.2)])
    with pytest.raises(R8Error, match="ic01: row 'int8 ort c1-train' was measured differently in .*a and .*b"):
        merge_reports([a, b], tmp_path / "merged")


def test_a_gate_or_figure_measured_twice_with_other_values_is_refused(tmp_path):
    gate = at_least("fp32 top-1", 0.87, 0.85)
    a = _shard(tmp_path / "a", "ic01", [], [gate], {"ic01: fp32": "87.00%"})
    b = _shard(tmp_path / "b", "ic01", [], [replace(gate, measured=0.86)])
    with pytest.raises(R8Error, match="gate 'fp32 top-1' was measured differently"):
        merge_reports([a, b], tmp_path / "merged")
    c = _shard(tmp_path / "c", "ic01", [], [gate], {"ic01: fp32": "86.00%"})
    with pytest.raises(R8Error, match="figure 'ic01: fp32' was measured differently"):
        merge_reports([a, c], tmp_path / "merged2")


def test_the_command_merges_and_refuses_a_missing_folder(tmp_path, capsys):
    a = _shard(tmp_path / "a", "ic01", [_row("c1", 0.1)])
    assert main(["report", "merge", str(a), "--out", str(tmp_path / "merged")]) == 0
    assert "open" in capsys.readouterr().out and (tmp_path / "merged" / "index.html").is_file()
    assert main(["report", "merge", str(tmp_path / "nothing"), "--out", str(tmp_path / "m2")]) == 2
    assert "nothing: no such reports folder" in capsys.readouterr().err


JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="2">
<testcase classname="suite.test_a" name="test_{0}_one" time="1.0"/>
<testcase classname="suite.test_a" name="test_{0}_two" time="2.0">{1}</testcase>
</testsuite></testsuites>"""


def test_junit_files_merge_and_the_summary_names_each_failure_first(tmp_path):
    shards = []
    for name, two in (("a", ""), ("b", '<failure message="ic01: gate \'fp32 top-1 torch\' failed&#10;more">trace</failure>')):
        (tmp_path / name / "junit").mkdir(parents=True)
        (tmp_path / name / "junit" / "gate.xml").write_text(JUNIT.format(name, two))
        shards.append(tmp_path / name)
    assert main(["report", "merge", *map(str, shards), "--out", str(tmp_path / "merged")]) == 0
    merged = tmp_path / "merged" / "junit" / "gate.xml"
    assert failed_tests(merged) == [("suite.test_a::test_b_two", "ic01: gate 'fp32 top-1 torch' failed")]
    text = summary(tmp_path / "merged")
    assert text.startswith("## Gate: FAILED (1 of 4 tests failed)")
    assert "- `suite.test_a::test_b_two`: ic01: gate 'fp32 top-1 torch' failed\n" in text


def test_a_damaged_junit_file_is_refused_by_name(tmp_path):
    (tmp_path / "a" / "junit").mkdir(parents=True)
    (tmp_path / "a" / "junit" / "gate.xml").write_text("<testsuites><testsuite>")
    with pytest.raises(R8Error, match=r"gate.xml: not a readable JUnit file"):
        merge_reports([tmp_path / "a"], tmp_path / "merged")
