"""The benchmark report (``benchmark.{json,md}`` and plots) from pytest-benchmark's JSON: medians,
paired comparisons and the speed targets, verdict first."""

from pathlib import Path

import numpy as np

from r8.report.blocks import Figure, Heading, Para, Table
from r8.report.files import pyplot, save_figure, stamp, write_report
from r8.results import BenchmarkResult


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
    """Every paired comparison (r8.runtimes.timing, made by r8.jobs.benchmark_suite's test_paired) of
    each run, with its run number: the rankings' round-robins (kind "<kind> ranking") and what each
    winner then met."""
    return [{"run": i, **c} for i, run in enumerate(runs, 1) for b in run["benchmarks"]
            for c in [*({"kind": f"{b['extra_info']['kind']} ranking", **r}
                        for r in b["extra_info"].get("ranking", {}).get("comparisons", [])),
                      *b["extra_info"].get("comparisons", [])]]


def rankings(runs: list[dict]) -> list[dict]:
    """Each run's rankings (r8.runtimes.ranking), by kind and batch size, without their comparisons."""
    return [{"run": i, "kind": b["extra_info"]["kind"], **{k: v for k, v in b["extra_info"]["ranking"].items()
                                                           if k != "comparisons"}}
            for i, run in enumerate(runs, 1) for b in run["benchmarks"] if "ranking" in b["extra_info"]]


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
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(8, 5))
    for i, r in enumerate(rows):
        ax.scatter(r["img_per_s_bs256"], r["top1"] * 100, marker="o" if r["precision"] == "fp32" else "s")
        ax.annotate(r["runtime"], (r["img_per_s_bs256"], r["top1"] * 100), fontsize=7,
                    xytext=(3, 3 + 9 * (i % 3)), textcoords="offset points")  # staggered: fp32 points coincide
    ax.set(xscale="log", xlabel="images/s at batch 256 (log)", ylabel="top-1 on the test images (%)",
           title="Accuracy vs throughput (circles fp32, squares int8)")
    save_figure(fig, out_dir / "accuracy_vs_throughput.png")

    fig, ax = plt.subplots(figsize=(9, 4))
    x = np.arange(len(classes))
    ax.bar(x - 0.2, np.array(fp32["per_class"]) * 100, 0.4, label=f"{fp32['runtime']} (fp32)")
    ax.bar(x + 0.2, np.array(best_int8["per_class"]) * 100, 0.4, label=f"{best_int8['runtime']} (int8)")
    ax.set(xticks=x, ylabel="top-1 (%)", ylim=(50, 100), title="Per-class accuracy, fp32 vs best int8")
    ax.set_xticklabels(classes, rotation=30)
    ax.legend(fontsize=8)
    save_figure(fig, out_dir / "per_class.png")

    fig, ax = plt.subplots(figsize=(6, 5.5))
    cm = np.array(best_int8["confusion"])
    ax.imshow(cm, cmap="Blues")
    for (i, j), n in np.ndenumerate(cm):
        ax.text(j, i, n, ha="center", va="center", fontsize=7, color="white" if n > cm.max() / 2 else "black")
    ax.set(xticks=range(len(classes)), yticks=range(len(classes)), xlabel="predicted", ylabel="true",
           title=f"Confusion matrix, {best_int8['runtime']}")
    ax.set_xticklabels(classes, rotation=45, fontsize=7)
    ax.set_yticklabels(classes, fontsize=7)
    save_figure(fig, out_dir / "confusion_best_int8.png")
    return ["accuracy_vs_throughput.png", "per_class.png", "confusion_best_int8.png"]


RATIO_TICKS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.25, 1.5, 2, 5, 10, 20, 50, 100)


def _paired_plot(paired: list[dict], out_dir: Path) -> list[str]:
    """Per batch size, one row per comparison of the first run: every round's ratio (dots), the
    median (bar) and its 95 % interval (line), against 1.0 (no difference)."""
    first = [c for c in paired if c["run"] == 1]
    if not first:
        return []
    plt = pyplot()
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
    save_figure(fig, out_dir / "paired_ratios.png")
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
                           classes: list | None = None, about: dict | None = None,
                           profiles: list | None = None) -> BenchmarkResult:
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
              "rankings": rankings(runs), "profiles": profiles or [],
              "rows": [{k: v for k, v in r.items() if k not in ("per_class", "confusion")} for r in rows]}
    result = BenchmarkResult.from_json({**report, **stamp("benchmark")})
    report = result.to_json()
    write_report(report, benchmark_blocks(report), out_dir, "benchmark", "r8 CPU inference benchmark")
    return result


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


