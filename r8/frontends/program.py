"""``.pt2`` files (a ``torch.export`` program saved with ``torch.export.save``) -> r8's torch model.

The program is checked first: one float input whose only dynamic dimension is the batch, one
tensor output. It is then exported to ONNX (``torch.onnx``, cached by the file's sha256) and
converted like an ``.onnx`` file (:mod:`r8.frontends.onnx_file`), so its layers are ``nn.Conv2d``
and ``nn.Linear`` modules that every backend and ``r8 search`` work with. Parity is checked
against the program itself (:func:`load_program`).

A ``.pt2`` is a zip archive whose weights ``torch.export.load`` unpickles with
``weights_only=False``: loading one runs whatever code its pickles name, so load only files from
a source you would run code from. A file that is not such an archive is refused before loading.
"""

import os
import zipfile
from functools import cache
from pathlib import Path

import torch
from torch import fx

from r8.core.cache import build_once, sha256
from r8.core.errors import R8Error, cause

OPSET = 18


def read_program(path: str | os.PathLike) -> torch.export.ExportedProgram:
    """The program in ``path``; R8Error naming the file for one that is not a loadable ``.pt2``."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except Exception as e:  # BadZipFile, a name that is not UTF-8, a cut-off member: zipfile raises each its own way
        raise R8Error(f"{path}: not a torch.export archive (a .pt2 is a zip file): {type(e).__name__}: {e}") from None
    if damaged:
        raise R8Error(f"{path}: damaged archive: {damaged} fails its CRC check")
    try:
        with open(path, "rb") as f:  # a file object: torch.export.load insists on a .pt2 name otherwise
            return torch.export.load(f)
    except Exception as e:  # torch's deserializer raises whatever the damaged part makes it raise
        raise R8Error(f"{path}: torch.export.load cannot read it ({cause(e)})") from None


def check_program(program: torch.export.ExportedProgram, path) -> None:
    """One float tensor input with a dynamic batch and a fixed sample shape, one tensor output."""
    names = program.graph_signature.user_inputs
    if len(names) != 1:
        raise R8Error(f"{path}: the program takes {len(names)} inputs; r8 converts single-input programs")
    node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == names[0])
    value = node.meta.get("val")
    if not isinstance(value, torch.Tensor) or value.dtype != torch.float32:
        raise R8Error(f"{path}: its input {names[0]!r} is {getattr(value, 'dtype', type(value).__name__)}; "
                      "r8 converts programs with one float32 tensor input")
    dims = list(value.shape)
    if not dims or isinstance(dims[0], int):
        raise R8Error(f"{path}: its input {names[0]!r} has shape {tuple(dims)} with a fixed batch; export it with "
                      "dynamic_shapes=({0: torch.export.Dim('batch')},)")
    dynamic = [i for i, d in enumerate(dims[1:], 1) if not isinstance(d, int)]
    if dynamic:
        raise R8Error(f"{path}: its input {names[0]!r} has dynamic dimension(s) {dynamic} besides the batch; "
                      "r8 converts programs whose sample shape is fixed")
    outputs = program.graph_signature.user_outputs
    if len(outputs) != 1:
        raise R8Error(f"{path}: the program returns {len(outputs)} outputs; r8 converts single-output classifiers")


def load_program(path: str | os.PathLike) -> torch.nn.Module:
    """The checked program as a callable module: the reference a conversion is compared with."""
    program = read_program(path)
    check_program(program, path)
    return program.module()


@cache
def _checked_program(path: Path, digest: str) -> torch.export.ExportedProgram:
    """The program in ``path`` (whose bytes hash to ``digest``), read and checked once per process:
    every conversion of the model asks again."""
    program = read_program(path)
    check_program(program, path)
    return program


def program_onnx(path: str | os.PathLike) -> Path:
    """The cached ``torch.onnx`` export of the program (dynamic batch), keyed by the file's sha256."""
    path = Path(path)
    digest = sha256(path)
    program = _checked_program(path, digest)  # before anything is written

    def export(tmp: Path) -> None:
        try:
            onnx_program = torch.onnx.export(program, dynamo=True, opset_version=OPSET, verbose=False)
        except Exception as e:  # an op torch.onnx has no translation for, named by torch
            raise R8Error(f"{path}: torch.onnx cannot export the program ({cause(e)})") from None
        onnx_program.save(str(tmp))
    return build_once(f"programs/{path.stem}-{digest[:12]}.onnx", {"program": digest}, export)


def to_torch(path: str | os.PathLike) -> fx.GraphModule:
    """The torch model of a ``.pt2`` file (in eval mode), NCHW as the program itself."""
    from r8.frontends import onnx_file

    onnx_path = program_onnx(path)
    proto = onnx_file.read_onnx(onnx_path)
    # the ONNX file's names are torch.onnx's; the user sees their own file in any message
    model = onnx_file.to_torch(path, proto)
    model.meta["contract"] = model.meta["contract"].replace("An ONNX model", "A torch.export program (via torch.onnx)")
    return model


def layer_table(path: str | os.PathLike) -> tuple[list[dict], list[str]]:
    """``inspect``'s table of a ``.pt2``: its ONNX export's nodes (torch.onnx names them after the
    program's modules), and its problems."""
    from r8.frontends import onnx_file

    return onnx_file.layer_table(path, onnx_file.read_onnx(program_onnx(path)))


def layout_of(path: str | os.PathLike) -> str:
    from r8.frontends import onnx_file

    return onnx_file.layout_of(program_onnx(path))
