"""ONNX Runtime int8 post-training static quantization (``quant_pre_process`` +
``quantize_static``) over every calibration method, format, type pair and weight granularity."""

import ast
import contextlib
import io
import tempfile
import time
from dataclasses import dataclass
from itertools import product
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
from onnxruntime import InferenceSession
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)
from onnxruntime.quantization.calibrate import create_calibrator, load_tensors_data, save_tensors_data
from onnxruntime.quantization.qdq_loss_debug import (
    collect_activations,
    compute_activation_error,
    create_activation_matching,
    modify_model_output_intermediate_tensors,
)
from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

from r8 import artifacts
from r8.backends import Backend, float_layers_tag, weights_id
from r8.calibration import CalibrationSet
from r8.core.cache import build_once, sha256
from r8.core.environment import saturating_int8, threads
from r8.data import Split
from r8.frontends.converted_layers import LAYER_TYPES, conv_of_batchnorm, float_units
from r8.model import Model
from r8.runtimes.runners import OnnxRunner, model_input, onnx_layout

METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
           "percentile": CalibrationMethod.Percentile, "distribution": CalibrationMethod.Distribution}
FORMATS = {"qdq": QuantFormat.QDQ, "qop": QuantFormat.QOperator}
TYPES = {"u8u8": (QuantType.QUInt8, QuantType.QUInt8), "u8s8": (QuantType.QUInt8, QuantType.QInt8),
         "s8s8": (QuantType.QInt8, QuantType.QInt8)}  # (activations, weights)


@dataclass(frozen=True)
class OrtConfig:
    fmt: str
    types: str
    per_channel: bool
    method: str

    @property
    def id(self) -> str:
        return f"{self.fmt}-{self.types}-{weights_id(self.per_channel)}-{self.method}"


FULL_MATRIX = [OrtConfig(f, t, pc, m) for f, t, pc, m in product(FORMATS, TYPES, (True, False), METHODS)]
# Every method, format and type pair at least once; FULL_MATRIX runs under the `slow` marker.
DEFAULT_MATRIX = [
    OrtConfig("qdq", "u8s8", True, "minmax"),
    OrtConfig("qdq", "u8s8", True, "entropy"),
    OrtConfig("qdq", "u8s8", True, "percentile"),
    OrtConfig("qdq", "u8s8", True, "distribution"),
    OrtConfig("qdq", "s8s8", True, "minmax"),
    OrtConfig("qdq", "u8u8", False, "minmax"),
    OrtConfig("qop", "u8s8", True, "minmax"),
    OrtConfig("qop", "s8s8", True, "minmax"),
    OrtConfig("qop", "u8u8", True, "minmax"),
    OrtConfig("qop", "u8s8", True, "percentile"),
]


class ImageReader(CalibrationDataReader):
    """Feeds NHWC images to the model's input as float32, in its layout, in batches."""

    def __init__(self, images: np.ndarray, model_path: str | Path, batch: int = 100):
        graph_input = onnx.load(str(model_path), load_external_data=False).graph.input[0]
        dims = [d.dim_value for d in graph_input.type.tensor_type.shape.dim]
        nchw = onnx_layout(dims, images.shape) == "nchw"
        self.name = graph_input.name
        self.batches = [model_input(images[start:start + batch], nchw) for start in range(0, len(images), batch)]
        self.rewind()

    def get_next(self):
        return next(self._it, None)

    def rewind(self):
        self._it = iter({self.name: x} for x in self.batches)


def preprocess(fp32: str | Path, out: str | Path) -> None:
    """ORT's recommended step before quantization: shape inference and graph optimisation."""
    quant_pre_process(str(fp32), str(out))


# Calibrator options. quantize_static passes none of its own, and Entropy's defaults (128 bins
# searched with 128 quantized bins) leave its KL search one candidate: the full range, i.e.
# MinMax. TensorRT's recipe: a 2048-bin histogram searched with 128 quantized bins.
CALIBRATOR_OPTIONS = {"minmax": {}, "entropy": {"num_bins": 2048, "num_quantized_bins": 128},
                      "percentile": {}, "distribution": {}}


