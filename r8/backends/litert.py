"""The LiteRT quantizer (``litert-quantizer``, formerly ``ai-edge-quantizer``): a float ``.tflite``
in, a full-integer int8 ``.tflite`` out, calibrated on the shared calibration set. Unlike TFLite's
converter it needs no Keras model, so a model published only as ``.tflite`` (MLPerf Tiny's IC02)
gets an r8-built int8 file too; a Keras model is first converted to float ``.tflite`` by TF's
converter (no optimization). It calibrates through a signature of the file."""

import contextlib
import io
import os
import pickle
import re
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from r8 import artifacts
from r8.backends import Backend, float_layers_tag, missing, weights_id
from r8.calibration import CalibrationSet
from r8.core.cache import build_facts, build_once
from r8.core.console import all_tensors_kept
from r8.core.environment import threads
from r8.core.errors import R8Error
from r8.model import Model
from r8.runtimes.runners import TfliteRunner

LAYER_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")  # r8's conv / linear layers as TFLite ops
ALGORITHMS = {"minmax": "MIN_MAX_UNIFORM_QUANT", "mse": "MSE", "octav": "OCTAV"}  # weights: id -> AlgorithmName


@dataclass(frozen=True)
class LitertConfig:
    per_channel: bool
    ranges: str = "minmax"  # activation ranges: the calibration set's min/max, or "movingavg" (the quantizer's
    # default: a moving average, factor 0.95, of each image's min/max, which clips the rarer extremes)
    weights: str = "minmax"  # how weight ranges are chosen (ALGORITHMS)

    @property
    def id(self) -> str:
        return f"a8w8-{weights_id(self.per_channel)}-{self.ranges}" + ("" if self.weights == "minmax" else f"-{self.weights}weights")


# The quantizer's default ranges (movingavg) are in the full matrix only: they lose far more than
# the calibration set's min/max (suite/test_litert.py checks the premise; docs/measured.md).
DEFAULT_MATRIX = [LitertConfig(True), LitertConfig(False)]
FULL_MATRIX = DEFAULT_MATRIX + [LitertConfig(True, "movingavg"), LitertConfig(False, "movingavg"),
                                LitertConfig(True, weights="mse"), LitertConfig(True, weights="octav")]


def float_tflite(model: Model) -> Path:
    """The float ``.tflite`` the quantizer reads: the model's own file, TF's conversion of its
    Keras model, or litert-torch's of any other (each has a ``serving_default`` signature)."""
    if model.path.suffix.lower() == ".tflite":
        return model.path
    if not model.is_keras:
        from r8.frontends.export import torch_to_tflite

        return build_once(artifacts.name(model, "litert/float.tflite"), artifacts.key(model),
                          lambda tmp: torch_to_tflite(artifacts.torch_fp32(model), tmp, model.path))

    def convert(tmp: Path) -> None:
        from r8.backends.tflite import keras_model
        from r8.core.console import tf_converter_quiet
        from r8.frontends.keras.reference import import_tensorflow

        tf = import_tensorflow()
        with tf_converter_quiet():  # whole-map average pools as MEAN, as r8's TFLite backend does
            tmp.write_bytes(tf.lite.TFLiteConverter.from_keras_model(keras_model(model.path, mean_pool=True)).convert())
    return build_once(artifacts.name(model, "litert/float.tflite"), artifacts.key(model), convert)


def signature(path: Path) -> tuple[str, str]:
    """(signature key, input name) the quantizer calibrates through; R8Error where the file has
    no signature with one input."""
    from ai_edge_litert.interpreter import Interpreter

    signatures = Interpreter(model_path=str(path)).get_signature_list()
    if not signatures:
        raise R8Error(f"{path.name}: has no signature, and the LiteRT quantizer calibrates through one "
                      "(convert the model with a signature, e.g. TF's converter from a SavedModel or Keras model)")
    key, io_names = next(iter(signatures.items()))
    if len(io_names["inputs"]) != 1:
        raise R8Error(f"{path.name}: signature {key!r} has {len(io_names['inputs'])} inputs; r8 calibrates one")
    return key, io_names["inputs"][0]


