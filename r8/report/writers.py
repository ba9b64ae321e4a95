"""Reports: ``quantization.{json,md}`` and ``benchmark.{json,md}`` (+ plots). The JSON files are
contracts that outside checks read."""

import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from r8.cache import atomic_write
from r8.report.blocks import Figure, Heading, Para, Table, markdown
from r8.rows import REFERENCE_BACKEND, McuRow, report_json, rows_from_json


def reproducibility_blocks(report: dict) -> list:
    """Where each row was measured (CPU, ISA flags, threads, engine, versions) and what each
    backend's artifacts and predictions depend on besides the config."""
    from r8.environment import summary

    envs, rows = {}, rows_from_json(report)  # one line per distinct environment, with the backends measured in it
    for r in rows:
        envs.setdefault(summary(r.env), []).append(r.backend)
    versions = next((r.env["versions"] for r in rows), {})
    if not envs:
        return []
    return [Heading(1, "Where these numbers were measured"),
            Table(["environment", "rows"], [[env, ", ".join(dict.fromkeys(b))] for env, b in envs.items()]),
            Para("Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + "."),
            *[Para(f"**{name}**: {text}") for name, text in report.get("reproducibility", {}).items()]]


def quantization_blocks(report: dict) -> list:
    cal, classes = report["calibration"], report["classes"]
    rows = []
    for r in sorted(rows_from_json(report), key=lambda r: r.drop_pp):
        worst = min(range(len(classes)), key=lambda c: r.per_class[c])
        lo, hi = r.drop_ci95_pp
        seconds = [getattr(r, k, None) for k in ("calibration_s", "quantize_s")]
        rows.append([r.backend, r.config, f"{r.top1:.2%}", f"{r.drop_pp:.2f} [{lo:.2f}, {hi:.2f}]",
                     f"{r.discordant[0]} / {r.discordant[1]}", f"{r.mcnemar_p:.3g}",
                     f"{r.subsets['perf200']:.1%}" if "perf200" in r.subsets else "-", f"{r.size_bytes / 1024:.0f}",
                     *("-" if s is None else f"{s:.1f}" for s in seconds), f"{classes[worst]} {r.per_class[worst]:.1%}"])
    blocks = [
        Para(f"fp32 baseline (converted torch model, {report['data']['test']:,} {report['data']['name']} test images): "
             f"**{report['fp32_top1']:.2%}** top-1. Calibration: {cal['n']} images from the **{cal['source']}** set, "
             f"seed {cal['seed']}" + (" — overlaps the test set, for comparison only." if cal["overlaps_test_set"] else
                                      ", never test images.")),
        Para("Drop: fp32 minus int8 top-1 on the same test images (positive = int8 is worse), with a 95 % "
             "paired-bootstrap interval. Discordant: images only fp32 gets right / only int8 gets right; "
             "p: exact McNemar test of the two (p < 0.05: the int8 model differs from fp32 significantly)."),
        Table(["backend", "config", "top-1 (test)", "drop (pp) [95 % CI]", "discordant", "McNemar p", "top-1 perf200",
               "size (KiB)", "calib. s", "quant. s", "worst class"], rows),
        *[Para(f"Not measured: {s['backend']} {s['config']}: {s['reason']}") for s in report.get("skipped", [])],
        Heading(1, "Gates"),
        Table(["gate", "threshold", "measured", ""], [[g["gate"], str(g["threshold"]), f"{g['value']:.4g}",
                                                        _verdict(g)] for g in report.get("gates", [])]),
    ]
    for title, name in report.get("figures", {}).items():
        blocks += [Heading(1, title), Figure(title, name)]
    blocks += reproducibility_blocks(report)
    if "onnx2torch_float_ops" in report:
        ops = report["onnx2torch_float_ops"]
        blocks += [Heading(1, "Why the onnx2torch route is not the default"), Para(
            f"Ops that {ops['config']} leaves computing in float (after a dequantize), per route: "
            f"r8's module {ops['r8']}, onnx2torch {ops['onnx2torch']}. onnx2torch keeps tf2onnx's graph: "
            "an input Transpose, Pad modules, and the Dense layer as MatMul + Add, which FX quantizes "
            "as an activation x activation matmul (the weight per-tensor uint8 like an activation, "
            "not a per-channel int8 Linear weight) followed by a separately quantized bias add; "
            "its Reshape had to be rewritten before FX or torch.export could trace it at all.")]
    for s in report["sqnr"]:
        worst = list(s["sqnr_db"])[:3]
        blocks += [Heading(1, f"Per-layer SQNR, {s['backend']} {s['which']} config: {s['config']}"),
                   Para(f"fp32 vs int8 activations on {s['images']} test images, measured on `{s['measured_on']}`. "
                        "Lowest SQNR (where the error enters): " + ", ".join(f"`{t}`" for t in worst) + "."),
                   Table(["tensor", "SQNR (dB)"], [[t, f"{db:.1f}"] for t, db in s["sqnr_db"].items()])]
    return blocks


def conversion_blocks(r: dict) -> list:
    rows = [[c, f"{k:.1%}", f"{t:.1%}"] for c, k, t in zip(r["classes"], r["keras_per_class"], r["torch_per_class"])]
    return [Para(f"{r['model']['file']}: Keras {r['keras_top1']:.2%}, converted torch {r['torch_top1']:.2%} top-1 on "
                 f"{r['n']:,} {r['data']['name']} test images; max |Δp| {r['max_abs_diff']:.2e}, argmax agreement "
                 f"{r['agreement']:.2%}."),
            Table(["class", "Keras top-1", "torch top-1"], [["all", f"{r['keras_top1']:.2%}", f"{r['torch_top1']:.2%}"], *rows])]


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


# Memory of common MLPerf Tiny boards (bytes): the lines of the microcontroller chart.
# NUCLEO-L4R5ZI: STMicroelectronics' STM32L4R5xx datasheet (DS12023): 640 KB SRAM, 2 MB flash;
# it is MLPerf Tiny's reference board. Arduino Nano 33 BLE Sense: Nordic's nRF52840 Product
# Specification: 256 KB RAM, 1 MB flash.
BOARDS = {"NUCLEO-L4R5ZI (STM32L4R5ZI)": (640 << 10, 2 << 20), "Arduino Nano 33 BLE Sense (nRF52840)": (256 << 10, 1 << 20)}


def mcu_blocks(rows: list[tuple[str, McuRow]]) -> list:
    """The table of every int8 .tflite run on TFLite Micro ((model stem, row) each): accuracy,
    agreement with LiteRT's kernels, arena and flash bytes, ops."""
    table = []
    for model, r in rows:
        m = r.measured
        parted = ", ".join(f"{op} ({d['images']} images, ≤ {d['max_lsb']} LSB)" for op, d in m["ref_kernels_first_differ_at"].items())
        table.append([model, r.config, f"{r.top1:.2%}", f"{r.subsets['perf200']:.1%}" if "perf200" in r.subsets else "-",
                      f"{r.litert_top1:.2%}", f"{r.drop_pp:.2f} [{r.drop_ci95_pp[0]:.2f}, {r.drop_ci95_pp[1]:.2f}]",
                      "bit-exact" if m["bitexact_ref_kernels"] else f"{m['differs_ref_kernels']} differ, first at {parted}",
                      f"{m['differs_xnnpack']} / {m['differs_xnnpack_top1']}",
                      f"{r.arena_bytes:,}" + (f" ({m['arena']['peak_activations']:,})" if "peak_activations" in m["arena"] else ""),
                      f"{m['flash']['total']:,} ({m['flash']['weights']:,} + {m['flash']['graph']:,})",
                      " ".join(m["ops"]), f"{m['tflm_s']:.0f}"])
    head = ["model", "int8 .tflite", "TFLM top-1", "perf200", "LiteRT top-1", "drop pp [95 % CI]", "vs LiteRT reference kernels",
            "≠ XNNPACK", "arena B (peak activations)", "flash B (weights + graph)", "ops", "TFLM s"]
    return [Para("Each int8 .tflite on TensorFlow Lite for Microcontrollers (the `tflite-micro` package: the reference "
                 "kernels an MCU build runs), over the test images; the drop is against the model's fp32, as in every "
                 "row. Reference kernels: LiteRT's BUILTIN_REF kernels, compared output by output; where they part, "
                 "the first op whose output differs. XNNPACK: LiteRT's default kernels (outputs / top-1 that differ). "
                 "Arena: the smallest that allocates and invokes (bisection); in brackets the most activation bytes "
                 "live at once, which no layer-by-layer runtime plans below. Flash: the file, weights + graph."),
            Table(head, table)]


def boards_note() -> Para:
    return Para("Board lines in the chart: " + "; ".join(f"{name} {ram >> 10} KiB RAM, {flash >> 20} MiB flash"
                                                        for name, (ram, flash) in BOARDS.items())
                + " (STM32L4R5xx datasheet DS12023; nRF52840 Product Specification).")


def mcu_figure(rows: list[tuple[str, McuRow]], path: Path) -> None:
    """RAM (arena) and flash per int8 .tflite, the published references in gray, against the
    memory of common MLPerf Tiny boards."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.4 * len(rows) + 2))
    labels = [f"{model}: {r.config}"[:48] for model, r in rows]
    for ax, (what, key, board) in zip(axes, (("RAM: arena", "arena_bytes", 0), ("flash", "flash_bytes", 1))):
        kib = [getattr(r, key) / 1024 for _, r in rows]
        ax.barh(range(len(rows)), kib, color=["tab:gray" if r.source_backend == REFERENCE_BACKEND else "tab:blue"
                                              for _, r in rows])
        for y, v in enumerate(kib):
            ax.text(v, y, f" {v:,.0f}", va="center", fontsize=7)
        for (name, sizes), style in zip(BOARDS.items(), ("--", ":")):
            ax.axvline(sizes[board] / 1024, color="tab:red", linestyle=style, label=f"{name}: {sizes[board] >> 10:,} KiB")
        ax.set_yticks(range(len(rows)), labels if board == 0 else [""] * len(rows), fontsize=7)
        ax.set(xlabel="KiB (gray: published int8 model)", title=what, xlim=(0, 1.05 * max(s[board] for s in BOARDS.values()) / 1024))
        ax.legend(fontsize=6, loc="center right")
    _save(fig, path, dpi=110)


def _write(report: dict, blocks: list, out_dir: Path, stem: str, title: str) -> tuple[Path, Path]:
    """``stem.json`` (the contract outside checks read) and ``stem.md`` rendered from the same
    blocks as the HTML index, each written atomically."""
    js, md = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    text = markdown([Heading(0, f"{title}: {report['model']['stem']}" if "model" in report else title), *blocks])
    atomic_write(js, lambda tmp: tmp.write_text(json.dumps(report, indent=1)))
    atomic_write(md, lambda tmp: tmp.write_text(text))
    return js, md


def write_quantization_report(report: dict, out_dir: str | Path) -> tuple[Path, Path]:
    """``report``'s rows are :class:`r8.rows.Row` values; the JSON holds their JSON form."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = report_json(report)
    return _write(report, quantization_blocks(report), out_dir, "quantization", "r8 int8 quantization")


def study_blocks(report: dict) -> list:
    seconds = {}
    for r in report.get("runs", []):
        seconds.setdefault((r["backend"], r["config"]), []).append(r["calibration_s"] + r["quantize_s"])
    return [Para(f"Each backend's best default configs, calibrated on n stratified training images drawn with "
                 f"seeds {report['seeds']}, each evaluated on the test images (fp32 {report['fp32_top1']:.2%}). "
                 "Drop in percent points (positive = worse than fp32)."),
            Figure("drop vs calibration size", "study.png"),
            Table(["backend", "config", "n", "seeds", "mean drop", "std", "min", "max"],
                  [[s["backend"], s["config"], str(s["n"]), str(s.get("seeds", len(report["seeds"]))),
                    f"{s['mean_drop_pp']:.3f}", f"{s['std_drop_pp']:.3f}", f"{s['min_drop_pp']:.2f}",
                    f"{s['max_drop_pp']:.2f}"] for s in report["summary"]]),
            *([Para("Wall time of calibration + quantization per run (max over sizes and seeds): "
                    + ", ".join(f"{b} {c} {max(v):.1f} s" for (b, c), v in seconds.items()) + ".")] if seconds else [])]


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
    return _write(report, study_blocks(report), out_dir, "study", "r8 calibration study")


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
        if "comparisons" in info:  # test_paired's: its figures are the comparisons, not a runtime's time
            continue
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


def comparisons(runs: list[dict]) -> list[dict]:
    """Every paired comparison (r8.timing, made by r8.benchmarks' test_paired) of each run, with its run number."""
    return [{"run": i, **c} for i, run in enumerate(runs, 1) for b in run["benchmarks"]
            for c in b["extra_info"].get("comparisons", [])]


def _block_targets(rows: list[dict], best_drop_pp: float) -> dict:
    """The target ratios in one run from pytest-benchmark's per-runtime blocks (medians timed apart,
    kept beside the paired figures to show what they do): r8's best int8 within ``best_drop_pp``
    and best fp32 vs the TFLite references, at each batch size (the best is picked per batch size)."""
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


RATIO_TICKS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.25, 1.5, 2, 5, 10, 20, 50, 100)


