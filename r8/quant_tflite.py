"""TFLite full-integer int8 post-training quantization of the Keras model with TFLite's own
converter, calibrated on the shared calibration set (the MLCommons reference was calibrated on
500 *test* images): the apples-to-apples comparison the reference row cannot give."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from r8 import artifacts, paths
from r8.backends import Backend
from r8.cache import build_once
from r8.calibration import CalibrationSet, calibration_set
from r8.runners import TfliteRunner


@dataclass(frozen=True)
class TfliteConfig:
    per_channel: bool

    @property
    def id(self) -> str:
        return f"int8-{'perchannel' if self.per_channel else 'pertensor'}"


MATRIX = [TfliteConfig(True), TfliteConfig(False)]


def quantize(h5: Path, out: Path, config: TfliteConfig, calibration: CalibrationSet) -> dict:
    """int8 weights, activations, input and output (input = pixel - 128: scale 1, zero point -128)."""
    import time

    from r8.console import native_stderr_quiet
    from r8.keras_ref import import_tensorflow, load_keras_model

    tf = import_tensorflow()
    converter = tf.lite.TFLiteConverter.from_keras_model(load_keras_model(h5))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([calibration.images[i:i + 1].astype(np.float32)]
                                                for i in range(len(calibration.images)))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    converter._experimental_disable_per_channel = not config.per_channel  # TFLite's per-tensor switch
    start = time.perf_counter()
    with native_stderr_quiet():
        out.write_bytes(converter.convert())  # calibration and quantization happen in one call
    return {"quantize_s": time.perf_counter() - start}


def build(config: TfliteConfig, cal: CalibrationSet | None = None) -> Path:
    cal = cal or calibration_set()
    return build_once(f"tflite/{config.id}-{cal.tag}.tflite",
                      {"h5": artifacts.h5_sha256(), "calibration": cal.sha256},
                      lambda tmp: quantize(paths.keras_model_path(), tmp, config, cal))


BACKEND = Backend("tflite", MATRIX, MATRIX, build,
                  runner=lambda config, path, threads=0: TfliteRunner(path, name=f"tflite-{config.id}",
                                                                       threads=threads or None))
