"""``python -m r8 report merge DIR... --out OUT``: the reports of several shards (CI runners, each
with its own ``reports/`` or ``$R8_CACHE_DIR/reports``) as one reports root with one index, one
JUnit file (``junit/gate.xml``, from each shard's ``junit/*.xml``) and one summary.

A row, a gate or a figure measured in one shard is taken as it is; measured in two shards with the
same numbers, it is taken once; measured twice with different numbers, the merge is refused,
naming it and both shards. Every other report of a model (conversion, study, benchmark, search)
must say the same wherever it appears (when and by which command it was made aside)."""

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

from r8.core.cache import atomic_write
from r8.core.errors import R8Error
from r8.report.index import SOURCES, model_dirs, write_index
from r8.report.quantization import write_quantization_report
from r8.results import QuantizeResult

MEASURED = "measured.json"  # the pytest plugin's figures
JUNIT = "junit"  # pytest's --junitxml files, one folder of them per shard


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise R8Error(f"{path}: not a readable report ({e})") from None


def merged(entries: list[tuple[Path, str, object]], what: str, numbers=lambda value: value) -> dict:
    """(shard, key, value) -> {key: value}, the first shard's value of each key; R8Error naming a key
    whose ``numbers`` differ between two shards."""
    out, seen = {}, {}
    for shard, key, value in entries:
        if key in out and numbers(out[key]) != numbers(value):
            raise R8Error(f"{what} {key!r} was measured differently in {seen[key]} and {shard}: "
                          f"{numbers(out[key])!r} vs {numbers(value)!r}")
        out.setdefault(key, value)
        seen.setdefault(key, shard)
    return out


# What a row's measurement is not: where it ran, where its file lay, how long building it took.
NOT_MEASURED = ("env", "artifact", "calibration_s", "quantize_s", "tflm_s", "file")


def row_key(row) -> str:
    return f"{row.kind} {row.backend} {row.config}"


def row_numbers(row) -> dict:
    return {k: v for k, v in row.to_json().items() if k not in NOT_MEASURED}


def merge_quantization(files: list[tuple[Path, Path]]) -> QuantizeResult:
    """One model's ``quantization.json`` files (shard, file) as one result: rows and gates merged."""
    results = [(shard, QuantizeResult.from_json(_read(f))) for shard, f in files]
    (first_shard, first), rest = results[0], results[1:]
    for shard, other in rest:
        for field in ("model", "data", "fp32_top1"):
            if getattr(other, field) != getattr(first, field):
                raise R8Error(f"{first.model.get('stem')}: {field} differs between {first_shard} and {shard}")
    rows = merged([(s, row_key(r), r) for s, q in results for r in q.rows], f"{first.model.get('stem')}: row", row_numbers)
    gates = merged([(s, g.name, g) for s, q in results for g in q.gates], f"{first.model.get('stem')}: gate")
    figures = merged([(s, k, v) for s, q in results for k, v in q.figures.items()], f"{first.model.get('stem')}: figure")
    first.rows, first.gates, first.figures = list(rows.values()), list(gates.values()), figures
    for _, q in rest:
        first.sqnr += [s for s in q.sqnr if s not in first.sqnr]
        first.skipped += [s for s in q.skipped if s not in first.skipped]
        first.reproducibility.update(q.reproducibility)
    return first


def merge_reports(shards: list[Path], out: Path) -> Path:
    """Merges the reports roots ``shards`` into ``out``; returns its ``index.html``."""
    shards = [Path(s).resolve() for s in shards]
    for shard in shards:
        if not shard.is_dir():
            raise R8Error(f"{shard}: no such reports folder")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    measured = merged([(s, k, v) for s in shards if (s / MEASURED).is_file() for k, v in _read(s / MEASURED).items()],
                      "figure")
    if measured:
        atomic_write(out / MEASURED, lambda tmp: tmp.write_text(json.dumps(measured, indent=1)))
    models: dict[str, list[tuple[Path, Path]]] = {}
    for shard in shards:
        for d in model_dirs(shard):
            models.setdefault(d.name, []).append((shard, d))
    for stem, dirs in models.items():
        _merge_model(stem, dirs, out / stem)
    junit = sorted(f for s in shards for f in (s / JUNIT).glob("*.xml"))
    if junit:
        (out / JUNIT).mkdir(exist_ok=True)
        merge_junit(junit, out / JUNIT / "gate.xml")
    return write_index(out)[1]


def merge_junit(files: list[Path], out: Path) -> None:
    """Shards' JUnit files as one: every test suite of every file under one ``testsuites`` root."""
    root = ET.Element("testsuites")
    for f in files:
        try:
            tree = ET.parse(f).getroot()
        except (OSError, ET.ParseError) as e:
            raise R8Error(f"{f}: not a readable JUnit file ({e})") from None
        root.extend(tree.iter("testsuite"))
    atomic_write(out, lambda tmp: ET.ElementTree(root).write(tmp, encoding="utf-8", xml_declaration=True))


def failed_tests(junit: Path) -> list[tuple[str, str]]:
    """(test id, the first line of its message) of every test that failed or erred in a JUnit file."""
    failed = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        problem = next((e for e in case if e.tag in ("failure", "error")), None)
        if problem is not None:
            message = (problem.get("message") or "").splitlines()
            failed.append((f"{case.get('classname')}::{case.get('name')}", message[0] if message else ""))
    return failed


def summary(out: Path) -> str:
    """The merged run for a CI summary page: the verdict first (every failed test, by name), then the index."""
    junit = Path(out) / JUNIT / "gate.xml"
    lines = []
    if junit.is_file():
        cases = sum(1 for _ in ET.parse(junit).getroot().iter("testcase"))
        failed = failed_tests(junit)
        lines += [f"## Gate: {'FAILED' if failed else 'passed'} ({len(failed)} of {cases} tests failed)", ""]
        lines += [f"- `{test}`: {message}" for test, message in failed] + [""]
    index = Path(out) / "index.md"
    return "\n".join(lines) + (index.read_text() if index.is_file() else "")


def _stamped_aside(path: Path) -> dict:
    """A report's JSON without its stamp: two runs of one job differ in when and how they were started."""
    return {k: v for k, v in _read(path).items() if k not in ("command", "generated")}


def _merge_model(stem: str, dirs: list[tuple[Path, Path]], target: Path) -> None:
    """One model's folders (shard, folder) into ``target``: the quantization reports merged; every
    other report the same wherever it appears (its stamp aside), taken from the first shard; the
    figures from the first shard that has them."""
    firsts: dict[str, tuple[Path, Path]] = {}
    for shard, d in dirs:
        for f in sorted(d.iterdir()):
            if not f.is_file() or f.name in ("quantization.json", "quantization.md"):
                continue
            if f.name not in firsts:
                firsts[f.name] = (shard, f)
            elif f.name in SOURCES and _stamped_aside(f) != _stamped_aside(firsts[f.name][1]):
                raise R8Error(f"{stem}/{f.name} differs between {firsts[f.name][0]} and {shard}")
    target.mkdir(parents=True, exist_ok=True)
    for name, (_, f) in firsts.items():
        shutil.copyfile(f, target / name)
    quantization = [(shard, d / "quantization.json") for shard, d in dirs if (d / "quantization.json").is_file()]
    if quantization:
        write_quantization_report(merge_quantization(quantization), target)