def calibrate(pre: str | Path, method: str, images: np.ndarray, cache: str | Path) -> None:
    """Collect activation ranges of ``pre`` on ``images`` with ORT's calibrator for ``method``
    and write them as the JSON calibration cache that ``quantize_static`` reads."""
    op_types = sorted(set(QLinearOpsRegistry) | set(QDQRegistry))  # what quantize_static calibrates
    with tempfile.TemporaryDirectory() as tmp:
        calibrator = create_calibrator(Path(pre), op_types, str(Path(tmp) / "augmented.onnx"),
                                       METHODS[method], extra_options=CALIBRATOR_OPTIONS[method])
        if n := threads():  # its session takes ORT's default threads: open it again at R8_THREADS
            options = calibrator.infer_session.get_session_options()
            options.intra_op_num_threads = n
            calibrator.infer_session = InferenceSession(calibrator.augmented_model_path, options,
                                                        providers=calibrator.execution_providers)
        with contextlib.redirect_stdout(io.StringIO()):  # the histogram calibrators print progress
            calibrator.collect_data(ImageReader(images, pre))
            ranges = calibrator.compute_data()
    save_tensors_data(ranges, cache)


def reduce_range() -> bool:
    """Whether ORT configs get 7-bit weights on this CPU: every one on x86 without VNNI, where
    ONNX Runtime's int8 kernels add pairs of u8 x s8 products in 16 bits (``vpmaddubsw``), which
    saturates on real activations; configs with s8 activations or u8 weights saturate there too
    (docs/measured.md). ``reduce_range`` is ORT's remedy for non-VNNI machines."""
    return saturating_int8()


def quantize(pre: str | Path, out: str | Path, config: OrtConfig, calibration: Split, float_nodes: tuple = (),
             ranges_file: Path | None = None) -> dict:
    """Statically quantize the pre-processed model ``pre`` to ``out``, calibrating first (or
    reading the calibration cache ``ranges_file``). Softmax stays float: int8 probabilities can
    tie, and a tie changes the argmax; so do ``float_nodes`` (ONNX node names). Returns the
    seconds each step took and the calibrated ``ranges`` (tensor -> [rmin, rmax])."""
    activations, weights = TYPES[config.types]
    extra_options = {}
    if config.method == "distribution":
        # The Distribution calibrator returns symmetric ranges (-t, t), but ORT drops ReLUs after
        # quantized ops unless activations are declared symmetric: without this, top-1 ~10 %.
        extra_options["ActivationSymmetric"] = True
    softmax = [n.name for n in onnx.load(str(pre)).graph.node if n.op_type == "Softmax"]
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(ranges_file or Path(tmp) / "calibration.json")
        start = time.perf_counter()
        if ranges_file is None:
            calibrate(pre, config.method, calibration.images, cache)
        calibrated = time.perf_counter()
        quantize_static(str(pre), str(out), None, calibration_cache_path=str(cache),
                        quant_format=FORMATS[config.fmt], per_channel=config.per_channel,
                        activation_type=activations, weight_type=weights,
                        calibrate_method=METHODS[config.method], nodes_to_exclude=softmax + list(float_nodes),
                        reduce_range=reduce_range(), extra_options=extra_options)
        ranges = {name: [float(np.ravel(v)[0]) for v in t.range_value] for name, t in load_tensors_data(cache).data.items()}
    return {"calibration_s": calibrated - start, "quantize_s": time.perf_counter() - calibrated, "ranges": ranges,
            "reduce_range": reduce_range()}


