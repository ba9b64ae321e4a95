"""Will it run on a microcontroller? An int8 ``.tflite`` on TensorFlow Lite for Microcontrollers
(TFLM, the ``tflite-micro`` package: the reference kernels an MCU build runs): its outputs on a
data set (cached, one process per core), how they compare with LiteRT's reference and default
(XNNPACK) kernels, the arena (RAM) it needs, its flash bytes and its ops."""

import hashlib
import multiprocessing
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from r8.core.cache import build_facts, build_once, sha256
from r8.core.console import all_tensors_kept, native_output_captured
from r8.core.errors import R8Error
from r8.frontends.tflite.reader import DTYPES, flatbuffer, op_name
from r8.runtimes.runners import TfliteRunner, integer_input

ARENA_LIMIT = 64 << 20  # the bisection's upper bound: no MCU has more SRAM than this
CHUNK = 250  # images per task of the parallel TFLM run


def _model(path: Path):
    """The flatbuffer of an int8 .tflite; R8Error naming the file for anything else."""
    import tflite

    model = flatbuffer(path)
    try:
        graph = model.Subgraphs(0)
        kind = graph.Tensors(int(graph.InputsAsNumpy()[0])).Type()
    except Exception as e:  # a damaged flatbuffer: the bindings read past its end
        raise R8Error(f"{path}: not a readable TFLite model ({type(e).__name__}: {e})") from None
    if kind != tflite.TensorType.INT8:
        raise R8Error(f"{path}: its input is not int8 (a float model?); TFLM's MCU kernels run int8 models: "
                      "quantize it first (python -m r8 quantize --backend tflite)")
    outside = sum(model.Buffers(i).Offset() > 1 for i in range(model.BuffersLength()))
    if outside:
        raise R8Error(f"{path}: {outside} of its buffers lie past the flatbuffer (offset / size, as the LiteRT quantizer "
                      "writes a model with 256 KiB of weights or more); TFLite Micro reads them as empty and computes "
                      "garbage. Rewrite it with every buffer inside (r8.backends.litert.inline_buffers)")
    return model


def ops(path: str | os.PathLike) -> list[str]:
    """The builtin ops a .tflite uses, in order of first use."""
    model = _model(Path(path))
    graph = model.Subgraphs(0)
    return list(dict.fromkeys(op_name(model, graph.Operators(n)) for n in range(graph.OperatorsLength())))


def flash_bytes(path: str | os.PathLike) -> dict:
    """What the model takes in flash: the file, split into weights (its buffers' data) and the
    graph (everything else: tensors, ops, quantization parameters, the flatbuffer's tables)."""
    model, total = _model(Path(path)), Path(path).stat().st_size
    weights = sum(model.Buffers(i).DataLength() for i in range(model.BuffersLength()))
    return {"total": total, "weights": weights, "graph": total - weights}


def peak_activation_bytes(path: str | os.PathLike) -> int:
    """The most bytes of activations any op of the graph needs live at once, in the file's op
    order: its inputs and outputs, and every tensor made earlier and read later. A layer-by-layer
    runtime cannot plan below it (TFLM's arena head, measured: equal to it); in a residual block
    the block's input, the first conv's output and the second's are all live during the second."""
    model = _model(Path(path))
    graph = model.Subgraphs(0)
    constant = {i for i in range(graph.TensorsLength()) if model.Buffers(graph.Tensors(i).Buffer()).DataLength()}
    size = lambda i: int(np.prod(graph.Tensors(i).ShapeAsNumpy())) * np.dtype(DTYPES[graph.Tensors(i).Type()]).itemsize  # noqa: E731
    ops = [graph.Operators(n) for n in range(graph.OperatorsLength())]
    reads = [{int(i) for i in op.InputsAsNumpy() if i >= 0} - constant for op in ops]
    writes = [{int(i) for i in op.OutputsAsNumpy()} for op in ops]
    last_read = {i: n for n, r in enumerate(reads) for i in r}
    last_read.update({int(i): len(ops) for i in graph.OutputsAsNumpy()})
    made = {int(i): -1 for i in graph.InputsAsNumpy()}
    made.update({i: n for n, w in enumerate(writes) for i in w})
    return max(sum(size(i) for i in made if made[i] <= n <= last_read.get(i, made[i])) for n in range(len(ops)))


