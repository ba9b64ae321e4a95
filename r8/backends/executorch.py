"""ExecuTorch, PyTorch's own int8 deployment for CPUs, phones and microcontrollers: r8's converted
model quantized by PT2E with XNNPACK's quantizer (symmetric int8 weights, per channel or per
tensor), lowered to the XNNPACK delegate, written as a ``.pte`` and run by ExecuTorch's runtime.
The field's quantizer beside r8's own: each config is held to the per-config drop gate."""

import operator
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from r8 import artifacts
from r8.backends import Backend, float_layers_tag, missing, weights_id
from r8.calibration import CalibrationSet
from r8.core.cache import build_facts, build_once
from r8.frontends.converted_layers import float_units
from r8.model import Model
from r8.runtimes.runners import ExecuTorchRunner, torch_input

# The program's batch dimension is dynamic up to this; the runner feeds larger batches in chunks.
MAX_BATCH = 256


@dataclass(frozen=True)
class XnnpackConfig:
    per_channel: bool = True  # XNNPACK's quantizer's symmetric config, weights per output channel

    @property
    def id(self) -> str:
        return f"xnnpack-{weights_id(self.per_channel)}"


DEFAULT_MATRIX = [XnnpackConfig(), XnnpackConfig(False)]


def _ops(graph) -> list:
    return [n for n in graph.nodes if n.op == "call_function" and n.target is not operator.getitem]


def delegation(edge_program) -> dict:
    """How much of the lowered program XNNPACK runs: the ops inside its delegated subgraphs against
    the ops left to ExecuTorch's portable kernels (by name)."""
    graph_module = edge_program.graph_module
    outside, delegates = [], []
    for node in _ops(graph_module.graph):
        (delegates if "call_delegate" in str(node.target) else outside).append(node)
    delegated = sum(len(_ops(getattr(graph_module, d.args[0].target).original_module.graph)) for d in delegates)
    portable = Counter(getattr(n.target, "__name__", str(n.target)) for n in outside)
    total = delegated + sum(portable.values())
    return {"delegated_ops": delegated, "ops": total, "delegated_share": delegated / total if total else 0.0,
            "portable_ops": dict(sorted(portable.items()))}


def outside(modules: tuple[str, ...]):
    """A node filter for XNNPACK's quantizer, true outside ``modules`` (r8's module names), read from
    the module path torch.export records on each node: the nodes it rejects stay float."""
    from torchao.quantization.pt2e.quantizer.utils import get_module_name_filter

    inside = [get_module_name_filter(m) for m in modules]
    return lambda node: not any(f(node) for f in inside)


def quantize_pads_before(annotate, keep):
    """XNNPACK quantizer's ``annotate``, then each pad that feeds only float nodes (``keep`` false)
    quantized as its input is: XNNPACK's lowering gives a pad read from a dequantize an implicit
    int8 output, which a float conv after it refuses ("Weight and Input should both be
    quantized"); an explicit quantize / dequantize pair there hands the float conv a float tensor."""
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, SharedQuantizationSpec

    pads = (torch.ops.aten.pad.default, torch.ops.aten.constant_pad_nd.default)

    def annotated(model):
        model = annotate(model)
        for node in model.graph.nodes:
            source = node.args[0] if node.target in pads else None
            spec = getattr(source.meta.get("quantization_annotation"), "output_qspec", None) if source is not None else None
            if spec is not None and not any(keep(u) for u in node.users):
                shared = SharedQuantizationSpec(source)
                node.meta["quantization_annotation"] = QuantizationAnnotation({source: shared}, shared, _annotated=True)
        return model
    return annotated


