"""The jobs behind `python -m r8 quantize` and `python -m r8 study`.

quantize: every int8 config of the default matrix, per backend, evaluated on the 10k test
images against the fp32 baseline (paired: McNemar and a bootstrap interval of each drop), the
MLCommons int8 TFLite reference beside them, and the per-layer SQNR of each backend's best and
worst config. study: each backend's two best configs over calibration sizes and seeds.
"""

import json
from itertools import groupby
from pathlib import Path

import numpy as np
from tqdm import tqdm

from r8 import artifacts, backends, paths
from r8.backends import Backend
from r8.cache import atomic_write, build_facts
from r8.calibration import CalibrationSet, calibration_set
from r8.data import Split, load_split, perf_indices
from r8.index import append_step_summary, stamp, write_index
from r8.metrics import paired_drop, per_class, predict, top1
from r8.report import write_quantization_report, write_study_report
from r8.runners import TfliteRunner, TorchRunner

SQNR_IMAGES = 500  # test images the per-layer SQNR is measured on
STUDY_SIZES = (100, 250, 500, 1000, 2000)  # issue #8
STUDY_SEEDS = (0, 1, 2, 3, 4)


def int8_row(backend: str, config: str, probs: np.ndarray, fp32_probs: np.ndarray, test: Split,
             artifact: Path, facts: dict | None = None) -> dict:
    """One row of quantization.json (accuracies are fractions, the drop is in percent points),
    paired against the fp32 predictions on the same images."""
    perf = perf_indices("perf200", paths.data_dir())
    acc = top1(probs, test.labels)
    row = {"backend": backend, "config": config, "top1": acc,
           "top1_perf200": top1(probs[perf], test.labels[perf]),
           "drop_pp": round((top1(fp32_probs, test.labels) - acc) * 100, 4),
           **paired_drop(fp32_probs, probs, test.labels),
           "size_bytes": artifact.stat().st_size, "artifact": str(artifact),
           "per_class": per_class(probs, test.labels)}
    for key in ("calibration_s", "quantize_s"):
        if facts and key in facts:
            row[key] = round(facts[key], 3)
    return row


def evaluate_config(backend: str, config, fp32_probs: np.ndarray, test: Split, cal: CalibrationSet | None = None,
                    progress: bool = False) -> tuple[dict, np.ndarray]:
    """Build (or reuse) one int8 artifact, evaluate it on ``test``: (report row, its predictions)."""
    cal = cal or calibration_set()
    b = backends.backend(backend)
    path = b.build(config, cal)
    probs = predict(b.runner(config, path), test.images, progress=progress)
    return int8_row(backend, f"{config.id}-{cal.source}", probs, fp32_probs, test, path, build_facts(path)), probs


def config_row(backend: str, config, fp32_probs: np.ndarray, test: Split, cal: CalibrationSet | None = None,
               progress: bool = False) -> dict:
    """The report row of one int8 config (see :func:`evaluate_config`)."""
    return evaluate_config(backend, config, fp32_probs, test, cal, progress)[0]


def backend_rows(b: Backend, fp32_probs: np.ndarray, test: Split, cal: CalibrationSet,
                 progress: bool) -> list[tuple[dict, np.ndarray]]:
    """(row, predictions) of every default config this machine can run."""
    rows = []
    for config in tqdm(b.default, desc=f"{b.name} int8 configs", disable=not progress):
        if b.unavailable(config):
            tqdm.write(f"skipped {b.name}-{config.id}: {b.unavailable(config)}")
            continue
        rows.append(evaluate_config(b.name, config, fp32_probs, test, cal, progress))
    return rows


def tflite_reference_row(fp32_probs: np.ndarray, test: Split, progress: bool) -> dict:
    path = paths.tflite_model_path(quantized=True)
    probs = predict(TfliteRunner(path, name="tflite-reference"), test.images, progress=progress)
    return int8_row("tflite-reference", "mlcommons-int8 (calibrated on test images)", probs,
                    fp32_probs, test, path)


