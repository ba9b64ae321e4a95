"""The main job behind `python -m r8 quantize`: every int8 config of the default matrix, per
backend, evaluated on the 10k test images against the fp32 baseline, the MLCommons int8 TFLite
reference beside them, and the per-layer SQNR of each backend's best and worst config."""

from pathlib import Path

import torch
from tqdm import tqdm

from r8 import artifacts, paths
from r8.calibration import calibration_set
from r8.data import Split, load_split, perf_indices
from r8.metrics import per_class, predict, top1
from r8.report import write_quantization_report
from r8.runners import OnnxRunner, TfliteRunner, TorchRunner

SQNR_IMAGES = 500  # test images the per-layer SQNR is measured on


def int8_row(backend: str, config: str, probs, fp32_top1: float, test: Split, size_bytes: int) -> dict:
    """One row of quantization.json (accuracies are fractions, the drop is in percent points)."""
    perf = perf_indices("perf200", paths.data_dir())
    acc = top1(probs, test.labels)
    return {"backend": backend, "config": config, "top1": acc,
            "top1_perf200": top1(probs[perf], test.labels[perf]),
            "drop_pp": round((fp32_top1 - acc) * 100, 4), "size_bytes": size_bytes,
            "per_class": per_class(probs, test.labels)}


INT8_ARTIFACTS = {"ort": artifacts.ort_int8, "torch": artifacts.torch_int8}  # (config, calibration) -> Path


def int8_runner(backend: str, config, path: Path, threads: int = 0):
    """A runner for a saved int8 artifact (``threads`` 0: the runtime's default)."""
    if backend == "ort":
        return OnnxRunner(path, name=f"ort-{config.id}", threads=threads)
    from r8.quant_torch import load

    if threads:
        torch.set_num_threads(threads)
    return TorchRunner(load(config, path), name=f"torch-{config.id}", engine=config.engine)


def backend_configs(backend: str) -> tuple[list, list]:
    """(default matrix, full matrix) of a backend's int8 configs."""
    from r8 import quant_ort, quant_torch

    module = {"ort": quant_ort, "torch": quant_torch}[backend]
    return module.DEFAULT_MATRIX, module.FULL_MATRIX


def config_row(backend: str, config, fp32_top1: float, test: Split, calibration: str = "train",
               progress: bool = False) -> dict:
    """Build (or reuse) one int8 artifact, evaluate it on ``test``, return its report row."""
    path = INT8_ARTIFACTS[backend](config, calibration)
    probs = predict(int8_runner(backend, config, path), test.images, progress=progress)
    return int8_row(backend, f"{config.id}-{calibration}", probs, fp32_top1, test, path.stat().st_size)


def backend_rows(backend: str, fp32_top1: float, test: Split, calibration: str, progress: bool) -> list[dict]:
    from r8.quant_torch import engine_available

    rows = []
    for config in tqdm(backend_configs(backend)[0], desc=f"{backend} int8 configs", disable=not progress):
        if backend == "torch" and not engine_available(config.engine):
            tqdm.write(f"skipped torch-{config.id}: quantized engine not built into this torch")
            continue
        rows.append(config_row(backend, config, fp32_top1, test, calibration, progress))
    return rows


def tflite_reference_row(fp32_top1: float, test: Split, progress: bool) -> dict:
    path = paths.tflite_model_path(quantized=True)
    probs = predict(TfliteRunner(path, name="tflite-reference"), test.images, progress=progress)
    return int8_row("tflite-reference", "mlcommons-int8 (calibrated on test images)", probs,
                    fp32_top1, test, path.stat().st_size)


def backend_sqnr(backend: str, rows: list[dict], calibration: str, test: Split) -> list[dict]:
    """Per-layer SQNR for the backend's best and worst config.

    ORT: ``qdq_loss_debug`` reads QDQ models only, so a QOperator config is measured on its QDQ
    twin (same calibration ranges). torch: forward hooks, FX and eager configs only (a PT2E
    graph has no modules to hook)."""
    images = test.images[:SQNR_IMAGES]
    if backend == "ort":
        from r8.quant_ort import DEFAULT_MATRIX, activation_sqnr

        def measure(config):
            twin = type(config)("qdq", config.types, config.per_channel, config.method)
            return twin.id, activation_sqnr(artifacts.onnx_preprocessed(),
                                            artifacts.ort_int8(twin, calibration), images)
        eligible = DEFAULT_MATRIX
    else:
        from r8.quant_torch import DEFAULT_MATRIX, layer_sqnr

        def measure(config):
            cal = calibration_set(source=calibration).images
            return config.id, layer_sqnr(artifacts.torch_fp32(), config, cal, images)
        eligible = [c for c in DEFAULT_MATRIX if c.flow != "pt2e"]
    by_name = {f"{c.id}-{calibration}": c for c in eligible}
    ranked = sorted((r for r in rows if r["backend"] == backend and r["config"] in by_name),
                    key=lambda r: r["drop_pp"])
    out = []
    for which, row in (("best", ranked[0]), ("worst", ranked[-1])):
        measured_on, sqnr = measure(by_name[row["config"]])
        out.append({"backend": backend, "which": which, "config": row["config"],
                    "measured_on": f"{measured_on}-{calibration}", "images": len(images), "sqnr_db": sqnr})
    return out


def quantize_job(backend: str, out_dir: Path, calibration: str = "train", progress: bool = True) -> dict:
    test = load_split("test")
    fp32_probs = predict(TorchRunner(artifacts.torch_fp32(), name="torch-fp32"), test.images,
                         progress=progress)
    fp32_top1 = top1(fp32_probs, test.labels)
    report = {"fp32_top1": fp32_top1, "calibration": calibration_set(source=calibration).summary(),
              "rows": [], "sqnr": []}
    for name in ("ort", "torch") if backend == "all" else (backend,):
        rows = backend_rows(name, fp32_top1, test, calibration, progress)
        report["rows"] += rows
        report["sqnr"] += backend_sqnr(name, rows, calibration, test)
    report["rows"].append(tflite_reference_row(fp32_top1, test, progress))
    write_quantization_report(report, out_dir)
    return report
