"""CPU inference benchmarks: the runtimes r8 produces (and the references), each at 1 and 2
threads, their per-call floors, MACs per image and the cores' GEMM peaks."""

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from r8 import artifacts
from r8.backends import backend, unique
from r8.core.cache import build_once
from r8.core.errors import R8Error
from r8.frontends.converted_layers import layer_macs
from r8.results import BenchmarkResult
from r8.rows import best_row, ranked
from r8.runtimes import timing
from r8.runtimes.runners import OnnxRunner, OpenVinoRunner, TfliteRunner, TorchRunner, quantized_engine

THREADS = 2  # the most threads any runtime gets (pytest --r8-bench-threads)
BATCHES = (1, 256)


def thread_counts(threads: int = THREADS) -> tuple[int, ...]:
    """Each runtime is measured at each of these; the faster one counts."""
    return tuple(sorted({1, threads}))


def fixed_threads(name: str, most: int) -> int | None:
    """The one thread count a runtime runs at where its pool is fixed once started (None: any):
    Keras's and CUDA's at ``most``, ExecuTorch's XNNPACK pool at its default size."""
    if name in ("keras", "torch-cuda"):
        return most
    if name == EXECUTORCH:
        from r8.runtimes.runners import pool_threads

        return pool_threads()
    return None


@dataclass(frozen=True)
class Runtime:
    name: str
    precision: str  # fp32, int8, or "overhead" (an identity-sized model: the per-call floor)
    config: str  # which int8 config ("" for fp32 and the references)
    make: Callable[[int], object]  # threads -> runner with .predict(images NHWC)
    file: Callable[[], Path]  # the artifact, for its size
    reference: bool = False  # a published model file (the targets compare r8's runtimes with these)


def _best(backend: str, rows: dict, fmt: str | None = None):
    """The backend's best default config (of one ORT format, if given); None where the backend has
    no row (it cannot take this model)."""
    configs = {c.id: c for (b, c) in rows if b == backend and (fmt is None or c.fmt == fmt)}
    best = best_row([rows[backend, c] for c in configs.values()], backend)
    return configs[best.config_id] if best else None


def _best_integer_input(model, cal, rows: dict, fmt: str):
    """The ORT config of ``fmt`` with the smallest drop whose input quantization is exact on
    pixels, so its model takes uint8 NHWC directly (``r8.backends.ort.build_integer_input``); None if none."""
    from r8.backends.ort import build_integer_input

    configs = {c.id: c for (b, c) in rows if b == "ort" and c.fmt == fmt}
    for config in (configs[r.config_id] for r in ranked([rows["ort", c] for c in configs.values()])):
        try:
            build_integer_input(model, config, cal)
            return config
        except ValueError:
            continue
    return None


def _keras(model, threads: int):
    from r8.frontends.keras.reference import import_tensorflow

    tf = import_tensorflow()
    try:  # only possible before TF starts its runtime: Keras keeps the first thread count it gets
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass
    from r8.runtimes.runners import KerasRunner

    return KerasRunner(model.path)


def int8_runtimes(model, cal, rows: dict) -> list[Runtime]:
    """The best ORT config per format (also on OpenVINO), the best torch, TFLite, LiteRT-quantizer
    and ExecuTorch configs; a backend that cannot take the model has none."""
    def file(name, config):
        return lambda: backend(name).build(model, config, cal)

    def int8(name, config):  # -> Runtime's (config, make, file)
        return config.id, lambda t: backend(name).runner(config, file(name, config)(), t), file(name, config)

    qdq, qop, tq, lite = _best("ort", rows, "qdq"), _best("ort", rows, "qop"), _best("torch", rows), _best("tflite", rows)
    et, lt = _best("executorch", rows), _best("litert", rows)
    found = [
        Runtime("onnxruntime-int8-qdq", "int8", *int8("ort", qdq)) if qdq else None,
        Runtime("onnxruntime-int8-qop", "int8", *int8("ort", qop)) if qop else None,
        Runtime("openvino-int8-qdq", "int8", qdq.id, lambda t: OpenVinoRunner(file("ort", qdq)(), threads=t),
                file("ort", qdq)) if qdq else None,
        Runtime("torch-int8", "int8", *int8("torch", tq)) if tq else None,
        Runtime("tflite-int8", "int8", *int8("tflite", lite)) if lite else None,  # r8's own TFLite int8, LiteRT/XNNPACK
        Runtime("litert-int8", "int8", *int8("litert", lt)) if lt else None,  # the LiteRT quantizer's, any float .tflite
        Runtime("executorch-int8", "int8", *int8("executorch", et)) if et else None,  # PyTorch's own int8 deployment
    ]
    return [r for r in found if r is not None]