def backend_sqnr(b: Backend, rows: list[dict], cal: CalibrationSet, test: Split) -> list[dict]:
    """Per-layer SQNR for the backend's best and worst config (of those it can measure)."""
    images = test.images[:SQNR_IMAGES]
    by_name = {f"{c.id}-{cal.source}": c for c in b.default if b.sqnr_for(c)}
    ranked = sorted((r for r in rows if r["backend"] == b.name and r["config"] in by_name), key=lambda r: r["drop_pp"])
    out = []
    for which, row in (("best", ranked[0]), ("worst", ranked[-1])) if ranked else ():
        measured_on, sqnr = b.layer_sqnr(by_name[row["config"]], cal, images)
        out.append({"backend": b.name, "which": which, "config": row["config"],
                    "measured_on": f"{measured_on}-{cal.source}", "images": len(images), "sqnr_db": sqnr})
    return out


def fp32_predictions(test: Split, progress: bool) -> np.ndarray:
    """The baseline every drop is measured against: the converted torch model."""
    return predict(TorchRunner(artifacts.torch_fp32(), name="torch-fp32"), test.images, progress=progress)


def quantize_job(backend: str, out_dir: Path, cal: CalibrationSet | None = None, progress: bool = True) -> dict:
    cal = cal or calibration_set()
    test = load_split("test")
    fp32_probs = fp32_predictions(test, progress)
    report = {"fp32_top1": top1(fp32_probs, test.labels), "calibration": cal.summary(), "rows": [], "sqnr": []}
    evaluated = []  # (row, predictions) of r8's int8 configs
    for b in backends.registry().values() if backend == "all" else (backends.backend(backend),):
        evaluated += backend_rows(b, fp32_probs, test, cal, progress)
        rows = [row for row, _ in evaluated if row["backend"] == b.name]
        report["rows"] += rows
        if b.layer_sqnr:
            report["sqnr"] += backend_sqnr(b, rows, cal, test)
    if backend in ("all", "torch-onnx2torch"):
        report["onnx2torch_float_ops"] = onnx2torch_float_ops(cal)
    report["rows"].append(tflite_reference_row(fp32_probs, test, progress))
    report["figures"] = quantization_figures(report, evaluated, fp32_probs, test, Path(out_dir))
    _, md = write_quantization_report(stamp(report, "quantize_job"), out_dir)
    write_conversion_report(fp32_probs, test, Path(out_dir), progress)
    append_step_summary(md.read_text())
    write_index(out_dir)
    return report


def write_conversion_report(torch_probs: np.ndarray, test: Split, out_dir: Path, progress: bool) -> dict:
    """``conversion.json``: the MLPerf Tiny ResNet8 in Keras vs converted, on the 10k test images."""
    from r8.metrics import agreement
    from r8.runners import KerasRunner

    keras_probs = predict(KerasRunner(paths.keras_model_path()), test.images, progress=progress)
    report = stamp({"model": paths.keras_model_path().name, "n": len(test.labels),
                    "keras_top1": top1(keras_probs, test.labels), "torch_top1": top1(torch_probs, test.labels),
                    "keras_per_class": per_class(keras_probs, test.labels),
                    "torch_per_class": per_class(torch_probs, test.labels),
                    "max_abs_diff": float(np.abs(keras_probs - torch_probs).max()),
                    "agreement": agreement(keras_probs, torch_probs)}, "quantize_job")
    atomic_write(out_dir / "conversion.json", lambda tmp: tmp.write_text(json.dumps(report, indent=1)))
    return report


def quantization_figures(report: dict, evaluated: list[tuple[dict, np.ndarray]], fp32_probs: np.ndarray,
                         test: Split, out_dir: Path) -> dict:
    """title -> file: sample predictions of the best int8 config (of ``evaluated``, its rows and
    predictions), and the per-layer SQNR bars."""
    from r8.report import samples_figure, sqnr_figure

    out_dir.mkdir(parents=True, exist_ok=True)
    figures = {}
    if evaluated:
        best, probs = min(evaluated, key=lambda e: e[0]["drop_pp"])
        title = (f"Where fp32 and the best int8 config ({best['backend']} {best['config']}) disagree, "
                 "and a few where they agree")
        samples_figure(test.images, test.labels, fp32_probs.argmax(1), probs.argmax(1), title,
                       out_dir / "samples_best_int8.png")
        figures["Sample predictions, fp32 vs best int8"] = "samples_best_int8.png"
    if report["sqnr"]:
        sqnr_figure(report["sqnr"], out_dir / "sqnr_layers.png")
        figures["Per-layer SQNR, best and worst config per backend"] = "sqnr_layers.png"
    return figures


