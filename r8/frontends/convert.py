"""Keras ``.h5`` or float ``.tflite`` -> PyTorch, without TensorFlow: the model is built from
the file's own graph (h5py, or the flatbuffer's schema bindings), one converter per Keras layer
type (:mod:`r8.frontends.keras.layers`) or TFLite op (:mod:`r8.frontends.tflite.ops`), wired along the graph into an FX
``GraphModule`` whose submodules are named after the layers (ops).
"""

import os
import re
from pathlib import Path

import numpy as np
import torch
from torch import fx, nn

from r8.core.cache import atomic_write
from r8.core.errors import MAX_ELEMENTS, R8Error
from r8.frontends.keras.archive import read_keras
from r8.frontends.keras.layers import CONVERTERS, SUPPORTED, check_config_read
from r8.frontends.keras.reader import KerasLayer, read_h5

CONTRACT = """A Keras or TFLite model converted to PyTorch by r8.

Layout contract: 4-D inputs and outputs are NCHW (PyTorch's convention; Keras's are NHWC),
every other rank is as in Keras. Flatten and Reshape after a 4-D tensor keep Keras's (H, W, C)
element order. Inputs take the values the Keras model took (for the MLPerf Tiny ResNet8: raw
pixels 0..255, float32); the batch dimension is dynamic.
"""


def _module_name(name: str, taken: set[str]) -> str:
    """A valid, unique submodule name close to the Keras name."""
    base = re.sub(r"\W", "_", name)
    base = f"_{base}" if base[0].isdigit() or hasattr(fx.GraphModule, base) else base
    out, i = base, 1
    while out in taken:
        out, i = f"{base}_{i}", i + 1
    taken.add(out)
    return out


def to_keras_shape(t: torch.Tensor) -> tuple:
    """Per-sample Keras-layout shape of a torch tensor (NCHW -> HWC for 4-D)."""
    shape = tuple(t.shape[1:])
    return (*shape[1:], shape[0]) if t.dim() == 4 else shape


def to_torch_shape(keras_shape: tuple) -> tuple:
    return (keras_shape[-1], *keras_shape[:-1]) if len(keras_shape) == 3 else tuple(keras_shape)


def _keras_converters() -> tuple[dict, tuple]:
    return CONVERTERS, SUPPORTED


def _tflite_converters() -> tuple[dict, tuple]:
    from r8.frontends.tflite.ops import OPS
    from r8.frontends.tflite.ops import SUPPORTED as OPS_SUPPORTED

    return OPS, OPS_SUPPORTED


def _read_tflite(path: str | os.PathLike):
    from r8.frontends.tflite.reader import read_tflite

    return read_tflite(path)


# file suffix -> (its reader, its converters and supported types); the TFLite side loads on use
READERS = {".h5": (read_h5, _keras_converters), ".hdf5": (read_h5, _keras_converters),
           ".keras": (read_keras, _keras_converters), ".tflite": (_read_tflite, _tflite_converters)}


# file suffix -> the module converting that format whole (onnx2torch), not layer by layer: each
# has ``to_torch(path)``, ``layer_table(path)`` and ``layout_of(path)``; loaded on use
WHOLE_GRAPH = {".onnx": "r8.frontends.onnx_file", ".pt2": "r8.frontends.program"}


def _whole_graph(path: str | os.PathLike):
    """The module converting ``path``'s format whole, or None for a format read layer by layer."""
    import importlib

    name = WHOLE_GRAPH.get(Path(path).suffix.lower())
    return importlib.import_module(name) if name else None