RANKED = {"vs-fastest": "The fastest runtime", "int8-vs-reference": "r8's fastest int8 (within the drop bound)",
          "fp32-vs-reference": "r8's fastest fp32"}


def _ranking_blocks(report: dict) -> list:
    """The winners, verdict first: at each batch size, who no other contender beats in paired rounds
    (several: a tie), in each run."""
    lines = []
    for kind, title in RANKED.items():
        for batch in sorted({r["batch"] for r in report.get("rankings", []) if r["kind"] == kind}):
            runs = [r for r in report["rankings"] if r["kind"] == kind and r["batch"] == batch]
            said = "; ".join(f"run {r['run']}: " + (f"a tie of {', '.join(r['fastest'])}" if r["tie"] else r["fastest"][0])
                             + f" (of {len(r['contenders'])} contender(s))" for r in runs)
            lines.append(f"{title} at batch {batch}: {said}.")
    for batch in sorted({c["batch"] for c in report.get("comparisons", []) if c["kind"] == "int8-vs-executorch"}):
        runs = [c for c in report["comparisons"] if c["kind"] == "int8-vs-executorch" and c["batch"] == batch]
        lines.append(f"ExecuTorch int8 against r8's fastest int8 at batch {batch}: " + "; ".join(
            f"run {c['run']}: {c['a']} {c['ratio']:.2f}x [{c['ci95'][0]:.2f}, {c['ci95'][1]:.2f}] {c['verdict']}"
            for c in runs) + ".")
    if not lines:
        return []
    return [Heading(1, "Fastest, by paired rounds"),
            Para("The contenders are the runtimes whose block median is within 25 % of the leader's; each pair of "
                 "them is timed in interleaved rounds, and the fastest is the one no other beats with an interval "
                 "above 1.0 (several such: a tie)."), *map(Para, lines)]


def _profile_blocks(report: dict) -> list:
    """Per batch size, r8's fastest int8, the published file and ExecuTorch's int8 op kind by op
    kind, and what each runner adds to a bare call."""
    from r8.runtimes.profile import Profile, by_kind

    blocks = []
    for batch in sorted({p["batch"] for p in report.get("profiles", [])}):
        pair = [p for p in report["profiles"] if p["batch"] == batch]
        said = ", ".join(f"{p['role']}: {p['runtime']} ({p['threads']} thread(s))" for p in pair)
        blocks.append(Para(f"Batch {batch} — {said}." + "".join(f" {p['none']}." for p in pair if "none" in p)))
        profiled = [Profile.from_dict(p) for p in pair if "none" not in p]
        if not profiled:
            continue
        kinds = [by_kind(p) for p in profiled]
        names = list(dict.fromkeys(k for table in kinds for k in table))
        cell = lambda table, k: f"{table[k][0]} ops, {table[k][1]:,.1f}" if k in table else "-"  # noqa: E731
        rows = [[k, *(cell(t, k) for t in kinds)] for k in names]
        rows += [["sum of the ops, each alone", *(f"{sum(o.us for o in p.ops):,.1f}" for p in profiled)],
                 ["whole model, bare invoke / run", *(f"{p.bare_us:,.1f}" for p in profiled)],
                 ["r8's runner (predict)", *(f"{p.runner_us:,.1f}" for p in profiled)],
                 ["runner's overhead", *(f"{p.runner_overhead_us:,.1f}" for p in profiled)]]
        blocks.append(Table(["op kind (µs per call)", *(f"{p.engine}: {Path(p.file).name}" for p in profiled)], rows))
    if not blocks:
        return []
    return [Heading(1, "Per-op profile: r8's fastest int8, the published file, ExecuTorch"),
            Para("Each .tflite op timed alone (a model of that one op cut from the file, same kernels); each ONNX node "
                 "from ONNX Runtime's profiler or OpenVINO's counters inside whole runs; each ExecuTorch op from its "
                 "ETDump, by XNNPACK's names inside the delegate. Medians of short slots: a profile, not a speed "
                 "claim (the rankings above decide that). The bare call and the runner are timed in interleaved "
                 "slots; an overhead below 0 is the two medians' noise. "
                 "Every op's own figure is in benchmark.json."), *blocks]


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
              f"{r['peak_share']:.0%}" if r.get("peak_share") is not None else "-"]
             for r in models]
    blocks = [*_ranking_blocks(report), *_target_blocks(report),
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
    blocks += _profile_blocks(report)
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
