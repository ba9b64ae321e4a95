"""The fp32 artifacts of a model (converted program, ONNX files), each built once into
R8_CACHE_DIR (see r8.core.cache) under the model's key and shared by the jobs and the suite. The int8
artifacts are built by their backend modules (:mod:`r8.backends`)."""

from pathlib import Path

from torch import fx

from r8.core.cache import build_once
from r8.frontends.convert import convert, save_program
from r8.model import Model


def name(model: Model, rel: str) -> str:
    """An artifact's path in the cache: one folder per model file (stem and sha256)."""
    return f"{model.key}/{rel}"


def key(model: Model, **inputs) -> dict:
    return {"model": model.sha256, **inputs}


def torch_fp32(model: Model) -> fx.GraphModule:
    """The converted model (converting takes milliseconds, so it is not cached on disk)."""
    return convert(model.path)


def exported_program(model: Model) -> Path:
    return build_once(name(model, "fp32.pt"), key(model), lambda tmp: save_program(torch_fp32(model), tmp))


def onnx_fp32(model: Model, route: str) -> Path:
    """``torch`` (the converted model, torch.onnx) or ``keras`` (the file itself, tf2onnx)."""
    from r8.frontends.export import keras_to_onnx, torch_to_onnx

    build = {"torch": lambda tmp: torch_to_onnx(torch_fp32(model), tmp),
             "keras": lambda tmp: keras_to_onnx(model.path, tmp)}[route]
    return build_once(name(model, f"onnx/{route}.onnx"), key(model), build)


def onnx2torch_fp32(model: Model) -> fx.GraphModule:
    """The fallback route's model: the tf2onnx ONNX file converted by onnx2torch (NHWC input)."""
    from r8.frontends.onnx_route import onnx_to_torch

    return onnx_to_torch(onnx_fp32(model, "keras"))


# route -> fp32 model of a Model: r8's own converter (any file r8 reads), or tf2onnx then onnx2torch
TORCH_ROUTES = {"r8": torch_fp32, "onnx2torch": onnx2torch_fp32}


