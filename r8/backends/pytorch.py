"""The PyTorch int8 backends: a converted model (or the onnx2torch route's) quantized by one of
PyTorch's flows (:mod:`r8.backends.torch_flows`), built into the cache, run, and measured layer
by layer."""

import dataclasses
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import fx, nn

from r8 import artifacts
from r8.backends import Backend, float_layers_tag
from r8.backends.torch_flows import (
    DEFAULT_MATRIX,
    FLOWS_BY_NAME,
    FULL_MATRIX,
    ONNX2TORCH_MATRIX,
    TorchConfig,
    archive_digest,
    image_batches,
    load,
    quantize,
    quiet_deprecations,
    save,
    unavailable,
)
from r8.calibration import CalibrationSet
from r8.core.cache import build_once
from r8.core.environment import saturating_int8
from r8.core.errors import R8Error
from r8.frontends.convert import example_inputs
from r8.frontends.converted_layers import float_units
from r8.frontends.onnx_route import route_limit
from r8.model import Model
from r8.runtimes.runners import TorchRunner, quantized_engine


def int8_convs(qmodel: nn.Module) -> int:
    """Convolutions that run with int8 weights: quantized conv ops in a TorchScript graph
    (FX/eager) or convs whose weight comes through dequantize in a PT2E graph."""
    if isinstance(qmodel, torch.jit.ScriptModule):
        return str(qmodel.inlined_graph).count("quantized::conv2d")
    graph = qmodel.graph
    return sum(1 for n in graph.nodes if n.target == torch.ops.aten.conv2d.default
               and all(getattr(a, "target", None) is not None and "dequantize" in str(a.target)
                       for a in n.args[:2]))


def float_ops(qmodel: fx.GraphModule) -> dict[str, int]:
    """Ops of an FX-quantized graph that compute in float, by name: everything downstream of the
    float input or of a ``dequantize`` until the next ``quantize``: what stayed unquantized."""
    floating: set[fx.Node] = set()
    counts: dict[str, int] = {}
    for node in qmodel.graph.nodes:
        target = str(node.target)
        if node.op == "placeholder" or "dequantize" in target:
            floating.add(node)
        elif node.op in ("call_function", "call_method", "call_module") and "quantize" not in target \
                and any(n in floating for n in node.all_input_nodes):
            floating.add(node)
            name = type(qmodel.get_submodule(node.target)).__name__ if node.op == "call_module" else \
                getattr(node.target, "__name__", target)
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def float_reference(model: fx.GraphModule, config: TorchConfig) -> nn.Module:
    """The fp32 model with the same conv-bn(-relu) fusion the int8 model got, so both have the
    same module names and the same layer boundaries for per-layer comparison."""
    with quiet_deprecations():
        return FLOWS_BY_NAME[config.flow].reference(model)


def layer_sqnr(model: fx.GraphModule, config: TorchConfig, calibration: np.ndarray, images: np.ndarray) -> dict[str, float]:
    """SQNR (dB) of every int8 conv/linear output against the same fused layer in fp32, worst
    first. FX and eager only: a PT2E graph has no modules to hook."""
    if not FLOWS_BY_NAME[config.flow].hookable:
        raise ValueError("per-layer SQNR needs an FX or eager model")
    qmodel, reference = quantize(model, config, calibration)[0], float_reference(model, config)
    int8_layers = (torch.ao.nn.quantized.Conv2d, torch.ao.nn.quantized.Linear)  # incl. fused ConvReLU2d
    names = [n for n, m in qmodel.named_modules() if isinstance(m, int8_layers)]
    outputs = {"int8": {}, "fp32": {}}

    def record(kind, name):
        def hook(module, args, out):
            value = out.dequantize() if out.is_quantized else out
            outputs[kind].setdefault(name, []).append(value.detach())
        return hook

    hooks = [m.get_submodule(n).register_forward_hook(record(kind, n))
             for kind, m in (("int8", qmodel), ("fp32", reference)) for n in names]
    with quantized_engine(config.engine), torch.no_grad():
        for x in image_batches(images, model.meta.get("nhwc", False)):
            qmodel(x), reference(x)
    for h in hooks:
        h.remove()
    sqnr = {}
    for name in names:
        ref, q = torch.cat(outputs["fp32"][name]), torch.cat(outputs["int8"][name])
        sqnr[name] = float(20 * torch.log10(ref.norm() / (ref - q).norm().clamp_min(1e-12)))
    return dict(sorted(sqnr.items(), key=lambda kv: kv[1]))


def onnx2torch_float_ops(model: Model, cal: CalibrationSet) -> dict:
    """Why the onnx2torch route is not the default: the ops FX x86 leaves in float on each
    route's graph (the same config, the same calibration set)."""
    config = ONNX2TORCH_MATRIX[0]
    return {"config": config.id, **{route: float_ops(quantize(make(model), config, cal.images)[0])
                                    for route, make in artifacts.TORCH_ROUTES.items()}}


