"""CPU inference benchmarks: the runtimes r8 produces (and the references), one thread count
for all, MACs per image, and the report built from pytest-benchmark's JSON."""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from r8 import artifacts, paths
from r8.runners import OnnxRunner, OpenVinoRunner, TfliteRunner, TorchRunner

THREADS = int(os.environ.get("R8_BENCH_THREADS", "2"))  # the same for every runtime
BATCHES = (1, 256)
BEST_DROP_PP = 0.2  # "best int8" = the fastest int8 artifact within this drop


@dataclass(frozen=True)
class Runtime:
    name: str
    precision: str
    config: str  # which int8 config ("" for fp32 and the references)
    make: Callable[[], object]  # -> runner with .predict(uint8 NHWC) -> probabilities
    file: Callable[[], Path]  # the artifact, for its size


def _best(backend: str, rows: dict, fmt: str | None = None):
    """The default config with the smallest drop (of one ORT format, if given)."""
    return min((c for (b, c) in rows if b == backend and (fmt is None or c.fmt == fmt)),
               key=lambda c: rows[backend, c]["drop_pp"])


def _best_integer_input(rows: dict, fmt: str):
    """The ORT config of ``fmt`` with the smallest drop whose input quantization is exact on
    pixels, so its model takes uint8 NHWC directly (``artifacts.ort_int8_integer_input``)."""
    for config in sorted((c for (b, c) in rows if b == "ort" and c.fmt == fmt), key=lambda c: rows["ort", c]["drop_pp"]):
        try:
            artifacts.ort_int8_integer_input(config)
            return config
        except ValueError:
            continue
    raise ValueError(f"no {fmt} config takes integer input")


def _keras():
    from r8.keras_ref import import_tensorflow

    tf = import_tensorflow()
    try:  # only possible before TF starts its runtime
        tf.config.threading.set_intra_op_parallelism_threads(THREADS)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass
    from r8.runners import KerasRunner

    return KerasRunner(paths.keras_model_path())


def _torch(module: nn.Module, engine: str | None = None) -> TorchRunner:
    torch.set_num_threads(THREADS)
    return TorchRunner(module, engine=engine)


def runtimes(rows: dict) -> dict[str, Runtime]:
    """Every runtime benchmarked, by name. ``rows`` maps (backend, config) to its measured int8
    row: the int8 runtimes use the best ORT config per format, the best torch and TFLite configs.
    (PT2E int8 under torch.compile/inductor was tried and ran slower than fp32 ORT: left out.)"""
    from r8.backends import backend

    def file(name, config):
        return lambda: backend(name).build(config)

    def int8(name, config):  # -> Runtime's (config, make, file)
        return config.id, lambda: backend(name).runner(config, file(name, config)(), THREADS), file(name, config)

    qdq, qop, tq, lite = _best("ort", rows, "qdq"), _best("ort", rows, "qop"), _best("torch", rows), _best("tflite", rows)
    fp32_onnx, tflite = lambda: artifacts.onnx_fp32("torch"), paths.tflite_model_path
    qop_u8, qdq_u8 = _best_integer_input(rows, "qop"), _best_integer_input(rows, "qdq")
    u8in = artifacts.ort_int8_integer_input
    return {r.name: r for r in [
        Runtime("keras", "fp32", "", _keras, paths.keras_model_path),
        Runtime("torch", "fp32", "", lambda: _torch(artifacts.torch_fp32()), artifacts.exported_program),
        Runtime("torch-compile", "fp32", "", lambda: _torch(torch.compile(artifacts.torch_fp32(), dynamic=True)),
                artifacts.exported_program),
        Runtime("onnxruntime", "fp32", "", lambda: OnnxRunner(fp32_onnx(), threads=THREADS), fp32_onnx),
        Runtime("openvino", "fp32", "", lambda: OpenVinoRunner(fp32_onnx(), threads=THREADS), fp32_onnx),
        Runtime("onnxruntime-int8-qdq", "int8", *int8("ort", qdq)),
        Runtime("onnxruntime-int8-qop", "int8", *int8("ort", qop)),
        Runtime("openvino-int8-qdq", "int8", qdq.id,
                lambda: OpenVinoRunner(file("ort", qdq)(), threads=THREADS), file("ort", qdq)),
        Runtime("onnxruntime-int8-qop-u8in", "int8", qop_u8.id, lambda: OnnxRunner(u8in(qop_u8), threads=THREADS),
                lambda: u8in(qop_u8)),  # uint8 NHWC pixels in: no float conversion, no float transpose
        Runtime("openvino-int8-qdq-u8in", "int8", qdq_u8.id, lambda: OpenVinoRunner(u8in(qdq_u8), threads=THREADS),
                lambda: u8in(qdq_u8)),
        Runtime("torch-int8", "int8", *int8("torch", tq)),
        Runtime("tflite-int8", "int8", *int8("tflite", lite)),  # r8's own TFLite int8, LiteRT/XNNPACK
        Runtime("tflite-reference", "fp32", "", lambda: TfliteRunner(tflite(False), threads=THREADS),
                lambda: tflite(False)),
        Runtime("tflite-reference-int8", "int8", "mlcommons-int8",
                lambda: TfliteRunner(tflite(True), threads=THREADS), lambda: tflite(True)),
        Runtime("torch-cuda", "fp32", "", lambda: TorchRunner(artifacts.torch_fp32(), device="cuda"),
                artifacts.exported_program),
    ]}


RUNTIME_NAMES = ("keras", "torch", "torch-compile", "onnxruntime", "openvino", "onnxruntime-int8-qdq",
                 "onnxruntime-int8-qop", "openvino-int8-qdq", "onnxruntime-int8-qop-u8in", "openvino-int8-qdq-u8in",
                 "torch-int8", "tflite-int8", "tflite-reference",
                 "tflite-reference-int8", *(("torch-cuda",) if torch.cuda.is_available() else ()))  # a GPU row where there is one


def macs_per_image(model: nn.Module) -> int:
    """Multiply-accumulates of one 32x32 image through every conv and linear layer."""
    total = 0

    def count(module, args, out):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            total += out[0].numel() * module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        else:
            total += module.in_features * module.out_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    with torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    for h in hooks:
        h.remove()
    return total