def initializers(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """name -> value of every initializer (weights, scales, zero points) of an ONNX graph."""
    return {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}


def activation_sqnr(pre: str | Path, qdq: str | Path, images: np.ndarray, labels: dict[str, str]) -> dict[str, float]:
    """SQNR (dB) of every quantized activation of a QDQ model against the float model it was
    made from (ORT's qdq_loss_debug), worst first: where the int8 error enters. ``labels``:
    tensor name -> how the report names it."""
    with tempfile.TemporaryDirectory() as tmp:
        acts = {}
        for kind, model in (("float", pre), ("qdq", qdq)):
            augmented = Path(tmp) / f"{kind}.onnx"
            modify_model_output_intermediate_tensors(str(model), str(augmented))
            acts[kind] = collect_activations(str(augmented), ImageReader(images, model))
    errors = compute_activation_error(create_activation_matching(acts["qdq"], acts["float"]))
    sqnr = {labels.get(name, name): float(e["xmodel_err"]) for name, e in errors.items() if "xmodel_err" in e}
    return dict(sorted(sqnr.items(), key=lambda kv: kv[1]))


def node_layers(model: Model) -> dict[str, str]:
    """ONNX node name -> r8's module it computes. torch.onnx records each node's module; its
    optimizer folds a BatchNorm into the conv before it and gives the fused Conv the BatchNorm's
    scope, which is mapped back to the conv. ORT's pre-processing keeps node names (not the
    records), so the names hold for the pre-processed graph too."""
    owner = conv_of_batchnorm(artifacts.torch_fp32(model))
    out = {}
    for node in onnx.load(str(artifacts.onnx_fp32(model, "torch"))).graph.node:
        scopes = {p.key: p.value for p in node.metadata_props}.get("pkg.torch.onnx.name_scopes")
        module = ast.literal_eval(scopes)[-2] if scopes else ""
        if module:
            out[node.name] = owner.get(module, module)
    return out


def tensor_labels(model: Model) -> dict[str, str]:
    """Tensor name of the pre-processed graph -> "module (ONNX op)" (see :func:`node_layers`)."""
    layers = node_layers(model)
    return {out: f"{layers[n.name]} ({n.op_type})" for n in onnx.load(str(onnx_preprocessed(model))).graph.node
            if n.name in layers for out in n.output}


def int8_convs(path: str | Path) -> int:
    """Convs that run in int8: QLinearConv/ConvInteger (QOperator) or a Conv whose input and
    weight both come out of DequantizeLinear (QDQ, which ORT fuses into an int8 kernel)."""
    graph = onnx.load(str(path)).graph
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    qdq = sum(n.op_type == "Conv" and n.input[0] in dequantized and n.input[1] in dequantized
              for n in graph.node)
    return qdq + sum(n.op_type in ("QLinearConv", "ConvInteger") for n in graph.node)


def integer_input(src: str | Path, dst: str | Path) -> None:
    """Rewrite an int8 model whose input quantization is exact on pixels (uint8, scale 1, zero
    point 0: the MinMax range 0..255) to take the uint8 NHWC pixels themselves: the input
    QuantizeLinear becomes a uint8 Transpose to NCHW, so no float conversion, no float transpose
    and no quantization run before the first int8 op. Refuses any other input quantization."""
    model = onnx.load(str(src))
    graph = model.graph
    init = initializers(graph)
    name = graph.input[0].name
    quant = next((n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] == name), None)
    if quant is None or len(quant.input) < 3:
        raise ValueError(f"{src}: its input {name!r} does not go through one QuantizeLinear")
    scale, zero = init[quant.input[1]], init[quant.input[2]]
    if not (scale.size == 1 and float(scale) == 1.0 and zero.dtype == np.uint8 and int(zero) == 0):
        raise ValueError(f"{src}: input quantization is scale {scale}, zero point {zero} ({zero.dtype}); "
                         "only uint8, scale 1, zero point 0 takes pixels exactly")
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    pixels = onnx.helper.make_tensor_value_info("pixels", onnx.TensorProto.UINT8, [dims[0], *dims[2:], dims[1]])
    to_nchw = onnx.helper.make_node("Transpose", ["pixels"], [quant.output[0]], perm=[0, 3, 1, 2], name="pixels_to_nchw")
    position = list(graph.node).index(quant)
    graph.node.remove(quant)
    graph.node.insert(position, to_nchw)
    graph.input.remove(graph.input[0])
    graph.input.insert(0, pixels)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))


def onnx_preprocessed(model: Model) -> Path:
    """The torch-route ONNX after ORT's quantization pre-processing: what ORT quantizes."""
    return build_once(artifacts.name(model, "onnx/torch.pre.onnx"), artifacts.key(model),
                      lambda tmp: preprocess(artifacts.onnx_fp32(model, "torch"), tmp))


def build(model: Model, config: OrtConfig, cal: CalibrationSet) -> Path:
    """An ONNX Runtime int8 model; its build facts (``r8.core.cache.build_facts``) hold the calibration
    and quantization seconds and the calibrated ranges."""
    return build_once(artifacts.name(model, f"ort/{config.id}-{cal.tag}.onnx"),
                      artifacts.key(model, calibration=cal.sha256, reduce_range=reduce_range()),
                      lambda tmp: quantize(onnx_preprocessed(model), tmp, config, cal))


