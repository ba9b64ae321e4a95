"""The job behind `python -m r8 quantize`, for any model and data set: every int8 config of the
default matrix, per backend, evaluated on the test images against the fp32 baseline (paired:
McNemar and a bootstrap interval of each drop), the model's published int8 TFLite reference beside
them where it has one, its int8 files on TFLite Micro, the per-layer SQNR of each backend's best
and worst config, and the gates of :mod:`r8.thresholds`. Reports go to ``OUT/<model stem>/``.
"""

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from r8 import artifacts, backends
from r8.backends import Backend
from r8.calibration import CalibrationSet, calibration_set
from r8.core import console
from r8.core.cache import atomic_write, build_facts
from r8.core.environment import environment
from r8.core.errors import R8Error
from r8.data import Dataset
from r8.metrics import paired_drop, per_class, predict, top1
from r8.model import Model, describe
from r8.report.files import append_step_summary, stamp
from r8.report.index import write_index
from r8.report.quantization import write_quantization_report
from r8.results import QuantizeResult
from r8.rows import MCU_BACKEND, REFERENCE_BACKEND, Int8Row, McuRow, ReferenceRow, Row, best_row, ranked
from r8.runtimes.runners import TfliteRunner, TorchRunner
from r8.thresholds import DEFAULT, Thresholds, quantize_gates

SQNR_IMAGES = 500  # test images the per-layer SQNR is measured on


def scored(probs: np.ndarray, fp32_probs: np.ndarray, data: Dataset, artifact: Path, runner) -> dict:
    """The fields every :class:`r8.rows.Row` shares: ``probs`` (of ``artifact``, run by ``runner``)
    scored on the test images and paired against the fp32 predictions, and where it was measured."""
    labels = data.test.labels
    acc, paired = top1(probs, labels), paired_drop(fp32_probs, probs, labels)
    return {"top1": acc, "drop_pp": round((top1(fp32_probs, labels) - acc) * 100, 4),
            "drop_ci95_pp": tuple(paired["drop_ci95_pp"]), "mcnemar_p": paired["mcnemar_p"],
            "discordant": tuple(paired["discordant"]), "per_class": tuple(per_class(probs, labels)),
            "subsets": {name: top1(probs[idx], labels[idx]) for name, idx in data.subsets},
            "size_bytes": artifact.stat().st_size, "artifact": str(artifact), "env": environment(runner)}


def evaluate_config(model: Model, data: Dataset, backend: str, config, fp32_probs: np.ndarray,
                    cal: CalibrationSet, progress: bool = False) -> tuple[Int8Row, np.ndarray]:
    """Build (or reuse) one int8 artifact, evaluate it on the test images: (row, its predictions)."""
    b = backends.backend(backend)
    path = b.build(model, config, cal)
    runner = b.runner(config, path)
    probs = predict(runner, data.test.images, progress=progress)
    facts = build_facts(path)
    timings = {k: round(facts[k], 3) for k in ("calibration_s", "quantize_s") if k in facts}
    return Int8Row(backend, **scored(probs, fp32_probs, data, path, runner), config_id=config.id,
                   calibration=cal.source, artifact_digest=b.digest(path), **timings), probs


def config_row(model: Model, data: Dataset, backend: str, config, fp32_probs: np.ndarray, cal: CalibrationSet,
               progress: bool = False) -> Int8Row:
    """The report row of one int8 config (see :func:`evaluate_config`)."""
    return evaluate_config(model, data, backend, config, fp32_probs, cal, progress)[0]


def backend_rows(model: Model, data: Dataset, b: Backend, fp32_probs: np.ndarray, cal: CalibrationSet,
                 progress: bool, configs: list | None = None,
                 skipped: list | None = None) -> list[tuple[Int8Row, np.ndarray]]:
    """(row, predictions) of every default config (or ``configs``) this machine can run; a config
    the backend refuses for this model (R8Error) goes to ``skipped`` with the reason."""
    rows, skipped = [], [] if skipped is None else skipped
    for config in console.progress(b.default if configs is None else configs, f"{b.name} int8 configs", progress):
        if b.unavailable(config):
            console.note(f"skipped {b.name}-{config.id}: {b.unavailable(config)}")
            continue
        try:
            rows.append(evaluate_config(model, data, b.name, config, fp32_probs, cal, progress))
        except R8Error as e:  # this model is out of the backend's reach: shown in the report with the reason
            console.note(f"skipped {b.name}-{config.id}: {e}")
            skipped.append({"backend": b.name, "config": config.id, "reason": str(e)})
    return rows


