"""Every int8 quantization backend behind one small interface, in one registry: the quantize
job, the study, the suite's parametrization and the benchmarks iterate over it instead of
branching on backend names. Each backend module (``ort``, ``pytorch``, ``tflite``, ``litert``,
``nncf``, ``executorch``) defines its :class:`Backend`s and owns their cached builds; this module imports none
of them except inside :func:`registry`. Backends may import the core values, the front-ends,
``r8.artifacts`` and the runtimes (to evaluate what they build), never a report or job."""

import hashlib
from functools import cache
from pathlib import Path

from r8.core.cache import sha256
from r8.core.errors import R8Error

BACKEND_MODULES = ("r8.backends.ort", "r8.backends.pytorch", "r8.backends.tflite", "r8.backends.litert",
                   "r8.backends.nncf", "r8.backends.executorch")  # each lists its BACKENDS


def missing(module: str, package: str, extra: str = "quant") -> str | None:
    """Why a backend whose quantizer is an optional package cannot run here (None: it can)."""
    import importlib.util

    return None if importlib.util.find_spec(module) else f"{package} is not installed (pip install 'r8[{extra}]')"


def float_layers_tag(model_path: Path, float_layers: tuple[str, ...], known) -> str:
    """Names a mixed build's artifact after its float layers; R8Error for a name not in ``known``
    (the units a search can keep float, :func:`r8.frontends.converted_layers.float_units`, as the backend sees them)."""
    unknown = sorted(set(float_layers) - set(known))
    if unknown:
        raise R8Error(f"{model_path}: no conv / linear layer or add {', '.join(unknown)}")
    return hashlib.sha256("\0".join(sorted(float_layers)).encode()).hexdigest()[:12]


def weights_id(per_channel: bool) -> str:
    """The fragment of a config id that says how its weights are quantized."""
    return "perchannel" if per_channel else "pertensor"


class Backend:
    """One int8 quantizer. A backend module subclasses it once: the class attributes say what the
    backend is and can do, the methods build, run and describe its artifacts. The defaults are
    what a backend that cannot do a thing answers."""

    name: str
    default: list  # configs (each with an ``id``) of the default matrix: CI's accuracy gate
    full: list  # the full matrix (the rest runs as `slow`)
    gated = False  # r8's own routes: the best config is held to the best-drop threshold
    mcu = False  # its artifacts are int8 .tflite files: quantize --mcu runs them on TFLite Micro
    keeps_layers_float = False  # build_mixed works: `r8 search` can keep its most sensitive layers float
    measures_sqnr = False  # layer_sqnr works (for the configs sqnr_for admits)
    reproducibility = ""  # what else than the config its artifact and predictions depend on (the report's)

    def build(self, model, config, cal) -> Path:
        """The cached int8 artifact of ``config`` for ``model``, calibrated on ``cal``."""
        raise NotImplementedError

    def runner(self, config, path: Path, threads: int = 0):
        """A runner whose ``predict`` takes NHWC images, over the artifact at ``path``."""
        raise NotImplementedError

    def build_mixed(self, model, config, cal, float_layers: tuple[str, ...]) -> Path:
        """The int8 artifact with ``float_layers`` (r8's conv / linear module names and adds) left float."""
        raise R8Error(f"{self.name} cannot keep layers float")

    def layer_sqnr(self, model, config, cal, images) -> tuple[str, dict[str, float]]:
        """(what it was measured on, {tensor: SQNR in dB}) of each layer's output on ``images``."""
        raise R8Error(f"{self.name} cannot measure per-layer SQNR")

    def sqnr_for(self, config) -> bool:
        return self.measures_sqnr

    def unavailable(self, config) -> str | None:
        """Why this machine cannot run ``config`` (None: it can)."""
        return None

    def notes(self, model, cal, rows) -> dict:
        """Extra report fields, given the rows this run measured (each names its artifact)."""
        return {}

    def digest(self, path: Path) -> str:
        """The artifact's identity: equal for two builds of one config."""
        return sha256(path)

    def best_gate_waiver(self) -> str | None:
        """Why this CPU cannot meet the best-drop gate (None: it can); a miss is then shown, not fatal."""
        return None

    def configs(self, full: bool = False, available: bool = False) -> list:
        return [c for c in (self.full if full else self.default) if not (available and self.unavailable(c))]

    def config(self, config_id: str):
        found = [c for c in self.full if c.id == config_id]
        if not found:
            raise R8Error(f"unknown {self.name} config {config_id!r}; e.g. {self.default[0].id}")
        return found[0]


def unique(entries, what: str) -> dict:
    """name -> entry; a registry refuses a second entry of the same name."""
    out = {}
    for entry in entries:
        if entry.name in out:
            raise ValueError(f"{what} {entry.name!r} is registered twice")
        out[entry.name] = entry
    return out


@cache
def registry() -> dict[str, Backend]:
    import importlib

    return unique((b for m in BACKEND_MODULES for b in importlib.import_module(m).BACKENDS), "backend")


def backend(name: str) -> Backend:
    if name not in registry():
        raise R8Error(f"unknown backend {name!r}; choose from {', '.join(registry())}")
    return registry()[name]


def gated() -> list[Backend]:
    return [b for b in registry().values() if b.gated]


def mcu() -> list[Backend]:
    return [b for b in registry().values() if b.mcu]


def mcu_names() -> set[str]:
    """The backends whose artifacts are int8 .tflite files (TFLite Micro rows name them as their source)."""
    return {b.name for b in mcu()}
