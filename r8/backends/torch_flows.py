"""PyTorch's int8 flows on a converted model: FX graph mode and eager mode (``torch.ao.quantization``,
deprecated in 2.14 but working) and PT2E (``torchao``, its successor): their configs, how each
quantizes, saves and loads. The softmax stays float in every flow: int8 probabilities can tie."""


import copy
import dataclasses
import hashlib
import time
import warnings
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import fx, nn
from torch.ao.quantization import (
    DeQuantStub,
    HistogramObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    PerChannelMinMaxObserver,
    QConfig,
    QConfigMapping,
    QuantStub,
)

from r8.backends import weights_id
from r8.core.environment import saturating_int8
from r8.core.errors import R8Error
from r8.frontends.convert import example_inputs, export_program
from r8.runtimes.runners import quantized_engine, torch_input

OBSERVERS = {"minmax": MinMaxObserver, "movingavg": MovingAverageMinMaxObserver,
             "histogram": HistogramObserver}
ENGINES = ("x86", "fbgemm", "onednn")
FLOWS = ("fx", "eager", "pt2e")


@dataclass(frozen=True)
class TorchConfig:
    flow: str
    engine: str
    per_channel: bool
    observer: str

    @property
    def id(self) -> str:
        return f"{self.flow}-{self.engine}-{weights_id(self.per_channel)}-{self.observer}"


FULL_MATRIX = [TorchConfig(f, e, pc, o) for f, e, pc, o in product(FLOWS, ENGINES, (True, False), OBSERVERS)
               if f != "pt2e" or e == "x86"]  # PT2E's X86InductorQuantizer targets x86 only
# The onnx2torch route gets torch's default x86 recipe in both graph flows.
ONNX2TORCH_MATRIX = [TorchConfig("fx", "x86", True, "histogram"), TorchConfig("pt2e", "x86", True, "histogram")]
# Every flow, engine, observer and weight granularity at least once; the rest runs as `slow`.
DEFAULT_MATRIX = [
    TorchConfig("fx", "x86", True, "histogram"),
    TorchConfig("fx", "fbgemm", True, "minmax"),
    TorchConfig("fx", "onednn", False, "histogram"),
    TorchConfig("fx", "onednn", True, "movingavg"),
    TorchConfig("eager", "x86", True, "histogram"),
    TorchConfig("eager", "onednn", False, "minmax"),
    TorchConfig("pt2e", "x86", True, "histogram"),
    TorchConfig("pt2e", "x86", False, "minmax"),
]


def engine_available(engine: str) -> bool:
    return engine in torch.backends.quantized.supported_engines


def unavailable(config: TorchConfig) -> str | None:
    """Why this machine cannot run a config (None: it can)."""
    if not engine_available(config.engine):
        return f"quantized engine {config.engine} not built into this torch"
    if config.engine == "onednn" and saturating_int8():
        # the model as quantized and the same model reloaded from its file disagree there
        return ("oneDNN's int8 kernels on x86 without VNNI: u8 x s8 products saturate in 16-bit sums, and the "
                "quantized model and its reloaded file disagree on a share of the images")
    return None


