"""r8's GitHub workflow (``.github/workflows/gate.yml``), written for users to copy: actionlint (with
shellcheck for its shell steps) finds nothing in it and does find planted mistakes; its shard count,
the ``--splits`` it passes, the README and the merge step agree; its artifact cache is keyed by r8's
own key; and (``slow``) a gate run as three shards with three caches, then merged, reports what one
process reports."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trained_models
import yaml

from r8.cli import main
from r8.core import paths
from r8.core.cache import ci_key, code_hash

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "gate.yml"
BIN = Path(sys.executable).parent  # where r8[test] installs actionlint and shellcheck


def actionlint(*files: Path) -> subprocess.CompletedProcess:
    assert (BIN / "actionlint").is_file() and (BIN / "shellcheck").is_file(), "pip install 'r8[test]' brings both"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([BIN / "actionlint", "-no-color", *files], capture_output=True, text=True, env=env)


def test_actionlint_finds_nothing_in_the_workflows(report):
    files = sorted(WORKFLOW.parent.glob("*.yml"))
    done = actionlint(*files)
    report("actionlint (with shellcheck) on .github/workflows", f"exit {done.returncode}, "
           f"{len(done.stdout.splitlines())} lines of findings on {len(files)} file(s)")
    assert done.returncode == 0 and files, done.stdout + done.stderr


def test_actionlint_finds_planted_mistakes(tmp_path):
    broken = tmp_path / "gate.yml"
    broken.write_text(WORKFLOW.read_text().replace("matrix.group }}", "matrix.groups }}")
                      .replace('>> "$GITHUB_OUTPUT"', ">> $GITHUB_OUTPUT"))
    done = actionlint(broken)
    assert done.returncode == 1
    assert 'property "groups" is not defined' in done.stdout and "SC2086" in done.stdout, done.stdout


def test_the_shard_count_agrees_everywhere():
    """The matrix, the --splits its gate step passes, the step's name, the merge of the shards'
    artifacts and the README's instructions name one number of shards."""
    gate = yaml.safe_load(WORKFLOW.read_text())["jobs"]["gate"]
    groups = gate["strategy"]["matrix"]["group"]
    n = len(groups)
    assert groups == list(range(1, n + 1))
    step = next(s for s in gate["steps"] if "--splits" in s.get("run", ""))
    assert f"--splits {n} --group ${{{{ matrix.group }}}}" in step["run"] and step["name"].endswith(f"of {n}")
    assert f"{n} shards (`--splits {n} --group k`)" in (ROOT / "README.md").read_text()
    merge = (ROOT / "docs" / "ci.md").read_text()
    assert all(f"shards/gate-{k}" in merge for k in groups) and f"shards/gate-{n + 1}" not in merge


def test_the_cache_key_is_the_code_hash_and_the_model_files(tmp_path, capsys):
    a, b = tmp_path / "a.h5", tmp_path / "b.tflite"
    a.write_bytes(b"one model")
    b.write_bytes(b"another")
    assert ci_key([a]).startswith(code_hash() + "-")
    assert ci_key([a]) != ci_key([b]) and ci_key([a, b]) == ci_key([b, a])
    assert main(["cache", "key", "--model", str(a)]) == 0 and capsys.readouterr().out.strip() == ci_key([a])
    assert main(["cache", "key", "--model", str(tmp_path / "gone.h5")]) == 2
    assert "gone.h5: no such model file" in capsys.readouterr().err
    assert "python -m r8 cache key" in WORKFLOW.read_text()


def _gates(model: Path, data: str, thresholds: list[str], cache: Path, shard: list[str]) -> subprocess.CompletedProcess:
    """The plugin's gates (parity, fp32, an ORT and a LiteRT config) on one model in a fresh process,
    with its own cache, as one shard of a CI run."""
    junit = cache / "reports" / "junit" / f"{model.stem}.xml"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--pyargs", "r8.gates", "-p", "no:cacheprovider", "-m", "accuracy",
         "-k", "parity or fp32_top1 or qdq-u8s8-perchannel-minmax or a8w8-perchannel-minmax",
         "--r8-model", str(model), "--r8-data", data, f"--junitxml={junit}", *thresholds, *shard],
        cwd=cache.parent, capture_output=True, text=True, env={**os.environ, "R8_CACHE_DIR": str(cache)})


def _merged_view(root: Path) -> dict:
    """What a merged reports root says: each model's rows and gates, the figures, each test's id and
    outcome (no child: passed; ``failure``, ``error``, ``skipped``)."""
    import xml.etree.ElementTree as ET
    view = {"figures": json.loads((root / "measured.json").read_text()),
            "tests": sorted((f"{c.get('classname')}::{c.get('name')}", [e.tag for e in c if e.tag != "properties"])
                            for c in ET.parse(root / "junit" / "gate.xml").getroot().iter("testcase"))}
    for q in sorted(root.glob("*/quantization.json")):
        result = json.loads(q.read_text())
        view[q.parent.name] = {"rows": sorted((r["backend"], r["config"], r["top1"], r["drop_pp"]) for r in result["rows"]),
                               "gates": sorted((g["name"], g["measured"], g["passed"]) for g in result["gates"])}
    return view


@pytest.mark.slow
def test_three_shards_merge_into_what_one_process_reports(tmp_path, report):
    """IC01 (CIFAR-10) and the digits model (its own data), each a pytest command: once in one
    process, once as three pytest-split shards, each shard a separate process with its own cache.
    The three shards' reports, merged, give the same rows, gates, figures and tests as one process."""
    digits, digits_data = trained_models.cached("digits")
    models = [(paths.keras_model_path(), "cifar10", []),
              (digits, digits_data, [a.replace("--", "--r8-", 1) if a.startswith("--") else a
                                     for a in trained_models.THRESHOLDS["digits"]])]
    roots = {}
    for run, shards in (("one", [[]]), ("three", [["--splits", "3", "--group", str(k)] for k in (1, 2, 3)])):
        for k, shard in enumerate(shards, 1):
            cache = tmp_path / run / f"shard-{k}" / "cache"
            cache.mkdir(parents=True)
            for model, data, thresholds in models:
                done = _gates(model, data, thresholds, cache, shard)
                assert done.returncode == 0, done.stdout[-3000:]
            roots.setdefault(run, []).append(cache / "reports")
    for run, shard_roots in roots.items():
        assert main(["report", "merge", *map(str, shard_roots), "--out", str(tmp_path / run / "merged")]) == 0
    one, three = (_merged_view(tmp_path / run / "merged") for run in ("one", "three"))
    assert one == three
    assert {paths.keras_model_path().stem, digits.stem} <= one.keys() and len(one["tests"]) >= 8
    report("three shards merged vs one process (IC01 + digits)", f"{len(one['tests'])} tests, "
           + ", ".join(f"{m}: {len(one[m]['rows'])} rows, {len(one[m]['gates'])} gates"
                       for m in (paths.keras_model_path().stem, digits.stem)) + "; identical")
