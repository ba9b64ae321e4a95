"""Where a model's time goes, op by op, and what r8's runner adds around it.

- A ``.tflite``: each op timed alone, as a model of that one op cut from the file (its weights and
  quantization as they are) on the same interpreter and kernels (XNNPACK where it takes the op).
  The ops' sum misses what the whole model shares or fuses across ops; the whole model's bare
  ``invoke`` is timed beside them.
- An ``.onnx``: ONNX Runtime's own profiler, each node's kernel time inside whole-model runs.
- An ``.onnx`` on OpenVINO: its performance counters, each executed node (after its fusions).
- A ``.pte`` on ExecuTorch: its ETDump, each op XNNPACK runs inside the delegate (XNNPACK's own
  names) and each op left to the portable kernels.
- All: the runner's ``predict`` (input conversion, output copy, Python) against a bare
  ``invoke`` / ``run`` of the same model on the same input.

Each figure is a median over slots of about :data:`SLOT_S`, so it is a profile, not a speed
claim: which runtime is faster is decided in paired rounds (:mod:`r8.runtimes.ranking`).
"""

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from r8.core.console import native_stderr_quiet
from r8.runtimes.runners import ExecuTorchRunner, OnnxRunner, OpenVinoRunner, TfliteRunner, model_input, onnx_session, torch_input
from r8.runtimes.timing import SLOT_S, WARM_S, repeated

SLOTS = 7  # each figure: the median of this many slots, timed as the paired rounds time theirs
PROFILED_RUNS = 50  # whole-model runs under ONNX Runtime's profiler or OpenVINO's counters


@dataclass(frozen=True)
class OpTime:
    index: int  # position in the file's execution order
    op: str  # the builtin (CONV_2D) or ONNX op type (QLinearConv)
    output_shape: tuple[int, ...]
    us: float  # median microseconds per call


@dataclass(frozen=True)
class Profile:
    file: str
    engine: str  # "litert", "onnxruntime", "openvino" or "executorch"
    batch: int
    threads: int
    ops: tuple[OpTime, ...]
    bare_us: float  # the whole model's bare invoke / run
    runner_us: float  # r8's runner.predict on the same batch

    @classmethod
    def from_dict(cls, d: dict) -> "Profile":
        return cls(**{**{k: v for k, v in d.items() if k in cls.__dataclass_fields__},
                      "ops": tuple(OpTime(**{**t, "output_shape": tuple(t["output_shape"])}) for t in d["ops"])})

    @property
    def runner_overhead_us(self) -> float:
        """What r8's runner adds to a bare call: input conversion, output copy, Python."""
        return self.runner_us - self.bare_us

    def as_dict(self) -> dict:
        return {**asdict(self), "ops": [asdict(t) for t in self.ops], "runner_overhead_us": self.runner_overhead_us}

    def by_op(self) -> dict[str, tuple[int, float]]:
        """op -> (how many, their microseconds together), most time first."""
        out: dict[str, tuple[int, float]] = {}
        for t in self.ops:
            n, us = out.get(t.op, (0, 0.0))
            out[t.op] = (n + 1, us + t.us)
        return dict(sorted(out.items(), key=lambda kv: -kv[1][1]))


def interleaved_us(*calls: Callable[[], object]) -> tuple[float, ...]:
    """Median microseconds of each call, over :data:`SLOTS` rounds of one slot of
    :data:`r8.runtimes.timing.SLOT_S` per call, after :data:`r8.runtimes.timing.WARM_S` of untimed
    calls each (first calls allocate and pack weights). The calls' slots are interleaved, so that all
    see the same machine: timed one after the other, a drift between a bare call and r8's runner on
    it reads as the runner's overhead."""
    for call in calls:
        repeated(call, WARM_S)
    slots = np.array([[repeated(call, SLOT_S) for call in calls] for _ in range(SLOTS)])
    return tuple(float(us) for us in np.median(slots, axis=0) * 1e6)


def random_input(shape, dtype, seed: int = 0) -> np.ndarray:
    """A tensor of ``shape`` and ``dtype`` over its type's whole range (kernels' time does not
    depend on the values, but a constant could take a shortcut)."""
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _op_name(model, op) -> str:
    from ai_edge_litert import schema_py_generated as schema

    code = model.operatorCodes[op.opcodeIndex]
    number = max(code.builtinCode, code.deprecatedBuiltinCode)
    return next(k for k, v in vars(schema.BuiltinOperator).items() if v == number)