def _paired_plot(paired: list[dict], out_dir: Path) -> list[str]:
    """Per batch size, one row per comparison of the first run: every round's ratio (dots), the
    median (bar) and its 95 % interval (line), against 1.0 (no difference)."""
    first = [c for c in paired if c["run"] == 1]
    if not first:
        return []
    plt = _pyplot()
    batches = sorted({c["batch"] for c in first})
    counts = [sum(c["batch"] == b for c in first) for b in batches]
    fig, axes = plt.subplots(len(batches), 1, figsize=(9, 1.2 + 0.32 * sum(counts)), squeeze=False,
                             gridspec_kw={"height_ratios": counts})
    rng = np.random.default_rng(0)
    for ax, batch in zip(axes[:, 0], batches):
        rows = [c for c in first if c["batch"] == batch]
        for y, c in enumerate(rows):
            r = np.array(c["round_ratios"])
            ax.scatter(r, y + rng.uniform(-0.25, 0.25, r.size), s=3, alpha=0.3, color="tab:blue")
            ax.plot(c["ci95"], [y, y], color="black", linewidth=2)
            ax.plot([c["ratio"]] * 2, [y - 0.35, y + 0.35], color="black", linewidth=2)
        ax.axvline(1.0, color="grey", linestyle="--", linewidth=1)
        ax.set_xscale("log")
        low, high = ax.get_xlim()
        ax.set_xticks([t for t in RATIO_TICKS if low <= t <= high], minor=False)
        ax.set_xticks([], minor=True)
        ax.xaxis.set_major_formatter(lambda v, _: f"{v:g}")
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels([f"{c['a']} vs {c['b']}: {c['verdict']}" for c in rows], fontsize=7)
        ax.set(title=f"batch {batch}: per-round time ratio (b / a; above 1 a is faster), median and 95 % interval")
        ax.title.set_fontsize(9)
    axes[-1, 0].set_xlabel("ratio (log)")
    _save(fig, out_dir / "paired_ratios.png")
    return ["paired_ratios.png"]