def reference_row(model: Model, data: Dataset, fp32_probs: np.ndarray, progress: bool) -> ReferenceRow | None:
    """The model's published int8 .tflite on the same images, where it has one."""
    path = model.reference("int8")
    if path is None:
        return None
    runner = TfliteRunner(path, name=REFERENCE_BACKEND)
    probs = predict(runner, data.test.images, progress=progress)
    return ReferenceRow(REFERENCE_BACKEND, **scored(probs, fp32_probs, data, path, runner))


@dataclass(frozen=True)
class McuFile:
    """An int8 .tflite to run on TFLM, and whose it is (see :class:`r8.rows.McuRow`)."""
    backend: str
    config: str
    path: Path


def mcu_rows(model: Model, data: Dataset, fp32_probs: np.ndarray, files: list[McuFile],
             progress: bool = True) -> list[McuRow]:
    """A row per int8 .tflite: top-1 on TFLM paired against fp32 like every row, and what says
    whether it runs on a microcontroller (agreement with LiteRT's kernels, arena and flash bytes,
    ops)."""
    from r8.runtimes import mcu

    rows = []
    for f in console.progress(files, "TFLM (microcontroller kernels)", progress):
        m = mcu.measure(f.path, data.test.images)
        probs, litert_probs = m.pop("probs"), m.pop("litert_probs")
        # the environment of TflmRunner's class: TFLM ran in one single-threaded process per core
        rows.append(McuRow(MCU_BACKEND, **scored(probs, fp32_probs, data, Path(f.path), mcu.TflmRunner),
                           source_backend=f.backend, source_config=f.config,
                           litert_top1=top1(litert_probs, data.test.labels),
                           vs_litert_ci95_pp=tuple(paired_drop(litert_probs, probs, data.test.labels)["drop_ci95_pp"]),
                           measured=m))
    return rows


def mcu_files(rows: list[Row]) -> list[McuFile]:
    """The int8 .tflite of the best row of each of r8's backends that write one (what the TFLM gates
    read) and of the published reference; ``python -m r8 mcu`` runs every default config's file."""
    ours = [best_row(rows, b) for b in sorted(backends.mcu_names())]
    return [McuFile(r.backend, r.config, Path(r.artifact)) for r in rows
            if r in ours or isinstance(r, ReferenceRow)]


MCU_SCOPE = ("TFLite Micro ran the best int8 .tflite of each backend that writes one, and the published file: the "
             "files its gates read. `python -m r8 mcu` runs every default config's file.")


def backend_sqnr(model: Model, b: Backend, rows: list[Int8Row], cal: CalibrationSet, data: Dataset) -> list[dict]:
    """Per-layer SQNR for the backend's best and worst config (of those it can measure)."""
    images = data.test.images[:SQNR_IMAGES]
    by_id = {c.id: c for c in b.default if b.sqnr_for(c)}
    measurable = [r for r in ranked(rows) if r.backend == b.name and r.config_id in by_id]
    out = []
    for which, row in (("best", measurable[0]), ("worst", measurable[-1])) if measurable else ():
        measured_on, sqnr = b.layer_sqnr(model, by_id[row.config_id], cal, images)
        out.append({"backend": b.name, "which": which, "config": row.config,
                    "measured_on": f"{measured_on}-{cal.source}", "images": len(images), "sqnr_db": sqnr})
    return out


def fp32_predictions(model: Model, data: Dataset, progress: bool) -> np.ndarray:
    """The baseline every drop is measured against: the converted torch model."""
    return predict(TorchRunner(artifacts.torch_fp32(model), name="torch-fp32"), data.test.images, progress=progress)


