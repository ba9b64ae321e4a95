"""Every artifact r8 builds, each built once into R8_CACHE_DIR from the inputs in R8_DATA_DIR
(see r8.cache) and shared by the CLI jobs and the suite's session fixtures."""

from functools import cache
from pathlib import Path

from r8 import paths
from r8.cache import build_once, sha256
from r8.calibration import calibration_set
from r8.convert import convert, save_program
from r8.errors import R8Error
from r8.model import ResNet8


@cache
def h5_sha256() -> str:
    h5 = paths.keras_model_path()
    if not h5.is_file():
        raise R8Error(f"{h5}: file not found (set R8_DATA_DIR or run `python -m r8 download`)")
    return sha256(h5)


def torch_fp32() -> ResNet8:
    """The converted model (converting takes milliseconds, so it is not cached)."""
    return convert(paths.keras_model_path())[0]


def exported_program() -> Path:
    return build_once("resnet8.pt", {"h5": h5_sha256()}, lambda tmp: save_program(torch_fp32(), tmp))


def onnx_fp32(route: str) -> Path:
    """``torch`` (the converted model, torch.onnx) or ``keras`` (the .h5 itself, tf2onnx)."""
    from r8.export import keras_to_onnx, torch_to_onnx

    build = {"torch": lambda tmp: torch_to_onnx(torch_fp32(), tmp),
             "keras": lambda tmp: keras_to_onnx(paths.keras_model_path(), tmp)}[route]
    return build_once(f"onnx/resnet8-{route}.onnx", {"h5": h5_sha256()}, build)


def onnx_preprocessed() -> Path:
    """The torch-route ONNX after ORT's quantization pre-processing: what ORT quantizes."""
    from r8.quant_ort import preprocess

    return build_once("onnx/resnet8-torch.pre.onnx", {"h5": h5_sha256()},
                      lambda tmp: preprocess(onnx_fp32("torch"), tmp))


def ort_int8(config, calibration: str = "train") -> Path:
    from r8.quant_ort import quantize

    images = calibration_set(source=calibration)
    return build_once(f"ort/{config.id}-{calibration}.onnx",
                      {"h5": h5_sha256(), "calibration": images.sha256},
                      lambda tmp: quantize(onnx_preprocessed(), tmp, config, images))


def torch_int8(config, calibration: str = "train") -> Path:
    from r8.quant_torch import quantize, save

    images = calibration_set(source=calibration)
    return build_once(f"torch/{config.id}-{calibration}.pt",
                      {"h5": h5_sha256(), "calibration": images.sha256},
                      lambda tmp: save(quantize(torch_fp32(), config, images.images), config, tmp))