def layer_nodes(model: Model) -> dict[str, list[str]]:
    """r8's module name of each unit a search can keep float (:func:`r8.frontends.converted_layers.float_units`: conv /
    linear layers, residual adds) -> its nodes in the pre-processed ONNX (the names it is excluded by)."""
    layers = float_units(artifacts.torch_fp32(model))
    owners = node_layers(model)
    out: dict[str, list[str]] = {}
    for node in onnx.load(str(onnx_preprocessed(model))).graph.node:
        if owners.get(node.name) in layers and node.op_type in ("Conv", "Gemm", "MatMul", "Add"):
            out.setdefault(owners[node.name], []).append(node.name)
    return out


def float_layers(model: Model, path: str | Path) -> set[str]:
    """r8's conv / linear layers whose weights a QDQ ONNX file of the model (ORT's, NNCF's) leaves float."""
    graph = onnx.load(str(path)).graph
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    owners = node_layers(model)
    int8 = {owners.get(n.name) for n in graph.node if n.op_type in ("Conv", "Gemm", "MatMul") and n.input[1] in dequantized}
    return {name for name, m in artifacts.torch_fp32(model).named_modules() if isinstance(m, LAYER_TYPES)} - int8


def calibration_ranges(model: Model, config: OrtConfig, cal: CalibrationSet) -> Path:
    """The calibrated ranges of a config's method (ORT's calibration cache), reused by every mixed build."""
    return build_once(artifacts.name(model, f"ort/ranges/{config.method}-{cal.tag}.json"),
                      artifacts.key(model, calibration=cal.sha256),
                      lambda tmp: calibrate(onnx_preprocessed(model), config.method, cal.images, tmp))


def build_mixed(model: Model, config: OrtConfig, cal: CalibrationSet, float_layers: tuple[str, ...]) -> Path:
    """:func:`build` with ``float_layers`` (r8's module names) left float (``nodes_to_exclude``)."""
    if not float_layers:
        return build(model, config, cal)
    nodes = layer_nodes(model)
    tag = float_layers_tag(model.path, float_layers, nodes)
    excluded = tuple(sorted(n for layer in float_layers for n in nodes[layer]))
    return build_once(artifacts.name(model, f"ort/mixed/{config.id}-{cal.tag}-float-{tag}.onnx"),
                      artifacts.key(model, calibration=cal.sha256, reduce_range=reduce_range(), float_layers=sorted(float_layers)),
                      lambda tmp: quantize(onnx_preprocessed(model), tmp, config, cal, excluded,
                                         calibration_ranges(model, config, cal)))


def build_integer_input(model: Model, config: OrtConfig, cal: CalibrationSet) -> Path:
    """The int8 model rewritten to take uint8 NHWC pixels (:func:`integer_input`); ValueError
    where its input quantization is not exact on pixels."""
    source = build(model, config, cal)
    return build_once(artifacts.name(model, f"ort/{config.id}-{cal.tag}.uint8-nhwc.onnx"),
                      artifacts.key(model, source=sha256(source)), lambda tmp: integer_input(source, tmp))


def layer_sqnr(model: Model, config: OrtConfig, cal: CalibrationSet, images: np.ndarray) -> tuple[str, dict[str, float]]:
    """Per-layer SQNR of a config. ``qdq_loss_debug`` reads QDQ models only, so a QOperator
    config is measured on its QDQ twin (the same calibration ranges)."""
    twin = OrtConfig("qdq", config.types, config.per_channel, config.method)
    return twin.id, activation_sqnr(onnx_preprocessed(model), build(model, twin, cal), images, tensor_labels(model))


class OrtBackend(Backend):
    name, default, full = "ort", DEFAULT_MATRIX, FULL_MATRIX
    gated = keeps_layers_float = measures_sqnr = True
    reproducibility = ("Two builds of a config in separate processes give byte-identical .onnx files and identical "
                       "predictions (tested). ONNX Runtime's int8 kernels (MLAS) pick their AVX2 / AVX-512 / VNNI code "
                       "path by CPU: compare rows across machines by their CPU flags. On x86 without VNNI, every config "
                       "gets 7-bit weights (reduce_range): the u8 x s8 kernel's 16-bit sums saturate otherwise.")

    def build(self, model, config, cal):
        return build(model, config, cal)

    def runner(self, config, path, threads=0):
        return OnnxRunner(path, name=f"ort-{config.id}", threads=threads)

    def build_mixed(self, model, config, cal, float_layers):
        return build_mixed(model, config, cal, float_layers)

    def layer_sqnr(self, model, config, cal, images):
        return layer_sqnr(model, config, cal, images)


BACKENDS = [OrtBackend()]