def build(model: Model, config: TorchConfig, cal: CalibrationSet, route: str = "r8") -> Path:
    """A PyTorch int8 model of the ``route``'s fp32 model (see :data:`FLOWS_BY_NAME` for the
    format); its build facts hold the calibration and quantization seconds and the ranges."""
    prefix = "torch" if route == "r8" else f"torch-{route}"

    def make(tmp: Path) -> dict:
        fp32 = artifacts.TORCH_ROUTES[route](model)
        with route_limit(model.path, f"quantized with {config.flow}") if route == "onnx2torch" else nullcontext():
            try:
                qmodel, facts = quantize(fp32, config, cal.images)
            except fx.proxy.TraceError as e:  # e.g. a data-dependent Reshape of a Flatten
                raise R8Error(f"{model.path}: the {route} route's module cannot be traced by FX for {config.flow}: {e}") from None
            except R8Error as e:
                raise R8Error(f"{model.path}: {config.flow}: {e}") from None
            save(qmodel, config, tmp, example_inputs(fp32))
        return dataclasses.asdict(facts)
    return build_once(artifacts.name(model, f"{prefix}/{config.id}-{cal.tag}.pt"),
                      artifacts.key(model, calibration=cal.sha256), make)


def build_mixed(model: Model, config: TorchConfig, cal: CalibrationSet, float_layers: tuple[str, ...]) -> Path:
    """:func:`build` with ``float_layers`` (r8's module names) left float: FX's per-module qconfig
    None (the FX flow only: eager and PT2E name their modules otherwise)."""
    if config.flow != "fx":
        raise R8Error(f"{config.id}: float layers need the fx flow, e.g. {dataclasses.replace(config, flow='fx').id}")
    if not float_layers:
        return build(model, config, cal)
    fp32 = artifacts.torch_fp32(model)
    tag = float_layers_tag(model.path, float_layers, float_units(fp32))

    def make(tmp: Path) -> dict:
        qmodel, facts = quantize(fp32, config, cal.images, tuple(sorted(float_layers)))
        save(qmodel, config, tmp, example_inputs(fp32))
        return dataclasses.asdict(facts)
    return build_once(artifacts.name(model, f"torch/mixed/{config.id}-{cal.tag}-float-{tag}.pt"),
                      artifacts.key(model, calibration=cal.sha256, float_layers=sorted(float_layers)), make)


def runner(config: TorchConfig, path: str | Path, threads: int = 0, prefix: str = "torch", nhwc: bool = False) -> TorchRunner:
    return TorchRunner(load(config, path), name=f"{prefix}-{config.id}", engine=config.engine, nhwc=nhwc,
                       threads=threads)


REPRODUCIBILITY = (
    "Two builds of a config in separate processes give the same tensors, module tree and predictions (tested, "
    "by content: torch writes a random id into every archive, and TorchScript writes a module's constants in an "
    "order that follows Python's hash seed, so the files' bytes differ). The thread count does not change what "
    "calibration chooses; the int8 kernels (fbgemm, oneDNN) pick their code path by the CPU's ISA, which can move "
    "top-1 by a few images between machines: compare rows by their CPU flags and engine.")

# Without VNNI no torch config meets the best-drop gate (docs/measured.md); with VNNI one does.
SATURATING_CPU = ("torch's int8 engines on x86 without VNNI: u8 x s8 products saturate in 16-bit sums (vpmaddubsw), "
                  "so oneDNN loses accuracy and x86/fbgemm quantize activations to 7 bits")

class TorchBackend(Backend):
    name, default, full = "torch", DEFAULT_MATRIX, FULL_MATRIX
    gated = keeps_layers_float = measures_sqnr = True
    reproducibility = REPRODUCIBILITY

    def build(self, model, config, cal):
        return build(model, config, cal)

    def runner(self, config, path, threads=0):
        return runner(config, path, threads)

    def build_mixed(self, model, config, cal, float_layers):
        return build_mixed(model, config, cal, float_layers)

    def layer_sqnr(self, model, config, cal, images):
        return config.id, layer_sqnr(artifacts.torch_fp32(model), config, cal.images, images)

    def sqnr_for(self, config):
        return FLOWS_BY_NAME[config.flow].hookable

    def unavailable(self, config):
        return unavailable(config)

    def digest(self, path):
        return archive_digest(path)

    def best_gate_waiver(self):
        return SATURATING_CPU if saturating_int8() else None


class Onnx2TorchBackend(Backend):
    """The fallback conversion route's model (tf2onnx -> onnx2torch), quantized the same way."""

    name, default, full = "torch-onnx2torch", ONNX2TORCH_MATRIX, ONNX2TORCH_MATRIX
    reproducibility = REPRODUCIBILITY

    @staticmethod
    def applies(model) -> bool:
        """The route starts from tf2onnx's export of a Keras or TFLite file; r8 converts any other
        format with onnx2torch itself, so its rows would be the torch backend's."""
        return model.is_keras or model.path.suffix.lower() == ".tflite"

    def build(self, model, config, cal):
        if not self.applies(model):
            raise R8Error(f"{model.path.name}: r8 converts a {model.path.suffix} file with onnx2torch itself; "
                          "the fallback route is that conversion, whose rows are the torch backend's")
        return build(model, config, cal, route="onnx2torch")

    def runner(self, config, path, threads=0):
        return runner(config, path, threads, prefix="torch-onnx2torch", nhwc=True)

    def notes(self, model, cal, rows):
        return {"onnx2torch_float_ops": onnx2torch_float_ops(model, cal)} if self.applies(model) else {}

    def digest(self, path):
        return archive_digest(path)


BACKENDS = [TorchBackend(), Onnx2TorchBackend()]
