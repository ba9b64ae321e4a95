"""The LiteRT quantizer (``litert-quantizer``, formerly ``ai-edge-quantizer``): a float ``.tflite``
in, a full-integer int8 ``.tflite`` out, calibrated on the shared calibration set. Unlike TFLite's
converter it needs no Keras model, so a model published only as ``.tflite`` (MLPerf Tiny's IC02)
gets an r8-built int8 file too; a Keras model is first converted to float ``.tflite`` by TF's
converter (no optimization). It calibrates through a signature of the file."""

import contextlib
import io
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from r8 import artifacts
from r8.backends import Backend, needs, weights_id
from r8.cache import build_once
from r8.calibration import CalibrationSet
from r8.errors import R8Error
from r8.model import Model
from r8.runtimes.runners import TfliteRunner

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


# The quantizer's default ranges (movingavg) are in the full matrix only: they lost 5.1 pp on the
# suite's CIFAR CNN and 0.67 pp on IC01 where the calibration set's min/max lost 0.19 and 0.06
# (suite/test_litert.py checks the premise).
DEFAULT_MATRIX = [LitertConfig(True), LitertConfig(False)]
FULL_MATRIX = DEFAULT_MATRIX + [LitertConfig(True, "movingavg"), LitertConfig(False, "movingavg"),
                                LitertConfig(True, weights="mse"), LitertConfig(True, weights="octav")]


def float_tflite(model: Model) -> Path:
    """The float ``.tflite`` the quantizer reads: the model's own file, or TF's conversion of its
    Keras model (which has a ``serving_default`` signature)."""
    if model.path.suffix.lower() == ".tflite":
        return model.path

    def convert(tmp: Path) -> None:
        from r8.backends.tflite import keras_model
        from r8.console import tf_converter_quiet
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


def quantize(src: Path, out: Path, config: LitertConfig, calibration: CalibrationSet) -> dict:
    """int8 weights and activations, int8 input and output (the input's scale is calibrated too)."""
    from litert_quantizer import calibrator, quantizer, recipe_manager
    from litert_quantizer.algorithm_manager import AlgorithmName
    from litert_quantizer.qtyping import QuantGranularity, TFLOperationName
    from litert_quantizer.utils import qsv_utils

    key, name = signature(src)
    recipe = recipe_manager.RecipeManager()
    recipe.add_static_config(".*", TFLOperationName.ALL_SUPPORTED, 8, 8,
                             QuantGranularity.CHANNELWISE if config.per_channel else QuantGranularity.TENSORWISE,
                             getattr(AlgorithmName, ALGORITHMS[config.weights]))
    update = qsv_utils.min_max_update if config.ranges == "minmax" else qsv_utils.moving_average_update
    samples = [{name: calibration.images[i:i + 1].astype(np.float32)} for i in range(len(calibration.images))]
    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):  # its per-op progress bar and XNNPACK's note
        calib = calibrator.Calibrator(src.read_bytes(), num_threads=os.cpu_count() or 1, qsv_update_func=update)
        calib.calibrate({key: samples}, recipe)
        calibrated = time.perf_counter()
        result = quantizer.Quantizer(src, recipe.get_quantization_recipe()).quantize(
            calib.get_model_qsvs(), enable_progress_report=False)
    out.write_bytes(inline_buffers(result.quantized_model))
    return {"calibration_s": calibrated - start, "quantize_s": time.perf_counter() - calibrated}


def inline_buffers(model_bytes: bytes) -> bytes:
    """The same model with every buffer inside the flatbuffer. The LiteRT quantizer stores buffers
    past it (offset / size) once they hold 256 KiB or more (IC02: 10 of 24), which TFLite Micro
    does not read: it took the weights as empty and gave one output for every image."""
    from ai_edge_litert.tools import flatbuffer_utils

    return bytes(flatbuffer_utils.convert_object_to_bytearray(flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))))


def build(model: Model, config: LitertConfig, cal: CalibrationSet) -> Path:
    src = float_tflite(model)
    return build_once(artifacts.name(model, f"litert/{config.id}-{cal.tag}.tflite"),
                      artifacts.key(model, calibration=cal.sha256), lambda tmp: quantize(src, tmp, config, cal))


BACKENDS = [Backend("litert", DEFAULT_MATRIX, FULL_MATRIX, build,
                    runner=lambda config, path, threads=0: TfliteRunner(path, name=f"litert-{config.id}",
                                                                        threads=threads or None),
                    gated=True, mcu=True,
                    unavailable=needs("litert_quantizer", "litert-quantizer"),
                    reproducibility="The LiteRT quantizer (litert-quantizer) reads a float .tflite: the model's "
                                    "own, or TF's conversion of its Keras model. Its int8 .tflite runs on LiteRT's "
                                    "XNNPACK kernels here, and on TFLite Micro's with quantize --mcu.")]
