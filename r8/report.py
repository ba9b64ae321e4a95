"""Reports: ``quantization.json`` (the contract outside checks read) and ``quantization.md``."""

import json
from pathlib import Path

from r8.cache import atomic_write
from r8.data import CLASSES


def _md_quantization(report: dict) -> str:
    cal = report["calibration"]
    lines = [
        "# r8 int8 quantization",
        "",
        f"fp32 baseline (converted torch model, 10k CIFAR-10 test images): "
        f"**{report['fp32_top1']:.2%}** top-1.",
        f"Calibration: {cal['n']} images from the **{cal['source']}** set, seed {cal['seed']}"
        + (" — overlaps the test set, for comparison only." if cal["overlaps_test_set"] else
           ", never test images."),
        "",
        "| backend | config | top-1 (10k) | drop (pp) | top-1 perf200 | size (KiB) | worst class |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in sorted(report["rows"], key=lambda r: r["drop_pp"]):
        worst = min(range(len(CLASSES)), key=lambda c: r["per_class"][c])
        lines.append(f"| {r['backend']} | {r['config']} | {r['top1']:.2%} | {r['drop_pp']:.2f} | "
                     f"{r['top1_perf200']:.1%} | {r['size_bytes'] / 1024:.0f} | "
                     f"{CLASSES[worst]} {r['per_class'][worst]:.1%} |")
    for s in report["sqnr"]:
        worst = list(s["sqnr_db"])[:3]
        lines += ["", f"## Per-layer SQNR, {s['backend']} {s['which']} config: {s['config']}", "",
                  f"fp32 vs int8 activations on {s['images']} test images, measured on "
                  f"`{s['measured_on']}`. Lowest SQNR (where the error enters): "
                  + ", ".join(f"`{t}`" for t in worst) + ".", "",
                  "| tensor | SQNR (dB) |", "|---|---:|"]
        lines += [f"| {t} | {db:.1f} |" for t, db in s["sqnr_db"].items()]
    return "\n".join(lines) + "\n"


def write_quantization_report(report: dict, out_dir: str | Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    js, md = out_dir / "quantization.json", out_dir / "quantization.md"
    atomic_write(js, lambda tmp: tmp.write_text(json.dumps(report, indent=1)))
    atomic_write(md, lambda tmp: tmp.write_text(_md_quantization(report)))
    return js, md