def _reader(path: str | os.PathLike):
    """(graph, converters, supported types) for the file's format, told by its suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in READERS:
        formats = ", ".join((*READERS, *WHOLE_GRAPH))
        raise R8Error(f"{path}: r8 reads {formats} files, not {suffix or 'a file without a suffix'}")
    read, converters = READERS[suffix]
    return (read(path), *converters())


def _build(model, converters: dict, supported: tuple, problems: list | None = None):
    """Trace the Keras graph into an FX graph. With ``problems`` a list, unsupported layers are
    recorded there (and whatever depends on them skipped) instead of raising: for ``inspect``.
    Returns (root module, graph, {keras layer: torch module of its output}, torch output shapes,
    layer table rows)."""
    root, graph, taken = nn.Module(), fx.Graph(), set()
    values: dict[str, tuple] = {}  # keras layer -> (fx node, example output, batch 1)
    outputs, rows = {}, []
    taken_by: dict[str, list[str]] = {}  # layer -> its modules, in order: what a later call of a shared layer calls
    shapes = dict(zip(model.inputs, model.input_shapes()))
    for layer in model.layers:
        shared = getattr(layer, "shares", None)
        params = 0 if shared else int(sum(getattr(w, "size", 0) for w in layer.weights.values()))
        row = {"name": layer.name, "type": layer.class_name, "params": params, "shape": None, "problem": None}
        rows.append(row)
        try:
            try:
                _add_layer(layer, root, graph, taken, taken_by, values, outputs, row, shapes, converters, supported,
                           problems)
            except R8Error:
                raise
            except Exception as e:  # a damaged file's config or weights: named with its layer, never a traceback
                raise layer.error(f"cannot be converted ({type(e).__name__}: {e})") from None
        except R8Error as e:
            if problems is None:
                raise
            problems.append(str(e))
            row["problem"] = str(e).split(": ", 1)[-1]
    missing = [o for o in model.outputs if o not in values]
    if missing and problems is None:
        raise R8Error(f"{model.path}: output layers {missing} are not in the model")
    nodes = [values[o][0] for o in model.outputs if o in values]
    graph.output(nodes[0] if len(nodes) == 1 else tuple(nodes))
    output_shapes = [tuple(values[o][1].shape[1:]) for o in model.outputs if o in values]
    return root, graph, outputs, output_shapes, rows


SIZE_KEYS = ("filters", "units", "kernel_size", "strides", "pool_size", "size", "padding", "cropping", "dilation_rate",
             "depth_multiplier", "groups", "target_shape", "dims")


def _check_sizes(layer) -> None:
    """A Keras layer's declared sizes are whole numbers in a sane range (a damaged file may say
    filters=10**9: refused before torch allocates it)."""
    for key in SIZE_KEYS:
        value = dict.get(layer.config, key)  # not a read by the converter (see check_config_read)
        values = value if isinstance(value, list | tuple) else [value]
        flat = [v for item in values for v in (item if isinstance(item, list | tuple) else [item])]
        if isinstance(value, str) or value is None:
            continue
        if not all(isinstance(v, int) and not isinstance(v, bool) and -1 <= v <= (1 << 20) for v in flat):
            raise layer.error(f"has {key}={value!r}; expected whole numbers from 0 to {1 << 20}")


def _add_layer(layer, root, graph, taken, taken_by, values, outputs, row, shapes, converters, supported,
               problems) -> None:
    """One layer (op) of the file into the FX graph, run once on its example input; a later call
    of a shared layer calls the first call's modules (its weights are held once)."""
    if layer.class_name == "InputLayer":
        if layer.name not in shapes:
            raise layer.error("is not one of the model's inputs")
        for key in ("sparse", "ragged"):
            if dict.get(layer.config, key):
                raise layer.error(f"is a {key} input; r8 converts dense tensors")
        example = torch.zeros(1, *to_torch_shape(shapes[layer.name]))
        values[layer.name] = (graph.placeholder(_module_name(layer.name, taken)), example)
        row["shape"] = shapes[layer.name]
        return
    if layer.class_name not in converters:
        raise layer.error(f"has an unsupported type; supported: {', '.join(supported)}")
    missing = [i for i in layer.inputs if i not in values]
    if missing:
        if problems is not None:
            return  # depends on an unsupported layer, already reported
        raise layer.error(f"reads {missing}, which come later in the file or do not exist")
    keras = isinstance(layer, KerasLayer)
    if keras:
        _check_sizes(layer)
        if layer.constants and not getattr(converters[layer.class_name], "takes_constants", False):
            raise layer.error(f"is called with the constant operand(s) {_constants(layer)}, which r8 does not convert "
                              "for this layer type")
    args = [values[i][0] for i in layer.inputs]
    examples = [values[i][1] for i in layer.inputs]
    input_shapes = [to_keras_shape(e) for e in examples]
    shared = getattr(layer, "shares", None)
    if shared and shared not in taken_by:
        raise layer.error(f"calls the layer '{shared}' again, which was not converted")
    chain = ([(name, root.get_submodule(name)) for name in taken_by[shared]] if shared
             else converters[layer.class_name](layer, input_shapes))
    with torch.no_grad():
        for name, module in chain:
            if not shared:
                name = _module_name(name, taken)
                root.add_module(name, module.eval())
                taken_by.setdefault(layer.name, []).append(name)
            if getattr(module, "takes_list", False):
                args, examples = [args], [examples]
            examples = [module(*examples)]
            if examples[0].numel() > MAX_ELEMENTS:
                raise layer.error(f"computes a tensor of {tuple(examples[0].shape)}: over 1 GiB per sample")
            args = [graph.call_module(name, tuple(args))]
    if keras and not shared:
        check_config_read(layer, input_shapes)
    values[layer.name] = (args[0], examples[0])
    if not shared:  # a shared module's output is its first call's (a hook on it sees each call)
        outputs[layer.name] = name
    row["shape"] = to_keras_shape(examples[0])
    # a .tflite declares every tensor's shape, a Keras 3 file every tensor a layer reads (None: any size)
    expected = layer.expected_shape
    if expected is not None and (len(row["shape"]) != len(expected)
                                 or any(e is not None and e != d for d, e in zip(row["shape"], expected))):
        raise layer.error(f"computes shape {row['shape']}; the file declares {tuple(expected)}")


