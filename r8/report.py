"""Reports: ``quantization.{json,md}`` and ``benchmark.{json,md}`` (+ plots). The JSON files are
contracts that outside checks read."""

import json
from pathlib import Path

import numpy as np

from r8.cache import atomic_write
from r8.index import stamp


def _md_quantization(report: dict) -> str:
    cal, classes = report["calibration"], report["classes"]
    lines = [
        f"# r8 int8 quantization: {report['model']['stem']}",
        "",
        f"fp32 baseline (converted torch model, {report['data']['test']:,} {report['data']['name']} test images): "
        f"**{report['fp32_top1']:.2%}** top-1.",
        f"Calibration: {cal['n']} images from the **{cal['source']}** set, seed {cal['seed']}"
        + (" — overlaps the test set, for comparison only." if cal["overlaps_test_set"] else
           ", never test images."),
        "",
        "Drop: fp32 minus int8 top-1 on the same test images (positive = int8 is worse), with a 95 % "
        "paired-bootstrap interval. Discordant: images only fp32 gets right / only int8 gets right; "
        "p: exact McNemar test of the two (p < 0.05: the int8 model differs from fp32 significantly).",
        "",
        "| backend | config | top-1 (test) | drop (pp) [95 % CI] | discordant | McNemar p | top-1 perf200 "
        "| size (KiB) | calib. s | quant. s | worst class |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in sorted(report["rows"], key=lambda r: r["drop_pp"]):
        worst = min(range(len(classes)), key=lambda c: r["per_class"][c])
        lo, hi = r["drop_ci95_pp"]
        seconds = " | ".join(f"{r[k]:.1f}" if k in r else "-" for k in ("calibration_s", "quantize_s"))
        perf200 = f"{r['top1_perf200']:.1%}" if "top1_perf200" in r else "-"
        lines.append(f"| {r['backend']} | {r['config']} | {r['top1']:.2%} | {r['drop_pp']:.2f} [{lo:.2f}, {hi:.2f}] | "
                     f"{r['discordant'][0]} / {r['discordant'][1]} | {r['mcnemar_p']:.3g} | {perf200} | "
                     f"{r['size_bytes'] / 1024:.0f} | {seconds} | {classes[worst]} {r['per_class'][worst]:.1%} |")
    lines += [f"\nNot measured: {s['backend']} {s['config']}: {s['reason']}" for s in report.get("skipped", [])]
    lines += ["", "## Gates", "", "| gate | threshold | measured | |", "|---|---:|---:|---|"]
    lines += [f"| {g['gate']} | {g['threshold']} | {g['value']:.4g} | {'pass' if g['passed'] else 'FAIL'} |"
              for g in report.get("gates", [])]
    for title, name in report.get("figures", {}).items():
        lines += ["", f"## {title}", "", f"![{title}]({name})"]
    if "onnx2torch_float_ops" in report:
        ops = report["onnx2torch_float_ops"]
        lines += ["", "## Why the onnx2torch route is not the default",
                  "", f"Ops that {ops['config']} leaves computing in float (after a dequantize), per route: "
                  f"r8's module {ops['h5']}, onnx2torch {ops['onnx2torch']}. onnx2torch keeps tf2onnx's graph: "
                  "an input Transpose, Pad modules, and the Dense layer as MatMul + Add, which FX quantizes "
                  "as an activation x activation matmul (the weight per-tensor uint8 like an activation, "
                  "not a per-channel int8 Linear weight) followed by a separately quantized bias add; "
                  "its Reshape had to be rewritten before FX or torch.export could trace it at all."]
    for s in report["sqnr"]:
        worst = list(s["sqnr_db"])[:3]
        lines += ["", f"## Per-layer SQNR, {s['backend']} {s['which']} config: {s['config']}", "",
                  f"fp32 vs int8 activations on {s['images']} test images, measured on "
                  f"`{s['measured_on']}`. Lowest SQNR (where the error enters): "
                  + ", ".join(f"`{t}`" for t in worst) + ".", "",
                  "| tensor | SQNR (dB) |", "|---|---:|"]
        lines += [f"| {t} | {db:.1f} |" for t, db in s["sqnr_db"].items()]
    return "\n".join(lines) + "\n"


def samples_figure(images: np.ndarray, labels: np.ndarray, fp32_pred: np.ndarray, int8_pred: np.ndarray,
                   title: str, path: Path, classes: list, disagree: int = 12, agree: int = 4) -> None:
    """Test images where fp32 and int8 disagree (red titles) beside a few they agree on."""
    plt = _pyplot()
    picks = [*np.flatnonzero(fp32_pred != int8_pred)[:disagree], *np.flatnonzero(fp32_pred == int8_pred)[:agree]]
    cols = 8
    fig, axes = plt.subplots(-(-len(picks) // cols), cols, figsize=(cols * 1.7, 2.3 * -(-len(picks) // cols)),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, picks):
        image = images[i].astype(np.float32)
        image = (image - image.min()) / max(float(np.ptp(image)), 1e-12)  # any pixel range, shown as 0..1
        ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", interpolation="nearest")
        ax.set_title(f"#{i} true {classes[labels[i]]}\nfp32 {classes[fp32_pred[i]]}\nint8 {classes[int8_pred[i]]}",
                     fontsize=7, color="tab:red" if fp32_pred[i] != int8_pred[i] else "black")
    fig.suptitle(title, fontsize=9)
    _save(fig, path, dpi=110)


SQNR_AXIS_DB = 60  # bars past this (exactly quantized tensors) are cut and labelled


def sqnr_figure(sqnr: list[dict], path: Path) -> None:
    """Per-layer SQNR bars, one panel per (backend, best/worst) entry of the report."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(sqnr), figsize=(4.2 * len(sqnr), 5.5), squeeze=False)
    for ax, s in zip(axes.flat, sqnr):
        layers = list(s["sqnr_db"])[::-1]  # worst at the top
        values = [s["sqnr_db"][t] for t in layers]
        ax.barh(range(len(layers)), np.minimum(values, SQNR_AXIS_DB), color="tab:blue" if s["which"] == "best" else "tab:orange")
        for y, v in enumerate(values):
            if v > SQNR_AXIS_DB:  # e.g. the uint8 input, quantized exactly
                ax.text(SQNR_AXIS_DB, y, f" {v:.0f} ", ha="right", va="center", fontsize=6, color="white")
        ax.set_xlim(0, SQNR_AXIS_DB)
        ax.set_yticks(range(len(layers)), [t[:28] for t in layers], fontsize=6)
        ax.set(xlabel="SQNR (dB), higher is better", title=f"{s['backend']} {s['which']}: {s['config']}"[:60])
        ax.title.set_fontsize(7)
    _save(fig, path, dpi=110)


def _write(report: dict, markdown: str, out_dir: Path, stem: str) -> tuple[Path, Path]:
    """``stem.json`` (the contract outside checks read) and ``stem.md``, each written atomically."""
    js, md = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    atomic_write(js, lambda tmp: tmp.write_text(json.dumps(report, indent=1)))
    atomic_write(md, lambda tmp: tmp.write_text(markdown))
    return js, md


def write_quantization_report(report: dict, out_dir: str | Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return _write(report, _md_quantization(report), out_dir, "quantization")


def _md_study(report: dict, plot: str) -> str:
    lines = ["# r8 calibration study", "",
             f"Each backend's best default configs, calibrated on n stratified training images drawn with "
             f"seeds {report['seeds']}, each evaluated on the test images (fp32 {report['fp32_top1']:.2%}). "
             "Drop in percent points (positive = worse than fp32).", "",
             f"![drop vs calibration size]({plot})", "",
             "| backend | config | n | seeds | mean drop | std | min | max |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {s['backend']} | {s['config']} | {s['n']} | {s['seeds']} | {s['mean_drop_pp']:.3f} | "
              f"{s['std_drop_pp']:.3f} | {s['min_drop_pp']:.2f} | {s['max_drop_pp']:.2f} |" for s in report["summary"]]
    seconds = {}
    for r in report["runs"]:
        seconds.setdefault((r["backend"], r["config"]), []).append(r["calibration_s"] + r["quantize_s"])
    lines += ["", "Wall time of calibration + quantization per run (max over sizes and seeds): "
              + ", ".join(f"{b} {c} {max(v):.1f} s" for (b, c), v in seconds.items()) + "."]
    return "\n".join(lines) + "\n"


def _study_plot(report: dict, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    configs = sorted({(s["backend"], s["config"]) for s in report["summary"]})
    for backend, config in configs:
        rows = sorted((s for s in report["summary"] if (s["backend"], s["config"]) == (backend, config)),
                      key=lambda s: s["n"])
        n = [s["n"] for s in rows]
        ax.plot(n, [s["mean_drop_pp"] for s in rows], marker="o", label=f"{backend} {config}")
        ax.fill_between(n, [s["min_drop_pp"] for s in rows], [s["max_drop_pp"] for s in rows], alpha=0.2)
    ax.axhline(0.2, color="grey", linestyle="--", linewidth=1, label="0.2 pp target")
    ax.set(xscale="log", xlabel="calibration images (log)", ylabel="top-1 drop vs fp32 (pp)",
           title="int8 drop vs calibration size: mean over seeds, band = min..max")
    ax.set_xticks(report["sizes"], [str(n) for n in report["sizes"]])
    ax.legend(fontsize=7)
    _save(fig, path)


def write_study_report(report: dict, out_dir: str | Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _study_plot(report, out_dir / "study.png")
    return _write(report, _md_study(report, "study.png"), out_dir, "study")


def _save(fig, path: Path, dpi: int = 120) -> None:
    """Lay out, write and close a figure."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    _pyplot().close(fig)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def benchmark_rows(pytest_benchmark: dict) -> list[dict]:
    """One row per runtime from one pytest-benchmark JSON: at each batch size the median time of
    its faster thread count, that count, the interquartile range, and every thread count's figure."""
    rows: dict[str, dict] = {}
    for b in pytest_benchmark["benchmarks"]:
        info = b["extra_info"]
        row = rows.setdefault(info["runtime"], {**{k: info.get(k) for k in (
            "runtime", "precision", "config", "top1", "size_bytes", "per_class", "confusion", "artifact", "reference")},
            "threads": {}, "by_threads": {}})
        threads, seconds, iqr = info.get("threads", 0), b["stats"]["median"], b["stats"].get("iqr", 0.0)
        key = "ms_bs1" if info["batch"] == 1 else "img_per_s_bs256"
        value = seconds * 1e3 if info["batch"] == 1 else info["batch"] / seconds
        row["by_threads"].setdefault(str(threads), {})[key] = value
        faster = key not in row or (value < row[key] if key == "ms_bs1" else value > row[key])
        if faster:
            row[key], row["threads"][f"bs{info['batch']}"] = value, threads
            row[f"iqr_ms_bs{info['batch']}"] = iqr * 1e3
    return list(rows.values())


def median_rows(runs: list[list[dict]]) -> list[dict]:
    """Per runtime, the median over repeated runs of each figure (and each run's figure)."""
    out = []
    for first in runs[0]:
        same = [next(r for r in run if r["runtime"] == first["runtime"]) for run in runs]
        row = dict(first)
        for key in ("ms_bs1", "img_per_s_bs256", "iqr_ms_bs1", "iqr_ms_bs256"):
            row[key] = float(np.median([r[key] for r in same]))
            row[f"{key}_runs"] = [r[key] for r in same]
        out.append(row)
    return out


def _targets(rows: list[dict], best_drop_pp: float) -> dict:
    """The issue's ratios in one run: r8's best int8 within ``best_drop_pp`` and best fp32 vs the
    TFLite references, at each batch size (the best is picked per batch size)."""
    ours = [r for r in rows if not r.get("reference") and r["precision"] in ("fp32", "int8")]
    ref = {p: next((r for r in rows if r.get("reference") and r["precision"] == p), None) for p in ("int8", "fp32")}
    out = {}
    for precision in ("int8", "fp32"):
        pool = [r for r in ours if r["precision"] == precision and (precision == "fp32" or r["drop_pp"] <= best_drop_pp)]
        if not pool or not ref[precision]:
            continue
        bs256 = max(pool, key=lambda r: r["img_per_s_bs256"])
        bs1 = min(pool, key=lambda r: r["ms_bs1"])
        out[precision] = {"bs256": (bs256["runtime"], bs256["img_per_s_bs256"] / ref[precision]["img_per_s_bs256"]),
                          "bs1": (bs1["runtime"], ref[precision]["ms_bs1"] / bs1["ms_bs1"])}
    return out


def _plots(rows: list[dict], fp32: dict, best_int8: dict, out_dir: Path, classes: list) -> list[str]:
    plt = _pyplot()

    fig, ax = plt.subplots(figsize=(8, 5))
    for i, r in enumerate(rows):
        ax.scatter(r["img_per_s_bs256"], r["top1"] * 100, marker="o" if r["precision"] == "fp32" else "s")
        ax.annotate(r["runtime"], (r["img_per_s_bs256"], r["top1"] * 100), fontsize=7,
                    xytext=(3, 3 + 9 * (i % 3)), textcoords="offset points")  # staggered: fp32 points coincide
    ax.set(xscale="log", xlabel="images/s at batch 256 (log)", ylabel="top-1 on the test images (%)",
           title="Accuracy vs throughput (circles fp32, squares int8)")
    _save(fig, out_dir / "accuracy_vs_throughput.png")

    fig, ax = plt.subplots(figsize=(9, 4))
    x = np.arange(len(classes))
    ax.bar(x - 0.2, np.array(fp32["per_class"]) * 100, 0.4, label=f"{fp32['runtime']} (fp32)")
    ax.bar(x + 0.2, np.array(best_int8["per_class"]) * 100, 0.4, label=f"{best_int8['runtime']} (int8)")
    ax.set(xticks=x, ylabel="top-1 (%)", ylim=(50, 100), title="Per-class accuracy, fp32 vs best int8")
    ax.set_xticklabels(classes, rotation=30)
    ax.legend(fontsize=8)
    _save(fig, out_dir / "per_class.png")

    fig, ax = plt.subplots(figsize=(6, 5.5))
    cm = np.array(best_int8["confusion"])
    ax.imshow(cm, cmap="Blues")
    for (i, j), n in np.ndenumerate(cm):
        ax.text(j, i, n, ha="center", va="center", fontsize=7, color="white" if n > cm.max() / 2 else "black")
    ax.set(xticks=range(len(classes)), yticks=range(len(classes)), xlabel="predicted", ylabel="true",
           title=f"Confusion matrix, {best_int8['runtime']}")
    ax.set_xticklabels(classes, rotation=45, fontsize=7)
    ax.set_yticklabels(classes, fontsize=7)
    _save(fig, out_dir / "confusion_best_int8.png")
    return ["accuracy_vs_throughput.png", "per_class.png", "confusion_best_int8.png"]


TARGETS = {("int8", "bs256"): 1.15, ("int8", "bs1"): 1.0, ("fp32", "bs256"): 1.0, ("fp32", "bs1"): 1.0}  # issue #11


def write_benchmark_report(runs: list[dict], threads: int, macs: int, fp32_top1: float,
                           best_drop_pp: float, out_dir: str | Path, peaks: dict | None = None,
                           classes: list | None = None, about: dict | None = None) -> dict:
    """``benchmark.json`` and ``benchmark.md`` from one or more pytest-benchmark JSONs (``runs``):
    each figure is the median of the runs; each target ratio is taken within a run, and its
    median and range over the runs are reported."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    per_run = [benchmark_rows(r) for r in runs]
    for run in per_run:
        for r in run:
            r["drop_pp"] = round((fp32_top1 - r["top1"]) * 100, 4) if r["top1"] is not None else None
    ratios = [_targets(run, best_drop_pp) for run in per_run]
    rows = sorted(median_rows(per_run), key=lambda r: -r["img_per_s_bs256"])
    for r in rows:
        r["gmacs_per_s"] = r["img_per_s_bs256"] * macs / 1e9
    models = [r for r in rows if r["precision"] != "overhead"]
    ours = [r for r in models if not r.get("reference")]
    by_name = {r["runtime"]: r for r in rows}
    best_fp32 = max((r for r in ours if r["precision"] == "fp32"), key=lambda r: r["img_per_s_bs256"])
    within = [r for r in ours if r["precision"] == "int8" and r["drop_pp"] <= best_drop_pp]
    best_int8 = max(within or [r for r in ours if r["precision"] == "int8"], key=lambda r: r["img_per_s_bs256"])
    keras = by_name.get("keras")
    lines = [
        f"# r8 CPU inference benchmark{': ' + about['model']['stem'] if about else ''}", "",
        f"Medians of {len(runs)} run(s); each runtime at 1 and {threads} threads, the faster count shown per batch size "
        f"(`t`); pytest-benchmark medians with their interquartile range. Inputs are the data set's NHWC test images "
        f"(C-contiguous), each runtime doing its own conversion. {macs / 1e6:.2f} M MACs per image. "
        f"fp32 top-1 {fp32_top1:.2%}.", "",
        "| runtime | precision | config | img/s bs256 (t) | ms bs1 (t) | IQR bs1 ms | vs Keras | vs best fp32 | top-1 "
        "| size (KiB) | GMAC/s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in models:
        vs_keras = f"{r['img_per_s_bs256'] / keras['img_per_s_bs256']:.1f}x" if keras else "-"
        lines.append(
            f"| {r['runtime']} | {r['precision']} | {r['config'] or '-'} | {r['img_per_s_bs256']:,.0f} ({r['threads'].get('bs256')}) | "
            f"{r['ms_bs1']:.3f} ({r['threads'].get('bs1')}) | {r['iqr_ms_bs1']:.3f} | {vs_keras} | "
            f"{r['img_per_s_bs256'] / best_fp32['img_per_s_bs256']:.2f}x | "
            f"{r['top1']:.2%} | {r['size_bytes'] / 1024:.0f} | {r['gmacs_per_s']:.0f} |")
    floors = [r for r in rows if r["precision"] == "overhead"]
    if floors:
        lines += ["", "Per-call floor (a model that only averages the pixels): "
                  + ", ".join(f"{r['runtime'].removeprefix('overhead-')} {r['ms_bs1'] * 1000:.0f} µs" for r in floors) + "."]
    lines += ["", f"## Targets (issue #11): ratios within a run, median of {len(runs)} [min, max]", ""]
    for (precision, batch), goal in TARGETS.items():
        got = [r[precision][batch] for r in ratios if precision in r]
        if got:
            values = [v for _, v in got]
            names = sorted({n for n, _ in got})
            met = "met" if np.median(values) >= goal else "NOT met"
            lines.append(f"- best r8 {precision}{f' within {best_drop_pp} pp' if precision == 'int8' else ''} at {batch} "
                         f"({', '.join(names)}) vs TFLite {precision} reference: {np.median(values):.2f}x "
                         f"[{min(values):.2f}, {max(values):.2f}] — target >= {goal}x: **{met}**")
    if peaks:
        lines += ["", f"Peak estimate for these cores ({threads} threads, measured: a 2048² fp32 matmul and an int8 "
                  f"quantized linear layer, VNNI): fp32 {peaks['fp32']:.0f} GMAC/s, int8 {peaks['int8']:.0f} GMAC/s. "
                  f"Best int8 here: {best_int8['gmacs_per_s']:.0f} GMAC/s "
                  f"({best_int8['gmacs_per_s'] / peaks['int8']:.0%} of the int8 peak)."]
    classes = classes or [str(c) for c in range(len(best_fp32["per_class"]))]
    lines += [""] + [f"![{name}]({name})" for name in _plots(models, best_fp32, best_int8, out_dir, classes)]
    report = {**(about or {}), "threads": threads, "runs": len(runs), "macs_per_image": macs, "fp32_top1": fp32_top1, "peaks_gmacs": peaks,
              "targets": [{"precision": p, "batch": b, "goal": g,
                           "ratios": [r[p][b][1] for r in ratios if p in r], "runtimes": [r[p][b][0] for r in ratios if p in r]}
                          for (p, b), g in TARGETS.items()],
              "rows": [{k: v for k, v in r.items() if k not in ("per_class", "confusion")} for r in rows]}
    _write(stamp(report, "benchmark"), "\n".join(lines) + "\n", out_dir, "benchmark")
    return report
