"""CPU inference benchmarks: the runtimes r8 produces (and the references), each at 1 and 2
threads, their per-call floors, MACs per image and the cores' GEMM peaks."""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from r8 import artifacts, paths
from r8.cache import build_once
from r8.runners import OnnxRunner, OpenVinoRunner, TfliteRunner, TorchRunner, quantized_engine

THREADS = int(os.environ.get("R8_BENCH_THREADS", "2"))  # the most threads any runtime gets
THREAD_COUNTS = tuple(sorted({1, THREADS}))  # each runtime is measured at each; the faster one counts
BATCHES = (1, 256)
BEST_DROP_PP = 0.2  # "best int8" = the fastest int8 artifact within this drop


@dataclass(frozen=True)
class Runtime:
    name: str
    precision: str  # fp32, int8, or "overhead" (an identity-sized model: the per-call floor)
    config: str  # which int8 config ("" for fp32 and the references)
    make: Callable[[int], object]  # threads -> runner with .predict(uint8 NHWC)
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


def _keras(threads: int):
    from r8.keras_ref import import_tensorflow

    tf = import_tensorflow()
    try:  # only possible before TF starts its runtime: Keras keeps the first thread count it gets
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass
    from r8.runners import KerasRunner

    return KerasRunner(paths.keras_model_path())


def runtimes(rows: dict) -> dict[str, Runtime]:
    """Every runtime benchmarked, by name. ``rows`` maps (backend, config) to its measured int8
    row: the int8 runtimes use the best ORT config per format, the best torch and TFLite configs.
    (PT2E int8 under torch.compile/inductor was tried and ran slower than fp32 ORT: left out.)"""
    from r8.backends import backend

    def file(name, config):
        return lambda: backend(name).build(config)

    def int8(name, config):  # -> Runtime's (config, make, file)
        return config.id, lambda t: backend(name).runner(config, file(name, config)(), t), file(name, config)

    qdq, qop, tq, lite = _best("ort", rows, "qdq"), _best("ort", rows, "qop"), _best("torch", rows), _best("tflite", rows)
    fp32_onnx, tflite = lambda: artifacts.onnx_fp32("torch"), paths.tflite_model_path
    qop_u8, qdq_u8 = _best_integer_input(rows, "qop"), _best_integer_input(rows, "qdq")
    u8in = artifacts.ort_int8_integer_input
    return {r.name: r for r in [
        Runtime("keras", "fp32", "", _keras, paths.keras_model_path),
        Runtime("torch", "fp32", "", lambda t: TorchRunner(artifacts.torch_fp32(), threads=t), artifacts.exported_program),
        Runtime("torch-compile", "fp32", "",
                lambda t: TorchRunner(torch.compile(artifacts.torch_fp32(), dynamic=True), threads=t),
                artifacts.exported_program),
        Runtime("onnxruntime", "fp32", "", lambda t: OnnxRunner(fp32_onnx(), threads=t), fp32_onnx),
        Runtime("openvino", "fp32", "", lambda t: OpenVinoRunner(fp32_onnx(), threads=t), fp32_onnx),
        Runtime("onnxruntime-int8-qdq", "int8", *int8("ort", qdq)),
        Runtime("onnxruntime-int8-qop", "int8", *int8("ort", qop)),
        Runtime("openvino-int8-qdq", "int8", qdq.id, lambda t: OpenVinoRunner(file("ort", qdq)(), threads=t),
                file("ort", qdq)),
        Runtime("onnxruntime-int8-qop-u8in", "int8", qop_u8.id, lambda t: OnnxRunner(u8in(qop_u8), threads=t),
                lambda: u8in(qop_u8)),  # uint8 NHWC pixels in: no float conversion, no float transpose
        Runtime("openvino-int8-qdq-u8in", "int8", qdq_u8.id, lambda t: OpenVinoRunner(u8in(qdq_u8), threads=t),
                lambda: u8in(qdq_u8)),
        Runtime("torch-int8", "int8", *int8("torch", tq)),
        Runtime("tflite-int8", "int8", *int8("tflite", lite)),  # r8's own TFLite int8, LiteRT/XNNPACK
        Runtime("tflite-reference", "fp32", "", lambda t: TfliteRunner(tflite(False), threads=t), lambda: tflite(False)),
        Runtime("tflite-reference-int8", "int8", "mlcommons-int8", lambda t: TfliteRunner(tflite(True), threads=t),
                lambda: tflite(True)),
        Runtime("torch-cuda", "fp32", "", lambda t: TorchRunner(artifacts.torch_fp32(), device="cuda"),
                artifacts.exported_program),
        # the bare per-call floor of each runtime: a model that only averages the pixels
        Runtime("overhead-onnxruntime", "overhead", "", lambda t: OnnxRunner(overhead_onnx(), threads=t), overhead_onnx),
        Runtime("overhead-openvino", "overhead", "", lambda t: OpenVinoRunner(overhead_onnx(), threads=t), overhead_onnx),
        Runtime("overhead-tflite", "overhead", "", lambda t: TfliteRunner(overhead_tflite(), threads=t), overhead_tflite),
        Runtime("overhead-torch", "overhead", "", lambda t: TorchRunner(PixelMean(), threads=t), overhead_onnx),
    ]}