def _constants(layer) -> str:
    return ", ".join(f"{np.array2string(v, threshold=6)} (operand {i})" for i, v in layer.constants.items())


def convert(path: str | os.PathLike) -> fx.GraphModule:
    """Build the torch model of any file r8 reads (in eval mode). For a Keras or TFLite file,
    ``model.meta["keras_outputs"]`` maps each layer (op) to the submodule whose output equals its output."""
    whole = _whole_graph(path)
    if whole:
        return whole.to_torch(path)
    keras_model, converters, supported = _reader(path)
    root, graph, outputs, output_shapes, _ = _build(keras_model, converters, supported)
    model = fx.GraphModule(root, graph, class_name="KerasModel")
    model.__class__.__doc__ = CONTRACT
    # meta survives deepcopy: per-sample torch input/output shapes, and Keras layer -> submodule
    model.meta.update(input_shapes=[to_torch_shape(s) for s in keras_model.input_shapes()],
                      output_shapes=output_shapes, keras_outputs=outputs)
    return model.eval()


def inspect(path: str | os.PathLike) -> tuple[list[dict], list[str]]:
    """The layer table (name, type, Keras output shape, parameters, problem) and the list of
    problems, reading every layer instead of stopping at the first unsupported one."""
    whole = _whole_graph(path)
    if whole:
        return whole.layer_table(path)
    problems: list[str] = []
    rows = _build(*_reader(path), problems)[-1]
    return rows, problems


def input_layout(path: str | os.PathLike) -> str:
    """The file's own image layout: ``NHWC`` for Keras and TFLite files, what an ONNX file or a
    program says for theirs (``-`` where the input is not an image)."""
    whole = _whole_graph(path)
    return whole.layout_of(path) if whole else "NHWC"


def example_inputs(model: fx.GraphModule, batch: int = 2) -> tuple[torch.Tensor, ...]:
    """Zero inputs of a model made by :func:`convert`, in its input shapes."""
    return tuple(torch.zeros(batch, *s) for s in model.meta["input_shapes"])


def export_program(model: nn.Module, inputs: tuple | None = None) -> torch.export.ExportedProgram:
    """``torch.export`` with a dynamic batch dimension on every input."""
    inputs = inputs or example_inputs(model)
    batch = torch.export.Dim("batch")
    return torch.export.export(model, inputs, dynamic_shapes=tuple({0: batch} for _ in inputs))


def save(model: nn.Module, out: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``out`` (a ``torch.export`` program, loadable with ``torch.export.load`` and no r8)
    and ``out`` with suffix ``.state_dict.pt``; each written to a temp file, then renamed."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = out.with_name(out.stem + ".state_dict.pt")
    atomic_write(out, lambda tmp: save_program(model, tmp))
    atomic_write(state, lambda tmp: torch.save(model.state_dict(), tmp))
    return out, state


def save_program(model: fx.GraphModule, path: Path) -> None:
    """Save the exported program to ``path``, the layout contract as its ``CONTRACT.txt``."""
    contract = model.meta.get("contract", CONTRACT)
    with open(path, "wb") as f:  # a file object: torch.export insists on a .pt2 name otherwise
        torch.export.save(export_program(model), f, extra_files={"CONTRACT.txt": contract})


def load_program(path: str | os.PathLike) -> nn.Module:
    """Load a model written by :func:`save` (plain ``torch.export.load`` works too)."""
    with open(path, "rb") as f:
        return torch.export.load(f).module()


def format_table(rows: list[dict]) -> str:
    """``inspect``'s layer table as aligned text."""
    table = [("layer", "type", "output shape", "params", "")]
    for r in rows:
        shape = "?" if r["shape"] is None else str(tuple(r["shape"]))
        table.append((r["name"], r["type"], shape, f"{r['params']:,}",
                      f"UNSUPPORTED: {r['problem']}" if r["problem"] else ""))
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    return "\n".join(("  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4]).rstrip()
                     for row in table)