def fp32_runtimes(model) -> list[Runtime]:
    """The model in Keras (for a Keras file: another's own runtime is its reference row), the converted
    torch model eager and compiled, its ONNX file on ONNX Runtime and OpenVINO, torch on CUDA."""
    def fp32_model():
        return artifacts.torch_fp32(model)

    fp32_onnx, program = lambda: artifacts.onnx_fp32(model, "torch"), lambda: artifacts.exported_program(model)
    return [
        *([Runtime("keras", "fp32", "", lambda t: _keras(model, t), lambda: model.path)]
          if model.is_keras else []),
        Runtime("torch", "fp32", "", lambda t: TorchRunner(fp32_model(), threads=t), program),
        Runtime("torch-compile", "fp32", "", lambda t: TorchRunner(torch.compile(fp32_model(), dynamic=True), threads=t),
                program),
        Runtime("onnxruntime", "fp32", "", lambda t: OnnxRunner(fp32_onnx(), threads=t), fp32_onnx),
        Runtime("openvino", "fp32", "", lambda t: OpenVinoRunner(fp32_onnx(), threads=t), fp32_onnx),
    ]


def pixel_runtimes(model, cal, rows: dict, sample: tuple) -> list[Runtime]:
    """Where the data is uint8 NHWC pixels: each runtime's bare per-call floor (a model that only
    averages the input), and the ORT int8 models that take the pixels as they are (no float
    conversion, no float transpose)."""
    from r8.backends.ort import build_integer_input

    table = [
        Runtime("overhead-onnxruntime", "overhead", "", lambda t: OnnxRunner(overhead_onnx(sample), threads=t),
                lambda: overhead_onnx(sample)),
        Runtime("overhead-openvino", "overhead", "", lambda t: OpenVinoRunner(overhead_onnx(sample), threads=t),
                lambda: overhead_onnx(sample)),
        Runtime("overhead-tflite", "overhead", "", lambda t: TfliteRunner(overhead_tflite(sample), threads=t),
                lambda: overhead_tflite(sample)),
        Runtime("overhead-torch", "overhead", "", lambda t: TorchRunner(PixelMean(), nhwc=True, threads=t),
                lambda: overhead_onnx(sample)),
    ]
    for fmt, make in (("qop", OnnxRunner), ("qdq", OpenVinoRunner)):
        config = _best_integer_input(model, cal, rows, fmt)
        if config is not None:
            u8 = (lambda c: lambda: build_integer_input(model, c, cal))(config)
            name = f"{'onnxruntime' if make is OnnxRunner else 'openvino'}-int8-{fmt}-u8in"
            table.append(Runtime(name, "int8", config.id, (lambda m, f: lambda t: m(f(), threads=t))(make, u8), u8))
    return table


def reference_runtimes(model) -> list[Runtime]:
    """The model's published .tflite files, where it has them: what the targets compare r8's with."""
    return [Runtime("tflite-reference" + ("-int8" if precision == "int8" else ""), precision,
                    "published int8" if precision == "int8" else "",
                    (lambda p: lambda t: TfliteRunner(p, threads=t))(path), (lambda p: lambda: p)(path), reference=True)
            for precision, path in model.references]


def runtimes(model, data, cal, rows: dict) -> dict[str, Runtime]:
    """Every runtime this model can be benchmarked on, by name. ``rows`` maps (backend, config)
    to its measured int8 row. (PT2E int8 under torch.compile/inductor was tried and ran slower
    than fp32 ORT: left out.)"""
    table = [*fp32_runtimes(model), *int8_runtimes(model, cal, rows),
             Runtime("torch-cuda", "fp32", "", lambda t: TorchRunner(artifacts.torch_fp32(model), device="cuda"),
                     lambda: artifacts.exported_program(model))]
    if data.test.images.dtype == np.uint8:
        table += pixel_runtimes(model, cal, rows, data.test.images.shape[1:])
    return unique(table + reference_runtimes(model), "runtime")


