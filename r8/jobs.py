"""The main job behind `python -m r8 quantize`: every int8 config of the default matrix,
evaluated on the 10k test images against the fp32 baseline, plus the MLCommons int8 TFLite
reference, and the per-layer SQNR of the best and the worst config."""

from pathlib import Path

from tqdm import tqdm

from r8 import artifacts, paths
from r8.calibration import calibration_set
from r8.data import Split, load_split, perf_indices
from r8.metrics import per_class, predict, top1
from r8.report import write_quantization_report
from r8.runners import OnnxRunner, TfliteRunner, TorchRunner

BACKENDS = ("ort",)
SQNR_IMAGES = 500  # test images the per-layer SQNR is measured on


def int8_row(backend: str, config: str, probs, fp32_top1: float, test: Split, size_bytes: int) -> dict:
    """One row of quantization.json (accuracies are fractions, the drop is in percent points)."""
    perf = perf_indices("perf200", paths.data_dir())
    acc = top1(probs, test.labels)
    return {"backend": backend, "config": config, "top1": acc,
            "top1_perf200": top1(probs[perf], test.labels[perf]),
            "drop_pp": round((fp32_top1 - acc) * 100, 4), "size_bytes": size_bytes,
            "per_class": per_class(probs, test.labels)}


def ort_rows(fp32_top1: float, test: Split, calibration: str, progress: bool) -> list[dict]:
    from r8.quant_ort import DEFAULT_MATRIX

    rows = []
    for config in tqdm(DEFAULT_MATRIX, desc="ort int8 configs", disable=not progress):
        path = artifacts.ort_int8(config, calibration)
        probs = predict(OnnxRunner(path, name=f"ort-{config.id}"), test.images, progress=progress)
        rows.append(int8_row("ort", f"{config.id}-{calibration}", probs, fp32_top1, test,
                             path.stat().st_size))
    return rows


def tflite_reference_row(fp32_top1: float, test: Split, progress: bool) -> dict:
    path = paths.tflite_model_path(quantized=True)
    probs = predict(TfliteRunner(path, name="tflite-reference"), test.images, progress=progress)
    return int8_row("tflite-reference", "mlcommons-int8 (calibrated on test images)", probs,
                    fp32_top1, test, path.stat().st_size)


def ort_sqnr(rows: list[dict], calibration: str, test: Split) -> list[dict]:
    """Per-tensor SQNR for the best and the worst ORT config. ORT's qdq_loss_debug reads QDQ
    models only, so a QOperator config is measured on its QDQ twin (same calibration ranges)."""
    from r8.quant_ort import DEFAULT_MATRIX, activation_sqnr

    by_id = {f"{c.id}-{calibration}": c for c in DEFAULT_MATRIX}
    ort = sorted((r for r in rows if r["backend"] == "ort"), key=lambda r: r["drop_pp"])
    out = []
    for label, row in (("best", ort[0]), ("worst", ort[-1])):
        config = by_id[row["config"]]
        twin = type(config)("qdq", config.types, config.per_channel, config.method)
        sqnr = activation_sqnr(artifacts.onnx_preprocessed(), artifacts.ort_int8(twin, calibration),
                               test.images[:SQNR_IMAGES])
        out.append({"which": label, "config": row["config"], "measured_on": f"{twin.id}-{calibration}",
                    "images": SQNR_IMAGES, "sqnr_db": sqnr})
    return out


def quantize_job(backend: str, out_dir: Path, calibration: str = "train", progress: bool = True) -> dict:
    test = load_split("test")
    fp32_probs = predict(TorchRunner(artifacts.torch_fp32(), name="torch-fp32"), test.images,
                         progress=progress)
    fp32_top1 = top1(fp32_probs, test.labels)
    report = {"fp32_top1": fp32_top1, "calibration": calibration_set(source=calibration).summary(),
              "rows": [], "sqnr": []}
    if backend in ("ort", "all"):
        report["rows"] += ort_rows(fp32_top1, test, calibration, progress)
        report["sqnr"] += ort_sqnr(report["rows"], calibration, test)
    report["rows"].append(tflite_reference_row(fp32_top1, test, progress))
    write_quantization_report(report, out_dir)
    return report