@contextmanager
def quiet_deprecations():
    """torch.ao.quantization and TorchScript warn (deprecation, scripting notes) in 2.14; expected here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization.*")
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
        warnings.filterwarnings("ignore", message=".*TorchScript type system doesn't support.*")
        yield


def qconfig(config: TorchConfig) -> QConfig:
    """Activation observer from the config, with the range torch's default qconfig gives the
    engine: x86/fbgemm keep 7-bit activations (0..127), which avoids int16 overflow in their
    kernels on CPUs without VNNI; onednn uses all 8 bits."""
    quant_max = 127 if config.engine in ("x86", "fbgemm") else 255
    activation = OBSERVERS[config.observer].with_args(dtype=torch.quint8, quant_min=0, quant_max=quant_max)
    if config.per_channel:
        weight = PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
    else:
        weight = MinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
    return QConfig(activation=activation, weight=weight)


def image_batches(images: np.ndarray, nhwc: bool, batch: int = 100):
    for start in range(0, len(images), batch):
        yield torch_input(images[start:start + batch], nhwc)


@dataclass(frozen=True)
class Calibrated:
    """What calibrating a prepared model took and chose."""
    seconds: float
    ranges: dict[str, list[float]]  # observer -> the [rmin, rmax] it chose


@dataclass(frozen=True)
class QuantizeFacts:
    """What a quantization took (kept with the cached artifact: ``r8.core.cache.build_facts``)."""
    calibration_s: float
    quantize_s: float  # the rest: preparing, fusing, converting
    ranges: dict[str, list[float]]


def _calibrate(model: nn.Module, batches: list[torch.Tensor]) -> Calibrated:
    """Run the calibration batches through a prepared model."""
    start = time.perf_counter()
    with torch.no_grad():
        for x in batches:
            model(x)
    return Calibrated(time.perf_counter() - start, observed_ranges(model))


def observed_ranges(prepared: nn.Module) -> dict[str, list[float]]:
    """observer -> [rmin, rmax] of the int8 grid its qparams give: the range it really chose
    (a histogram observer's search, not the raw min/max). Per-tensor observers only."""
    ranges = {}
    for name, m in prepared.named_modules():
        if hasattr(m, "calculate_qparams") and getattr(m, "min_val", torch.zeros(2)).numel() == 1:
            scale, zero_point = (float(v) for v in m.calculate_qparams())
            ranges[name] = [(m.quant_min - zero_point) * scale, (m.quant_max - zero_point) * scale]
    return ranges


class EagerQuantizable(nn.Module):
    """The model with the stubs eager mode needs: int8 from the input on; a softmax that ends the
    model stays float, after the DeQuantStub."""

    def __init__(self, model: fx.GraphModule):
        super().__init__()
        self.quant, self.body, self.dequant = QuantStub(), copy.deepcopy(model), DeQuantStub()
        self.softmax = nn.Identity()
        last = self.body.graph.find_nodes(op="output")[0].args[0]
        if isinstance(last, fx.Node) and last.op == "call_module" and \
                isinstance(self.body.get_submodule(last.target), nn.Softmax):
            self.softmax = self.body.get_submodule(last.target)
            self.body.add_submodule(last.target, nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.softmax(self.dequant(self.body(self.quant(x))))


# What eager mode's fuse_modules can fuse, read off the graph: a conv or linear, then each kind in turn.
FUSIBLE = {nn.Conv2d: (nn.BatchNorm2d, nn.ReLU), nn.Linear: (nn.ReLU,)}


def eager_fusion_groups(model: fx.GraphModule) -> list[list[str]]:
    """conv-bn(-relu), conv-relu and linear-relu chains by module name, from the graph: each
    link must be the only consumer of the previous one."""
    groups = []
    for node in model.graph.find_nodes(op="call_module"):
        kinds = FUSIBLE.get(type(model.get_submodule(node.target)))
        group = [node.target]
        for kind in kinds or ():
            users = list(node.users)
            if len(users) == 1 and users[0].op == "call_module" and type(model.get_submodule(users[0].target)) is kind:
                node = users[0]
                group.append(node.target)
        if len(group) > 1:
            groups.append(group)
    return groups


def fused_eager(model: fx.GraphModule) -> EagerQuantizable:
    """The eager-mode model with its conv-bn(-relu) groups fused, ready for prepare()."""
    from torch.ao.quantization import fuse_modules

    wrapped = EagerQuantizable(model).eval()
    fuse_modules(wrapped.body, eager_fusion_groups(wrapped.body), inplace=True)
    return wrapped


def quantize_fx(model: fx.GraphModule, config: TorchConfig, batches: list, float_layers: tuple = ()) -> tuple[nn.Module, Calibrated]:
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    mapping = QConfigMapping().set_global(qconfig(config)).set_object_type(nn.Softmax, None)
    for name in float_layers:  # a conv keeps the name of the conv-bn(-relu) group FX fuses it into
        mapping.set_module_name(name, None)
    prepared = prepare_fx(copy.deepcopy(model).eval(), mapping, example_inputs(model, 1))
    calibrated = _calibrate(prepared, batches)
    return convert_fx(prepared), calibrated


def quantize_eager(model: fx.GraphModule, config: TorchConfig, batches: list) -> tuple[nn.Module, Calibrated]:
    from torch.ao.quantization import convert, prepare

    wrapped = fused_eager(model)
    wrapped.qconfig, wrapped.softmax.qconfig = qconfig(config), None
    prepare(wrapped, inplace=True)
    calibrated = _calibrate(wrapped, batches)
    qmodel = convert(wrapped)
    for m in qmodel.modules():
        # torch's eager from_float gives a BatchNorm that follows no conv 1-element scale and zero
        # point tensors, which TorchScript's quantized::batch_norm2d refuses as scalars: make them 0-d
        if isinstance(m, torch.ao.nn.quantized.BatchNorm2d):
            m.scale, m.zero_point = m.scale.reshape(()), m.zero_point.reshape(())
    try:  # eager mode quantizes every module between the stubs; one without an int8 kernel fails only when run
        with torch.no_grad():
            qmodel(batches[0][:1])
    except (RuntimeError, NotImplementedError) as e:
        raise R8Error(f"eager mode leaves an op without int8 kernel on int8 tensors: {str(e).strip().splitlines()[-1]}") from None
    return qmodel, calibrated


def quantize_pt2e(model: fx.GraphModule, config: TorchConfig, batches: list) -> tuple[nn.Module, Calibrated]:
    import torchao.quantization.pt2e as ao
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    # torchao has its own observer classes, named like torch.ao's
    observer = {"minmax": ao.MinMaxObserver, "movingavg": ao.MovingAverageMinMaxObserver,
                "histogram": ao.HistogramObserver}[config.observer]
    base = xiq.get_default_x86_inductor_quantization_config()
    activation = dataclasses.replace(base.input_activation,
                                     observer_or_fake_quant_ctr=observer.with_args(eps=2**-12))
    weight = base.weight
    if not config.per_channel:
        weight = dataclasses.replace(weight, qscheme=torch.per_tensor_symmetric, ch_axis=None,
                                     observer_or_fake_quant_ctr=ao.MinMaxObserver.with_args(eps=2**-12))
    quant_config = dataclasses.replace(base, input_activation=activation, output_activation=activation,
                                       weight=weight)
    quantizer = xiq.X86InductorQuantizer().set_global(quant_config)  # it leaves softmax float
    graph = export_program(model.eval()).module()
    try:
        prepared = prepare_pt2e(graph, quantizer)
    except ValueError as e:  # torchao 0.18 refuses, e.g., a conv -> add whose conv output also feeds another op
        raise R8Error(f"torchao's X86InductorQuantizer cannot annotate this graph: {e}") from None
    calibrated = _calibrate(prepared, batches)
    return convert_pt2e(prepared), calibrated


def save_script(qmodel: nn.Module, path: str | Path, inputs: tuple) -> None:
    torch.jit.save(torch.jit.script(qmodel), path)


def save_export(qmodel: nn.Module, path: str | Path, inputs: tuple) -> None:
    program = export_program(qmodel, inputs)
    for node in program.graph.nodes:  # provenance for debugging; it holds id()s, new in every process
        node.meta.pop("from_node", None)
    with open(path, "wb") as f:
        torch.export.save(program, f)


def archive_digest(path: str | Path) -> str:
    """sha256 of what a torch archive holds, the same for two builds of one config: its records
    (tensors, pickled module tree, code) under their names without the archive's folder, less the
    random ``.data/serialization_id`` torch writes into every archive, with each TorchScript code
    record's lines sorted (TorchScript writes a module's constants in the order of a Python set,
    which follows the process's hash seed)."""
    h = hashlib.sha256()
    with zipfile.ZipFile(path) as archive:
        for record in sorted(archive.namelist(), key=lambda n: n.split("/", 1)[-1]):
            name, data = record.split("/", 1)[-1], archive.read(record)
            if name == ".data/serialization_id":
                continue
            if name.startswith("code/") and name.endswith(".py"):
                data = b"\n".join(sorted(data.splitlines()))
            h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()


def load_script(path: str | Path) -> nn.Module:
    return torch.jit.load(path)


def load_export(path: str | Path) -> nn.Module:
    import torchao.quantization.pt2e  # noqa: F401  registers torch.ops.torchao q/dq ops

    with open(path, "rb") as f:
        return torch.export.load(f).module()


def fused_fx(model: fx.GraphModule) -> nn.Module:
    from torch.ao.quantization.quantize_fx import fuse_fx

    return fuse_fx(copy.deepcopy(model).eval())


@dataclass(frozen=True)
class Flow:
    """How a torch quantization flow quantizes, saves and loads, and the fp32 model with the same
    module boundaries as its int8 model (None: no modules to hook for per-layer SQNR)."""

    quantize: Callable[..., tuple]  # (fp32 GraphModule, config, batches) -> (int8 model, Calibrated)
    save: Callable[..., None]  # (int8 model, path, example inputs of the fp32 model)
    load: Callable[..., nn.Module]  # (path)
    reference: Callable[..., nn.Module] | None  # (fp32 GraphModule) -> fused fp32 model

    @property
    def hookable(self) -> bool:
        return self.reference is not None


# FX/eager models are saved as TorchScript (their packed int8 weights do not go through
# torch.export); PT2E as a torch.export program (load it after importing torchao).
FLOWS_BY_NAME = {"fx": Flow(quantize_fx, save_script, load_script, fused_fx),
                 "eager": Flow(quantize_eager, save_script, load_script, fused_eager),
                 "pt2e": Flow(quantize_pt2e, save_export, load_export, None)}


def quantize(model: fx.GraphModule, config: TorchConfig, images: np.ndarray, float_layers: tuple = ()) -> tuple[nn.Module, QuantizeFacts]:
    """The int8 model (``float_layers``: module names left float, FX only), and what quantizing it took."""
    batches = list(image_batches(images, model.meta.get("nhwc", False)))  # the onnx2torch route keeps NHWC
    start = time.perf_counter()
    with quantized_engine(config.engine), quiet_deprecations():
        if float_layers:
            qmodel, calibrated = quantize_fx(model, config, batches, float_layers)
        else:
            qmodel, calibrated = FLOWS_BY_NAME[config.flow].quantize(model, config, batches)
    took = time.perf_counter() - start
    return qmodel, QuantizeFacts(calibrated.seconds, took - calibrated.seconds, calibrated.ranges)


def save(qmodel: nn.Module, config: TorchConfig, path: str | Path, inputs: tuple) -> None:
    """A file that loads without r8 (see :data:`FLOWS_BY_NAME`). ``inputs``: example inputs of
    the fp32 model (``r8.frontends.convert.example_inputs``)."""
    with quantized_engine(config.engine), quiet_deprecations():
        FLOWS_BY_NAME[config.flow].save(qmodel, path, inputs)


def load(config: TorchConfig, path: str | Path) -> nn.Module:
    with quiet_deprecations():
        return FLOWS_BY_NAME[config.flow].load(path)
