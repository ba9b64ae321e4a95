"""The model a job works on, as a value: built once by the CLI or the suite's options and passed
down, never looked up by a global path."""

import os
from dataclasses import dataclass
from pathlib import Path

from r8.core.cache import sha256
from r8.core.errors import R8Error

# Published int8/fp32 TFLite files of a model, found beside it when its sha256 is known:
# sha256 of the model file -> {precision: file name in the same folder}.
REFERENCES = {
    # MLPerf Tiny IC01 ResNet8 (mlcommons/tiny): the MLCommons fp32 and int8 (pixel - 128) .tflite
    "5f938a8eea605438cc7360aa13c987bc6d7bd0c8d931b2917361ae7ae4eeda2f": {
        "fp32": "pretrainedResnet.tflite", "int8": "pretrainedResnet_quant.tflite"},
    # MLPerf Tiny IC02 ResNet8 at 40/80/160 filters: published as this fp32 .tflite and an int8 one
    "fb17ae9c1b6d0e5bd97f0f35024f207556261d7310b249716c87cc0628214b0e": {
        "fp32": "pretrainedResnet_large_float.tflite", "int8": "pretrainedResnet_large_int8.tflite"},
}


KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")


@dataclass(frozen=True)
class Model:
    """A classifier r8 converts: its file, identity and shapes (one input, or several where the
    caller allowed them: ``load_model(several_inputs=True)``)."""

    path: Path
    sha256: str
    input_shapes: tuple  # per input, per sample, Keras layout (NHWC for images)
    num_classes: int
    references: tuple = ()  # ((precision, Path), ...) of published TFLite files of this very model

    @property
    def input_shape(self) -> tuple:
        """The one input's shape (what every job but convert and evaluate works with)."""
        if len(self.input_shapes) != 1:
            raise R8Error(f"{self.path}: has {len(self.input_shapes)} inputs; this step takes single-input models only")
        return self.input_shapes[0]

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def is_keras(self) -> bool:
        """Born in Keras (``.h5``, ``.keras``): TensorFlow's own converter and Keras itself apply."""
        return self.path.suffix.lower() in KERAS_SUFFIXES

    @property
    def key(self) -> str:
        """Names its artifacts: the stem (readable) and the file's sha256 (two files never collide)."""
        return f"{self.stem}-{self.sha256[:12]}"

    def reference(self, precision: str) -> Path | None:
        return dict(self.references).get(precision)

    def report_dir(self, out_root: str | os.PathLike) -> Path:
        """Where this model's reports go: one folder per model stem under the reports root."""
        return Path(out_root) / self.stem


def describe(model: Model, data, cal=None) -> dict:
    """What a report was measured on: the model, the data set (an :class:`r8.data.Dataset`) and,
    where given, the calibration set (an :class:`r8.calibration.CalibrationSet`)."""
    out = {"model": {"stem": model.stem, "file": str(model.path), "sha256": model.sha256,
                     "input_shape": list(model.input_shape), "classes": model.num_classes},
           "data": {"name": data.name, "sha256": data.sha256, "test": len(data.test.labels),
                    "train": len(data.train.labels)}}
    if cal is not None:
        out["calibration"] = cal.summary()
    return out


def _keras_layout(torch_shape) -> tuple:
    return tuple(torch_shape[1:]) + (torch_shape[0],) if len(torch_shape) == 3 else tuple(torch_shape)


def load_model(path: str | os.PathLike, several_inputs: bool = False) -> Model:
    """Read and check ``path`` (any file r8 converts): one rank-1 output (the class scores) and
    one input, or several with ``several_inputs`` (``r8 evaluate`` takes them; quantization,
    search, studies and timing do not); R8Error naming the file otherwise."""
    from r8.frontends.convert import convert

    path = Path(path).resolve()
    meta = convert(path).meta  # reads and checks every layer; milliseconds
    ins, outs = meta["input_shapes"], meta["output_shapes"]
    if len(outs) != 1:
        raise R8Error(f"{path}: has {len(outs)} outputs; r8 evaluates and quantizes single-output classifiers only")
    if len(ins) != 1 and not several_inputs:
        raise R8Error(f"{path}: has {len(ins)} inputs; r8 quantizes, searches, studies and times single-input "
                      "models only (`r8 convert` and `r8 evaluate` take a model with several)")
    if len(outs[0]) != 1:
        raise R8Error(f"{path}: its output has shape {outs[0]} per sample; a classifier's is (classes,)")
    digest = sha256(path)
    refs = tuple((p, path.parent / name) for p, name in REFERENCES.get(digest, {}).items()
                 if (path.parent / name).is_file())
    return Model(path, digest, tuple(_keras_layout(s) for s in ins), int(outs[0][0]), refs)