def _paired_targets(paired: list[dict], block: list[dict]) -> list[dict]:
    """Each target from the paired comparisons of every run: met when, in every run, the whole
    95 % interval lies at or above the goal (a lead counts only where the interval says so)."""
    out = []
    for (precision, batch), goal in TARGETS.items():
        runs = [c for c in paired if c["kind"] == f"{precision}-vs-reference" and f"bs{c['batch']}" == batch]
        out.append({"precision": precision, "batch": batch, "goal": goal, "runtimes": [c["a"] for c in runs],
                    "ratios": [c["ratio"] for c in runs], "ci95": [c["ci95"] for c in runs],
                    "verdicts": [c["verdict"] for c in runs], "rounds": [c["rounds"] for c in runs],
                    "stopped_by": [c["stopped_by"] for c in runs],
                    "met": all(c["ci95"][0] >= goal for c in runs) if runs else None,
                    "block_ratios": [r[precision][batch][1] for r in block if precision in r]})
    return out


PEAK_DRIFT = 0.10  # the GEMM peaks at the end differing from the start by more than this: the machine changed under the run


TARGETS = {("int8", "bs256"): 1.15, ("int8", "bs1"): 1.0, ("fp32", "bs256"): 1.0, ("fp32", "bs1"): 1.0}  # speed ratio each must reach


