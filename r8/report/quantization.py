"""The quantization report (``quantization.{json,md}``: the int8 table, per-layer SQNR, sample
predictions) and the conversion section (Keras vs PyTorch)."""

from pathlib import Path

import numpy as np

from r8.report.blocks import Figure, Heading, Para, Table
from r8.report.files import pyplot, save_figure, write_report
from r8.results import QuantizeResult
from r8.rows import ranked, rows_from_json
from r8.thresholds import Gate


def reproducibility_blocks(report: dict) -> list:
    """Where each row was measured (CPU, ISA flags, threads, engine, versions) and what each
    backend's artifacts and predictions depend on besides the config."""
    from r8.core.environment import summary

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
    for r in ranked(rows_from_json(report)):
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
        *([Para(report["mcu_scope"])] if "mcu_scope" in report else []),
        Heading(1, "Gates"),
        Table(["gate", "threshold", "measured", ""], [[g.name, str(g.threshold), f"{g.measured:.4g}", g.verdict]
                                                      for g in map(Gate.from_json, report.get("gates", []))]),
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
    for config, d in report.get("executorch_delegation", {}).items():
        portable = ", ".join(f"`{op}` x{n}" for op, n in d["portable_ops"].items())
        blocks += [Heading(1, f"ExecuTorch {config}: what XNNPACK runs"), Para(
            f"{d['delegated_ops']} of {d['ops']} ops ({d['delegated_share']:.1%}) run in the XNNPACK delegate; "
            f"left to ExecuTorch's portable kernels: {portable or 'none'}.")]
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
    plt = pyplot()
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
    save_figure(fig, path, dpi=110)


SQNR_AXIS_DB = 60  # bars past this (exactly quantized tensors) are cut and labelled


def sqnr_figure(sqnr: list[dict], path: Path) -> None:
    """Per-layer SQNR bars, one panel per (backend, best/worst) entry of the report."""
    plt = pyplot()
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
    save_figure(fig, path, dpi=110)


def write_quantization_report(result: QuantizeResult, out_dir: str | Path) -> tuple[Path, Path]:
    """``quantization.json`` (the result's JSON form) and ``quantization.md`` rendered from it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = result.to_json()
    return write_report(report, quantization_blocks(report), out_dir, "quantization", "r8 int8 quantization")