def recipe_of(config: LitertConfig, float_scopes: tuple[str, ...] = ()):
    """Every op int8 as ``config`` says, but the ops of ``float_scopes`` (the quantizer's op scopes),
    which stay float: the quantizer's NO_QUANTIZE rule, which wins because it is added last."""
    from litert_quantizer import recipe_manager
    from litert_quantizer.algorithm_manager import AlgorithmName
    from litert_quantizer.qtyping import QuantGranularity, TFLOperationName

    recipe = recipe_manager.RecipeManager()
    recipe.add_static_config(".*", TFLOperationName.ALL_SUPPORTED, 8, 8,
                             QuantGranularity.CHANNELWISE if config.per_channel else QuantGranularity.TENSORWISE,
                             getattr(AlgorithmName, ALGORITHMS[config.weights]))
    for scope in float_scopes:
        recipe.add_quantization_config(f"^{re.escape(scope)}$", TFLOperationName.ALL_SUPPORTED,
                                       algorithm_key=AlgorithmName.NO_QUANTIZE)
    return recipe


def calibrate(src: Path, config: LitertConfig, calibration: CalibrationSet, out: Path) -> dict:
    """The quantizer's calibrated ranges (its QSVs, per tensor) of ``src``, pickled to ``out``."""
    from litert_quantizer import calibrator
    from litert_quantizer.utils import qsv_utils

    key, name = signature(src)
    update = qsv_utils.min_max_update if config.ranges == "minmax" else qsv_utils.moving_average_update
    samples = [{name: calibration.images[i:i + 1].astype(np.float32)} for i in range(len(calibration.images))]
    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()), all_tensors_kept():  # its progress bar, XNNPACK's note, a warning
        calib = calibrator.Calibrator(src.read_bytes(), num_threads=threads() or os.cpu_count() or 1, qsv_update_func=update)
        calib.calibrate({key: samples}, recipe_of(config))
    out.write_bytes(pickle.dumps(calib.get_model_qsvs()))
    return {"calibration_s": time.perf_counter() - start}


def quantize(src: Path, out: Path, config: LitertConfig, qsvs: Path, float_scopes: tuple[str, ...] = ()) -> dict:
    """int8 weights and activations, int8 input and output (the input's scale is calibrated too)."""
    from litert_quantizer import quantizer

    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()), all_tensors_kept():  # it checks the ranges on such an interpreter
        result = quantizer.Quantizer(src, recipe_of(config, float_scopes).get_quantization_recipe()).quantize(
            pickle.loads(qsvs.read_bytes()), enable_progress_report=False)
    out.write_bytes(inline_buffers(result.quantized_model))
    return {"calibration_s": build_facts(qsvs)["calibration_s"], "quantize_s": time.perf_counter() - start}


def inline_buffers(model_bytes: bytes) -> bytes:
    """The same model with every buffer inside the flatbuffer. The LiteRT quantizer stores buffers
    past it (offset / size) once they hold 256 KiB or more (IC02: 10 of 24), which TFLite Micro
    does not read: it took the weights as empty and gave one output for every image."""
    from ai_edge_litert.tools import flatbuffer_utils

    return bytes(flatbuffer_utils.convert_object_to_bytearray(flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))))


def ranges(model: Model, config: LitertConfig, cal: CalibrationSet) -> Path:
    """A config's calibrated ranges, shared by its full int8 build and every mixed one, and by every
    config of the same ``ranges`` method: the QSVs are the float model's activation ranges, which the
    weights' granularity and algorithm do not change (per-channel and per-tensor built from shared
    ranges were byte-identical to their builds from their own calibration)."""
    src = float_tflite(model)
    return build_once(artifacts.name(model, f"litert/ranges/{config.ranges}-{cal.tag}.pkl"),
                      artifacts.key(model, calibration=cal.sha256), lambda tmp: calibrate(src, config, cal, tmp))


def build(model: Model, config: LitertConfig, cal: CalibrationSet) -> Path:
    src, qsvs = float_tflite(model), ranges(model, config, cal)
    return build_once(artifacts.name(model, f"litert/{config.id}-{cal.tag}.tflite"),
                      artifacts.key(model, calibration=cal.sha256), lambda tmp: quantize(src, tmp, config, qsvs))


