"""TFLite full-integer int8 post-training quantization of the Keras model with TFLite's own
converter, calibrated on the shared calibration set (the MLCommons reference was calibrated on
500 *test* images): the apples-to-apples comparison the reference row cannot give."""

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from r8 import artifacts
from r8.backends import Backend, weights_id
from r8.calibration import CalibrationSet
from r8.core.cache import build_once
from r8.core.errors import R8Error
from r8.model import Model
from r8.runtimes.runners import TfliteRunner


@dataclass(frozen=True)
class TfliteConfig:
    per_channel: bool
    mean_pool: bool = False  # whole-map AveragePooling2D converted as MEAN (see ``global_pools_as_mean``)

    @property
    def id(self) -> str:
        return f"int8-{weights_id(self.per_channel)}{'-meanpool' if self.mean_pool else ''}"


MATRIX = [TfliteConfig(True, True), TfliteConfig(False, True), TfliteConfig(True), TfliteConfig(False)]


def global_pools_as_mean(model, keras):
    """``model`` with each AveragePooling2D that averages its whole feature map replaced by
    GlobalAveragePooling2D(keepdims=True): the same function in float, but TFLite converts it to
    MEAN instead of AVERAGE_POOL_2D. The int8 spec makes AVERAGE_POOL_2D keep its input's scale,
    so the pooled vector is quantized as coarsely as the 8x8 map before it (for ResNet8, the last
    residual sum's 0.12: the mean of 64 activations lands on a handful of levels); MEAN gets a
    scale of its own."""
    def clone(layer):
        if (isinstance(layer, keras.layers.AveragePooling2D) and layer.padding == "valid"
                and layer.data_format == "channels_last"
                and tuple(layer.pool_size) == tuple(layer.input.shape[1:3])):
            return keras.layers.GlobalAveragePooling2D(keepdims=True, name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    rewritten = keras.models.clone_model(model, clone_function=clone)
    rewritten.set_weights(model.get_weights())  # pooling layers hold no weights: the lists line up
    return rewritten


def keras_model(h5: Path, mean_pool: bool):
    """The Keras model TFLite converts: the file as Keras loads it, pools rewritten if asked."""
    from r8.frontends.keras.reference import keras_for, load_keras_model

    model = load_keras_model(h5)
    return global_pools_as_mean(model, keras_for(h5)) if mean_pool else model


def quantize(h5: Path, out: Path, config: TfliteConfig, calibration: CalibrationSet) -> dict:
    """int8 weights, activations, input and output (for pixels 0..255 the input is pixel - 128:
    scale 1, zero point -128)."""
    from r8.core.console import tf_converter_quiet
    from r8.frontends.keras.reference import import_tensorflow

    tf = import_tensorflow()
    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model(h5, config.mean_pool))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([calibration.images[i:i + 1].astype(np.float32)]
                                                for i in range(len(calibration.images)))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    converter._experimental_disable_per_channel = not config.per_channel  # TFLite's per-tensor switch
    start = time.perf_counter()
    with tf_converter_quiet(), warnings.catch_warnings():
        # the int8 input's (scale 1, zero point -128) comes from calibration, as intended
        warnings.filterwarnings("ignore", "Statistics for quantized inputs were expected")
        out.write_bytes(converter.convert())  # calibration and quantization happen in one call
    return {"quantize_s": time.perf_counter() - start}


def build(model: Model, config: TfliteConfig, cal: CalibrationSet) -> Path:
    if not model.is_keras:
        raise R8Error(f"{model.path.name}: TFLite's int8 quantizer converts a Keras model (or a SavedModel) "
                      f"while it calibrates; a {model.path.suffix} file holds neither (the LiteRT quantizer "
                      "reads a float .tflite)")
    return build_once(artifacts.name(model, f"tflite/{config.id}-{cal.tag}.tflite"),
                      artifacts.key(model, calibration=cal.sha256),
                      lambda tmp: quantize(model.path, tmp, config, cal))


class TfliteBackend(Backend):
    name, default, full = "tflite", MATRIX, MATRIX
    gated = mcu = True
    reproducibility = ("Two builds of a config in separate processes give byte-identical .tflite files and identical "
                       "predictions (tested). LiteRT's XNNPACK kernels pick their code path by CPU (they differ from "
                       "TFLite's reference kernels by one LSB in a few outputs).")

    def build(self, model, config, cal):
        return build(model, config, cal)

    def runner(self, config, path, threads=0):
        return TfliteRunner(path, name=f"tflite-{config.id}", threads=threads or None)


BACKENDS = [TfliteBackend()]