def write_benchmark_report(runs: list[dict], threads: int, macs: int, fp32_top1: float,
                           best_drop_pp: float, out_dir: str | Path, peaks: tuple[dict, dict] | None = None,
                           classes: list | None = None, about: dict | None = None) -> dict:
    """``benchmark.json`` and ``benchmark.md`` from one or more pytest-benchmark JSONs (``runs``):
    each runtime's figure is the median of the runs; each ratio comes from paired, interleaved
    rounds within a run, with its interval; ``peaks`` are the GEMM peaks at the start and the end."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    per_run = [benchmark_rows(r) for r in runs]
    for run in per_run:
        for r in run:
            r["drop_pp"] = round((fp32_top1 - r["top1"]) * 100, 4) if r["top1"] is not None else None
    paired = comparisons(runs)
    rows = sorted(median_rows(per_run), key=lambda r: -r["img_per_s_bs256"])
    start, end = peaks or (None, None)
    for r in rows:
        r["gmacs_per_s"] = r["img_per_s_bs256"] * macs / 1e9
        if peaks and r["precision"] in start:  # the share of the cores' peak (the mean of start and end)
            r["peak_share"] = r["gmacs_per_s"] / ((start[r["precision"]] + end[r["precision"]]) / 2)
    models = [r for r in rows if r["precision"] != "overhead"]
    best_fp32, best_int8 = _best(rows, best_drop_pp)
    classes = classes or [str(c) for c in range(len(best_fp32["per_class"]))]
    figures = _plots(models, best_fp32, best_int8, out_dir, classes) + _paired_plot(paired, out_dir)
    report = {**(about or {}), "threads": threads, "runs": len(runs), "macs_per_image": macs, "fp32_top1": fp32_top1,
              "best_drop_pp": best_drop_pp, "peaks_gmacs_start": start, "peaks_gmacs_end": end,
              "peaks_drift": bool(peaks) and any(abs(end[k] / start[k] - 1) > PEAK_DRIFT for k in start),
              "figures": figures,
              "targets": _paired_targets(paired, [_block_targets(run, best_drop_pp) for run in per_run]),
              "comparisons": [{k: v for k, v in c.items() if k != "round_ratios"} for c in paired],
              "rows": [{k: v for k, v in r.items() if k not in ("per_class", "confusion")} for r in rows]}
    _write(stamp(report, "benchmark"), benchmark_blocks(report), out_dir, "benchmark", "r8 CPU inference benchmark")
    return report


def _best(rows: list[dict], best_drop_pp: float) -> tuple[dict, dict]:
    """r8's fastest fp32 runtime at batch 256, and its fastest int8 one within ``best_drop_pp``
    (the fastest int8 at all where none is)."""
    ours = [r for r in rows if r["precision"] != "overhead" and not r.get("reference")]
    fp32 = max((r for r in ours if r["precision"] == "fp32"), key=lambda r: r["img_per_s_bs256"])
    int8 = [r for r in ours if r["precision"] == "int8"]
    within = [r for r in int8 if r["drop_pp"] <= best_drop_pp]
    return fp32, max(within or int8, key=lambda r: r["img_per_s_bs256"])


def _target_blocks(report: dict) -> list:
    """The targets, verdict first: each from the paired comparisons of every run, gated on the lower
    bound of the interval; the per-block median ratios of the same runs beside it."""
    lines = []
    for t in report["targets"]:
        if not t["ratios"]:
            continue
        within = f" within {report['best_drop_pp']} pp" if t["precision"] == "int8" else ""
        runs = "; ".join(f"{r:.2f}x [{lo:.2f}, {hi:.2f}] {v}, {n} rounds ({why})" for r, (lo, hi), v, n, why in
                         zip(t["ratios"], t["ci95"], t["verdicts"], t["rounds"], t["stopped_by"]))
        block = (f" Per-block medians of the same runs: {', '.join(f'{r:.2f}x' for r in t['block_ratios'])}."
                 if t["block_ratios"] else "")
        lines.append(f"best r8 {t['precision']}{within} at {t['batch']} ({', '.join(sorted(set(t['runtimes'])))}) vs "
                     f"TFLite {t['precision']} reference — target >= {t['goal']}x on the interval's lower bound: "
                     f"**{'met' if t['met'] else 'NOT met'}**. Paired, per run: {runs}.{block}")
    return [Heading(1, f"Targets ({report['runs']} run(s))"), *map(Para, lines)] if lines else []


def benchmark_blocks(report: dict) -> list:
    rows, threads, best_drop_pp = report["rows"], report["threads"], report["best_drop_pp"]
    models = [r for r in rows if r["precision"] != "overhead"]
    best_fp32, best_int8 = _best(rows, best_drop_pp)
    keras = next((r for r in rows if r["runtime"] == "keras"), None)
    table = [[r["runtime"], r["precision"], r["config"] or "-", f"{r['img_per_s_bs256']:,.0f} ({r['threads'].get('bs256')})",
              f"{r['ms_bs1']:.3f} ({r['threads'].get('bs1')})", f"{r['iqr_ms_bs1']:.3f}",
              f"{r['img_per_s_bs256'] / keras['img_per_s_bs256']:.1f}x" if keras else "-",
              f"{r['img_per_s_bs256'] / best_fp32['img_per_s_bs256']:.2f}x",
              "-" if r["top1"] is None else f"{r['top1']:.2%}", f"{r['size_bytes'] / 1024:.0f}", f"{r['gmacs_per_s']:.0f}",
              f"{r['peak_share']:.0%}" if "peak_share" in r else "-"]
             for r in models]
    blocks = [*_target_blocks(report),
              Heading(1, "Runtimes"),
              Para(f"Medians of {report['runs']} run(s); each runtime at 1 and {threads} threads, the faster count shown "
                   "per batch size (`t`); pytest-benchmark medians with their interquartile range (each runtime "
                   "timed in its own block: the ratios above come from the paired rounds). Inputs are the data "
                   "set's NHWC test images (C-contiguous), each runtime doing its own conversion. "
                   f"{report['macs_per_image'] / 1e6:.2f} M MACs per image. fp32 top-1 {report['fp32_top1']:.2%}."),
              Table(["runtime", "precision", "config", "img/s bs256 (t)", "ms bs1 (t)", "IQR bs1 ms", "vs Keras",
                     "vs best fp32", "top-1", "size (KiB)", "GMAC/s", "of peak"], table)]
    floors = [r for r in rows if r["precision"] == "overhead"]
    if floors:
        blocks.append(Para("Per-call floor (a model that only averages the pixels): " + ", ".join(
            f"{r['runtime'].removeprefix('overhead-')} {r['ms_bs1'] * 1000:.0f} µs" for r in floors) + "."))
    peaks = (report.get("peaks_gmacs_start"), report.get("peaks_gmacs_end"))
    if all(peaks):
        blocks.append(Para(
            f"Peak estimate for these cores ({threads} threads: a 2048² fp32 matmul and an int8 quantized linear layer) "
            f"at the start / the end of the run: fp32 {peaks[0]['fp32']:.0f} / {peaks[1]['fp32']:.0f} GMAC/s, int8 "
            f"{peaks[0]['int8']:.0f} / {peaks[1]['int8']:.0f} GMAC/s"
            + (f" — **they differ by more than {PEAK_DRIFT:.0%}: the machine changed under the run**" if report["peaks_drift"] else "")
            + f". Best int8 here: {best_int8['gmacs_per_s']:.0f} GMAC/s ({best_int8.get('peak_share', 0):.0%} of the int8 peak)."))
    if report.get("comparisons"):
        blocks += [Heading(1, "Paired comparisons"),
                   Para("Each pair timed in interleaved rounds (A B B A or B A A B, seeded) on the same inputs, each at "
                        "its faster thread count; ratio = the median over rounds of b's time / a's time (above 1: a is "
                        "faster), with a bootstrap 95 % interval. Rounds go on until the interval excludes 1.0, lies "
                        "within ±3 %, or the time cap is reached."),
                   Table(["run", "batch", "comparison", "a", "b", "ratio [95 % interval]", "verdict", "rounds", "stopped by"],
                         [[str(c["run"]), str(c["batch"]), c["name"], c["a"], c["b"],
                           f"{c['ratio']:.3f} [{c['ci95'][0]:.3f}, {c['ci95'][1]:.3f}]", c["verdict"], str(c["rounds"]),
                           c["stopped_by"]] for c in report["comparisons"]])]
    return blocks + [Figure(name.removesuffix(".png").replace("_", " "), name) for name in report.get("figures", [])]


def stamp(report: dict, job: str) -> dict:
    """Adds when, and by which command, a report was made."""
    cli = sys.argv[0].endswith(os.path.join("r8", "__main__.py"))
    report["command"] = "python -m r8 " + " ".join(sys.argv[1:]) if cli else f"r8.jobs.{job}()"
    report["generated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return report


def append_step_summary(markdown_text: str) -> None:
    """On GitHub Actions (``GITHUB_STEP_SUMMARY`` set), add the text to the run's summary page."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(markdown_text.rstrip() + "\n\n")