def interpreter(path: str | os.PathLike, arena_size: int | None = None, preserve_all_tensors: bool = False):
    """A TFLM interpreter of an int8 .tflite, its C++ prints kept off the console (shown under
    -v); R8Error naming the file and the op TFLM lacks, or that the arena is too small.
    ``preserve_all_tensors`` keeps every intermediate tensor readable (``GetTensor``)."""
    from tflite_micro import runtime

    _model(Path(path))
    config = runtime.InterpreterConfig.kPreserveAllTensors if preserve_all_tensors else runtime.InterpreterConfig.kAllocationRecording
    with native_output_captured() as printed:
        try:
            return runtime.Interpreter.from_file(str(path), arena_size=arena_size, intrepreter_config=config)
        except RuntimeError as e:
            failure = e
    missing = re.search(r"Didn't find op for builtin opcode '(\w+)'", printed[0])
    if missing:
        raise R8Error(f"{path}: op {missing[1]} is not a TFLM builtin: this model cannot run on TFLite Micro")
    raise R8Error(f"{path}: TFLM cannot allocate it ({failure}; {' '.join(printed[0].split())[:300]})")


def _runs(path: Path, arena_size: int) -> bool:
    """Whether TFLM allocates and invokes the model in an arena of ``arena_size`` bytes."""
    try:
        it = interpreter(path, arena_size)
    except R8Error as e:
        if "cannot allocate" in str(e):
            return False
        raise
    details = it.get_input_details(0)
    with native_output_captured():
        it.set_input(np.zeros(details["shape"], details["dtype"]), 0)
        it.invoke()
    return True


def arena_bytes(path: str | os.PathLike) -> dict:
    """The smallest arena (bytes) in which TFLM allocates and invokes the model, by bisection,
    and what TFLM's recording allocator reports using in an ample arena (the two should agree)."""
    path = Path(path)
    hi = max(4096, path.stat().st_size)
    while not _runs(path, hi):
        hi *= 2
        if hi > ARENA_LIMIT:
            raise R8Error(f"{path}: TFLM does not run it within {ARENA_LIMIT:,} bytes of arena")
    lo = 0  # lo fails (or is 0), hi runs
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _runs(path, mid) else (mid, hi)
    it = interpreter(path, 2 * hi)
    with native_output_captured() as printed:
        it.print_allocations()
    recorded = {k: int(v) for k, v in re.findall(r"Arena allocation (total|head|tail) (\d+) bytes", printed[0])}
    return {"needed": hi, "recorded": recorded}


def _tflm_outputs(path: str, images: np.ndarray) -> np.ndarray:
    """TFLM's int8 outputs, one image per invoke (an MCU model's batch is 1)."""
    it = interpreter(path)
    details = it.get_input_details(0)
    q = details["quantization_parameters"]
    x = integer_input(images, details["dtype"], float(q["scales"][0]), int(q["zero_points"][0]))
    out = []
    with native_output_captured():
        for i in range(len(x)):
            it.set_input(x[i:i + 1], 0)
            it.invoke()
            out.append(it.get_output(0).copy())
    return np.concatenate(out)


def _litert_outputs(path: str, images: np.ndarray, reference_kernels: bool) -> np.ndarray:
    runner = TfliteRunner(path, threads=1, reference_kernels=reference_kernels)
    return np.concatenate([runner.raw(images[i:i + CHUNK]) for i in range(0, len(images), CHUNK)])


def _parallel(fn, path: Path, images: np.ndarray, *args) -> np.ndarray:
    """``fn(path, chunk, *args)`` over chunks of ``images``, one process per core (spawned: the
    parent may hold torch's threads, which do not survive a fork)."""
    chunks = [images[i:i + CHUNK] for i in range(0, len(images), CHUNK)]
    with ProcessPoolExecutor(os.cpu_count(), mp_context=multiprocessing.get_context("spawn")) as pool:
        return np.concatenate(list(pool.map(fn, *zip(*[(str(path), c, *args) for c in chunks]))))


ENGINES = {"tflm": lambda path, images: _parallel(_tflm_outputs, path, images),
           "litert-reference-kernels": lambda path, images: _parallel(_litert_outputs, path, images, True),
           "litert": lambda path, images: _litert_outputs(str(path), images, False)}


