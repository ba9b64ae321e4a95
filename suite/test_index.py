"""The report a person opens first (index.md / index.html), CI step summaries and JUnit XML."""

import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from r8.report.benchmark import write_benchmark_report
from r8.report.files import append_step_summary
from r8.report.index import write_index
from r8.report.quantization import write_quantization_report
from r8.results import QuantizeResult
from r8.rows import Int8Row
from r8.thresholds import at_least

ROOT = Path(__file__).resolve().parent.parent


def _figure(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [1, 0])
    fig.savefig(path)
    plt.close(fig)


def _model_reports(root: Path, stem: str, fp32: float, rng) -> None:
    """One model's folder as the quantize and study jobs leave it (the benchmark not run yet)."""
    out = root / stem
    out.mkdir()
    per_class = rng.uniform(0.7, 0.95, 10).tolist()
    about = {"model": {"stem": stem, "file": f"{stem}.h5"}, "data": {"name": "cifar10", "test": 10000}}
    (out / "conversion.json").write_text(json.dumps({
        **about, "n": 10000, "classes": [f"class{c}" for c in range(10)], "keras_top1": fp32, "torch_top1": fp32,
        "keras_per_class": per_class, "torch_per_class": per_class, "max_abs_diff": 3e-6, "agreement": 1.0,
        "command": "python -m r8 quantize", "generated": "2026-11-27T12:00:00+00:00"}))
    env = {"cpu": "a CPU", "isa": ["avx2"], "cores": 2, "threads": 1, "versions": {"onnxruntime": "1"}}
    rows = [Int8Row("ort", top1=fp32 - i / 1000, drop_pp=0.1 * i, drop_ci95_pp=(0, 0.2 * i + 0.1), mcnemar_p=0.5,
                    discordant=(i, 0), per_class=tuple(per_class), subsets={}, size_bytes=90_000, artifact=f"c{i}.onnx",
                    env=env, config_id=f"c{i}", calibration="train", artifact_digest=str(i)) for i in range(3)]
    write_quantization_report(QuantizeResult(
        **about, fp32_top1=fp32, classes=[f"class{c}" for c in range(10)], rows=rows,
        gates=[at_least("fp32 top-1", fp32, 0.85)],
        calibration={"n": 1000, "source": "train", "seed": 0, "overlaps_test_set": False},
        figures={"Sample predictions": "samples_best_int8.png", "SQNR": "sqnr_layers.png"}), out)
    (out / "study.json").write_text(json.dumps({
        **about, "fp32_top1": fp32, "seeds": [0, 1], "summary": [
            {"backend": "ort", "config": "c0", "n": 100, "mean_drop_pp": 0.1, "std_drop_pp": 0.05,
             "min_drop_pp": 0.0, "max_drop_pp": 0.2}]}))
    for name in ("samples_best_int8.png", "sqnr_layers.png", "study.png"):
        _figure(out / name)