def quantized_program(fp32: torch.nn.Module, config: XnnpackConfig, images: np.ndarray,
                      float_layers: tuple[str, ...] = ()) -> tuple[torch.export.ExportedProgram, dict]:
    """PT2E with XNNPACK's quantizer, calibrated on ``images``, ``float_layers`` left float: (the
    quantized program, exported with a dynamic batch up to MAX_BATCH, as ExecuTorch lowers it;
    facts: seconds, int8 convs)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from r8.backends.pytorch import int8_convs
    from r8.backends.torch_flows import image_batches

    # The example is the largest batch: ExecuTorch plans each tensor's memory for its upper bound.
    # Contiguous NCHW, as the runner feeds it: the program keeps the example's dim order and reads
    # its input's memory in that order, whatever the strides of the tensor it is given.
    example = (torch_input(images[:1]).repeat(MAX_BATCH, 1, 1, 1).contiguous(),)
    dims = ({0: torch.export.Dim("batch", min=1, max=MAX_BATCH)},)
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=config.per_channel))
    if float_layers:
        keep = outside(float_layers)
        quantizer.set_filter_function(keep)
        quantizer.annotate = quantize_pads_before(quantizer.annotate, keep)
    prepared = prepare_pt2e(torch.export.export(fp32.eval(), example, dynamic_shapes=dims).module(), quantizer)
    start = time.perf_counter()
    with torch.no_grad():
        for batch in image_batches(images, False, MAX_BATCH):
            prepared(batch)
    calibration_s = time.perf_counter() - start
    converted = convert_pt2e(prepared)
    return (torch.export.export(converted, example, dynamic_shapes=dims),
            {"calibration_s": calibration_s, "int8_convs": int8_convs(converted)})


def lower(program: torch.export.ExportedProgram, out: Path) -> dict:
    """Lowers the quantized ``program`` to XNNPACK and writes the ``.pte`` to ``out``; returns the
    delegation and the seconds it took."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import ExecutorchBackendConfig, to_edge_transform_and_lower
    from executorch.exir.passes.sym_shape_eval_pass import ConstraintBasedSymShapeEvalPass

    start = time.perf_counter()
    edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    facts = delegation(edge.exported_program())
    out.write_bytes(edge.to_executorch(ExecutorchBackendConfig(sym_shape_eval_pass=ConstraintBasedSymShapeEvalPass())).buffer)
    return {"quantize_s": time.perf_counter() - start, **facts}


def build(model: Model, config: XnnpackConfig, cal: CalibrationSet, float_layers: tuple[str, ...] = ()) -> Path:
    """The cached ``.pte`` of ``config``, ``float_layers`` (r8's module names) left float."""
    name, key = f"executorch/{config.id}-{cal.tag}.pte", artifacts.key(model, calibration=cal.sha256)
    if float_layers:
        tag = float_layers_tag(model.path, float_layers, float_units(artifacts.torch_fp32(model)))
        name = f"executorch/mixed/{config.id}-{cal.tag}-float-{tag}.pte"
        key = artifacts.key(model, calibration=cal.sha256, float_layers=sorted(float_layers))

    def make(tmp: Path) -> dict:
        program, facts = quantized_program(artifacts.torch_fp32(model), config, cal.images, tuple(sorted(float_layers)))
        return {**facts, **lower(program, tmp)}
    return build_once(artifacts.name(model, name), key, make)


class ExecuTorchBackend(Backend):
    """``r8 search`` keeps a layer or an add float through the quantizer's node filter (XNNPACK's
    quantizer takes no per-module None config)."""

    name, default, full = "executorch", DEFAULT_MATRIX, DEFAULT_MATRIX
    keeps_layers_float = True
    reproducibility = ("PT2E calibrates the converted model on r8's calibration set; the .pte runs on XNNPACK's "
                       "int8 kernels, which pick their code path by CPU, as ONNX Runtime's do.")

    def build(self, model, config, cal):
        return build(model, config, cal)

    def build_mixed(self, model, config, cal, float_layers):
        return build(model, config, cal, float_layers)

    def runner(self, config, path, threads=0):
        return ExecuTorchRunner(path, name=f"executorch-{config.id}", threads=threads, max_batch=MAX_BATCH)

    def unavailable(self, config):
        return missing("executorch", "executorch", extra="executorch")

    def notes(self, model, cal, rows):
        fields = ("delegated_share", "delegated_ops", "ops", "portable_ops")
        return {"executorch_delegation": {r.config: {f: build_facts(Path(r.artifact))[f] for f in fields} for r in rows}}


BACKENDS = [ExecuTorchBackend()]