def single_op_models(path: str | os.PathLike) -> list[tuple[str, bytes]]:
    """(op name, a ``.tflite`` of that op alone) for each op of the file, in execution order: the
    op's non-constant inputs become the model's inputs, its outputs the model's outputs."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(Path(path).read_bytes()), 0)
    graph = model.subgraphs[0]
    constant = {i for i, t in enumerate(graph.tensors) if model.buffers[t.buffer].data is not None}
    model.signatureDefs, operators, out = None, list(graph.operators), []
    for op in operators:
        graph.operators = [op]
        graph.inputs = [int(i) for i in op.inputs if i >= 0 and i not in constant]
        graph.outputs = [int(i) for i in op.outputs]
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        out.append((_op_name(model, op), bytes(builder.Output())))
    return out


def _interpreter(content: bytes, threads: int, batch: int):
    """A LiteRT interpreter of ``content`` (XNNPACK, as r8's TfliteRunner) with every input's
    first dimension set to ``batch``."""
    from ai_edge_litert.interpreter import Interpreter

    with native_stderr_quiet():
        it = Interpreter(model_content=content, num_threads=threads or None)
        for d in it.get_input_details():
            it.resize_tensor_input(d["index"], [batch, *d["shape"][1:]])
        it.allocate_tensors()
    return it


def _fed(it, seed: int = 0):
    """``it`` with random inputs set: its invoke, ready to time."""
    for d in it.get_input_details():
        it.set_tensor(d["index"], random_input(d["shape"], d["dtype"], seed))
    return it.invoke


def tflite_profile(path: str | os.PathLike, images: np.ndarray, threads: int = 0) -> Profile:
    """Each op of a ``.tflite`` alone, the whole model bare, and r8's TfliteRunner, at the batch of ``images``."""
    batch, ops = len(images), []
    for index, (op, content) in enumerate(single_op_models(path)):
        it = _interpreter(content, threads, batch)
        shape = tuple(int(d) for d in it.get_output_details()[0]["shape"])
        ops.append(OpTime(index, op, shape, interleaved_us(_fed(it, index))[0]))
    runner = TfliteRunner(path, threads=threads or None)
    runner.predict(images)  # sized for the batch, input set from the images themselves
    return Profile(str(path), "litert", batch, threads, tuple(ops),
                   *interleaved_us(runner.interpreter.invoke, lambda: runner.predict(images)))


def node_medians(samples) -> tuple[OpTime, ...]:
    """(node, op, output shape, microseconds) of every node in every profiled run -> one OpTime per
    node, in the order first seen, its median over the runs but the first (which allocates)."""
    first: dict[str, tuple[str, tuple]] = {}
    times: dict[str, list[float]] = {}
    for node, op, shape, us in samples:
        first.setdefault(node, (op, shape))
        times.setdefault(node, []).append(us)
    return tuple(OpTime(i, *first[n], float(np.median(times[n][1:] or times[n]))) for i, n in enumerate(first))


def _shape(event: dict) -> tuple[int, ...]:
    """The output shape an ONNX Runtime profiler event records for its node."""
    out = event["args"].get("output_type_shape", [{}])
    return tuple(next(iter(out[0].values()), ())) if out else ()


def onnx_profile(path: str | os.PathLike, images: np.ndarray, threads: int = 0) -> Profile:
    """Each node's kernel time from ONNX Runtime's profiler over :data:`PROFILED_RUNS` whole-model runs
    (median per node), the bare ``run`` and r8's OnnxRunner, at the batch of ``images``."""
    import onnxruntime as ort

    runner = OnnxRunner(path, threads=threads)
    runner.predict(images)  # decides the layout
    feed = {runner.input_name: model_input(images, runner.nchw[images.shape[1:]], runner.integer)}
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.enable_profiling, options.profile_file_prefix = True, str(Path(path).stem)
    session = onnx_session(str(path), options)
    for _ in range(PROFILED_RUNS):
        session.run(None, feed)
    trace = Path(session.end_profiling())
    events = json.loads(trace.read_text())
    trace.unlink()
    ops = node_medians((e["name"].removesuffix("_kernel_time"), e["args"].get("op_name", "?"), _shape(e), e["dur"])
                       for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"))
    return Profile(str(path), "onnxruntime", len(images), threads, ops,
                   *interleaved_us(lambda: runner.session.run(None, feed), lambda: runner.predict(images)))


def openvino_profile(path: str | os.PathLike, images: np.ndarray, threads: int = 0) -> Profile:
    """Each executed node's time from OpenVINO's performance counters over :data:`PROFILED_RUNS`
    whole-model runs (median per node; after OpenVINO's fusions a node may hold several of the
    file's ops), the bare ``infer`` and r8's OpenVinoRunner, at the batch of ``images``."""
    runner, counted = OpenVinoRunner(path, threads=threads), OpenVinoRunner(path, threads=threads)
    counted.config["PERF_COUNT"] = True
    runner.predict(images)
    counted.predict(images)
    feed = {0: np.ascontiguousarray(images)}

    def counters():
        for _ in range(PROFILED_RUNS):
            counted.request.infer(feed)
            yield from ((i.node_name, i.node_type, (), i.real_time.total_seconds() * 1e6)
                        for i in counted.request.get_profiling_info() if i.status == i.Status.EXECUTED)

    ops = node_medians(counters())
    return Profile(str(path), "openvino", len(images), threads, ops,
                   *interleaved_us(lambda: runner.request.infer(feed), lambda: runner.predict(images)))


# What an ETDump records around the ops rather than for one op
ET_WRAPPERS = ("Method::execute", "Method::init", "Program::load_method", "DELEGATE_CALL")


def executorch_profile(path: str | os.PathLike, images: np.ndarray, threads: int = 0) -> Profile:
    """Each op of a ``.pte`` from ExecuTorch's ETDump over :data:`PROFILED_RUNS` whole-program runs
    (median per op): XNNPACK's ops inside the delegate by XNNPACK's names ("Convolution (NHWC, QS8)
    IGEMM"), the ops outside it as ``OPERATOR_CALL``; the bare ``forward`` and r8's ExecuTorchRunner,
    at the batch of ``images`` (``threads``: XNNPACK's pool keeps its default size)."""
    import tempfile

    from executorch.devtools import Inspector
    from executorch.devtools.inspector import TimeScale
    from executorch.extension.pybindings import portable_lib

    runner = ExecuTorchRunner(path, threads=threads, max_batch=len(images))
    x = (torch_input(images).contiguous(),)
    with native_stderr_quiet():  # its CPU probe's log lines
        dumped, bare = (portable_lib._load_for_executorch(str(path), enable_etdump=dumps) for dumps in (True, False))
    for _ in range(PROFILED_RUNS):
        dumped.forward(x)
    with tempfile.TemporaryDirectory() as tmp:
        etdump = Path(tmp) / "profile.etdp"
        dumped.write_etdump_result_to_file(str(etdump))
        inspector = Inspector(etdump_path=str(etdump), target_time_scale=TimeScale.US)
    # an event per op and delegate, its runs in perf_data; each delegate numbers its ops from #1 again
    ops = node_medians((f"{block.name}/{i}", re.sub(r" #\d+$", "", event.name), (), us)
                       for block in inspector.event_blocks for i, event in enumerate(block.events)
                       if event.name not in ET_WRAPPERS and event.perf_data is not None for us in event.perf_data.raw)
    return Profile(str(path), "executorch", len(images), runner.threads, ops,
                   *interleaved_us(lambda: bare.forward(x), lambda: runner.predict(images)))


# by the runtime name's first word
PROFILERS = {"tflite": tflite_profile, "litert": tflite_profile, "onnxruntime": onnx_profile,
             "openvino": openvino_profile, "executorch": executorch_profile}


def profiler(runtime: str) -> Callable[..., Profile] | None:
    """The per-op profiler of a benchmark runtime (``tflite-int8``, ``onnxruntime-int8-qop-u8in``);
    None where r8 has none for its engine (torch)."""
    return PROFILERS.get(runtime.split("-")[0])


# What each engine's ops do, so two files' profiles line up by kind
KINDS = {"conv": ("CONV_2D", "QLinearConv", "Conv", "ConvInteger", "Convolution"), "depthwise conv": ("DEPTHWISE_CONV_2D",),
         "add": ("ADD", "QLinearAdd", "Add", "Eltwise"), "pad": ("PAD", "Pad", "Constant Pad"),
         "dense": ("FULLY_CONNECTED", "QGemm", "Gemm", "MatMul", "MatMulInteger", "FullyConnected",
                   "FullyConnectedQuantizedLegacy", "Fully Connected"),
         "pool": ("AVERAGE_POOL_2D", "MAX_POOL_2D", "MEAN", "QLinearAveragePool", "QLinearGlobalAveragePool",
                  "AveragePool", "GlobalAveragePool", "MaxPool", "AvgPool", "ReduceMean", "Average Pooling"),
         "(de)quantize": ("QUANTIZE", "DEQUANTIZE", "QuantizeLinear", "DequantizeLinear", "FakeQuantize", "Convert"),
         "layout": ("RESHAPE", "TRANSPOSE", "Reshape", "Transpose", "Flatten", "Reorder"),
         "activation": ("RELU", "Relu", "Clamp"),
         "outside the delegate": ("OPERATOR_CALL",), "softmax": ("SOFTMAX", "Softmax")}
KIND_OF = {op: kind for kind, ops in KINDS.items() for op in ops}


def by_kind(profile: Profile) -> dict[str, tuple[int, float]]:
    """kind (conv, add, ...; an op of no kind as itself) -> (how many ops, their microseconds together)."""
    out: dict[str, tuple[int, float]] = {}
    for op, (n, us) in profile.by_op().items():
        kind = KIND_OF.get(op, KIND_OF.get(op.split(" (")[0], op))  # XNNPACK's: "Convolution (NHWC, QS8) IGEMM"
        have = out.get(kind, (0, 0.0))
        out[kind] = (have[0] + n, have[1] + us)
    return out