def onnx2torch_float_ops(cal: CalibrationSet) -> dict:
    """Why the onnx2torch route is not the default: the ops FX x86 leaves in float on each
    route's graph (the same config, the same calibration set)."""
    from r8.quant_torch import ONNX2TORCH_MATRIX, float_ops, quantize

    config = ONNX2TORCH_MATRIX[0]
    return {"config": config.id, **{route: float_ops(quantize(make(), config, cal.images))
                                    for route, make in artifacts.TORCH_ROUTES.items()}}


def find_config(name: str) -> tuple[Backend, object]:
    """``ort/qop-u8s8-perchannel-minmax`` -> (backend, config) from the backend's full matrix."""
    backend, _, config_id = name.partition("/")
    b = backends.backend(backend)
    return b, b.config(config_id)


def best_configs(b: Backend, fp32_probs: np.ndarray, test: Split, k: int = 2) -> list:
    """The backend's ``k`` default configs with the smallest drop (default calibration set)."""
    default = b.configs(available=True)
    drops = {c: config_row(b.name, c, fp32_probs, test)["drop_pp"] for c in default}
    return sorted(default, key=drops.get)[:k]


def seed_runs(backend: str, config, fp32_probs: np.ndarray, test: Split, n: int, seeds) -> list[dict]:
    """One study run per calibration seed at calibration size ``n``."""
    runs = []
    for seed in seeds:
        row = config_row(backend, config, fp32_probs, test, calibration_set(n, seed))
        runs.append({"backend": backend, "config": config.id, "n": n, "seed": seed, "top1": row["top1"],
                     "drop_pp": row["drop_pp"],  # TFLite calibrates inside its converter: all in quantize_s
                     "calibration_s": row.get("calibration_s", 0.0),
                     "quantize_s": row["quantize_s"]})
    return runs


def summarize(runs: list[dict]) -> list[dict]:
    """Mean, spread and range of the drop over seeds, per (backend, config, n)."""
    def key(r):
        return r["backend"], r["config"], r["n"]
    out = []
    for (backend, config, n), group in groupby(sorted(runs, key=key), key=key):
        drops = np.array([r["drop_pp"] for r in group])
        out.append({"backend": backend, "config": config, "n": n, "seeds": len(drops),
                    "mean_drop_pp": round(float(drops.mean()), 4),
                    "std_drop_pp": round(float(drops.std(ddof=1)) if len(drops) > 1 else 0.0, 4),
                    "min_drop_pp": float(drops.min()), "max_drop_pp": float(drops.max())})
    return out


def study_job(out_dir: Path, sizes=STUDY_SIZES, seeds=STUDY_SEEDS, configs: list[str] | None = None,
              per_backend: int = 2, progress: bool = True) -> dict:
    """Calibration-size and -seed study of ``configs`` (``backend/config-id``), by default each
    backend's ``per_backend`` best default configs."""
    test = load_split("test")
    fp32_probs = fp32_predictions(test, progress)
    chosen = ([find_config(c) for c in configs] if configs else
              [(b, c) for b in backends.gated() for c in best_configs(b, fp32_probs, test, per_backend)])
    plan = [(b, c, n) for b, c in chosen for n in sizes]
    runs = []
    for b, config, n in tqdm(plan, desc="study (config x size)", disable=not progress):
        runs += seed_runs(b.name, config, fp32_probs, test, n, seeds)
    report = {"fp32_top1": top1(fp32_probs, test.labels), "sizes": list(sizes), "seeds": list(seeds),
              "runs": runs, "summary": summarize(runs)}
    _, md = write_study_report(stamp(report, "study_job"), out_dir)
    append_step_summary(md.read_text())
    write_index(out_dir)
    return report
