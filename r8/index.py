"""The report a person opens first: ``index.md`` and a self-contained ``index.html`` (figures
embedded, no network) gathering what every job wrote into the reports folder: the models measured
so far side by side, then one section per model (``OUT/<model stem>/``). Rebuilt from the JSON
files by each job; a job that has not run yet for a model is listed as such."""

import base64
import html
import json
import os
from datetime import datetime, timezone
from pathlib import Path

from r8.cache import atomic_write

# file -> (section title, the command that writes it)
SOURCES = {
    "conversion.json": ("Conversion: Keras vs PyTorch, fp32", "python -m r8 quantize (or nox -s quantize)"),
    "quantization.json": ("int8 quantization", "python -m r8 quantize (or nox -s quantize)"),
    "study.json": ("Calibration size and seed study", "python -m r8 study (or nox -s study)"),
    "benchmark.json": ("CPU inference benchmark", "python -m r8 benchmark (or nox -s benchmark)"),
}


def stamp(report: dict, job: str) -> dict:
    """Adds when, and by which command, a report was made."""
    import sys

    cli = sys.argv[0].endswith(os.path.join("r8", "__main__.py"))
    report["command"] = "python -m r8 " + " ".join(sys.argv[1:]) if cli else f"r8.jobs.{job}()"
    report["generated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return report


def append_step_summary(markdown: str) -> None:
    """On GitHub Actions (``GITHUB_STEP_SUMMARY`` set), add ``markdown`` to the run's summary page."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(markdown.rstrip() + "\n\n")


def _conversion(r: dict) -> list:
    head = ["class", "Keras top-1", "torch top-1"]
    rows = [[c, f"{k:.1%}", f"{t:.1%}"] for c, k, t in zip(r["classes"], r["keras_per_class"], r["torch_per_class"])]
    return [("p", f"{r['model']['file']}: Keras {r['keras_top1']:.2%}, converted torch {r['torch_top1']:.2%} top-1 on "
                  f"{r['n']:,} {r['data']['name']} test images; max |Δp| {r['max_abs_diff']:.2e}, argmax agreement "
                  f"{r['agreement']:.2%}."), ("table", head, [["all", f"{r['keras_top1']:.2%}", f"{r['torch_top1']:.2%}"], *rows])]


def _quantization(r: dict) -> list:
    head = ["backend", "config", "top-1", "drop (pp) [95 % CI]", "McNemar p"]
    rows = [[x["backend"], x["config"], f"{x['top1']:.2%}",
             f"{x['drop_pp']:.2f} [{x['drop_ci95_pp'][0]:.2f}, {x['drop_ci95_pp'][1]:.2f}]", f"{x['mcnemar_p']:.3g}"]
            for x in sorted(r["rows"], key=lambda x: x["drop_pp"])]
    blocks = [("p", f"fp32 baseline {r['fp32_top1']:.2%}; calibration: {r['calibration']['n']} {r['calibration']['source']} "
                    f"images. Drop = fp32 − int8 on the same {r['data']['test']:,} test images."), ("table", head, rows)]
    failed = [g for g in r.get("gates", []) if not g["passed"]]
    blocks.append(("p", f"Gates: {len(r.get('gates', [])) - len(failed)} of {len(r.get('gates', []))} passed"
                        + ("." if not failed else "; failed: " + "; ".join(
                            f"{g['gate']} {g['value']:.4g} (threshold {g['threshold']})" for g in failed))))
    return blocks + [("img", title, name) for title, name in r.get("figures", {}).items()]


def _study(r: dict) -> list:
    head = ["backend", "config", "n", "mean drop", "std", "min", "max"]
    rows = [[s["backend"], s["config"], str(s["n"]), f"{s['mean_drop_pp']:.3f}", f"{s['std_drop_pp']:.3f}",
             f"{s['min_drop_pp']:.2f}", f"{s['max_drop_pp']:.2f}"] for s in r["summary"]]
    return [("p", f"Seeds {r['seeds']}; drop in pp vs fp32 {r['fp32_top1']:.2%}."), ("table", head, rows),
            ("img", "Drop vs calibration size", "study.png")]


def _benchmark(r: dict) -> list:
    head = ["runtime", "precision", "img/s bs256", "ms bs1", "top-1", "GMAC/s"]
    rows = [[x["runtime"], x["precision"], f"{x['img_per_s_bs256']:,.0f}", f"{x['ms_bs1']:.3f}",
             "-" if x["top1"] is None else f"{x['top1']:.2%}", f"{x['gmacs_per_s']:.0f}"] for x in r["rows"]]
    return [("p", f"{r['threads']} threads per runtime."), ("table", head, rows),
            *[("img", name.removesuffix(".png").replace("_", " "), name)
              for name in ("accuracy_vs_throughput.png", "per_class.png", "confusion_best_int8.png")]]


RENDER = {"conversion.json": _conversion, "quantization.json": _quantization, "study.json": _study,
          "benchmark.json": _benchmark}


def model_dirs(out_root: Path) -> list[Path]:
    """The model folders under the reports root: each holds at least one of the reports."""
    return sorted(d for d in Path(out_root).iterdir() if d.is_dir() and any((d / n).is_file() for n in SOURCES))


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def overview(out_root: Path) -> list:
    """The models side by side: fp32 top-1, the best int8 config per backend with its drop and
    interval, and the fastest runtime at batch 1 and 256."""
    head = ["model", "data", "fp32 top-1", "best int8 per backend: drop pp [95 % CI]", "gates", "fastest bs1", "fastest bs256"]
    rows = []
    for d in model_dirs(out_root):
        q, b = _load(d / "quantization.json"), _load(d / "benchmark.json")
        conv = _load(d / "conversion.json")
        about = q or b or conv or {}
        best = {}
        for r in (q or {}).get("rows", []):
            if r["backend"] not in best or r["drop_pp"] < best[r["backend"]]["drop_pp"]:
                best[r["backend"]] = r
        int8 = "; ".join(f"{k} {r['config']} {r['drop_pp']:.2f} [{r['drop_ci95_pp'][0]:.2f}, {r['drop_ci95_pp'][1]:.2f}]"
                         for k, r in best.items()) or "-"
        gates = (q or {}).get("gates", [])
        fastest = ["-", "-"]
        if b:
            fast1 = min((r for r in b["rows"] if r["precision"] != "overhead"), key=lambda r: r["ms_bs1"])
            fast256 = max((r for r in b["rows"] if r["precision"] != "overhead"), key=lambda r: r["img_per_s_bs256"])
            fastest = [f"{fast1['runtime']} {fast1['ms_bs1']:.3f} ms", f"{fast256['runtime']} {fast256['img_per_s_bs256']:,.0f} img/s"]
        fp32 = (q or {}).get("fp32_top1", (conv or {}).get("torch_top1"))
        rows.append([d.name, about.get("data", {}).get("name", "-"), "-" if fp32 is None else f"{fp32:.2%}", int8,
                     f"{sum(g['passed'] for g in gates)}/{len(gates)}" if gates else "-", *fastest])
    return [("table", head, rows)] if rows else [("p", "No model measured yet: `python -m r8 quantize --model FILE` "
                                                      "writes the first.")]


def sections(out_dir: Path) -> list[tuple[str, str, list]]:
    """(title, provenance line, blocks) per report of one model's folder, in reading order."""
    out = []
    for name, (title, command) in SOURCES.items():
        path = out_dir / name
        if not path.is_file():
            out.append((title, f"Not run yet: `{command}` writes it.", []))
            continue
        report = json.loads(path.read_text())
        when = report.get("generated", datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(timespec="seconds"))
        blocks = [(*b[:2], f"{out_dir.name}/{b[2]}") if b[0] == "img" else b for b in RENDER[name](report)
                  if b[0] != "img" or (out_dir / b[2]).is_file()]
        out.append((title, f"Made by `{report.get('command', command)}` at {when} ({out_dir.name}/{name}).", blocks))
    return out


def parts(out_root: Path) -> list[tuple[int, str, str, list]]:
    """(heading level, title, provenance, blocks): the overview, then each model and its reports."""
    out = [(2, "Models", "Every model measured into this folder; each links to its section below.", overview(out_root))]
    for d in model_dirs(out_root):
        out.append((2, f"Model {d.name}", f"Reports in {d.name}/.", []))
        out += [(3, title, provenance, blocks) for title, provenance, blocks in sections(d)]
    return out


def anchor(title: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in title.lower())


def _markdown(parts) -> str:
    lines = ["# r8 report", ""]
    for level, title, provenance, blocks in parts:
        lines += [f"{'#' * level} {title}", "", provenance, ""]
        for block in blocks:
            if block[0] == "p":
                lines += [block[1], ""]
            elif block[0] == "table":
                lines += ["| " + " | ".join(block[1]) + " |", "|" + "---|" * len(block[1])]
                lines += ["| " + " | ".join(row) + " |" for row in block[2]] + [""]
            else:
                lines += [f"![{block[1]}]({block[2]})", ""]
    return "\n".join(lines)


def _html(parts, out_dir: Path) -> str:
    e = html.escape
    body = []
    for level, title, provenance, blocks in parts:
        where = f" id='{anchor(title)}'" if level == 2 else ""  # models' report titles repeat
        body.append(f"<section{where}><h{level}>{e(title)}</h{level}><p class='src'>{e(provenance)}</p>")
        for block in blocks:
            if block[0] == "p":
                body.append(f"<p>{e(block[1])}</p>")
            elif block[0] == "table":
                head = "".join(f"<th>{e(h)}</th>" for h in block[1])
                rows = "".join("<tr>" + "".join(_cell(c, i == 0 and title == "Models") for i, c in enumerate(row))
                               + "</tr>" for row in block[2])
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            else:
                data = base64.b64encode((out_dir / block[2]).read_bytes()).decode()
                body.append(f"<figure><img alt='{e(block[1])}' data-file='{e(block[2])}' src='data:image/png;base64,{data}'>"
                            f"<figcaption>{e(block[1])}</figcaption></figure>")
        body.append("</section>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:right}th{background:#f0f0f0}.src{color:#666;font-size:13px}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>r8 report</title><style>{style}</style></head>"
            f"<body><h1>r8 report</h1>{''.join(body)}</body></html>\n")


def _cell(text: str, link: bool) -> str:
    """A table cell; a model's name links to its section."""
    e = html.escape
    return f"<td><a href='#{anchor('Model ' + text)}'>{e(text)}</a></td>" if link else f"<td>{e(text)}</td>"


def write_index(out_root: str | os.PathLike) -> tuple[Path, Path]:
    """Rebuild ``index.md`` and ``index.html`` from the reports under ``out_root``."""
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    everything = parts(out_root)
    md, page = out_root / "index.md", out_root / "index.html"
    atomic_write(md, lambda tmp: tmp.write_text(_markdown(everything)))
    atomic_write(page, lambda tmp: tmp.write_text(_html(everything, out_root)))
    return md, page
