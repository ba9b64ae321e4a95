"""The report a person opens first: ``index.md`` and a self-contained ``index.html`` (figures
embedded, no network) gathering what every job wrote into the reports folder: the models measured
so far side by side, then one section per model (``OUT/<model stem>/``). Rebuilt from the JSON
files by each job; a job that has not run yet for a model is listed as such."""

import copy
import json
import os
import sys
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

from r8.core.cache import atomic_write
from r8.core.errors import R8Error
from r8.report.benchmark import benchmark_blocks
from r8.report.blocks import Figure, Para, Table, html_blocks, inline_html, markdown, under
from r8.report.quantization import conversion_blocks, quantization_blocks
from r8.report.search import search_blocks
from r8.report.study import study_blocks
from r8.rows import Int8Row, McuRow, ReferenceRow, Row, best_row, rows_from_json
from r8.thresholds import Gate

# file in a model's report folder -> (title, the command that writes it, its blocks)
SOURCES = {
    "conversion.json": ("Conversion: Keras vs PyTorch, fp32", "python -m r8 quantize (or nox -s quantize)", conversion_blocks),
    "quantization.json": ("int8 quantization", "python -m r8 quantize (or nox -s quantize)", quantization_blocks),
    "study.json": ("Calibration size and seed study", "python -m r8 study (or nox -s study)", study_blocks),
    "benchmark.json": ("CPU inference benchmark", "python -m r8 benchmark (or nox -s benchmark)", benchmark_blocks),
    "search.json": ("When int8 hurts: the fewest float layers", "python -m r8 search --max-drop-pp X", search_blocks),
}


def model_dirs(out_root: Path) -> list[Path]:
    """The model folders under the reports root: each holds at least one of the reports."""
    return sorted(d for d in Path(out_root).iterdir() if d.is_dir() and any((d / n).is_file() for n in SOURCES))


def _load(path: Path) -> dict | None:
    """A report, or None where there is none (or its rows cannot be read: said once, and left out)."""
    if not path.is_file():
        return None
    stat = path.stat()
    return copy.deepcopy(_read(path, stat.st_mtime_ns, stat.st_size))  # a caller may change its copy


@lru_cache(maxsize=256)
def _read(path: Path, mtime_ns: int, size: int) -> dict | None:
    """Read once per version of the file (an index rebuild looks at each report several times)."""
    report = json.loads(path.read_text())
    if report and path.name == "quantization.json":
        try:
            rows_from_json(report)
        except R8Error as e:
            print(f"r8: warning: {path}: {e}; left out of the index", file=sys.stderr)
            return None
    return report


def overview(out_root: Path) -> list:
    """The models side by side: fp32 top-1, the best int8 config per backend with its drop and
    interval, and the fastest runtime at batch 1 and 256."""
    head = ["model", "data", "fp32 top-1", "best int8 per backend: drop pp [95 % CI]", "gates", "fastest bs1", "fastest bs256"]
    rows = []
    for d in model_dirs(out_root):
        q, b = _load(d / "quantization.json"), _load(d / "benchmark.json")
        conv = _load(d / "conversion.json")
        about = q or b or conv or {}
        int8 = "; ".join(f"{r.backend} {r.config} {r.drop_pp:.2f} [{r.drop_ci95_pp[0]:.2f}, {r.drop_ci95_pp[1]:.2f}]"
                         for r in best_per_backend(rows_from_json(q or {}))) or "-"
        gates = [Gate.from_json(g) for g in (q or {}).get("gates", [])]
        fastest = [fastest_by_paired_rounds(b or {}, batch) for batch in (1, 256)]
        fp32 = (q or {}).get("fp32_top1", (conv or {}).get("torch_top1"))
        rows.append([d.name, about.get("data", {}).get("name", "-"), "-" if fp32 is None else f"{fp32:.2%}", int8,
                     f"{sum(g.passed for g in gates)}/{len(gates)}" if gates else "-", *fastest])
    return [Table(head, rows)] if rows else [Para("No model measured yet: `python -m r8 quantize --model FILE` writes the first.")]


def fastest_by_paired_rounds(benchmark: dict, batch: int) -> str:
    """The winner of the benchmark's ranking at ``batch`` (``a = b``: a tie), never an unpaired median."""
    runs = [r for r in benchmark.get("rankings", []) if r["kind"] == "vs-fastest" and r["batch"] == batch]
    winners = sorted({" = ".join(r["fastest"]) for r in runs})
    return "; ".join(winners) + (" (the runs disagree)" if len(winners) > 1 else "") if winners else "-"