def runtime_names(cuda: bool) -> tuple[str, ...]:
    """Every runtime name a benchmark may have, for the tests' ids (a ``torch-cuda`` row where
    there is a GPU); a model lacking one skips it with the reason."""
    return ("keras", "torch", "torch-compile", "onnxruntime", "openvino", "onnxruntime-int8-qdq",
            "onnxruntime-int8-qop", "openvino-int8-qdq", "onnxruntime-int8-qop-u8in", "openvino-int8-qdq-u8in",
            "torch-int8", "tflite-int8", "litert-int8", "executorch-int8", "tflite-reference", "tflite-reference-int8",
            *(("torch-cuda",) if cuda else ()),
            "overhead-onnxruntime", "overhead-openvino", "overhead-tflite", "overhead-torch")


class PixelMean(nn.Module):
    """The identity-sized model: the mean value of each sample, as (N, 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).mean(1, keepdim=True)


def overhead_onnx(sample: tuple) -> Path:
    """PixelMean as ONNX taking uint8 samples of shape ``sample``, as the integer-input int8 models do."""
    axes = list(range(1, len(sample) + 1))

    def build(tmp: Path) -> None:
        import onnx
        from onnx import TensorProto, helper

        graph = helper.make_graph(
            [helper.make_node("Cast", ["pixels"], ["x"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMean", ["x"], ["mean"], axes=axes, keepdims=0),
             helper.make_node("Unsqueeze", ["mean", "axis"], ["out"])],
            "overhead", [helper.make_tensor_value_info("pixels", TensorProto.UINT8, ["n", *sample])],
            [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 1])],
            [helper.make_tensor("axis", TensorProto.INT64, [1], [1])])
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp))
    return build_once(f"bench/overhead-{'x'.join(map(str, sample))}.onnx", {"sample": list(sample)}, build)


def overhead_tflite(sample: tuple) -> Path:
    """PixelMean as a float32 ``.tflite`` (TFLite's converter) of samples of shape ``sample``."""
    axes = list(range(1, len(sample) + 1))

    def build(tmp: Path) -> None:
        from r8.frontends.keras.reference import import_tensorflow

        tf = import_tensorflow()
        fn = tf.function(lambda x: tf.reduce_mean(x, axis=axes, keepdims=False)[:, None],
                         input_signature=[tf.TensorSpec([None, *sample], tf.float32)])
        tmp.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn).convert())
    return build_once(f"bench/overhead-{'x'.join(map(str, sample))}.tflite", {"sample": list(sample)}, build)


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
    """Multiply-accumulates of one sample through every conv and linear layer of a converted model."""
    return sum(layer_macs(model).values())


# The paired comparisons the report makes (r8.runtimes.timing), at each batch size: (kind, label)
COMPARISONS = {"int8-vs-reference": "best int8 vs the TFLite int8 reference",
               "fp32-vs-reference": "best fp32 vs the TFLite fp32 reference",
               "vs-fastest": "each runtime vs the fastest"}
# PyTorch's own int8 deployment: the int8-vs-reference ranking's winner is timed against it too, as this kind
EXECUTORCH, VS_EXECUTORCH = "executorch-int8", ("int8-vs-executorch", "r8's fastest int8 vs ExecuTorch int8")


def candidates(kind: str, table: dict[str, Runtime], seconds: dict[str, float], drops: dict[str, float],
               best_drop_pp: float) -> tuple[list[str], str | None]:
    """The runtimes one kind of comparison ranks, and what the winner is then compared with.
    ``vs-fastest``: every runtime that runs the model, against nothing else; ``int8-vs-reference``
    (``fp32-...``): r8's own runtimes of that precision (int8: within ``best_drop_pp``), against the
    published file of the precision (None where the model has none)."""
    models = [n for n in seconds if table[n].precision != "overhead"]
    if kind == "vs-fastest":
        return models, None
    precision = kind.removesuffix("-vs-reference")
    ours = [n for n in models if table[n].precision == precision and not table[n].reference
            and (precision == "fp32" or drops[n] <= best_drop_pp)]
    reference = next((n for n in models if table[n].precision == precision and table[n].reference), None)
    return (ours, reference) if ours and reference else ([], None)


