"""Every artifact r8 builds, each built once into R8_CACHE_DIR from the inputs in R8_DATA_DIR
(see r8.cache) and shared by the CLI jobs and the suite's session fixtures."""

from functools import cache
from pathlib import Path

from r8 import paths
from r8.cache import build_once, sha256
from r8.calibration import CalibrationSet, calibration_set
from r8.convert import convert, example_inputs, save_program
from r8.errors import R8Error
from torch import fx


@cache
def h5_sha256() -> str:
    h5 = paths.keras_model_path()
    if not h5.is_file():
        raise R8Error(f"{h5}: file not found (set R8_DATA_DIR or run `python -m r8 download`)")
    return sha256(h5)


def torch_fp32() -> fx.GraphModule:
    """The converted model (converting takes milliseconds, so it is not cached)."""
    return convert(paths.keras_model_path())


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


def ort_int8(config, cal: CalibrationSet | None = None) -> Path:
    """An ONNX Runtime int8 model; its build facts (``r8.cache.build_facts``) hold the calibration
    and quantization seconds and the calibrated ranges."""
    from r8.quant_ort import quantize

    cal = cal or calibration_set()
    return build_once(f"ort/{config.id}-{cal.tag}.onnx", {"h5": h5_sha256(), "calibration": cal.sha256},
                      lambda tmp: quantize(onnx_preprocessed(), tmp, config, cal))


def ort_int8_integer_input(config, cal: CalibrationSet | None = None) -> Path:
    """The ORT int8 model rewritten to take uint8 NHWC pixels (``quant_ort.integer_input``);
    ValueError where its input quantization is not exact on pixels."""
    from r8.quant_ort import integer_input

    source = ort_int8(config, cal)
    return build_once(source.relative_to(paths.cache_dir()).with_suffix(".uint8-nhwc.onnx").as_posix(),
                      {"h5": h5_sha256(), "source": sha256(source)}, lambda tmp: integer_input(source, tmp))


def onnx2torch_fp32() -> fx.GraphModule:
    """The fallback route's model: the tf2onnx ONNX file converted by onnx2torch (NHWC input)."""
    from r8.onnx_route import onnx_to_torch

    return onnx_to_torch(onnx_fp32("keras"))


TORCH_ROUTES = {"h5": torch_fp32, "onnx2torch": onnx2torch_fp32}  # route -> fp32 model


def onnx2torch_program() -> Path:
    return build_once("resnet8-onnx2torch.pt", {"h5": h5_sha256()}, lambda tmp: save_program(onnx2torch_fp32(), tmp))


def torch_int8(config, cal: CalibrationSet | None = None, route: str = "h5") -> Path:
    """A PyTorch int8 model (TorchScript, or torch.export for PT2E) of the ``route``'s fp32 model,
    with build facts as ``ort_int8``."""
    from r8.quant_torch import quantize, save

    cal = cal or calibration_set()
    prefix = "torch" if route == "h5" else f"torch-{route}"

    def build(tmp: Path) -> dict:
        facts, fp32 = {}, TORCH_ROUTES[route]()
        save(quantize(fp32, config, cal.images, facts), config, tmp, example_inputs(fp32))
        return facts
    return build_once(f"{prefix}/{config.id}-{cal.tag}.pt", {"h5": h5_sha256(), "calibration": cal.sha256}, build)