def _verdict(gate: dict) -> str:
    return "pass" if gate["passed"] else f"not met on this CPU: {gate['waived']}" if "waived" in gate else "FAIL"


def _beside_nncf(anchor: dict | None, searched: list[dict]) -> list:
    """The float MACs of each r8 search beside those of NNCF's accuracy control (its row), in a sentence."""
    if not (anchor and searched):
        return []
    start = anchor["config"].removeprefix("accuracy-control-")
    each = "; ".join(f"{r['backend']} {r['float_mac_share']:.1%} ("
                     f"{'no more' if r['float_mac_share'] <= anchor['float_mac_share'] else 'more'}, {'met' if r['met'] else 'not met'})"
                     for r in searched)
    return [Para(f"Beside NNCF's own answer, `nncf.quantize_with_accuracy_control` from {start} at the same budget (it stops "
                 f"at the validation *point* drop): {anchor['float_mac_share']:.1%} of the MACs float. r8's searches: {each}.")]


def search_blocks(report: dict) -> list:
    """``search.json``'s rows as the "When int8 hurts" section: the verdict first."""
    rows = report["rows"]
    met = [r for r in rows if r["met"]]
    verdict = (f"**Met** on {', '.join(r['backend'] for r in met)}: " + "; ".join(
        f"{r['backend']} {r['config']} with {len(r['float_layers'])} float layer(s) ({r['float_mac_share']:.1%} of the MACs), "
        f"test drop {r['drop_pp']:.2f} pp [{r['drop_ci95_pp'][0]:.2f}, {r['drop_ci95_pp'][1]:.2f}]" for r in met) + "."
               if met else "**Not met** on any backend, even with every conv / linear layer and residual add float (the ops between "
                  "them, pooling among them, stay int8).")
    anchor = next((r for r in rows if r["backend"] == "nncf"), None)
    searched = [r for r in rows if r is not anchor]
    return [Para(f"{verdict} Budget: {report['budget_pp']} pp, met when the validation drop's paired upper 95 % bound is "
                 f"within it ({report['validation']['n']} training images, disjoint from the {report['calibration']['n']} "
                 f"calibration images); the test images ({report['test_n']}, fp32 {report['fp32_top1']:.2%}) are used once, "
                 "for each final row."),
            *_beside_nncf(anchor, searched),
            Table(["backend", "config", "met", "float layers", "float MACs", "test top-1", "test drop (95 % CI)",
                   "validation drop (95 % CI)", "steps"],
                  [[r["backend"], r["config"], "yes" if r["met"] else "no", ", ".join(r["float_layers"]) or "none",
                    f"{r['float_mac_share']:.1%}", f"{r['top1']:.2%}",
                    f"{r['drop_pp']:.2f} [{r['drop_ci95_pp'][0]:.2f}, {r['drop_ci95_pp'][1]:.2f}]",
                    f"{r['validation_drop_pp']:.2f} [{r['validation_drop_ci95_pp'][0]:.2f}, {r['validation_drop_ci95_pp'][1]:.2f}]",
                    str(len(r["steps"]))] for r in rows]),
            Para("Speed of each row's model beside the same config with no layer float and fp32 (torch) on this machine: the "
                 f"median of {report['speed_rounds']['1']} calls at batch 1 and of {report['speed_rounds']['256']} at batch 256 "
                 "(`python -m r8 benchmark` is the benchmark)."),
            Table(["backend", "config", "bs1 ms: mixed / int8 / fp32", "bs256 img/s: mixed / int8 / fp32"],
                  [[r["backend"], r["config"], " / ".join(f"{r['speed'][k]['ms_bs1']:.3f}" for k in ("mixed", "int8", "fp32")),
                    " / ".join(f"{r['speed'][k]['img_per_s_bs256']:,.0f}" for k in ("mixed", "int8", "fp32"))] for r in rows]),
            *([Para("On TFLite Micro (the .tflite rows): the smallest arena that runs and the flash (the file), mixed beside "
                    "full int8; a float layer's weights take 4 bytes each, and its activations too."),
               Table(["backend", "config", "arena B: mixed / int8", "flash B: mixed / int8"],
                     [[r["backend"], r["config"], " / ".join(f"{r['mcu'][k]['arena_bytes']:,}" for k in ("mixed", "int8")),
                       " / ".join(f"{r['mcu'][k]['flash_bytes']:,}" for k in ("mixed", "int8"))] for r in rows if r.get("mcu")])]
              if any(r.get("mcu") for r in rows) else []),
            Heading(1, "Why these layers stayed float"),
            Para("Each layer float alone, and each with the next layer run: the drop on the validation images with only "
                 "those float (the start config's drop less this is what they recover). The search's first step keeps the "
                 "cheapest of the most helpful of these float; each later step measures every unit again beside the layers "
                 "already float (the steps chart); listed: what it kept."),
            Table(["backend", "layers", "MACs", "SQNR (dB)", "drop with only these float (95 % CI)"],
                  [[r["backend"], " + ".join(s["layers"]), f"{s['macs']:,}", "-" if s["sqnr_db"] is None else f"{s['sqnr_db']:.1f}",
                    f"{s['alone_float_drop_pp']:.2f} [{s['alone_float_drop_ci95_pp'][0]:.2f}, {s['alone_float_drop_ci95_pp'][1]:.2f}]"]
                   for r in rows for s in r["sensitivity"] if set(s["layers"]) <= set(r["float_layers"])]),
            Figure("validation drop against the number of float layers", "search_steps.png"),
            Figure("per-layer sensitivity", "search_sensitivity.png")]