def benchmark_env() -> dict:
    """The benchmark run's environment: this one without pytest-xdist's worker variables, which a
    run started from an xdist worker inherits and which make pytest-benchmark disable itself."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST_")}


def benchmark_runs(model, data, out: Path, repeat: int = 1, cap_s: float = timing.CAP_S, best_drop_pp: float = 0.2,
                   pytest_args: tuple = (), verbose: bool = False) -> list[dict]:
    """r8's benchmark module (:mod:`r8.jobs.benchmark_suite`) run ``repeat`` times by pytest, each in
    a process of its own: the pytest-benchmark JSON of each run."""
    import subprocess
    import sys

    runs = []
    for run in range(repeat):
        raw = out / f"pytest-benchmark-{run + 1}.json"
        print(f"benchmark run {run + 1} of {repeat} ({model.stem})", flush=True)
        subprocess.run([sys.executable, "-m", "pytest", "--pyargs", "r8.jobs.benchmark_suite", "-m", "benchmark", "-q",
                        f"--benchmark-json={raw.resolve()}", "-p", "no:cacheprovider", "--r8-model", str(model.path),
                        "--r8-data", data.source, f"--r8-best-drop-pp={best_drop_pp}", f"--r8-bench-cap-s={cap_s}",
                        f"--r8-bench-threads={THREADS}",
                        *pytest_args], cwd=out, check=True, stdout=None if verbose else subprocess.DEVNULL,
                       env=benchmark_env())
        if not raw.is_file():
            raise R8Error(f"{raw}: pytest-benchmark wrote no results (benchmarks disabled?); rerun with -v to see its output")
        runs.append(json.loads(raw.read_text()))
    return runs


def benchmark_job(model, data, out_root: Path, repeat: int = 1, cap_s: float = timing.CAP_S, best_drop_pp: float = 0.2,
                  pytest_args: tuple = (), verbose: bool = False) -> BenchmarkResult:
    """Benchmarks every runtime of ``model`` on ``data`` and writes OUT/<stem>/benchmark.{md,json},
    its plots and the index of OUT; the GEMM peaks are measured before and after, so a report can
    say when the machine changed under the run."""
    from r8.model import describe
    from r8.report.benchmark import write_benchmark_report
    from r8.report.files import append_step_summary
    from r8.report.index import write_index

    out = model.report_dir(out_root)
    out.mkdir(parents=True, exist_ok=True)
    peaks_start = gemm_peaks()
    runs = benchmark_runs(model, data, out, repeat, cap_s, best_drop_pp, pytest_args, verbose)
    profiles = profile_winners(runs, data.test.images)
    fp32_top1 = next(b["extra_info"]["top1"] for b in runs[0]["benchmarks"] if b["extra_info"]["runtime"] == "torch")
    report = write_benchmark_report(runs, THREADS, macs_per_image(artifacts.torch_fp32(model)), fp32_top1, best_drop_pp,
                                    out, (peaks_start, gemm_peaks()), list(data.class_names(model.num_classes)),
                                    describe(model, data), profiles)
    append_step_summary((out / "benchmark.md").read_text())
    write_index(out_root)
    return report


def profile_winners(runs: list[dict], images: np.ndarray) -> list[dict]:
    """At each batch size, the per-op profile (:mod:`r8.runtimes.profile`) of r8's fastest int8 as
    the last run ranked it (the first named, in a tie), of the published int8 file and of ExecuTorch's
    int8, each at the thread count it was ranked at; a runtime r8 cannot profile gets a row saying so."""
    from r8.report.benchmark import benchmark_rows, rankings
    from r8.runtimes.profile import profiler

    rows = {r["runtime"]: r for r in benchmark_rows(runs[-1])}
    reference = next((r["runtime"] for r in rows.values() if r.get("reference") and r["precision"] == "int8"), None)
    out = []
    for ranking in (r for r in rankings(runs) if r["run"] == len(runs) and r["kind"] == "int8-vs-reference"):
        batch = ranking["batch"]
        roles = (("r8's fastest int8", ranking["fastest"][0]), ("published int8", reference),
                 ("ExecuTorch int8", "executorch-int8"))
        for role, name in ((role, name) for role, name in roles if name in rows):
            row, fn = rows[name], profiler(name)
            threads = row["threads"][f"bs{batch}"]
            facts = fn(row["artifact"], images[:batch], threads).as_dict() if fn else {"none": f"no per-op profiler for {name}"}
            out.append({"batch": batch, "role": role, "runtime": name, "threads": threads, **facts})
    return out
