"""The calibration study report (``study.{json,md}``): the int8 drop over calibration sizes and seeds."""

from pathlib import Path

from r8.report.blocks import Figure, Para, Table
from r8.report.files import pyplot, save_figure, write_report
from r8.results import StudyResult


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
    plt = pyplot()
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
    save_figure(fig, path)


def write_study_report(result: StudyResult, out_dir: str | Path) -> tuple[Path, Path]:
    report = result.to_json()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _study_plot(report, out_dir / "study.png")
    return write_report(report, study_blocks(report), out_dir, "study", "r8 calibration study")