SENSITIVITY_BARS = 30  # the most helpful ones: a chart a person can read


def _search_plots(report: dict, out_dir: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in report["rows"]:
        n = [len(s["float_layers"]) for s in r["steps"]]
        drop = np.array([s["validation_drop_pp"] for s in r["steps"]])
        ci = np.array([s["validation_drop_ci95_pp"] for s in r["steps"]]).T
        ax.errorbar(n, drop, yerr=[drop - ci[0], ci[1] - drop], marker="o", capsize=3, label=f"{r['backend']} {r['config']}")
    ax.axhline(report["budget_pp"], color="grey", linestyle="--", linewidth=1, label=f"budget {report['budget_pp']} pp")
    ax.set(xlabel="layers kept float (in the order the search kept them)", ylabel="validation drop vs fp32 (pp), 95 % CI",
           title="int8 drop as layers are kept float")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=7)
    _save(fig, out_dir / "search_steps.png")
    rows = [r for r in report["rows"] if r["sensitivity"]] or report["rows"][:1]
    bars = min(SENSITIVITY_BARS, max(len(r["sensitivity"]) for r in rows))
    fig, axes = plt.subplots(1, len(rows), figsize=(5 * len(rows), 1.9 + 0.22 * bars), squeeze=False)
    for ax, r in zip(axes.flat, rows):
        ranked = sorted(r["sensitivity"], key=lambda s: s["alone_float_drop_pp"], reverse=True)[-SENSITIVITY_BARS:]
        start = r["steps"][0]["validation_drop_pp"]
        ax.barh(range(len(ranked)), [start - s["alone_float_drop_pp"] for s in ranked],  # most helpful at the top
                color=["tab:orange" if set(s["layers"]) <= set(r["float_layers"]) else "tab:blue" for s in ranked])
        ax.set_yticks(range(len(ranked)), [" + ".join(s["layers"])[:32] + ("" if s["sqnr_db"] is None else f" ({s['sqnr_db']:.0f} dB)")
                                           for s in ranked], fontsize=6)
        ax.set(xlabel="pp recovered with only these float", title=f"{r['backend']} {r['config']} (orange: kept float)")
        ax.title.set_fontsize(8)
    _save(fig, out_dir / "search_sensitivity.png", dpi=110)


def write_search_report(report: dict, out_dir: str | Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _search_plots(report, out_dir)
    return _write(report, search_blocks(report), out_dir, "search", "r8 search: the fewest float layers")


# file in a model's report folder -> (title, the command that writes it, its blocks)
SOURCES = {
    "conversion.json": ("Conversion: Keras vs PyTorch, fp32", "python -m r8 quantize (or nox -s quantize)", conversion_blocks),
    "quantization.json": ("int8 quantization", "python -m r8 quantize (or nox -s quantize)", quantization_blocks),
    "study.json": ("Calibration size and seed study", "python -m r8 study (or nox -s study)", study_blocks),
    "benchmark.json": ("CPU inference benchmark", "python -m r8 benchmark (or nox -s benchmark)", benchmark_blocks),
    "search.json": ("When int8 hurts: the fewest float layers", "python -m r8 search --max-drop-pp X", search_blocks),
}