@cache  # once per model and file: each mixed build of a search asks again
def layer_scopes(model: Model, src: Path) -> dict[str, str]:
    """r8's name of each unit a search can keep float (:func:`r8.frontends.converted_layers.float_units`: conv / linear
    layers, residual adds) -> the quantizer's scope of that op in the float ``.tflite``: for
    a ``.tflite`` model r8 names a layer ``<op>_<output tensor>``; TF's converter names an op's output
    after the Keras layers fused into it (``model/conv2d_1/Conv2D;...`` for a Keras 2 model,
    ``mnv2_cifar_1/b6_dw_1/depthwise;...`` with Keras 3's call index), so a layer is the one conv /
    linear / add op whose scope holds its Keras path. R8Error where a layer is in no op or in several."""
    from litert_quantizer.utils import tfl_flatbuffer_utils as tfl

    from r8.frontends.converted_layers import float_units

    flat = tfl.read_model(src)
    graph = flat.subgraphs[0]
    ops = [(tfl.TFL_OP_CODE_TO_NAME.get(flat.operatorCodes[op.opcodeIndex].builtinCode, ""), op.outputs[0],
            tfl.get_op_scope(op, graph.tensors)) for op in graph.operators]
    ops = [(kind, output, scope) for kind, output, scope in ops if kind in (*LAYER_OPS, "ADD")]
    names = float_units(artifacts.torch_fp32(model))

    def holding(name: str, call_index: bool) -> list[str]:  # each part of the Keras path, as TF's name scopes write it
        path = "/".join(re.escape(part) + (r"(_\d+)?" if call_index else "") for part in name.replace(".", "/").split("/"))
        return [scope for _, _, scope in ops if re.search(f"(^|[/;]){path}/", scope)]

    if model.path.suffix.lower() == ".tflite":
        found = {name: [scope for kind, output, scope in ops if f"{kind.lower()}_{output}" == name] for name in names}
    else:  # the names as written where each is in one op (Keras 2: conv2d is not conv2d_1), else with a call index
        found = {name: holding(name, call_index=False) for name in names}
        if any(len(scopes) != 1 for scopes in found.values()):
            found = {name: holding(name, call_index=True) for name in names}
    for name, scopes in found.items():
        if len(scopes) != 1:
            raise R8Error(f"{src.name}: layer {name} is in {len(scopes)} ops of the LiteRT quantizer's float .tflite; "
                          "it cannot keep that layer float")
    return {name: scopes[0] for name, scopes in found.items()}


def int8_layers(path: Path) -> int:
    """How many conv / linear ops of a ``.tflite`` have int8 weights."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    dtype = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    return sum(op["op_name"] in LAYER_OPS and dtype[op["inputs"][1]] == np.int8 for op in interpreter._get_ops_details())


def build_mixed(model: Model, config: LitertConfig, cal: CalibrationSet, float_layers: tuple[str, ...]) -> Path:
    """:func:`build` with ``float_layers`` (r8's module names) left float (the quantizer's NO_QUANTIZE
    rule on their ops), on the same calibrated ranges."""
    if not float_layers:
        return build(model, config, cal)
    src, qsvs = float_tflite(model), ranges(model, config, cal)
    scopes = layer_scopes(model, src)
    tag = float_layers_tag(model.path, float_layers, scopes)
    return build_once(artifacts.name(model, f"litert/mixed/{config.id}-{cal.tag}-float-{tag}.tflite"),
                      artifacts.key(model, calibration=cal.sha256, float_layers=sorted(float_layers)),
                      lambda tmp: quantize(src, tmp, config, qsvs, tuple(scopes[n] for n in sorted(float_layers))))


class LitertBackend(Backend):
    name, default, full = "litert", DEFAULT_MATRIX, FULL_MATRIX
    gated = mcu = keeps_layers_float = True
    reproducibility = ("The LiteRT quantizer (litert-quantizer) reads a float .tflite: the model's own, or TF's "
                       "conversion of its Keras model. Its int8 .tflite runs on LiteRT's XNNPACK kernels here, and on "
                       "TFLite Micro's with quantize --mcu.")

    def build(self, model, config, cal):
        return build(model, config, cal)

    def runner(self, config, path, threads=0):
        return TfliteRunner(path, name=f"litert-{config.id}", threads=threads or None)

    def build_mixed(self, model, config, cal, float_layers):
        return build_mixed(model, config, cal, float_layers)

    def unavailable(self, config):
        return missing("litert_quantizer", "litert-quantizer")


BACKENDS = [LitertBackend()]
