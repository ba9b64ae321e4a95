"""The search report (``search.{json,md}``): the fewest float layers per backend for a drop budget."""

from pathlib import Path

import numpy as np

from r8.report.blocks import Figure, Heading, Para, Table
from r8.report.files import pyplot, save_figure, write_report
from r8.results import SearchResult


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
    plt = pyplot()
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
    save_figure(fig, out_dir / "search_steps.png")
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
    save_figure(fig, out_dir / "search_sensitivity.png", dpi=110)


def write_search_report(result: SearchResult, out_dir: str | Path) -> tuple[Path, Path]:
    report = result.to_json()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _search_plots(report, out_dir)
    return write_report(report, search_blocks(report), out_dir, "search", "r8 search: the fewest float layers")