RUNTIME_NAMES = ("keras", "torch", "torch-compile", "onnxruntime", "openvino", "onnxruntime-int8-qdq",
                 "onnxruntime-int8-qop", "openvino-int8-qdq", "onnxruntime-int8-qop-u8in", "openvino-int8-qdq-u8in",
                 "torch-int8", "tflite-int8", "tflite-reference", "tflite-reference-int8",
                 *(("torch-cuda",) if torch.cuda.is_available() else ()),  # a GPU row where there is one
                 "overhead-onnxruntime", "overhead-openvino", "overhead-tflite", "overhead-torch")


class PixelMean(nn.Module):
    """The identity-sized model: the mean pixel of each image, as (N, 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((1, 2, 3)).unsqueeze(1)


def overhead_onnx() -> Path:
    """PixelMean as ONNX taking uint8 NHWC pixels, as the integer-input int8 models do."""
    def build(tmp: Path) -> None:
        import onnx
        from onnx import TensorProto, helper

        graph = helper.make_graph(
            [helper.make_node("Cast", ["pixels"], ["x"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMean", ["x"], ["mean"], axes=[1, 2, 3], keepdims=0),
             helper.make_node("Unsqueeze", ["mean", "axis"], ["out"])],
            "overhead", [helper.make_tensor_value_info("pixels", TensorProto.UINT8, ["n", 32, 32, 3])],
            [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 1])],
            [helper.make_tensor("axis", TensorProto.INT64, [1], [1])])
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp))
    return build_once("bench/overhead.onnx", {}, build)


def overhead_tflite() -> Path:
    """PixelMean as a float32 ``.tflite`` (TFLite's converter)."""
    def build(tmp: Path) -> None:
        from r8.keras_ref import import_tensorflow

        tf = import_tensorflow()
        fn = tf.function(lambda x: tf.reduce_mean(x, axis=[1, 2, 3], keepdims=False)[:, None],
                         input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32)])
        tmp.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn).convert())
    return build_once("bench/overhead.tflite", {}, build)


def gemm_peaks(threads: int = THREADS, size: int = 2048) -> dict[str, float]:
    """An estimate of what these cores can do: GMAC/s of a large fp32 matmul and of a large int8
    (VNNI, x86 engine) quantized linear layer, ``threads`` threads."""
    import time

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    a = torch.randn(size, size)
    int8 = torch.ao.nn.quantized.Linear(size, size)
    int8.set_weight_bias(torch.quantize_per_tensor(torch.randn(size, size), 0.05, 0, torch.qint8), None)
    qa = torch.quantize_per_tensor(torch.rand(size, size), 0.01, 0, torch.quint8)
    peaks = {}
    with quantized_engine("x86"):
        for name, call in (("fp32", lambda: a @ a), ("int8", lambda: int8(qa))):
            for _ in range(3):
                call()
            start = time.perf_counter()
            for _ in range(10):
                call()
            peaks[name] = size ** 3 * 10 / (time.perf_counter() - start) / 1e9
    torch.set_num_threads(previous)
    return peaks


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
