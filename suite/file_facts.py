"""What the tests read out of files r8 writes or reads, and the artifacts only tests need: kept
here, not in r8, since no job uses them."""

import csv
import os
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import onnx

from r8 import artifacts
from r8.backends.ort import initializers
from r8.core import paths
from r8.core.cache import build_once
from r8.core.errors import R8Error
from r8.data import verify_cifar10
from r8.frontends.convert import save_program
from r8.model import Model


def tflite_model_path(quantized: bool) -> Path:
    """IC01's MLCommons reference .tflite files."""
    return paths.mlcommons_dir() / ("pretrainedResnet_quant.tflite" if quantized else "pretrainedResnet.tflite")


def onnx2torch_program(model: Model) -> Path:
    """The fallback route's fp32 model saved with torch.export (cached)."""
    from r8.frontends.onnx_route import route_limit

    def build(tmp: Path) -> None:
        with route_limit(model.path, "saved with torch.export"):
            save_program(artifacts.onnx2torch_fp32(model), tmp)
    return build_once(artifacts.name(model, "onnx2torch.pt"), artifacts.key(model), build)


def opset_of(path: str | os.PathLike) -> int:
    return next(o.version for o in onnx.load(str(Path(path))).opset_import if o.domain in ("", "ai.onnx"))


def op_counts(path: str | Path) -> Counter:
    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def activation_scales(path: str | Path) -> dict[str, float]:
    """tensor -> the scale its QuantizeLinear applies (QDQ) or its quantized output carries
    (QOperator): the activation ranges the int8 model really uses."""
    graph = onnx.load(str(path)).graph
    init = initializers(graph)
    return {n.input[0]: float(init[n.input[1]]) for n in graph.node
            if n.op_type == "QuantizeLinear" and n.input[1] in init and init[n.input[1]].size == 1}


def cifar_test_filenames(root: str | os.PathLike | None = None) -> list[str]:
    """CIFAR file names of the 10k test images (torchvision does not keep them)."""
    folder = verify_cifar10(root or paths.data_dir())
    with open(folder / "test_batch", "rb") as f:
        return pickle.load(f, encoding="latin1")["filenames"]


def read_eembc_bins(folder: str | os.PathLike) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The EEMBC runner format: raw 32x32x3 HWC uint8 ``.bin`` files + ``y_labels.csv``
    (``name,num_classes,label``). Returns (names, images NHWC, labels) in csv order."""
    folder = Path(folder)
    labels_csv = folder / "y_labels.csv"
    if not labels_csv.is_file():
        raise R8Error(f"{labels_csv}: missing")
    with open(labels_csv, newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    names, images, labels = [], [], []
    for row in rows:
        if len(row) != 3:
            raise R8Error(f"{labels_csv}: expected 'name,classes,label', got {row}")
        raw = (folder / row[0]).read_bytes() if (folder / row[0]).is_file() else None
        if raw is None or len(raw) != 32 * 32 * 3:
            raise R8Error(f"{folder / row[0]}: expected 3072 bytes, got {'no file' if raw is None else len(raw)}")
        names.append(row[0])
        images.append(np.frombuffer(raw, np.uint8).reshape(32, 32, 3))
        labels.append(int(row[2]))
    return names, np.stack(images), np.asarray(labels, dtype=np.int64)


def full_matrix_problems(report: dict) -> list[str]:
    """What a ``quantize`` report of every backend's default matrix lacks: a config that ran on
    this machine but has no row (a backend that refused the model is in ``skipped``), a failed
    gate (one not met only on this CPU is waived, shown with its reason)."""
    from r8.backends import registry
    from r8.thresholds import Gate

    refused = {s["backend"] for s in report["skipped"]}
    have = {(r["backend"], r["config_id"]) for r in report["rows"] if r["kind"] == "int8"}
    want = {(b.name, c.id) for b in registry().values() if b.name not in refused for c in b.configs(available=True)}
    return ([f"no row for {b}/{c}" for b, c in sorted(want - have)]
            + [g.message(report["model"]["stem"]) for g in map(Gate.from_json, report["gates"]) if g.failed])
