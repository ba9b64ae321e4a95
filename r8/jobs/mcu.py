"""``python -m r8 mcu``: will the model run on a microcontroller? Its int8 ``.tflite`` files on
TFLite Micro's kernels, each a row: top-1, agreement with LiteRT, arena and flash bytes."""

import sys
from pathlib import Path

from r8 import backends
from r8.calibration import calibration_set
from r8.core.errors import R8Error
from r8.data import Dataset
from r8.jobs.quantize import McuFile, fp32_predictions, mcu_rows
from r8.model import Model
from r8.rows import REFERENCE_BACKEND, McuRow, int8_label, reference_label


def mcu_job(model: Model, data: Dataset, tflite: list[Path] = (), progress: bool = True) -> list[McuRow]:
    """The rows of the int8 .tflite of every default config of r8's backends that write one (built
    if needed), the model's published int8 .tflite and the files in ``tflite``."""
    cal, files = calibration_set(data, num_classes=model.num_classes), []
    for b in backends.mcu():
        for config in b.default:
            try:
                files.append(McuFile(b.name, int8_label(config.id, cal.source), b.build(model, config, cal)))
            except R8Error as e:  # e.g. a .tflite source: TFLite's quantizer needs the Keras model
                print(f"skipped {b.name}-{config.id}: {e}", file=sys.stderr)
    reference = model.reference("int8")
    files += [McuFile(REFERENCE_BACKEND, reference_label(reference), reference)] if reference else []
    files += [McuFile("file", f.name, f) for f in tflite]
    return mcu_rows(model, data, fp32_predictions(model, data, progress), files, progress)
