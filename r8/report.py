"""Reports: ``quantization.{json,md}`` and ``benchmark.{json,md}`` (+ plots). The JSON files are
contracts that outside checks read."""

import json
from pathlib import Path

import numpy as np

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


def benchmark_rows(pytest_benchmark: dict) -> list[dict]:
    """One row per runtime from pytest-benchmark's JSON (median time of each batch size)."""
    rows: dict[str, dict] = {}
    for b in pytest_benchmark["benchmarks"]:
        info = b["extra_info"]
        row = rows.setdefault(info["runtime"], {k: info[k] for k in (
            "runtime", "precision", "config", "top1", "size_bytes", "per_class", "confusion")})
        seconds = b["stats"]["median"]
        if info["batch"] == 1:
            row["ms_bs1"] = seconds * 1e3
        else:
            row["img_per_s_bs256"] = info["batch"] / seconds
    return list(rows.values())


def _plots(rows: list[dict], fp32: dict, best_int8: dict, out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for i, r in enumerate(rows):
        ax.scatter(r["img_per_s_bs256"], r["top1"] * 100, marker="o" if r["precision"] == "fp32" else "s")
        ax.annotate(r["runtime"], (r["img_per_s_bs256"], r["top1"] * 100), fontsize=7,
                    xytext=(3, 3 + 9 * (i % 3)), textcoords="offset points")  # staggered: fp32 points coincide
    ax.set(xscale="log", xlabel="images/s at batch 256 (log)", ylabel="top-1 on 10k test images (%)",
           title="Accuracy vs throughput (circles fp32, squares int8)")
    fig.tight_layout()
    fig.savefig(out_dir / "accuracy_vs_throughput.png", dpi=120)

    fig, ax = plt.subplots(figsize=(9, 4))
    x = np.arange(len(CLASSES))
    ax.bar(x - 0.2, np.array(fp32["per_class"]) * 100, 0.4, label=f"{fp32['runtime']} (fp32)")
    ax.bar(x + 0.2, np.array(best_int8["per_class"]) * 100, 0.4, label=f"{best_int8['runtime']} (int8)")
    ax.set(xticks=x, ylabel="top-1 (%)", ylim=(50, 100), title="Per-class accuracy, fp32 vs best int8")
    ax.set_xticklabels(CLASSES, rotation=30)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "per_class.png", dpi=120)

    fig, ax = plt.subplots(figsize=(6, 5.5))
    cm = np.array(best_int8["confusion"])
    ax.imshow(cm, cmap="Blues")
    for (i, j), n in np.ndenumerate(cm):
        ax.text(j, i, n, ha="center", va="center", fontsize=7, color="white" if n > cm.max() / 2 else "black")
    ax.set(xticks=range(10), yticks=range(10), xlabel="predicted", ylabel="true",
           title=f"Confusion matrix, {best_int8['runtime']}")
    ax.set_xticklabels(CLASSES, rotation=45, fontsize=7)
    ax.set_yticklabels(CLASSES, fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "confusion_best_int8.png", dpi=120)
    plt.close("all")
    return ["accuracy_vs_throughput.png", "per_class.png", "confusion_best_int8.png"]


def write_benchmark_report(pytest_benchmark: dict, threads: int, macs: int, fp32_top1: float,
                           best_drop_pp: float, out_dir: str | Path) -> dict:
    """``benchmark.json`` (contract: threads + rows of runtime, precision, img_per_s_bs256,
    ms_bs1, top1) and ``benchmark.md`` with the table, the targets and the plots."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = sorted(benchmark_rows(pytest_benchmark), key=lambda r: -r["img_per_s_bs256"])
    for r in rows:
        r["gmacs_per_s"] = r["img_per_s_bs256"] * macs / 1e9
        r["drop_pp"] = round((fp32_top1 - r["top1"]) * 100, 4)
    ours = [r for r in rows if not r["runtime"].startswith("tflite")]
    by_name = {r["runtime"]: r for r in rows}
    best_fp32 = max((r for r in ours if r["precision"] == "fp32"), key=lambda r: r["img_per_s_bs256"])
    within = [r for r in ours if r["precision"] == "int8" and r["drop_pp"] <= best_drop_pp]
    best_int8 = max(within or [r for r in ours if r["precision"] == "int8"], key=lambda r: r["img_per_s_bs256"])
    keras = by_name.get("keras")
    lines = [
        "# r8 CPU inference benchmark", "",
        f"{threads} threads for every runtime; pytest-benchmark medians; inputs are uint8 NHWC "
        f"CIFAR-10 images, each runtime doing its own conversion. ResNet8: {macs / 1e6:.2f} M MACs "
        f"per image. fp32 baseline top-1 {fp32_top1:.2%}.", "",
        "| runtime | precision | config | img/s bs256 | ms bs1 | vs Keras | vs best fp32 | top-1 | size (KiB) | GMAC/s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        vs_keras = f"{r['img_per_s_bs256'] / keras['img_per_s_bs256']:.1f}x" if keras else "-"
        lines.append(
            f"| {r['runtime']} | {r['precision']} | {r['config'] or '-'} | {r['img_per_s_bs256']:,.0f} | "
            f"{r['ms_bs1']:.3f} | {vs_keras} | {r['img_per_s_bs256'] / best_fp32['img_per_s_bs256']:.2f}x | "
            f"{r['top1']:.2%} | {r['size_bytes'] / 1024:.0f} | {r['gmacs_per_s']:.0f} |")
    fastest = {bs: min(rows, key=lambda r: r["ms_bs1"]) if bs == 1 else max(rows, key=lambda r: r["img_per_s_bs256"])
               for bs in (1, 256)}
    ref_fp32, ref_int8 = by_name.get("tflite-reference"), by_name.get("tflite-reference-int8")
    lines += ["", f"Fastest at batch 1: **{fastest[1]['runtime']}** ({fastest[1]['ms_bs1']:.3f} ms); "
              f"at batch 256: **{fastest[256]['runtime']}** ({fastest[256]['img_per_s_bs256']:,.0f} img/s).",
              "", "## Targets (issue #5), as measured in this run", "",
              f"- r8's best fp32 ({best_fp32['runtime']}) vs TFLite fp32 reference: "
              + (f"{best_fp32['img_per_s_bs256'] / ref_fp32['img_per_s_bs256']:.2f}x (target >= 0.9x)" if ref_fp32 else "n/a"),
              f"- r8's best int8 within {best_drop_pp} pp ({best_int8['runtime']}, drop {best_int8['drop_pp']:.2f} pp) "
              f"vs r8's best fp32: {best_int8['img_per_s_bs256'] / best_fp32['img_per_s_bs256']:.2f}x (target >= 2x)",
              f"- the same vs TFLite int8 reference: "
              + (f"{best_int8['img_per_s_bs256'] / ref_int8['img_per_s_bs256']:.2f}x at bs256, "
                 f"{ref_int8['ms_bs1'] / best_int8['ms_bs1']:.2f}x at bs1 (goal >= 1.0x)" if ref_int8 else "n/a"),
              ""]
    lines += [f"![{name}]({name})" for name in _plots(rows, best_fp32, best_int8, out_dir)]
    report = {"threads": threads, "macs_per_image": macs, "fp32_top1": fp32_top1,
              "rows": [{k: v for k, v in r.items() if k not in ("per_class", "confusion")} for r in rows]}
    atomic_write(out_dir / "benchmark.json", lambda tmp: tmp.write_text(json.dumps(report, indent=1)))
    atomic_write(out_dir / "benchmark.md", lambda tmp: tmp.write_text("\n".join(lines) + "\n"))
    return report