def quantize_job(model: Model, data: Dataset, backend: str, out_root: Path, cal: CalibrationSet | None = None,
                 thresholds: Thresholds = DEFAULT, progress: bool = True, configs: list[str] | None = None,
                 mcu: bool = False) -> QuantizeResult:
    """Every default config of ``backend`` (or of every backend, ``all``), or just ``configs``
    (``backend/config-id``), on ``model`` and ``data``; writes OUT/<stem>/quantization.{json,md}
    and conversion.json, and the index of OUT."""
    data.check(model)
    cal = cal or calibration_set(data, num_classes=model.num_classes)
    out_dir = model.report_dir(out_root)
    fp32_probs = fp32_predictions(model, data, progress)
    result = QuantizeResult(**describe(model, data, cal), fp32_top1=top1(fp32_probs, data.test.labels),
                            classes=list(data.class_names(model.num_classes)))
    evaluated = []  # (row, predictions) of r8's int8 configs
    if configs:  # (backend, its configs asked for), in the order asked
        asked: dict[str, list] = {}
        for b, config in map(find_config, configs):
            asked.setdefault(b.name, []).append(config)
        plan = [(backends.backend(name), only) for name, only in asked.items()]
    else:
        plan = [(b, None) for b in (backends.registry().values() if backend == "all" else (backends.backend(backend),))]
    for b, only in plan:
        evaluated += backend_rows(model, data, b, fp32_probs, cal, progress, only, result.skipped)
        rows = [row for row, _ in evaluated if row.backend == b.name]
        result.rows += rows
        if b.measures_sqnr:
            result.sqnr += backend_sqnr(model, b, rows, cal, data)
        if rows:
            result.notes.update(b.notes(model, cal, rows))
    result.reproducibility = {b.name: b.reproducibility for b, _ in plan if b.reproducibility}
    reference = reference_row(model, data, fp32_probs, progress)
    result.rows += [reference] if reference else []
    if mcu:  # the .tflite files the TFLM gates read, also on TFLM: the kernels of a microcontroller
        result.rows += mcu_rows(model, data, fp32_probs, mcu_files(result.rows), progress)
        result.notes["mcu_scope"] = MCU_SCOPE
    result.thresholds = vars(thresholds)
    waivers = {b.name: b.best_gate_waiver() for b in backends.gated()}
    result.gates = quantize_gates(result.fp32_top1, result.rows, thresholds, waivers, tuple(backends.mcu_names()))
    result.figures = quantization_figures(result, evaluated, fp32_probs, data, out_dir)
    result = replace(result, **stamp("quantize.quantize_job"))
    _, md = write_quantization_report(result, out_dir)
    write_conversion_report(model, data, fp32_probs, out_dir, progress)
    append_step_summary(md.read_text())
    write_index(out_root)
    return result


def write_conversion_report(model: Model, data: Dataset, torch_probs: np.ndarray, out_dir: Path,
                            progress: bool) -> dict:
    """``conversion.json``: the model in Keras vs converted, on the test images."""
    from r8.metrics import agreement
    from r8.runtimes.runners import reference_runner

    labels = data.test.labels
    keras_probs = predict(reference_runner(model.path), data.test.images, progress=progress)
    report = {**stamp("quantize_job"), **describe(model, data), "n": len(labels), "classes": list(data.class_names(model.num_classes)),
                    "keras_top1": top1(keras_probs, labels), "torch_top1": top1(torch_probs, labels),
                    "keras_per_class": per_class(keras_probs, labels), "torch_per_class": per_class(torch_probs, labels),
                    "max_abs_diff": float(np.abs(keras_probs - torch_probs).max()),
                    "agreement": agreement(keras_probs, torch_probs)}
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "conversion.json", lambda tmp: tmp.write_text(json.dumps(report, indent=1)))
    return report


def quantization_figures(result: QuantizeResult, evaluated: list[tuple[Int8Row, np.ndarray]], fp32_probs: np.ndarray,
                         data: Dataset, out_dir: Path) -> dict:
    """title -> file: sample predictions of the best int8 config (of ``evaluated``, its rows and
    predictions), and the per-layer SQNR bars."""
    from r8.report.quantization import samples_figure, sqnr_figure

    out_dir.mkdir(parents=True, exist_ok=True)
    figures = {}
    if evaluated and data.test.images.ndim == 4:
        best = best_row([row for row, _ in evaluated])
        probs = next(p for row, p in evaluated if row is best)
        title = (f"Where fp32 and the best int8 config ({best.backend} {best.config}) disagree, "
                 "and a few where they agree")
        samples_figure(data.test.images, data.test.labels, fp32_probs.argmax(1), probs.argmax(1), title,
                       out_dir / "samples_best_int8.png", result.classes)
        figures["Sample predictions, fp32 vs best int8"] = "samples_best_int8.png"
    if result.sqnr:
        sqnr_figure(result.sqnr, out_dir / "sqnr_layers.png")
        figures["Per-layer SQNR, best and worst config per backend"] = "sqnr_layers.png"
    return figures


def find_config(name: str) -> tuple[Backend, object]:
    """``ort/qop-u8s8-perchannel-minmax`` -> (backend, config) from the backend's full matrix."""
    backend, _, config_id = name.partition("/")
    b = backends.backend(backend)
    return b, b.config(config_id)