def outputs(path: str | os.PathLike, images: np.ndarray, engine: str) -> tuple[np.ndarray, float]:
    """(int8 outputs of ``engine`` on ``images``, the seconds the run took), built once into the cache."""
    path = Path(path)
    digest = sha256(path)
    images_sha = hashlib.sha256(np.ascontiguousarray(images).data).hexdigest()

    def build(tmp: Path) -> dict:
        start = time.perf_counter()
        with open(tmp, "wb") as f:
            np.save(f, ENGINES[engine](path, images))
        return {"seconds": time.perf_counter() - start}

    cached = build_once(f"mcu/{digest[:16]}-{images_sha[:12]}-{engine}.npy", {"tflite": digest, "images": images_sha},
                        build)
    return np.load(cached), build_facts(cached)["seconds"]


def first_differing_ops(path: str | os.PathLike, images: np.ndarray) -> dict:
    """Where TFLM and LiteRT's reference kernels part, image by image: op -> {"images": how many
    images first differ at its output, "max_lsb": by how much at most}. Every tensor is kept in
    both interpreters (TFLM's kPreserveAllTensors, LiteRT's preserve_all_tensors), so each op's
    output is compared where both ran it on the same inputs."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    micro = interpreter(path, ARENA_LIMIT, preserve_all_tensors=True)
    with native_output_captured(), all_tensors_kept():
        ref = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                          experimental_preserve_all_tensors=True)
        ref.allocate_tensors()
    detail = ref.get_input_details()[0]
    x = integer_input(images, detail["dtype"], *detail["quantization"])
    found: dict[str, dict] = {}
    for i in range(len(x)):
        with native_output_captured():
            micro.set_input(x[i:i + 1], 0)
            micro.invoke()
        ref.set_tensor(detail["index"], x[i:i + 1])
        ref.invoke()
        for op in ref._get_ops_details():  # in execution order
            out = op["outputs"][0]
            a, b = ref.get_tensor(out).astype(np.int32), micro.GetTensor(out, 0)["tensor_data"].astype(np.int32)
            if not np.array_equal(a, b.reshape(a.shape)):
                entry = found.setdefault(op["op_name"], {"images": 0, "max_lsb": 0})
                entry["images"] += 1
                entry["max_lsb"] = max(entry["max_lsb"], int(np.abs(a - b.reshape(a.shape)).max()))
                break
    return found


def dequantize(path: str | os.PathLike, raw: np.ndarray) -> np.ndarray:
    """int8 outputs as the probabilities they stand for (the output tensor's scale, zero point)."""
    it = interpreter(path)
    q = it.get_output_details(0)["quantization_parameters"]
    return (raw.astype(np.float32) - int(q["zero_points"][0])) * float(q["scales"][0])


def measure(path: str | os.PathLike, images: np.ndarray) -> dict:
    """Everything the MCU row of a .tflite says but accuracy: TFLM's outputs and probabilities on
    ``images``, agreement with LiteRT's kernels, arena, flash and ops."""
    tflm, tflm_s = outputs(path, images, "tflm")
    ref, _ = outputs(path, images, "litert-reference-kernels")
    xnn, _ = outputs(path, images, "litert")
    differs = lambda other: int((tflm != other).any(axis=1).sum())  # noqa: E731
    parted = (tflm != ref).any(axis=1)
    return {"probs": dequantize(path, tflm), "litert_probs": dequantize(path, xnn), "tflm_s": round(tflm_s, 1),
            "bitexact_ref_kernels": differs(ref) == 0, "differs_ref_kernels": differs(ref),
            "ref_kernels_first_differ_at": first_differing_ops(path, images[parted]),
            "differs_xnnpack": differs(xnn), "differs_xnnpack_top1": int((tflm.argmax(1) != xnn.argmax(1)).sum()),
            "arena": {**arena_bytes(path), "peak_activations": peak_activation_bytes(path)},
            "flash": flash_bytes(path), "ops": ops(path)}


class TflmRunner:
    """An int8 .tflite on TFLM, with the one ``predict`` interface of :mod:`r8.runtimes.runners` (one
    process, one image per invoke; :func:`outputs` runs a data set across cores and caches it)."""

    threads, engine = 1, "tflite-micro"

    def __init__(self, path: str | os.PathLike, name: str = "tflite-micro"):
        self.path, self.name = str(path), name
        interpreter(path)  # refuse a model TFLM cannot run now, with the reason

    def predict(self, images: np.ndarray) -> np.ndarray:
        return dequantize(self.path, _tflm_outputs(self.path, images))