@pytest.fixture
def reports(tmp_path, rng):
    """A reports root holding two models' reports."""
    _model_reports(tmp_path, "resnet8", 0.8719, rng)
    _model_reports(tmp_path, "small_cnn", 0.6500, rng)
    return tmp_path


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.tables, self.text, self.links, self.ids = [], [], [], [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "a":
            self.links.append(attrs["href"])
        if tag == "img":
            self.images.append(attrs)
        elif tag == "table":
            self.tables.append(0)
        elif tag == "tr" and self.tables:
            self.tables[-1] += 1

    def handle_data(self, data):
        self.text.append(data)


def test_index_gathers_every_report(reports):
    md, page = write_index(reports)
    parsed = Page()
    parsed.feed(page.read_text())
    text = " ".join(parsed.text)
    assert {img["data-file"] for img in parsed.images} == {f"{m}/{f}" for m in ("resnet8", "small_cnn")
                                                           for f in ("samples_best_int8.png", "sqnr_layers.png", "study.png")}
    assert all(img["src"].startswith("data:image/png;base64,") and len(img["src"]) > 1000 for img in parsed.images)
    # header + rows: the models side by side, then per model conversion (all + 10 classes), int8 rows, gates,
    # where they were measured, study
    assert parsed.tables == [1 + 2] + [1 + 11, 1 + 3, 1 + 1, 1 + 1, 1 + 1] * 2
    assert parsed.links == ["#model-resnet8", "#model-small-cnn"] and {link[1:] for link in parsed.links} <= parsed.ids
    assert "87.19%" in text and "65.00%" in text and "1/1" in text and "0/1" in text  # fp32 and gates per model
    assert "Not run yet" in text and "python -m r8 benchmark" in text  # the benchmark section
    assert "Made by python -m r8 quantize at 2026-11-27T12:00:00+00:00" in " ".join(text.split())  # <code> in HTML
    assert "http" not in page.read_text()  # self-contained: nothing fetched from a network
    assert "![SQNR](small_cnn/sqnr_layers.png)" in md.read_text()


def test_no_markdown_is_left_in_the_html(reports, rng):
    """Emphasis and code are marks of the block model that each renderer renders its way: the
    Markdown keeps ``**`` and backticks, the HTML of every report (conversion, int8, study,
    benchmark) has tags instead and none left in its text."""
    from test_bench_report import _fake_results

    write_benchmark_report([_fake_results(rng)], 2, 12_500_000, 0.8719, 0.2, reports / "resnet8", ({"fp32": 150.0, "int8": 600.0},) * 2)
    md, page = write_index(reports)
    parsed = Page()
    parsed.feed(page.read_text())
    text = " ".join(parsed.text)
    assert "**" in md.read_text() and "`" in md.read_text()
    assert "**" not in text and "`" not in text
    assert "<strong>" in page.read_text() and "<code>" in page.read_text() and "CPU inference benchmark" in text


def test_index_and_a_models_report_render_the_same_blocks(reports):
    """One report model: the index's int8 section is the model's quantization.md, its headings two
    levels deeper and its figures seen from the reports root."""
    md, _ = write_index(reports)
    own = (reports / "small_cnn" / "quantization.md").read_text()
    body = own.split("\n", 2)[2]  # without its title line
    assert "## Gates" in body and "| ort | c2-train | 64.80% |" in body
    nested = body.replace("\n## ", "\n#### ").replace("](", "](small_cnn/")
    assert nested in md.read_text()


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")),
                    reason="Chromium is not installed (apt-get install chromium)")
def test_index_renders_in_headless_chromium(reports, tmp_path):
    _, page = write_index(reports)
    shot = tmp_path / "shot.png"
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    "--window-size=1200,2400", page.as_uri()], check=True, capture_output=True, timeout=120)
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (2400, 1200) and np.std(pixels) > 0.05  # not a blank page


def test_step_summary_appends(tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    append_step_summary("| a |\n|---|\n| 1 |")
    append_step_summary("## second")
    assert summary.read_text() == "| a |\n|---|\n| 1 |\n\n## second\n\n"


def test_junitxml_keeps_the_suite_ids(tmp_path):
    xml = tmp_path / "junit.xml"
    subprocess.run([sys.executable, "-m", "pytest", "suite/test_metrics.py", "suite/test_convert_models.py",
                    "-k", "counted_by_hand or conv-same-k3-s1", "-p", "no:cacheprovider", f"--junitxml={xml}", "-q"],
                   cwd=ROOT, check=True, capture_output=True)
    import xml.etree.ElementTree as ET

    names = {case.get("name") for case in ET.parse(xml).iter("testcase")}
    assert {"test_parity[keras3-conv-same-k3-s1]", "test_parity[keras2-conv-same-k3-s1]",
            "test_accuracy_counted_by_hand"} <= names


def test_a_report_from_an_older_r8_is_left_out_and_said_once(reports, capsys):
    """A quantization.json whose rows this r8 cannot read: the index leaves it out and warns once
    per rebuild, not once per part of the index that reads it."""
    from r8.report.index import write_index

    path = reports / "small_cnn" / "quantization.json"
    old = json.loads(path.read_text())
    old["rows"][0].pop("kind")
    path.write_text(json.dumps(old))
    capsys.readouterr()
    write_index(reports)
    assert capsys.readouterr().err.count("left out of the index") == 1