def best_per_backend(rows: list[Row]) -> list[Row]:
    """Each of r8's backends' best row, then the published reference's (never counted as a backend)."""
    best = [best_row(rows, b) for b in dict.fromkeys(r.backend for r in rows if isinstance(r, Int8Row))]
    return best + [r for r in rows if isinstance(r, ReferenceRow)]


def sections(out_dir: Path) -> list[tuple[str, str, list]]:
    """(title, provenance line, blocks) per report of one model's folder, in reading order; the
    blocks are those its own ``.md`` is rendered from, figures seen from the reports root."""
    out = []
    for name, (title, command, blocks) in SOURCES.items():
        path = out_dir / name
        if not path.is_file():
            out.append((title, f"Not run yet: `{command}` writes it.", []))
            continue
        report = _load(path)
        if report is None:
            out.append((title, f"Unreadable: {path} was written by another r8; rerun `{command}`.", []))
            continue
        when = report.get("generated", datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(timespec="seconds"))
        out.append((title, f"Made by `{report.get('command', command)}` at {when} ({out_dir.name}/{name}).",
                    under([b for b in blocks(report) if not isinstance(b, Figure) or (out_dir / b.file).is_file()],
                          out_dir.name)))
    return out


MCU_FIGURE = "mcu.png"


def microcontroller(out_root: Path) -> list:
    """Every model's int8 .tflite files on TFLite Micro (rows of its quantization.json made by
    ``quantize --mcu``), with the RAM / flash chart (written beside the index)."""
    from r8.report.mcu import boards_note, mcu_blocks, mcu_figure

    rows = [(d.name, r) for d in model_dirs(out_root)
            for r in rows_from_json(_load(d / "quantization.json") or {}) if isinstance(r, McuRow)]
    if not rows:
        return [Para("Not run yet: `python -m r8 quantize --mcu` (or `nox -s quantize`) adds the rows.")]
    mcu_figure(rows, out_root / MCU_FIGURE)
    return [*mcu_blocks(rows), Figure("RAM and flash per int8 .tflite against common MLPerf Tiny boards", MCU_FIGURE),
            boards_note()]


def parts(out_root: Path) -> list[tuple[int, str, str, list]]:
    """(heading level, title, provenance, blocks): the overview, the microcontroller table, then
    each model and its reports."""
    out = [(2, "Models", "Every model measured into this folder; each links to its section below.", overview(out_root)),
           (2, "On a microcontroller", "Will each int8 model run on an MCU? TFLite Micro's kernels, RAM and flash.",
            microcontroller(out_root))]
    for d in model_dirs(out_root):
        out.append((2, f"Model {d.name}", f"Reports in {d.name}/.", []))
        out += [(3, title, provenance, blocks) for title, provenance, blocks in sections(d)]
    return out


def anchor(title: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in title.lower())


def _markdown(parts) -> str:
    lines = ["# r8 report", ""]
    for level, title, provenance, blocks in parts:
        lines += [f"{'#' * level} {title}", "", provenance, "", markdown(blocks, base=level)]
    return "\n".join(lines)


def _html(parts, out_dir: Path) -> str:
    body = []
    for level, title, provenance, blocks in parts:
        where = f" id='{anchor(title)}'" if level == 2 else ""  # models' report titles repeat
        link = (lambda stem: anchor("Model " + stem)) if title == "Models" else None  # a model's name links to its section
        body.append(f"<section{where}><h{level}>{inline_html(title)}</h{level}><p class='src'>{inline_html(provenance)}</p>"
                    f"{html_blocks(blocks, out_dir, level, link)}</section>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:right}th{background:#f0f0f0}.src{color:#666;font-size:13px}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>r8 report</title><style>{style}</style></head>"
            f"<body><h1>r8 report</h1>{''.join(body)}</body></html>\n")


def write_index(out_root: str | os.PathLike) -> tuple[Path, Path]:
    """Rebuild ``index.md`` and ``index.html`` from the reports under ``out_root``."""
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    everything = parts(out_root)
    md, page = out_root / "index.md", out_root / "index.html"
    atomic_write(md, lambda tmp: tmp.write_text(_markdown(everything)))
    atomic_write(page, lambda tmp: tmp.write_text(_html(everything, out_root)))
    return md, page
